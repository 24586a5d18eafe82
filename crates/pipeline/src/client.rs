//! Starting, signalling, cancelling and reading pipelines: what the bot, the
//! admin and the `genq` CLI call. No pipeline definitions needed.

use std::{collections::HashMap, fmt};

use genq_core::new_job_id;
use genq_redis::{NewJob, RedisQueue, pipeline_scripts as scripts};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    PIPELINES_QUEUE, PipelineError, PipelineSummary, PipelineView,
    keys::{Keys, ending_args},
    record::Record,
    view,
};

/// Longest pipeline id (its jobs' ids add `.<stage>.<index>.fb`, at most 64 in all).
pub const MAX_PIPELINE_ID: usize = 40;

/// Largest signal body (JSON) accepted.
pub const MAX_SIGNAL_BODY: usize = 16 * 1024;

/// A signal the gate took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalAccepted {
    pub choice: String,
    /// How long the gate had waited (server time).
    pub waited_ms: u64,
}

/// Why a signal changed nothing: a typed answer the caller can show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum SignalRefused {
    #[error("there is no such pipeline (or it ended long ago)")]
    UnknownPipeline,
    #[error("the pipeline has not reached this gate yet")]
    NotOpenYet,
    #[error("this gate was already answered: {choice}")]
    AlreadyDecided { choice: String },
    #[error("the pipeline has already ended: {outcome}")]
    Finished { outcome: String },
    #[error("the pipeline has no gate called that")]
    NoSuchGate,
    #[error("this gate takes one of: {allowed}")]
    BadChoice { allowed: String },
}

/// Pipelines by where they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PipelineState {
    /// Pushed, not started by a driver yet.
    Queued,
    /// Running steps (or between stages).
    Active,
    /// Waiting at a gate: holds no worker slot.
    Parked,
    /// Ended (kept for the result TTL).
    Finished,
}

impl PipelineState {
    pub const ALL: [PipelineState; 4] = [
        PipelineState::Queued,
        PipelineState::Active,
        PipelineState::Parked,
        PipelineState::Finished,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PipelineState::Queued => "queued",
            PipelineState::Active => "active",
            PipelineState::Parked => "parked",
            PipelineState::Finished => "finished",
        }
    }
}

impl fmt::Display for PipelineState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PipelineState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!("unknown pipeline state '{s}' (queued, active, parked, finished)")
            })
    }
}

/// How many pipelines are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineCounts {
    pub queued: u64,
    pub active: u64,
    pub parked: u64,
    pub finished: u64,
}

/// What a cancel did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PipelineCancel {
    Cancelled,
    Missing,
    /// It had already ended this way.
    AlreadyEnded(String),
}

/// The pipelines' client.
#[derive(Debug, Clone)]
pub struct PipelineClient {
    queue: RedisQueue,
    keys: Keys,
}

impl PipelineClient {
    pub fn new(queue: RedisQueue) -> Self {
        Self {
            keys: Keys::new(&queue),
            queue,
        }
    }

    /// Starts a pipeline of `pipeline_type` with `input` (unpaid; a paid one is
    /// charged and enqueued through the store's outbox on queue
    /// [`PIPELINES_QUEUE`]). Returns its id.
    pub async fn start(&self, pipeline_type: &str, input: &Value) -> Result<String, PipelineError> {
        self.start_with_id(&new_job_id(), pipeline_type, input)
            .await
    }

    /// Starts a pipeline with a chosen id (idempotent: a second start with the same
    /// id while the first's data lives does nothing).
    pub async fn start_with_id(
        &self,
        id: &str,
        pipeline_type: &str,
        input: &Value,
    ) -> Result<String, PipelineError> {
        if id.is_empty() || id.len() > MAX_PIPELINE_ID {
            return Err(PipelineError::BadInput(format!(
                "pipeline id '{id}' must be 1-{MAX_PIPELINE_ID} characters"
            )));
        }
        let job = NewJob::new(PIPELINES_QUEUE, pipeline_type, input.to_string()).id(id);
        Ok(self.queue.push(job).await?.id)
    }

    /// Starts many pipelines at once (`(type, input)`); returns their ids.
    pub async fn start_many(
        &self,
        pipelines: &[(String, Value)],
    ) -> Result<Vec<String>, PipelineError> {
        let jobs = pipelines
            .iter()
            .map(|(t, input)| NewJob::new(PIPELINES_QUEUE, t, input.to_string()))
            .collect();
        Ok(self
            .queue
            .push_bulk(jobs)
            .await?
            .into_iter()
            .map(|p| p.id)
            .collect())
    }

    /// Answers gate `gate` of pipeline `id` with `choice` (and a small JSON body).
    /// Idempotent and race-safe: the first answer wins, every later one gets
    /// [`SignalRefused::AlreadyDecided`] (or `Finished`).
    pub async fn signal(
        &self,
        id: &str,
        gate: &str,
        choice: &str,
        body: &Value,
    ) -> Result<Result<SignalAccepted, SignalRefused>, PipelineError> {
        let body = body.to_string();
        if body.len() > MAX_SIGNAL_BODY {
            return Err(PipelineError::BadInput(format!(
                "signal body of {} bytes is over the {MAX_SIGNAL_BODY}-byte limit",
                body.len()
            )));
        }
        if gate.is_empty() || choice.is_empty() || gate.len() > 64 || choice.len() > 64 {
            return Err(PipelineError::BadInput(
                "gate and choice must be 1-64 characters".to_owned(),
            ));
        }
        let cfg = self.queue.config();
        let mut c = self.queue.connection();
        let reply: Vec<String> = scripts::SIGNAL
            .key(&self.keys.base)
            .arg(id)
            .arg(gate)
            .arg(choice)
            .arg(body)
            .arg(ending_args(cfg))
            .invoke_async(&mut c)
            .await?;
        let arg = |i: usize| reply.get(i).cloned().unwrap_or_default();
        Ok(match reply.first().map(String::as_str) {
            Some("accepted") => Ok(SignalAccepted {
                choice: arg(1),
                waited_ms: arg(2).parse().unwrap_or(0),
            }),
            Some("decided") => Err(SignalRefused::AlreadyDecided { choice: arg(1) }),
            Some("finished") => Err(SignalRefused::Finished { outcome: arg(1) }),
            Some("not_open") => Err(SignalRefused::NotOpenYet),
            Some("no_such_gate") => Err(SignalRefused::NoSuchGate),
            Some("bad_choice") => Err(SignalRefused::BadChoice { allowed: arg(1) }),
            _ => Err(SignalRefused::UnknownPipeline),
        })
    }

    /// Cancels a pipeline: queued, running or parked, it ends cancelled now; the
    /// drivers then cancel its jobs still queued or running.
    pub async fn cancel(&self, id: &str, reason: &str) -> Result<PipelineCancel, PipelineError> {
        let cfg = self.queue.config();
        let mut c = self.queue.connection();
        let r: String = scripts::CANCEL
            .key(&self.keys.base)
            .arg(id)
            .arg(reason)
            .arg(ending_args(cfg))
            .invoke_async(&mut c)
            .await?;
        Ok(match r.as_str() {
            "cancelled" => PipelineCancel::Cancelled,
            "missing" => PipelineCancel::Missing,
            other => PipelineCancel::AlreadyEnded(
                other.strip_prefix("final:").unwrap_or(other).to_owned(),
            ),
        })
    }

    /// One pipeline in full: stages, each job's status, progress and attempts,
    /// the open gate and its deadline, outputs so far.
    pub async fn view(&self, id: &str) -> Result<Option<PipelineView>, PipelineError> {
        let mut c = self.queue.connection();
        let (main, steps): (HashMap<String, String>, HashMap<String, String>) = redis::pipe()
            .hgetall(self.keys.job(id))
            .hgetall(self.keys.steps(id))
            .query_async(&mut c)
            .await?;
        if main.is_empty() {
            return Ok(None);
        }
        let mut rec = Record::parse(id, main);
        self.describe(std::slice::from_mut(&mut rec)).await?;
        let mut v = view::build(&rec, &steps);
        let live: Vec<(String, String)> = v
            .stages
            .iter()
            .flat_map(|s| s.steps.iter())
            .filter(|s| s.queue.is_some() && !is_final_step(&s.status))
            .map(|s| (s.queue.clone().unwrap_or_default(), s.job_id.clone()))
            .collect();
        if !live.is_empty() {
            let states = self.queue.jobs(&live).await?;
            let by_id: HashMap<String, genq_core::JobState> = states
                .into_iter()
                .flatten()
                .map(|s| (s.id.clone(), s))
                .collect();
            view::add_live(&mut v, &by_id);
        }
        Ok(Some(v))
    }

    /// Pipelines in `state`, newest first (at most `limit`).
    pub async fn list(
        &self,
        state: PipelineState,
        limit: usize,
    ) -> Result<Vec<PipelineSummary>, PipelineError> {
        let limit = limit.clamp(1, 1000);
        let mut c = self.queue.connection();
        let ids: Vec<String> = match state {
            PipelineState::Queued => c.lrange(self.keys.ready(), 0, limit as isize - 1).await?,
            PipelineState::Active => {
                c.zrevrange(self.keys.active(), 0, limit as isize - 1)
                    .await?
            }
            PipelineState::Parked => c.zrange(self.keys.gates(), 0, limit as isize - 1).await?,
            PipelineState::Finished => {
                c.zrevrange(self.keys.finished(), 0, limit as isize - 1)
                    .await?
            }
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(self.keys.job(id));
        }
        let rows: Vec<HashMap<String, String>> = pipe.query_async(&mut c).await?;
        let mut recs: Vec<Record> = ids
            .iter()
            .zip(rows)
            .filter(|(_, f)| !f.is_empty())
            .map(|(id, f)| Record::parse(id, f))
            .collect();
        self.describe(&mut recs).await?;
        Ok(recs.iter().map(view::summary).collect())
    }

    /// Looks up the stage descriptions the records refer to.
    async fn describe(&self, recs: &mut [Record]) -> Result<(), PipelineError> {
        let refs: Vec<String> = recs
            .iter()
            .filter_map(|r| r.stages_ref.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if refs.is_empty() {
            return Ok(());
        }
        let mut c = self.queue.connection();
        let defs: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.keys.stage_defs())
            .arg(&refs)
            .query_async(&mut c)
            .await?;
        let by_ref: HashMap<&String, Value> = refs
            .iter()
            .zip(defs)
            .filter_map(|(r, d)| Some((r, serde_json::from_str(&d?).ok()?)))
            .collect();
        for r in recs {
            r.stages = r.stages_ref.as_ref().and_then(|s| by_ref.get(s).cloned());
        }
        Ok(())
    }

    /// Pipelines ended since the deployment began, by (type, outcome).
    pub async fn outcomes(&self) -> Result<Vec<(String, String, u64)>, PipelineError> {
        let mut c = self.queue.connection();
        let all: HashMap<String, u64> = c.hgetall(self.keys.outcomes()).await?;
        let mut out: Vec<(String, String, u64)> = all
            .into_iter()
            .filter_map(|(k, n)| {
                let (t, o) = k.rsplit_once('|')?;
                Some((t.to_owned(), o.to_owned(), n))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// How many pipelines are in each state.
    pub async fn counts(&self) -> Result<PipelineCounts, PipelineError> {
        let mut c = self.queue.connection();
        let (queued, active, parked, finished): (u64, u64, u64, u64) = redis::pipe()
            .llen(self.keys.ready())
            .zcard(self.keys.active())
            .zcard(self.keys.gates())
            .zcard(self.keys.finished())
            .query_async(&mut c)
            .await?;
        Ok(PipelineCounts {
            queued,
            active,
            parked,
            finished,
        })
    }
}

fn is_final_step(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "cancelled")
}
