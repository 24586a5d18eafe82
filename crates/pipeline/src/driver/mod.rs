//! The pipeline driver: moves pipelines along. Every worker process runs one;
//! any number may run at once (every transition is a compare-and-set).
//!
//! It starts queued pipelines, records the outcomes its queues' steps hand over
//! (`<p>:{q}:pipe_done`), advances pipelines (launches jobs, joins, opens gates,
//! ends them), times out gates whose deadline passed, and sweeps pipelines no
//! driver touched for a while (a driver killed mid-transition). Woken over pub/sub,
//! and every half second regardless.

mod advance;
mod apply;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use futures::StreamExt;
use genq_core::{Registry, failpoint};
use genq_redis::{RedisQueue, pipeline_scripts as scripts};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    PipelineClient, PipelineError, PipelineMetrics, PipelineRegistry,
    keys::{Keys, PL_EVENTS_MAXLEN, ending_args, parse_step_job_id},
};

/// Transitions tried per tick before giving up to the next wake-up (each failed
/// try means another driver moved the pipeline meanwhile).
const CAS_TRIES: usize = 64;
/// A pipeline unchanged for this long is ticked by the sweeper.
const STALE_MS: u64 = 2_000;
/// A pipeline with nothing to do is looked at again after this long.
const IDLE_RECHECK_MS: u64 = 30_000;
/// Step outcomes taken from an inbox per read.
const INBOX_BATCH: usize = 500;
/// Pipelines advanced at once.
const CONCURRENCY: usize = 32;

/// A step job waiting to be pushed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct PendingStep {
    id: String,
    queue: String,
    #[serde(rename = "type")]
    job_type: String,
    payload: Value,
    /// The push's idempotency key: the id and the pipeline's run (its start time),
    /// so a pipeline started again under the same id runs its jobs again.
    #[serde(default)]
    idem: String,
}

/// A step's final outcome as handed over by the script that ended it.
#[derive(Debug, Deserialize)]
struct StepOutcome {
    p: String,
    s: String,
    #[serde(default)]
    a: u64,
    #[serde(default)]
    c: String,
    #[serde(default)]
    e: String,
    #[serde(default)]
    r: String,
}

pub(super) enum Applied {
    Done { now_ms: u64 },
    Conflict,
    Missing,
}

enum Wake {
    Pipeline(String),
    Inbox(String),
    New,
    Cancel(String),
}

/// Drives pipelines (see the module docs).
#[derive(Clone)]
pub struct PipelineDriver {
    queue: RedisQueue,
    keys: Keys,
    pipelines: Arc<PipelineRegistry>,
    jobs: Arc<Registry>,
    watched: Arc<Vec<String>>,
    metrics: Option<PipelineMetrics>,
    rounds: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for PipelineDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineDriver")
            .field("pipelines", &self.pipelines.names())
            .field("watched", &self.watched)
            .finish()
    }
}

impl PipelineDriver {
    /// A driver for `pipelines`, routing their jobs by `jobs`, that takes the step
    /// outcomes of the `watched` queues (the queues this process serves).
    pub fn new(
        queue: RedisQueue,
        pipelines: PipelineRegistry,
        jobs: Arc<Registry>,
        watched: Vec<String>,
    ) -> Self {
        Self {
            keys: Keys::new(&queue),
            queue,
            pipelines: Arc::new(pipelines),
            jobs,
            watched: Arc::new(watched),
            metrics: None,
            rounds: Arc::default(),
        }
    }

    pub fn with_metrics(mut self, metrics: PipelineMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn client(&self) -> PipelineClient {
        PipelineClient::new(self.queue.clone())
    }

    fn inbox_key(&self, queue: &str) -> String {
        format!("{}:pipe_done", self.queue.base_key(queue))
    }

    /// Runs until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let (tx, mut rx) = mpsc::channel::<Wake>(8192);
        tokio::spawn(self.clone().listen(tx, stop.clone()));
        info!(pipelines = %self.pipelines.names().join(","), queues = %self.watched.join(","), "pipeline driver started");
        let mut every = tokio::time::interval(Duration::from_millis(500));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                w = rx.recv() => {
                    let Some(w) = w else { break };
                    let mut wakes = vec![w];
                    while let Ok(w) = rx.try_recv() {
                        wakes.push(w);
                    }
                    self.handle(wakes).await;
                }
                _ = every.tick() => self.housekeeping().await,
            }
        }
        info!("pipeline driver stopped");
    }

    async fn handle(&self, wakes: Vec<Wake>) {
        let mut ticks = HashSet::new();
        let mut inboxes = HashSet::new();
        let mut new = false;
        for w in wakes {
            match w {
                Wake::Pipeline(id) => {
                    ticks.insert(id);
                }
                Wake::Inbox(q) => {
                    inboxes.insert(q);
                }
                Wake::New => new = true,
                Wake::Cancel(id) => {
                    if let Err(e) = self.client().cancel(&id, "cancelled").await {
                        warn!(pipeline_id = %id, error = %e, "could not cancel pipeline");
                    }
                    ticks.insert(id);
                }
            }
        }
        if new && let Err(e) = self.start_queued().await {
            warn!(error = %e, "could not start queued pipelines");
        }
        for q in inboxes {
            if let Err(e) = self.drain_inbox(&q).await {
                warn!(queue = %q, error = %e, "could not take pipeline step outcomes");
            }
        }
        self.tick_all(ticks.into_iter().collect(), false).await;
    }

    /// Everything the driver does on its own every half second.
    pub async fn housekeeping(&self) {
        if let Err(e) = self.start_queued().await {
            warn!(error = %e, "could not start queued pipelines");
        }
        let round = self
            .rounds
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // every 10th round, every queue's inbox: a step on a queue whose workers run
        // no driver (the bot's delivery worker) is still recorded
        let queues: Vec<String> = if round.is_multiple_of(10) {
            match self.queue.queues().await {
                Ok(all) => all.into_iter().collect(),
                Err(_) => self.watched.to_vec(),
            }
        } else {
            self.watched.to_vec()
        };
        for q in queues
            .iter()
            .filter(|q| q.as_str() != crate::PIPELINES_QUEUE)
        {
            if let Err(e) = self.drain_inbox(q).await {
                warn!(queue = %q, error = %e, "could not take pipeline step outcomes");
            }
        }
        if let Err(e) = self.time_out_gates().await {
            warn!(error = %e, "could not time out pipeline gates");
        }
        if let Err(e) = self.sweep().await {
            warn!(error = %e, "pipeline sweep failed");
        }
        if let Some(m) = &self.metrics
            && let Ok(c) = self.client().counts().await
        {
            m.pipelines
                .with_label_values(&["queued"])
                .set(c.queued as i64);
            m.pipelines
                .with_label_values(&["active"])
                .set(c.active as i64);
            m.pipelines
                .with_label_values(&["parked"])
                .set(c.parked as i64);
        }
    }

    async fn listen(self, tx: mpsc::Sender<Wake>, stop: CancellationToken) {
        let wake = self.keys.wake();
        let notify = self.keys.notify();
        let cancel = self.keys.cancel();
        let mut inbox_channels = HashMap::new();
        let mut channels = vec![wake.clone(), notify.clone(), cancel.clone()];
        for q in self.watched.iter() {
            let ch = format!("{}:pipe_wake", self.queue.base_key(q));
            inbox_channels.insert(ch.clone(), q.clone());
            channels.push(ch);
        }
        while !stop.is_cancelled() {
            let mut stream = match self.queue.subscribe(&channels).await {
                Ok(s) => s,
                Err(e) => {
                    debug!(error = %e, "pipeline driver: subscribe failed; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            loop {
                let msg = tokio::select! {
                    _ = stop.cancelled() => return,
                    m = stream.next() => m,
                };
                let Some(msg) = msg else { break };
                let w = if msg.channel == wake {
                    Wake::Pipeline(msg.payload)
                } else if msg.channel == notify {
                    Wake::New
                } else if msg.channel == cancel {
                    Wake::Cancel(msg.payload)
                } else if let Some(q) = inbox_channels.get(&msg.channel) {
                    Wake::Inbox(q.clone())
                } else {
                    continue;
                };
                let _ = tx.try_send(w);
            }
        }
    }

    /// Starts queued pipelines; returns how many.
    pub async fn start_queued(&self) -> Result<usize, PipelineError> {
        let mut total = 0;
        loop {
            let mut c = self.queue.connection();
            let ids: Vec<String> = scripts::TAKE
                .key(&self.keys.base)
                .arg(100)
                .arg(PL_EVENTS_MAXLEN)
                .invoke_async(&mut c)
                .await?;
            let n = ids.len();
            total += n;
            self.tick_all(ids, false).await;
            if n < 100 {
                return Ok(total);
            }
        }
    }

    async fn tick_all(&self, ids: Vec<String>, thorough: bool) {
        futures::stream::iter(ids)
            .for_each_concurrent(CONCURRENCY, |id| async move {
                if let Err(e) = self.tick_with(&id, thorough).await {
                    warn!(pipeline_id = %id, error = %e, "could not advance pipeline; retried later");
                }
            })
            .await;
    }

    /// Takes the step outcomes waiting in `queue`'s inbox, records each in its
    /// pipeline, advances the pipelines, then removes the entries. Returns how
    /// many it took.
    pub async fn drain_inbox(&self, queue: &str) -> Result<usize, PipelineError> {
        let key = self.inbox_key(queue);
        let mut total = 0;
        for _ in 0..20 {
            let mut c = self.queue.connection();
            let (_, flat): (u64, Vec<String>) = redis::cmd("HSCAN")
                .arg(&key)
                .arg(0)
                .arg("COUNT")
                .arg(INBOX_BATCH)
                .query_async(&mut c)
                .await?;
            if flat.is_empty() {
                break;
            }
            let mut by_pipeline: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
            for pair in flat.chunks(2) {
                if let [job_id, body] = pair {
                    let pid = parse_step_job_id(job_id)
                        .map(|(p, ..)| p.to_owned())
                        .unwrap_or_default();
                    by_pipeline
                        .entry(pid)
                        .or_default()
                        .push((job_id.clone(), body.clone()));
                }
            }
            let n = flat.len() / 2;
            total += n;
            futures::stream::iter(by_pipeline)
                .for_each_concurrent(CONCURRENCY, |(pid, entries)| {
                    let key = key.clone();
                    async move {
                        if let Err(e) = self.take_outcomes(&key, &pid, entries).await {
                            warn!(pipeline_id = %pid, error = %e, "could not record step outcomes; retried later");
                        }
                    }
                })
                .await;
            if n < INBOX_BATCH {
                break;
            }
        }
        Ok(total)
    }

    async fn take_outcomes(
        &self,
        inbox: &str,
        pid: &str,
        entries: Vec<(String, String)>,
    ) -> Result<(), PipelineError> {
        let mut taken = Vec::new();
        for (job_id, body) in entries {
            let parsed = parse_step_job_id(&job_id);
            let outcome: Option<StepOutcome> = serde_json::from_str(&body).ok();
            match (parsed, outcome) {
                (Some((p, stage, index, fallback)), Some(o)) if p == o.p => {
                    let mut c = self.queue.connection();
                    let r: String = scripts::STEP
                        .key(&self.keys.base)
                        .arg(pid)
                        .arg(stage)
                        .arg(index)
                        .arg(if fallback { "1" } else { "0" })
                        .arg(&o.s)
                        .arg(o.a)
                        .arg(&o.c)
                        .arg(&o.e)
                        .arg(&o.r)
                        .arg(PL_EVENTS_MAXLEN)
                        .invoke_async(&mut c)
                        .await?;
                    if r != "ok" {
                        debug!(pipeline_id = %pid, job_id = %job_id, answer = %r, "step outcome not recorded");
                    }
                }
                _ => {
                    warn!(job_id = %job_id, "a pipeline step outcome that names no step; dropped")
                }
            }
            taken.push(job_id);
        }
        failpoint("pipeline:after_step").await;
        if !pid.is_empty() {
            self.tick(pid).await?;
        }
        let mut c = self.queue.connection();
        let _: () = c.hdel(inbox, taken).await?;
        Ok(())
    }

    /// Times out the gates whose deadline passed; returns how many.
    pub async fn time_out_gates(&self) -> Result<usize, PipelineError> {
        let cfg = self.queue.config();
        let mut total = 0;
        loop {
            let mut c = self.queue.connection();
            let out: Vec<String> = scripts::TIMEOUTS
                .key(&self.keys.base)
                .arg(500)
                .arg(ending_args(cfg))
                .invoke_async(&mut c)
                .await?;
            let n = out.len() / 4;
            for chunk in out.chunks(4) {
                if let [id, ptype, gate, waited] = chunk {
                    info!(pipeline_id = %id, pipeline_type = %ptype, gate = %gate, waited_ms = %waited, "pipeline gate timed out");
                }
            }
            total += n;
            let ids: Vec<String> = out.chunks(4).map(|c| c[0].clone()).collect();
            self.tick_all(ids, false).await;
            if n < 500 {
                return Ok(total);
            }
        }
    }

    /// Ticks pipelines no driver has touched for a while (and re-pushes steps a
    /// killed driver had marked but not pushed); returns how many.
    pub async fn sweep(&self) -> Result<usize, PipelineError> {
        let mut c = self.queue.connection();
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut c).await?;
        let now_ms = secs * 1000 + micros / 1000;
        let stale: Vec<String> = c
            .zrangebyscore_limit(
                self.keys.active(),
                "-inf",
                now_ms.saturating_sub(STALE_MS),
                0,
                500,
            )
            .await?;
        let n = stale.len();
        self.tick_all(stale, true).await;
        Ok(n)
    }
}
