//! What a pipeline does next, decided from its record alone (pure), and the
//! operations a transition applies in one compare-and-set script (`apply.lua`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{Pipeline, StageKind, record::Record};

/// The next move of a running pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Waiting: on a gate, or on jobs in flight with no room to launch more.
    Idle,
    /// Start stage `j` (`j == stages.len()`: the pipeline succeeded).
    Start(usize),
    /// Launch jobs `from..to` of stage `stage`.
    Launch {
        stage: usize,
        from: usize,
        to: usize,
    },
    /// A job of `stage` failed for good (index if known): run its fallback or end.
    Failed { stage: usize, index: Option<usize> },
    /// The record names a stage the definition does not have (it changed).
    Mismatch,
}

pub(crate) fn decide(def: &Pipeline, rec: &Record) -> Decision {
    if rec.stage < 0 {
        return Decision::Start(0);
    }
    let k = rec.stage as usize;
    let Some(stage) = def.stages.get(k) else {
        return Decision::Mismatch;
    };
    if let StageKind::Gate { .. } = stage.kind {
        return if rec.phase == "gate" {
            Decision::Idle
        } else {
            Decision::Start(k + 1)
        };
    }
    let c = rec.counts(k);
    if c.failed > 0 {
        return Decision::Failed {
            stage: k,
            index: c.fail_index,
        };
    }
    if c.done >= c.n {
        return Decision::Start(k + 1);
    }
    let to = c.n.min(c.done + stage.parallelism());
    if c.next < to {
        Decision::Launch {
            stage: k,
            from: c.next,
            to,
        }
    } else {
        Decision::Idle
    }
}

/// The operations of one transition (see `lua/pipeline/apply.lua`).
#[derive(Debug, Default, Serialize)]
pub(crate) struct Ops {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub h: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hdel: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub defs: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub incr: BTreeMap<String, i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub now: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub s: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sdel: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateOp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish: Option<FinishOp>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ev: Vec<EventOp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<&'static str>,
}

#[derive(Debug, Serialize)]
pub(crate) struct GateOp {
    pub name: String,
    pub stage: String,
    pub timeout_ms: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct FinishOp {
    pub outcome: String,
    pub class: String,
    pub error: String,
    pub stage: String,
    pub result: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct EventOp {
    pub kind: &'static str,
    pub f: Vec<String>,
}

impl Ops {
    pub fn event(&mut self, kind: &'static str, fields: &[(&str, String)]) {
        self.ev.push(EventOp {
            kind,
            f: fields
                .iter()
                .flat_map(|(k, v)| [(*k).to_owned(), v.clone()])
                .collect(),
        });
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, time::Duration};

    use serde_json::Value;

    use super::*;
    use crate::StepSpec;

    fn def() -> Pipeline {
        Pipeline::new("t")
            .step("a", |_| Ok(StepSpec::new("probe", Value::Null)))
            .fan_out("f", 3, |_| Ok(vec![]))
            .gate("g", Duration::from_secs(5))
            .step("z", |_| Ok(StepSpec::new("probe", Value::Null)))
    }

    fn rec(stage: i64, phase: &str, fields: &[(&str, &str)]) -> Record {
        let mut f: HashMap<String, String> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        f.insert("stage".into(), stage.to_string());
        f.insert("phase".into(), phase.into());
        f.insert("status".into(), "running".into());
        Record::parse("p", f)
    }

    #[test]
    fn a_new_pipeline_starts_its_first_stage() {
        assert_eq!(decide(&def(), &rec(-1, "steps", &[])), Decision::Start(0));
    }

    #[test]
    fn a_fan_out_launches_up_to_its_parallelism_then_refills() {
        let d = def();
        let r = rec(1, "steps", &[("n.1", "10"), ("next.1", "0")]);
        assert_eq!(
            decide(&d, &r),
            Decision::Launch {
                stage: 1,
                from: 0,
                to: 3
            }
        );
        let r = rec(
            1,
            "steps",
            &[("n.1", "10"), ("next.1", "3"), ("done.1", "1")],
        );
        assert_eq!(
            decide(&d, &r),
            Decision::Launch {
                stage: 1,
                from: 3,
                to: 4
            }
        );
        let r = rec(
            1,
            "steps",
            &[("n.1", "10"), ("next.1", "4"), ("done.1", "1")],
        );
        assert_eq!(decide(&d, &r), Decision::Idle);
        let r = rec(
            1,
            "steps",
            &[("n.1", "10"), ("next.1", "10"), ("done.1", "10")],
        );
        assert_eq!(decide(&d, &r), Decision::Start(2));
    }

    #[test]
    fn a_failure_is_seen_before_anything_else() {
        let r = rec(
            1,
            "steps",
            &[
                ("n.1", "10"),
                ("next.1", "3"),
                ("failed.1", "1"),
                ("fail.1", "2"),
            ],
        );
        assert_eq!(
            decide(&def(), &r),
            Decision::Failed {
                stage: 1,
                index: Some(2)
            }
        );
    }

    #[test]
    fn a_gate_waits_until_decided() {
        assert_eq!(decide(&def(), &rec(2, "gate", &[])), Decision::Idle);
        assert_eq!(decide(&def(), &rec(2, "steps", &[])), Decision::Start(3));
        let r = rec(
            3,
            "steps",
            &[("n.3", "1"), ("next.3", "1"), ("done.3", "1")],
        );
        assert_eq!(decide(&def(), &r), Decision::Start(4));
    }

    #[test]
    fn an_empty_fan_out_is_done_at_once() {
        let r = rec(1, "steps", &[("n.1", "0")]);
        assert_eq!(decide(&def(), &r), Decision::Start(2));
    }

    #[test]
    fn a_stage_the_definition_lacks_is_a_mismatch() {
        assert_eq!(decide(&def(), &rec(9, "steps", &[])), Decision::Mismatch);
    }
}
