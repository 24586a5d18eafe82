//! Redis keys of the pipelines (all under `<prefix>:{pipelines}`; see the Lua
//! prelude `lua/pipeline/common.lua`) and the ids of steps.

use genq_redis::RedisQueue;

use crate::PIPELINES_QUEUE;

/// Streams entries kept in `:pl_events` (stage changes).
pub(crate) const PL_EVENTS_MAXLEN: u64 = 100_000;

#[derive(Debug, Clone)]
pub(crate) struct Keys {
    pub base: String,
}

impl Keys {
    pub fn new(queue: &RedisQueue) -> Self {
        Self {
            base: queue.base_key(PIPELINES_QUEUE),
        }
    }
    pub fn job(&self, id: &str) -> String {
        format!("{}:job:{id}", self.base)
    }
    pub fn steps(&self, id: &str) -> String {
        format!("{}:pl:{id}", self.base)
    }
    pub fn ready(&self) -> String {
        format!("{}:ready", self.base)
    }
    pub fn gates(&self) -> String {
        format!("{}:gates", self.base)
    }
    pub fn active(&self) -> String {
        format!("{}:active", self.base)
    }
    pub fn finished(&self) -> String {
        format!("{}:finished", self.base)
    }
    pub fn events(&self) -> String {
        format!("{}:pl_events", self.base)
    }
    pub fn outcomes(&self) -> String {
        format!("{}:outcomes", self.base)
    }
    pub fn stage_defs(&self) -> String {
        format!("{}:stage_defs", self.base)
    }
    pub fn wake(&self) -> String {
        format!("{}:wake", self.base)
    }
    pub fn notify(&self) -> String {
        format!("{}:notify", self.base)
    }
    pub fn cancel(&self) -> String {
        format!("{}:cancel", self.base)
    }
}

/// The arguments every script that may end a pipeline takes last: the result TTL
/// (ms), the completion-event stream's cap, the stage-event stream's cap.
pub(crate) fn ending_args(cfg: &genq_redis::RedisConfig) -> Vec<u64> {
    vec![
        cfg.result_ttl.as_millis() as u64,
        cfg.events_maxlen,
        PL_EVENTS_MAXLEN,
    ]
}

/// A step's job id: `<pipeline>.<stage>.<index>`, `.fb` for its fallback.
pub(crate) fn step_job_id(pipeline: &str, stage: usize, index: usize, fallback: bool) -> String {
    if fallback {
        format!("{pipeline}.{stage}.{index}.fb")
    } else {
        format!("{pipeline}.{stage}.{index}")
    }
}

/// A step job id taken apart: (pipeline, stage, index, fallback).
pub(crate) fn parse_step_job_id(id: &str) -> Option<(&str, usize, usize, bool)> {
    let (rest, fallback) = match id.strip_suffix(".fb") {
        Some(r) => (r, true),
        None => (id, false),
    };
    let (rest, index) = rest.rsplit_once('.')?;
    let (pipeline, stage) = rest.rsplit_once('.')?;
    Some((pipeline, stage.parse().ok()?, index.parse().ok()?, fallback))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_ids_round_trip() {
        let id = step_job_id("01ABC", 2, 17, false);
        assert_eq!(id, "01ABC.2.17");
        assert_eq!(parse_step_job_id(&id), Some(("01ABC", 2, 17, false)));
        let fb = step_job_id("a-b", 0, 3, true);
        assert_eq!(parse_step_job_id(&fb), Some(("a-b", 0, 3, true)));
        assert_eq!(parse_step_job_id("plain"), None);
        assert_eq!(parse_step_job_id("x.y.z"), None);
    }
}
