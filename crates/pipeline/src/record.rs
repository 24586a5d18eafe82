//! A pipeline's hash (`<p>:{pipelines}:job:<id>`) read back.

use std::collections::HashMap;

use genq_core::JobStatus;
use serde_json::Value;

/// Counters of one step or fan-out stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StageCounts {
    /// Jobs the stage has (known once it started).
    pub n: usize,
    /// Jobs launched so far (indices `0..next`).
    pub next: usize,
    pub done: usize,
    pub failed: usize,
    /// The first failed job's index.
    pub fail_index: Option<usize>,
}

/// The pipeline's position, as stored.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub id: String,
    pub ptype: String,
    pub status: JobStatus,
    pub outcome: Option<String>,
    /// -1 before the first stage.
    pub stage: i64,
    pub phase: String,
    pub ver: String,
    pub cancel_requested: bool,
    pub input: Value,
    /// The digest of the stage descriptions (`:stage_defs`).
    pub stages_ref: Option<String>,
    /// The stage descriptions, once looked up (views only).
    pub stages: Option<Value>,
    pub gate: Option<String>,
    pub fields: HashMap<String, String>,
}

impl Record {
    pub fn parse(id: &str, fields: HashMap<String, String>) -> Self {
        let get = |k: &str| fields.get(k).filter(|v| !v.is_empty()).cloned();
        Self {
            id: id.to_owned(),
            ptype: get("type").unwrap_or_default(),
            status: get("status")
                .and_then(|s| s.parse().ok())
                .unwrap_or(JobStatus::Queued),
            outcome: get("outcome"),
            stage: get("stage").and_then(|s| s.parse().ok()).unwrap_or(-1),
            phase: get("phase").unwrap_or_default(),
            ver: get("ver").unwrap_or_else(|| "0".to_owned()),
            cancel_requested: fields.get("cancel").is_some_and(|v| v == "1"),
            input: get("payload")
                .and_then(|p| serde_json::from_str(&p).ok())
                .unwrap_or(Value::Null),
            stages_ref: get("stages"),
            stages: None,
            gate: get("gate"),
            fields,
        }
    }

    pub fn num(&self, key: &str) -> Option<u64> {
        self.fields.get(key).and_then(|v| v.parse().ok())
    }

    pub fn text(&self, key: &str) -> Option<&str> {
        self.fields
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn counts(&self, stage: usize) -> StageCounts {
        let n = |k: &str| self.num(&format!("{k}.{stage}")).unwrap_or(0) as usize;
        StageCounts {
            n: n("n"),
            next: n("next"),
            done: n("done"),
            failed: n("failed"),
            fail_index: self.num(&format!("fail.{stage}")).map(|v| v as usize),
        }
    }
}
