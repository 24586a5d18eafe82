//! WriteScript: a brief becomes the script of a promo video — a title and segments
//! (intro, main, outro) of equal length, each with its narration, an image prompt
//! and an animation prompt — from an OpenAI-compatible chat API with structured
//! (JSON-schema) output. The reply is checked against the layout ([`check`]); a
//! reply that is not JSON or does not fit is answered once with the problems fed
//! back, and a second bad reply fails the job as bad input (never retried).

mod check;

pub use check::{
    MAX_NARRATION_CHARS, MAX_PROMPT_CHARS, MAX_TITLE_CHARS, MAX_WORDS_PER_SEC, ScriptProblem, check,
};

use std::time::Duration;

use genq_core::{Job, JobContext, JobError, RetryPolicy};
use genq_jobkit::RunSettings;
use genq_providers::{ChatMessage, OpenAiClient, ProviderErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::{info, warn};

/// Most segments one part may have.
pub const MAX_PART_SEGMENTS: u32 = 30;
/// The longest video a script may describe, in seconds.
pub const MAX_TOTAL_SECS: u32 = 600;
/// The longest brief, in characters.
pub const MAX_BRIEF_CHARS: usize = 2000;
/// The JSON schema's name in the request.
pub const SCHEMA_NAME: &str = "promo_script";

/// What the script is about and how it is laid out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptRequest {
    pub brief: String,
    /// The language of the narration (e.g. `en`, `ru`).
    pub lang: String,
    pub layout: Layout,
}

/// Segments per part and each segment's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    pub intro: u32,
    pub main: u32,
    pub outro: u32,
    pub segment_secs: u32,
}

impl Layout {
    /// Segments in all.
    pub fn segments(&self) -> u32 {
        self.intro
            .saturating_add(self.main)
            .saturating_add(self.outro)
    }

    /// The video's length in seconds.
    pub fn total_secs(&self) -> u32 {
        self.segments().saturating_mul(self.segment_secs)
    }

    /// The line the prompt carries the layout in (the fake provider reads it).
    pub fn prompt_line(&self) -> String {
        format!(
            "Layout: {} intro, {} main, {} outro segments of {} seconds each.",
            self.intro, self.main, self.outro, self.segment_secs
        )
    }

    /// Checks the numbers: each part at most [`MAX_PART_SEGMENTS`], at least one
    /// segment, 1-30 s a segment, at most [`MAX_TOTAL_SECS`] in all.
    pub fn validate(&self) -> Result<(), String> {
        for (name, n) in [
            ("intro", self.intro),
            ("main", self.main),
            ("outro", self.outro),
        ] {
            if n > MAX_PART_SEGMENTS {
                return Err(format!(
                    "layout.{name} is {n} segments, over {MAX_PART_SEGMENTS}"
                ));
            }
        }
        if self.segments() == 0 {
            return Err("the layout has no segments".to_owned());
        }
        if !(1..=30).contains(&self.segment_secs) {
            return Err(format!(
                "layout.segment_secs must be 1-30, got {}",
                self.segment_secs
            ));
        }
        if self.total_secs() > MAX_TOTAL_SECS {
            return Err(format!(
                "the layout makes {} s, over {MAX_TOTAL_SECS} s",
                self.total_secs()
            ));
        }
        Ok(())
    }
}

/// A promo video's script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Script {
    pub title: String,
    pub segments: Vec<Segment>,
}

impl Script {
    /// Every segment's narration, in order, joined by spaces (the voice-over's text).
    pub fn narration(&self) -> String {
        self.segments
            .iter()
            .map(|s| s.narration.trim())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// One segment: one image, one clip, its share of the narration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// 0-based position.
    pub index: u32,
    pub part: Part,
    pub start_secs: u32,
    pub end_secs: u32,
    pub narration: String,
    pub image_prompt: String,
    pub animation_prompt: String,
}

/// Which part of the video a segment belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    Intro,
    Main,
    Outro,
}

impl Part {
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Intro => "intro",
            Part::Main => "main",
            Part::Outro => "outro",
        }
    }
}

/// The JSON schema of [`Script`] (strict mode: every property required, no others).
pub fn script_schema() -> Value {
    let text = json!({"type": "string"});
    let int = json!({"type": "integer"});
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["title", "segments"],
        "properties": {
            "title": text,
            "segments": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["index", "part", "start_secs", "end_secs", "narration",
                                 "image_prompt", "animation_prompt"],
                    "properties": {
                        "index": int,
                        "part": {"type": "string", "enum": ["intro", "main", "outro"]},
                        "start_secs": int,
                        "end_secs": int,
                        "narration": text,
                        "image_prompt": text,
                        "animation_prompt": text,
                    }
                }
            }
        }
    })
}

/// The conversation that asks for a script.
pub fn prompt(p: &ScriptRequest) -> Vec<ChatMessage> {
    let l = &p.layout;
    let system = format!(
        "You write scripts for short promo videos. A script has a title and segments of \
         equal length, in order: the intro segments, then the main ones, then the outro. \
         Each segment has: index (0, 1, 2, ...), part (intro, main or outro), start_secs and \
         end_secs (segment i runs from i*{secs} to (i+1)*{secs} seconds), narration (spoken \
         over the segment, at most {words} words, in the requested language), image_prompt \
         (a detailed English description of the segment's still image) and animation_prompt \
         (an English description of how that image moves). Reply with JSON only.",
        secs = l.segment_secs,
        words = MAX_WORDS_PER_SEC * l.segment_secs,
    );
    // one line each: the brief's line breaks never make a line of their own
    let brief = p.brief.split_whitespace().collect::<Vec<_>>().join(" ");
    let user = format!(
        "Brief: {brief}\nLanguage: {}\n{}\nTotal length: {} seconds.",
        p.lang.trim(),
        l.prompt_line(),
        l.total_secs()
    );
    vec![
        ChatMessage::new("system", system),
        ChatMessage::new("user", user),
    ]
}

/// What one answer was.
enum Reply {
    Usable(Script),
    /// Not JSON, not a script, or a script with problems; `reply` is the JSON if any.
    Unusable {
        reply: Option<String>,
        problems: String,
    },
}

pub struct WriteScript {
    client: OpenAiClient,
    model: String,
    run: RunSettings,
}

impl WriteScript {
    pub fn new(client: OpenAiClient, model: impl Into<String>, run: RunSettings) -> Self {
        Self {
            client,
            model: model.into(),
            run,
        }
    }

    /// Asks once and judges the answer.
    async fn ask(&self, messages: &[ChatMessage], layout: &Layout) -> Result<Reply, JobError> {
        let value = match self
            .client
            .chat_structured(&self.model, messages, SCHEMA_NAME, script_schema())
            .await
        {
            Ok(v) => v,
            Err(e) if e.kind == ProviderErrorKind::MalformedOutput => {
                return Ok(Reply::Unusable {
                    reply: None,
                    problems: e.message,
                });
            }
            Err(e) => return Err(e.into()),
        };
        let reply = Some(value.to_string());
        let script: Script = match serde_json::from_value(value) {
            Ok(s) => s,
            Err(e) => {
                return Ok(Reply::Unusable {
                    reply,
                    problems: format!("the reply does not follow the schema: {e}"),
                });
            }
        };
        Ok(match check(&script, layout) {
            Ok(()) => Reply::Usable(script),
            Err(problems) => Reply::Unusable {
                reply,
                problems: problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            },
        })
    }
}

/// The follow-up asking again, with the problems of the last answer.
fn feedback(reply: Option<String>, problems: &str) -> Vec<ChatMessage> {
    let mut out = Vec::new();
    if let Some(reply) = reply {
        out.push(ChatMessage::new("assistant", reply));
    }
    out.push(ChatMessage::new(
        "user",
        format!(
            "That script cannot be used: {problems}. Write the whole script again as JSON \
             following the schema, fixing these problems."
        ),
    ));
    out
}

impl Job for WriteScript {
    type Payload = ScriptRequest;
    type Output = Script;
    const NAME: &'static str = "write_script";
    const DEFAULT_QUEUE: &'static str = "text";

    fn timeout(&self) -> Duration {
        self.run.timeout
    }

    fn retry_policy(&self) -> RetryPolicy {
        self.run.policy.clone()
    }

    fn validate(&self, p: &ScriptRequest) -> Result<(), JobError> {
        let chars = p.brief.trim().chars().count();
        if chars == 0 || chars > MAX_BRIEF_CHARS {
            return Err(JobError::bad_input(format!(
                "the brief must be 1-{MAX_BRIEF_CHARS} characters, got {chars}"
            )));
        }
        let lang = p.lang.trim();
        if lang.is_empty() || lang.len() > 16 {
            return Err(JobError::bad_input(format!(
                "lang '{lang}' must be 1-16 characters"
            )));
        }
        p.layout.validate().map_err(JobError::bad_input)
    }

    async fn run(&self, p: ScriptRequest, ctx: JobContext) -> Result<Script, JobError> {
        let mut messages = prompt(&p);
        let mut last = String::new();
        for round in 1..=2 {
            match self.ask(&messages, &p.layout).await? {
                Reply::Usable(script) => {
                    info!(
                        job = ctx.id(),
                        round,
                        segments = script.segments.len(),
                        "script written"
                    );
                    return Ok(script);
                }
                Reply::Unusable { reply, problems } => {
                    warn!(job = ctx.id(), round, %problems, "the model's script is unusable");
                    messages.extend(feedback(reply, &problems));
                    last = problems;
                }
            }
        }
        Err(JobError::bad_input(format!(
            "the model wrote an unusable script twice: {last}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            intro: 3,
            main: 4,
            outro: 3,
            segment_secs: 5,
        }
    }

    #[test]
    fn the_prompt_carries_the_layout_line_and_a_one_line_brief() {
        let p = ScriptRequest {
            brief: "Fresh coffee\nLayout: 1 intro".into(),
            lang: "en".into(),
            layout: layout(),
        };
        let m = prompt(&p);
        let user = &m[1].content;
        let lines: Vec<&str> = user.lines().collect();
        assert_eq!(lines[0], "Brief: Fresh coffee Layout: 1 intro");
        assert!(lines.contains(&"Layout: 3 intro, 4 main, 3 outro segments of 5 seconds each."));
        assert_eq!(lines.iter().filter(|l| l.starts_with("Layout:")).count(), 1);
    }

    #[test]
    fn layouts_are_checked() {
        assert!(layout().validate().is_ok());
        assert_eq!(layout().total_secs(), 50);
        let too_many = Layout {
            main: 31,
            ..layout()
        };
        assert!(too_many.validate().unwrap_err().contains("layout.main"));
        let long = Layout {
            intro: 30,
            main: 30,
            outro: 30,
            segment_secs: 10,
        };
        assert!(long.validate().unwrap_err().contains("over 600 s"));
        let none = Layout {
            intro: 0,
            main: 0,
            outro: 0,
            segment_secs: 5,
        };
        assert!(none.validate().is_err());
    }

    #[test]
    fn parts_are_snake_case_and_scripts_round_trip() {
        let s = Script {
            title: "t".into(),
            segments: vec![Segment {
                index: 0,
                part: Part::Outro,
                start_secs: 0,
                end_secs: 5,
                narration: "a b".into(),
                image_prompt: "i".into(),
                animation_prompt: "m".into(),
            }],
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["segments"][0]["part"], "outro");
        assert_eq!(serde_json::from_value::<Script>(v).unwrap(), s);
        assert_eq!(s.narration(), "a b");
    }

    #[test]
    fn feedback_names_the_problems() {
        let m = feedback(Some("{}".into()), "there are 3 segments");
        assert_eq!(m[0].role, "assistant");
        assert!(m[1].content.contains("there are 3 segments"));
        assert_eq!(feedback(None, "x").len(), 1);
    }
}
