//! What the promo video says, as pure functions of the pipeline's view: the status
//! line, the script shown for approval, the gate prompts and the endings.

use genq_core::FailureClass;
use genq_job_write_script::{Part, Script};
use genq_pipeline::PipelineView;

use crate::{
    i18n::{Lang, t},
    transport::send::{TEXT_LIMIT, trim_chars},
};

pub use genq_catalog::promo::stages::{
    APPROVE_CLIPS, APPROVE_IMAGES, APPROVE_SCRIPT, ASSEMBLE, CLIPS, IMAGES, SCRIPT, VOICE,
};

/// Whole minutes left before `deadline_ms` (at least 1 while it is open).
pub fn minutes_left(deadline_ms: u64, now_ms: u64) -> u64 {
    deadline_ms.saturating_sub(now_ms).div_ceil(60_000).max(1)
}

/// The status message's line for where the pipeline is.
pub fn status_line(lang: Lang, view: &PipelineView, now_ms: u64) -> String {
    let percent = view.percent;
    if let Some(gate) = &view.gate {
        let minutes = minutes_left(gate.deadline_ms, now_ms);
        return t(
            lang,
            "promo.status.gate",
            &[("minutes", &minutes), ("percent", &percent)],
        );
    }
    let stage = view.stage.and_then(|i| view.stages.get(i));
    let Some(stage) = stage else {
        return t(lang, "promo.status.script", &[("percent", &percent)]);
    };
    let of = |key: &str| {
        let n = stage.jobs.max(1);
        let k = (stage.done + 1).min(n);
        t(
            lang,
            key,
            &[("n", &k), ("total", &n), ("percent", &percent)],
        )
    };
    match stage.name.as_str() {
        IMAGES => of("promo.status.images"),
        CLIPS => of("promo.status.clips"),
        VOICE => t(lang, "promo.status.voice", &[("percent", &percent)]),
        ASSEMBLE => t(lang, "promo.status.assemble", &[("percent", &percent)]),
        _ => t(lang, "promo.status.script", &[("percent", &percent)]),
    }
}

fn part_name(lang: Lang, part: Part) -> String {
    let key = match part {
        Part::Intro => "promo.part.intro",
        Part::Main => "promo.part.main",
        Part::Outro => "promo.part.outro",
    };
    t(lang, key, &[])
}

/// The script as the user reads it: the title, one line per segment (part, times,
/// narration), then the question and the time left; within one message.
pub fn script_text(lang: Lang, script: &Script, minutes: u64) -> String {
    let mut text = t(lang, "promo.script.title", &[("title", &script.title)]);
    text.push_str("\n\n");
    for s in &script.segments {
        let line = t(
            lang,
            "promo.script.segment",
            &[
                ("n", &(s.index + 1)),
                ("part", &part_name(lang, s.part)),
                ("start", &s.start_secs),
                ("end", &s.end_secs),
                ("text", &s.narration),
            ],
        );
        text.push_str(&line);
        text.push('\n');
    }
    let ask = t(lang, "promo.gate.script", &[("minutes", &minutes)]);
    let room = TEXT_LIMIT.saturating_sub(ask.chars().count() + 2);
    let mut out = trim_chars(text.trim_end(), room);
    out.push_str("\n\n");
    out.push_str(&ask);
    out
}

/// The question under the previews of gate `gate`.
pub fn gate_question(lang: Lang, gate: &str, minutes: u64, shown: usize, total: usize) -> String {
    let key = match gate {
        APPROVE_IMAGES => "promo.gate.images",
        APPROVE_CLIPS => "promo.gate.clips",
        _ => "promo.gate.script",
    };
    t(
        lang,
        key,
        &[("minutes", &minutes), ("shown", &shown), ("total", &total)],
    )
}

/// The Approve button's label for gate `gate`.
pub fn approve_label(lang: Lang, gate: &str) -> String {
    let key = match gate {
        APPROVE_IMAGES => "promo.button.approve_images",
        APPROVE_CLIPS => "promo.button.approve_clips",
        _ => "promo.button.approve_script",
    };
    t(lang, key, &[])
}

/// How a promo video ended, for its one final message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// An approval was left unanswered.
    TimedOut,
    Cancelled,
    /// A provider refused on content policy.
    Policy,
    /// Providers unavailable (billing, rate limits, outages).
    Unavailable,
    /// A stage ran past its time.
    TooSlow,
    /// No usable script.
    Script,
    /// The video could not be put together.
    Assembly,
    /// Anything else.
    Failed,
}

impl Ending {
    /// The ending for a pipeline that ended with `status` (`cancelled`/`failed`),
    /// `class`, in stage `stage` (its name, when known).
    pub fn of(status: &str, class: Option<FailureClass>, stage: Option<&str>) -> Ending {
        if status == "cancelled" {
            return if class == Some(FailureClass::Timeout) {
                Ending::TimedOut
            } else {
                Ending::Cancelled
            };
        }
        match class {
            Some(FailureClass::Cancelled) => Ending::Cancelled,
            Some(FailureClass::UserViolation) => Ending::Policy,
            Some(FailureClass::Billing | FailureClass::RateLimited | FailureClass::Transient) => {
                Ending::Unavailable
            }
            Some(FailureClass::Timeout) => Ending::TooSlow,
            Some(FailureClass::BadInput) if stage == Some(SCRIPT) => Ending::Script,
            Some(FailureClass::BadInput) if stage == Some(ASSEMBLE) => Ending::Assembly,
            _ => Ending::Failed,
        }
    }

    fn key(self) -> &'static str {
        match self {
            Ending::TimedOut => "promo.end.timed_out",
            Ending::Cancelled => "promo.end.cancelled",
            Ending::Policy => "promo.end.policy",
            Ending::Unavailable => "promo.end.unavailable",
            Ending::TooSlow => "promo.end.too_slow",
            Ending::Script => "promo.end.script",
            Ending::Assembly => "promo.end.assembly",
            Ending::Failed => "promo.end.failed",
        }
    }

    /// Whether the text names the support contact.
    pub fn names_support(self) -> bool {
        matches!(self, Ending::Unavailable | Ending::Failed)
    }

    /// The final message: what happened and that `price` credits came back.
    pub fn text(self, lang: Lang, price: i64, minutes: u64) -> String {
        t(
            lang,
            self.key(),
            &[("price", &price), ("minutes", &minutes)],
        )
    }
}

#[cfg(test)]
mod tests {
    use genq_job_write_script::Segment;
    use genq_pipeline::{GateView, StageView};
    use serde_json::json;

    use super::*;

    fn stage(index: usize, name: &str, jobs: usize, done: usize) -> StageView {
        StageView {
            index,
            name: name.to_owned(),
            kind: "fan_out".to_owned(),
            state: "running".to_owned(),
            started_ms: None,
            ended_ms: None,
            jobs,
            done,
            steps: vec![],
            decision: None,
        }
    }

    fn view(stage: Option<usize>, gate: Option<GateView>) -> PipelineView {
        let names = [
            SCRIPT,
            APPROVE_SCRIPT,
            IMAGES,
            APPROVE_IMAGES,
            CLIPS,
            APPROVE_CLIPS,
            VOICE,
            ASSEMBLE,
        ];
        PipelineView {
            id: "p".to_owned(),
            pipeline_type: "promo".to_owned(),
            status: "running".to_owned(),
            outcome: None,
            stage,
            stage_name: None,
            percent: 30,
            gate,
            stages: names
                .iter()
                .enumerate()
                .map(|(i, n)| stage_of(i, n))
                .collect(),
            input: json!({}),
            result: None,
            error: None,
            error_class: None,
            failed_stage: None,
            created_ms: None,
            started_ms: None,
            finished_ms: None,
        }
    }

    fn stage_of(i: usize, name: &str) -> StageView {
        if name == IMAGES || name == CLIPS {
            stage(i, name, 10, 3)
        } else {
            stage(i, name, 1, 0)
        }
    }

    #[test]
    fn the_status_line_names_the_stage_and_its_progress() {
        let l = Lang::En;
        let v = view(Some(2), None);
        assert_eq!(
            status_line(l, &v, 0),
            t(
                l,
                "promo.status.images",
                &[("n", &4), ("total", &10), ("percent", &30)]
            )
        );
        let v = view(Some(4), None);
        assert!(status_line(l, &v, 0).contains("4"));
        let v = view(Some(6), None);
        assert_eq!(
            status_line(l, &v, 0),
            t(l, "promo.status.voice", &[("percent", &30)])
        );
        let v = view(None, None);
        assert_eq!(
            status_line(l, &v, 0),
            t(l, "promo.status.script", &[("percent", &30)])
        );
    }

    #[test]
    fn a_gate_says_how_long_is_left() {
        let gate = GateView {
            name: APPROVE_SCRIPT.to_owned(),
            stage: 1,
            opened_ms: 0,
            deadline_ms: 600_000,
            choices: vec!["approve".to_owned()],
        };
        let v = view(Some(1), Some(gate));
        let line = status_line(Lang::En, &v, 61_000);
        assert_eq!(
            line,
            t(
                Lang::En,
                "promo.status.gate",
                &[("minutes", &9), ("percent", &30)]
            )
        );
        assert_eq!(minutes_left(600_000, 599_999), 1);
        assert_eq!(minutes_left(600_000, 700_000), 1);
    }

    #[test]
    fn the_script_fits_one_message_with_its_question() {
        let seg = |i: u32, part| Segment {
            index: i,
            part,
            start_secs: i * 5,
            end_secs: i * 5 + 5,
            narration: "word ".repeat(200),
            image_prompt: "p".to_owned(),
            animation_prompt: "a".to_owned(),
        };
        let script = Script {
            title: "Fresh tea".to_owned(),
            segments: (0..10).map(|i| seg(i, Part::Main)).collect(),
        };
        let text = script_text(Lang::Ru, &script, 10);
        assert!(text.chars().count() <= TEXT_LIMIT);
        assert!(text.contains("Fresh tea"));
        assert!(text.ends_with(&t(Lang::Ru, "promo.gate.script", &[("minutes", &10)])));
    }

    #[test]
    fn endings_follow_the_stage_and_the_class() {
        use FailureClass as C;
        assert_eq!(
            Ending::of("cancelled", Some(C::Timeout), Some(APPROVE_SCRIPT)),
            Ending::TimedOut
        );
        assert_eq!(
            Ending::of("cancelled", Some(C::Cancelled), None),
            Ending::Cancelled
        );
        assert_eq!(
            Ending::of("failed", Some(C::UserViolation), Some(CLIPS)),
            Ending::Policy
        );
        assert_eq!(
            Ending::of("failed", Some(C::Billing), Some(IMAGES)),
            Ending::Unavailable
        );
        assert_eq!(
            Ending::of("failed", Some(C::Timeout), Some(CLIPS)),
            Ending::TooSlow
        );
        assert_eq!(
            Ending::of("failed", Some(C::BadInput), Some(SCRIPT)),
            Ending::Script
        );
        assert_eq!(
            Ending::of("failed", Some(C::BadInput), Some(ASSEMBLE)),
            Ending::Assembly
        );
        assert_eq!(Ending::of("failed", None, None), Ending::Failed);
        for e in [
            Ending::TimedOut,
            Ending::Cancelled,
            Ending::Policy,
            Ending::Script,
        ] {
            assert!(
                e.text(Lang::En, 50, 10).contains("50"),
                "{e:?} names the refund"
            );
        }
    }
}
