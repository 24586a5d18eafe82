//! A pipeline as shown to operators and users: stage timeline, jobs, gate.

use std::collections::HashMap;

use genq_core::JobState;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{keys::step_job_id, record::Record};

/// One job of a stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepView {
    pub index: usize,
    pub job_id: String,
    /// waiting (not pushed yet), queued, scheduled, running, succeeded, failed, cancelled.
    pub status: String,
    pub queue: Option<String>,
    pub attempts: u32,
    /// 0-100 while running.
    pub progress: Option<u8>,
    pub error: Option<String>,
    pub error_class: Option<String>,
    /// Whether this is the fallback job of a failed one.
    pub fallback: bool,
    /// The job's result once the pipeline recorded it (`o.<stage>.<index>`).
    #[serde(default)]
    pub output: Option<Value>,
}

/// One stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageView {
    pub index: usize,
    pub name: String,
    /// step, fan_out, gate
    pub kind: String,
    /// pending, running, waiting (a gate), done, failed
    pub state: String,
    pub started_ms: Option<u64>,
    pub ended_ms: Option<u64>,
    /// Jobs in the stage (once it started) and how many are done.
    pub jobs: usize,
    pub done: usize,
    pub steps: Vec<StepView>,
    /// A gate's decision `{choice, body, at}`.
    pub decision: Option<Value>,
}

/// The open gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateView {
    pub name: String,
    pub stage: usize,
    pub opened_ms: u64,
    pub deadline_ms: u64,
    pub choices: Vec<String>,
}

/// A pipeline in full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineView {
    pub id: String,
    pub pipeline_type: String,
    /// queued, running, succeeded, failed, cancelled
    pub status: String,
    /// succeeded, failed, cancelled or timed_out once ended.
    pub outcome: Option<String>,
    pub stage: Option<usize>,
    pub stage_name: Option<String>,
    /// Percent of the pipeline's jobs done (gates count as one each).
    pub percent: u8,
    pub gate: Option<GateView>,
    pub stages: Vec<StageView>,
    pub input: Value,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub error_class: Option<String>,
    pub failed_stage: Option<i64>,
    pub created_ms: Option<u64>,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
}

/// A pipeline in a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineSummary {
    pub id: String,
    pub pipeline_type: String,
    pub status: String,
    pub outcome: Option<String>,
    pub stage: Option<usize>,
    pub stage_name: Option<String>,
    pub gate: Option<String>,
    pub gate_deadline_ms: Option<u64>,
    pub created_ms: Option<u64>,
    pub finished_ms: Option<u64>,
}

fn stage_names(rec: &Record) -> Vec<(String, String, Value)> {
    rec.stages
        .as_ref()
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["name"].as_str().unwrap_or_default().to_owned(),
                        s["kind"].as_str().unwrap_or_default().to_owned(),
                        s.clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn current(rec: &Record) -> Option<usize> {
    (rec.stage >= 0).then_some(rec.stage as usize)
}

pub(crate) fn summary(rec: &Record) -> PipelineSummary {
    let names = stage_names(rec);
    let stage = current(rec);
    PipelineSummary {
        id: rec.id.clone(),
        pipeline_type: rec.ptype.clone(),
        status: rec.status.as_str().to_owned(),
        outcome: rec.outcome.clone(),
        stage,
        stage_name: stage.and_then(|k| names.get(k)).map(|n| n.0.clone()),
        gate: (rec.phase == "gate").then(|| rec.gate.clone()).flatten(),
        gate_deadline_ms: (rec.phase == "gate")
            .then(|| rec.num("gate_deadline"))
            .flatten(),
        created_ms: rec.num("enq"),
        finished_ms: rec.num("finished"),
    }
}

pub(crate) fn build(rec: &Record, steps: &HashMap<String, String>) -> PipelineView {
    let names = stage_names(rec);
    let cur = current(rec);
    let final_ = rec.status.is_final();
    let mut stages = Vec::new();
    let (mut units, mut done_units) = (0usize, 0usize);
    for (k, (name, kind, desc)) in names.iter().enumerate() {
        let c = rec.counts(k);
        let decision = steps
            .get(&format!("g.{k}"))
            .and_then(|g| serde_json::from_str(g).ok());
        let mut step_views = Vec::new();
        for i in 0..c.next {
            let key = format!("{k}.{i}");
            let fallback = steps.get(&format!("fb.{key}")).is_some_and(|v| v == "1");
            let raw = steps.get(&format!("s.{key}")).map(String::as_str);
            let (status, queue) = match raw {
                Some("q") => ("waiting".to_owned(), None),
                Some("d") => ("succeeded".to_owned(), None),
                Some("f") => ("failed".to_owned(), None),
                Some("c") => ("cancelled".to_owned(), None),
                Some(p) => ("queued".to_owned(), p.strip_prefix("p|").map(str::to_owned)),
                None => ("waiting".to_owned(), None),
            };
            step_views.push(StepView {
                index: i,
                job_id: step_job_id(&rec.id, k, i, fallback),
                status,
                queue,
                attempts: steps
                    .get(&format!("a.{key}"))
                    .and_then(|a| a.parse().ok())
                    .unwrap_or(0),
                progress: None,
                error: steps.get(&format!("e.{key}")).cloned(),
                error_class: steps.get(&format!("c.{key}")).cloned(),
                fallback,
                output: steps
                    .get(&format!("o.{key}"))
                    .filter(|o| !o.is_empty())
                    .and_then(|o| serde_json::from_str(o).ok()),
            });
        }
        let is_gate = kind == "gate";
        let started = rec.num(&format!("t0.{k}"));
        let ended = rec.num(&format!("t1.{k}"));
        let state = match cur {
            Some(s) if k < s => "done",
            Some(s) if k == s && final_ => {
                if rec.status.as_str() == "succeeded" {
                    "done"
                } else {
                    "failed"
                }
            }
            Some(s) if k == s && is_gate && rec.phase == "gate" => "waiting",
            Some(s) if k == s => "running",
            _ => {
                if final_ && rec.status.as_str() == "succeeded" {
                    "done"
                } else {
                    "pending"
                }
            }
        };
        if is_gate {
            units += 1;
            if state == "done" {
                done_units += 1;
            }
        } else {
            let n = if c.n > 0 {
                c.n
            } else {
                desc["parallelism"].as_u64().unwrap_or(1) as usize
            };
            units += n;
            done_units += if state == "done" { n } else { c.done.min(n) };
        }
        stages.push(StageView {
            index: k,
            name: name.clone(),
            kind: kind.clone(),
            state: state.to_owned(),
            started_ms: started,
            ended_ms: ended,
            jobs: c.n,
            done: c.done,
            steps: step_views,
            decision,
        });
    }
    let gate = (rec.phase == "gate" && !final_)
        .then(|| {
            let k = cur?;
            Some(GateView {
                name: rec.gate.clone()?,
                stage: k,
                opened_ms: rec.num("gate_opened")?,
                deadline_ms: rec.num("gate_deadline")?,
                choices: names
                    .get(k)
                    .and_then(|n| n.2["choices"].as_array().cloned())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect(),
            })
        })
        .flatten();
    let percent = if rec.status.as_str() == "succeeded" {
        100
    } else {
        (done_units * 100).checked_div(units).unwrap_or(0).min(99) as u8
    };
    PipelineView {
        id: rec.id.clone(),
        pipeline_type: rec.ptype.clone(),
        status: rec.status.as_str().to_owned(),
        outcome: rec.outcome.clone(),
        stage: cur,
        stage_name: cur.and_then(|k| names.get(k)).map(|n| n.0.clone()),
        percent,
        gate,
        stages,
        input: rec.input.clone(),
        result: rec
            .text("result")
            .and_then(|r| serde_json::from_str(r).ok()),
        error: rec.text("error").map(str::to_owned),
        error_class: rec.text("error_class").map(str::to_owned),
        failed_stage: rec.text("failed_stage").and_then(|s| s.parse().ok()),
        created_ms: rec.num("enq"),
        started_ms: rec.num("started"),
        finished_ms: rec.num("finished"),
    }
}

/// Adds the live state (status, attempts, progress) of jobs in flight.
pub(crate) fn add_live(view: &mut PipelineView, jobs: &HashMap<String, JobState>) {
    for stage in &mut view.stages {
        for step in &mut stage.steps {
            if let Some(j) = jobs.get(&step.job_id) {
                step.status = j.status.as_str().to_owned();
                step.attempts = j.attempts;
                step.progress = j.progress.as_ref().map(|p| p.percent);
                if j.error.is_some() {
                    step.error = j.error.clone();
                    step.error_class = j.error_class.map(|c| c.as_str().to_owned());
                }
            }
        }
    }
}
