//! The pipeline driver: moves pipelines along. Every worker process runs one;
//! any number may run at once (every transition is a compare-and-set).
//!
//! It starts queued pipelines, records the outcomes its queues' steps hand over
//! (`<p>:{q}:pipe_done`), advances pipelines (launches jobs, joins, opens gates,
//! ends them), times out gates whose deadline passed, and sweeps pipelines no
//! driver touched for a while (a driver killed mid-transition). Woken over pub/sub,
//! and every half second regardless.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use futures::StreamExt;
use genq_core::{JobStatus, Registry, failpoint};
use genq_redis::{NewJob, RedisQueue, pipeline_scripts as scripts};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::{
    Pipeline, PipelineClient, PipelineError, PipelineMetrics, PipelineRegistry, StageKind,
    StepSpec,
    keys::{Keys, PL_EVENTS_MAXLEN, parse_step_job_id, step_job_id},
    plan::{Decision, FinishOp, GateOp, Ops, decide},
    record::Record,
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
struct PendingStep {
    id: String,
    queue: String,
    #[serde(rename = "type")]
    job_type: String,
    payload: Value,
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

enum Applied {
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
                .arg(cfg.result_ttl.as_millis() as u64)
                .arg(cfg.events_maxlen)
                .arg(PL_EVENTS_MAXLEN)
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

    /// Advances one pipeline as far as it can go now.
    pub async fn tick(&self, pid: &str) -> Result<(), PipelineError> {
        self.tick_with(pid, false).await
    }

    async fn tick_with(&self, pid: &str, thorough: bool) -> Result<(), PipelineError> {
        let span = info_span!("pipeline", pipeline_id = %pid);
        async move {
            for _ in 0..CAS_TRIES {
                let Some(rec) = self.load(pid).await? else {
                    let mut c = self.queue.connection();
                    let _: () = c.zrem(self.keys.active(), pid).await?;
                    return Ok(());
                };
                if rec.status == JobStatus::Queued {
                    return Ok(());
                }
                if rec.status.is_final() {
                    return self.clean_up(&rec).await;
                }
                if rec.cancel_requested {
                    self.client()
                        .cancel(pid, "cancelled by an operator")
                        .await?;
                    continue;
                }
                let def = match self.pipelines.get(&rec.ptype) {
                    Ok(d) => d,
                    Err(e) => {
                        let ops = finish_ops(&rec, "failed", "bad_input", &e.to_string(), "");
                        self.apply(&rec, &ops).await?;
                        continue;
                    }
                };
                let decision = decide(&def, &rec);
                if decision == Decision::Idle {
                    if thorough {
                        self.repush_waiting(&rec).await?;
                    }
                    self.idle(&rec).await?;
                    return Ok(());
                }
                let (ops, pending) = self.transition(&def, &rec, decision).await?;
                match self.apply(&rec, &ops).await? {
                    Applied::Done { now_ms } => {
                        self.observe(&def, &rec, &ops, now_ms);
                        if !pending.is_empty() {
                            failpoint("pipeline:before_push").await;
                            self.push_steps(pid, &pending).await?;
                        }
                    }
                    Applied::Conflict => {}
                    Applied::Missing => return Ok(()),
                }
            }
            warn!("pipeline kept moving under this driver; left to the next wake-up");
            Ok(())
        }
        .instrument(span)
        .await
    }

    async fn load(&self, pid: &str) -> Result<Option<Record>, PipelineError> {
        let mut c = self.queue.connection();
        let fields: HashMap<String, String> = c.hgetall(self.keys.job(pid)).await?;
        Ok((!fields.is_empty()).then(|| Record::parse(pid, fields)))
    }

    /// The ops of one decided move, and the jobs to push once it is applied.
    async fn transition(
        &self,
        def: &Pipeline,
        rec: &Record,
        decision: Decision,
    ) -> Result<(Ops, Vec<(String, PendingStep)>), PipelineError> {
        match decision {
            Decision::Idle => Ok((Ops::default(), Vec::new())),
            Decision::Start(j) => self.start_stage(def, rec, j).await,
            Decision::Launch { stage, from, to } => {
                let outputs = self.outputs(def, rec, stage).await?;
                let specs = match def.stages[stage].build(&crate::StageInput {
                    input: &rec.input,
                    outputs: &outputs,
                }) {
                    Ok(s) => s,
                    Err(e) => {
                        let ops = finish_ops(rec, "failed", "bad_input", &e.0, "");
                        return Ok((ops, Vec::new()));
                    }
                };
                let mut ops = Ops::default();
                let pending = self.launch(def, rec, &mut ops, stage, &specs, from, to)?;
                ops.h.insert(format!("next.{stage}"), to.to_string());
                Ok((ops, pending))
            }
            Decision::Failed { stage, index } => self.failed_step(def, rec, stage, index).await,
            Decision::Mismatch => Ok((
                finish_ops(
                    rec,
                    "failed",
                    "bad_input",
                    &format!(
                        "the pipeline type '{}' changed: it has no stage {}",
                        rec.ptype, rec.stage
                    ),
                    "",
                ),
                Vec::new(),
            )),
        }
    }

    async fn start_stage(
        &self,
        def: &Pipeline,
        rec: &Record,
        j: usize,
    ) -> Result<(Ops, Vec<(String, PendingStep)>), PipelineError> {
        let mut ops = Ops::default();
        if rec.stage < 0 {
            // kept once per distinct definition (a pipeline's hash holds the
            // digest): a long value would also turn every pipeline's hash from a
            // compact listpack into a hash table
            let stages: Vec<Value> = def.stages.iter().map(|s| s.descriptor()).collect();
            let json = Value::Array(stages).to_string();
            let digest = digest(&json);
            ops.h.insert("stages".into(), digest.clone());
            ops.defs.insert(digest, json);
        } else {
            let k = rec.stage as usize;
            ops.now.push(format!("t1.{k}"));
            ops.event(
                "stage_done",
                &[
                    ("stage", k.to_string()),
                    ("name", def.stages[k].name.clone()),
                ],
            );
        }
        if j >= def.stages.len() {
            let outputs = self.outputs(def, rec, j).await?;
            let result = outputs
                .last()
                .map(|(_, v)| v.to_string())
                .unwrap_or_default();
            let mut fin = finish_ops(rec, "succeeded", "", "", &result);
            fin.now = ops.now;
            fin.ev = ops.ev;
            fin.h.extend(ops.h);
            return Ok((fin, Vec::new()));
        }
        let stage = &def.stages[j];
        ops.h.insert("stage".into(), j.to_string());
        ops.h.insert("phase".into(), "steps".into());
        ops.now.push(format!("t0.{j}"));
        ops.event(
            "stage",
            &[("stage", j.to_string()), ("name", stage.name.clone())],
        );
        if let Some(timeout) = stage.gate_timeout_for(&rec.input) {
            ops.gate = Some(GateOp {
                name: stage.name.clone(),
                stage: j.to_string(),
                timeout_ms: (timeout.as_millis() as u64).max(1).to_string(),
            });
            return Ok((ops, Vec::new()));
        }
        let outputs = self.outputs(def, rec, j).await?;
        let specs = match stage.build(&crate::StageInput {
            input: &rec.input,
            outputs: &outputs,
        }) {
            Ok(s) => s,
            Err(e) => {
                let mut fin = finish_ops(rec, "failed", "bad_input", &e.0, "");
                fin.h.insert("failed_stage".into(), j.to_string());
                if let Some(f) = fin.finish.as_mut() {
                    f.stage = j.to_string();
                }
                return Ok((fin, Vec::new()));
            }
        };
        let n = specs.len();
        let to = n.min(stage.parallelism());
        ops.h.insert(format!("n.{j}"), n.to_string());
        ops.h.insert(format!("next.{j}"), to.to_string());
        let pending = self.launch(def, rec, &mut ops, j, &specs, 0, to)?;
        Ok((ops, pending))
    }

    /// Marks jobs `from..to` of `stage` as waiting to be pushed (their jobs kept in
    /// the record until pushed, so a killed driver's successor pushes them).
    #[allow(clippy::too_many_arguments)]
    fn launch(
        &self,
        def: &Pipeline,
        rec: &Record,
        ops: &mut Ops,
        stage: usize,
        specs: &[StepSpec],
        from: usize,
        to: usize,
    ) -> Result<Vec<(String, PendingStep)>, PipelineError> {
        let mut pending = Vec::new();
        for (i, spec) in specs.iter().enumerate().take(to).skip(from) {
            let step = self.pending_step(def, rec, spec, stage, i, false)?;
            let key = format!("{stage}.{i}");
            ops.s.insert(format!("s.{key}"), "q".into());
            ops.s.insert(
                format!("j.{key}"),
                serde_json::to_string(&step).unwrap_or_default(),
            );
            pending.push((key, step));
        }
        Ok(pending)
    }

    fn pending_step(
        &self,
        def: &Pipeline,
        rec: &Record,
        spec: &StepSpec,
        stage: usize,
        index: usize,
        fallback: bool,
    ) -> Result<PendingStep, PipelineError> {
        let queue = match (&spec.queue, def.route_of(&spec.job_type)) {
            (Some(q), _) => q.clone(),
            (None, Some(q)) => q.to_owned(),
            (None, None) => self
                .jobs
                .queue_of(&spec.job_type)
                .map(str::to_owned)
                .map_err(|e| PipelineError::BadInput(e.to_string()))?,
        };
        Ok(PendingStep {
            id: step_job_id(&rec.id, stage, index, fallback),
            queue,
            job_type: spec.job_type.clone(),
            payload: spec.payload.clone(),
        })
    }

    async fn failed_step(
        &self,
        def: &Pipeline,
        rec: &Record,
        stage: usize,
        index: Option<usize>,
    ) -> Result<(Ops, Vec<(String, PendingStep)>), PipelineError> {
        let next = rec.counts(stage).next;
        let mut c = self.queue.connection();
        let sk = self.keys.steps(&rec.id);
        let index = match index {
            Some(i) => i,
            None => {
                let fields: Vec<String> = (0..next).map(|i| format!("s.{stage}.{i}")).collect();
                let st: Vec<Option<String>> = redis::cmd("HMGET")
                    .arg(&sk)
                    .arg(&fields)
                    .query_async(&mut c)
                    .await?;
                st.iter()
                    .position(|s| s.as_deref() == Some("f"))
                    .unwrap_or(0)
            }
        };
        let key = format!("{stage}.{index}");
        let (fb, class, error): (Option<String>, Option<String>, Option<String>) = redis::pipe()
            .hget(&sk, format!("fb.{key}"))
            .hget(&sk, format!("c.{key}"))
            .hget(&sk, format!("e.{key}"))
            .query_async(&mut c)
            .await?;
        let class = class.unwrap_or_else(|| "transient".into());
        let st = &def.stages[stage];
        if let Some(fallback) = &st.fallback
            && fb.as_deref() != Some("1")
            && class != "cancelled"
        {
            let outputs = self.outputs(def, rec, stage).await?;
            let si = crate::StageInput {
                input: &rec.input,
                outputs: &outputs,
            };
            match fallback(&si, index) {
                Ok(None) => {}
                Ok(Some(spec)) => {
                    let step = self.pending_step(def, rec, &spec, stage, index, true)?;
                    let mut ops = Ops::default();
                    ops.s.insert(format!("s.{key}"), "q".into());
                    ops.s.insert(format!("fb.{key}"), "1".into());
                    ops.s.insert(
                        format!("j.{key}"),
                        serde_json::to_string(&step).unwrap_or_default(),
                    );
                    ops.incr.insert(format!("failed.{stage}"), -1);
                    ops.hdel.push(format!("fail.{stage}"));
                    ops.event(
                        "fallback",
                        &[("stage", stage.to_string()), ("index", index.to_string())],
                    );
                    return Ok((ops, vec![(key, step)]));
                }
                Err(e) => {
                    return Ok((finish_ops(rec, "failed", "bad_input", &e.0, ""), Vec::new()));
                }
            }
        }
        let outcome = if class == "cancelled" {
            "cancelled"
        } else {
            "failed"
        };
        let message = format!(
            "stage '{}', job {}: {}",
            st.name,
            step_job_id(&rec.id, stage, index, fb.as_deref() == Some("1")),
            error.unwrap_or_default()
        );
        Ok((finish_ops(rec, outcome, &class, &message, ""), Vec::new()))
    }

    /// The outputs of stages `0..until`, by name.
    async fn outputs(
        &self,
        def: &Pipeline,
        rec: &Record,
        until: usize,
    ) -> Result<Vec<(String, Value)>, PipelineError> {
        let until = until.min(def.stages.len());
        if until == 0 {
            return Ok(Vec::new());
        }
        let sk = self.keys.steps(&rec.id);
        let mut pipe = redis::pipe();
        for (k, st) in def.stages.iter().enumerate().take(until) {
            match st.kind {
                StageKind::Gate { .. } => {
                    pipe.cmd("HMGET").arg(&sk).arg(format!("g.{k}"));
                }
                StageKind::Step => {
                    pipe.cmd("HMGET").arg(&sk).arg(format!("o.{k}.0"));
                }
                StageKind::FanOut { .. } => {
                    let n = rec.counts(k).n;
                    let mut cmd = redis::cmd("HMGET");
                    cmd.arg(&sk);
                    // HMGET needs a field; index 0 of an empty fan-out reads nothing.
                    for i in 0..n.max(1) {
                        cmd.arg(format!("o.{k}.{i}"));
                    }
                    pipe.add_command(cmd);
                }
            }
        }
        let mut c = self.queue.connection();
        let rows: Vec<Vec<Option<String>>> = pipe.query_async(&mut c).await?;
        let parse = |v: &Option<String>| {
            v.as_deref()
                .filter(|s| !s.is_empty())
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or(Value::Null)
        };
        Ok(def
            .stages
            .iter()
            .enumerate()
            .take(until)
            .zip(rows)
            .map(|((k, st), row)| {
                let v = match st.kind {
                    StageKind::FanOut { .. } => {
                        let n = rec.counts(k).n;
                        Value::Array(row.iter().take(n).map(parse).collect())
                    }
                    _ => row.first().map(parse).unwrap_or(Value::Null),
                };
                (st.name.clone(), v)
            })
            .collect())
    }

    async fn apply(&self, rec: &Record, ops: &Ops) -> Result<Applied, PipelineError> {
        let cfg = self.queue.config();
        let body = serde_json::to_string(ops)
            .map_err(|e| PipelineError::BadInput(format!("transition not encodable: {e}")))?;
        let mut c = self.queue.connection();
        let reply: Vec<i64> = scripts::APPLY
            .key(&self.keys.base)
            .arg(&rec.id)
            .arg(&rec.ver)
            .arg(body)
            .arg(cfg.result_ttl.as_millis() as u64)
            .arg(cfg.events_maxlen)
            .arg(PL_EVENTS_MAXLEN)
            .invoke_async(&mut c)
            .await?;
        Ok(match reply.as_slice() {
            [1, now] => Applied::Done {
                now_ms: (*now).max(0) as u64,
            },
            [0, ..] => Applied::Conflict,
            _ => Applied::Missing,
        })
    }

    async fn push_steps(
        &self,
        pid: &str,
        pending: &[(String, PendingStep)],
    ) -> Result<(), PipelineError> {
        let jobs = pending
            .iter()
            .map(|(_, p)| {
                NewJob::new(&p.queue, &p.job_type, p.payload.to_string())
                    .id(&p.id)
                    .idempotency_key(&p.id)
                    .pipeline(pid)
            })
            .collect();
        self.queue.push_bulk(jobs).await?;
        let mut inv = scripts::PUSHED.key(&self.keys.base);
        inv.arg(pid);
        for (key, p) in pending {
            inv.arg(key).arg(&p.queue);
        }
        let mut c = self.queue.connection();
        let _: i64 = inv.invoke_async(&mut c).await?;
        Ok(())
    }

    /// Pushes the jobs of the current stage still marked as waiting (a driver was
    /// killed between marking and pushing them). Pushing is idempotent by id.
    async fn repush_waiting(&self, rec: &Record) -> Result<(), PipelineError> {
        if rec.stage < 0 {
            return Ok(());
        }
        let k = rec.stage as usize;
        let next = rec.counts(k).next;
        if next == 0 {
            return Ok(());
        }
        let sk = self.keys.steps(&rec.id);
        let fields: Vec<String> = (0..next).map(|i| format!("j.{k}.{i}")).collect();
        let mut c = self.queue.connection();
        let specs: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(&sk)
            .arg(&fields)
            .query_async(&mut c)
            .await?;
        let pending: Vec<(String, PendingStep)> = specs
            .into_iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let step: PendingStep = serde_json::from_str(s.as_deref()?).ok()?;
                Some((format!("{k}.{i}"), step))
            })
            .collect();
        if !pending.is_empty() {
            info!(pipeline_id = %rec.id, jobs = pending.len(), "pushing pipeline jobs a stopped driver had not pushed");
            self.push_steps(&rec.id, &pending).await?;
        }
        Ok(())
    }

    async fn idle(&self, rec: &Record) -> Result<(), PipelineError> {
        let mut c = self.queue.connection();
        let _: i64 = scripts::IDLE
            .key(&self.keys.base)
            .arg(&rec.id)
            .arg(&rec.ver)
            .arg(IDLE_RECHECK_MS)
            .invoke_async(&mut c)
            .await?;
        Ok(())
    }

    /// A finished pipeline: cancels its jobs still queued or running, then leaves
    /// `:active`. The first such move (a compare-and-set marks it `counted`) counts
    /// the outcome, once across all drivers.
    async fn clean_up(&self, rec: &Record) -> Result<(), PipelineError> {
        let sk = self.keys.steps(&rec.id);
        let first = rec.text("counted").is_none();
        let mut ops = Ops {
            active: Some("drop"),
            ..Ops::default()
        };
        if first {
            ops.h.insert("counted".into(), "1".into());
        }
        if rec.stage >= 0 {
            let k = rec.stage as usize;
            let next = rec.counts(k).next;
            if next > 0 {
                let mut c = self.queue.connection();
                let mut pipe = redis::pipe();
                for i in 0..next {
                    pipe.hget(&sk, format!("s.{k}.{i}"))
                        .hget(&sk, format!("j.{k}.{i}"))
                        .hget(&sk, format!("fb.{k}.{i}"));
                }
                let vals: Vec<Option<String>> = pipe.query_async(&mut c).await?;
                for (i, v) in vals.chunks(3).enumerate() {
                    let fallback = v[2].as_deref() == Some("1");
                    let job_id = step_job_id(&rec.id, k, i, fallback);
                    let queue = match v[0].as_deref() {
                        Some("q") => v[1]
                            .as_deref()
                            .and_then(|j| serde_json::from_str::<PendingStep>(j).ok())
                            .map(|p| p.queue),
                        Some(s) => s.strip_prefix("p|").map(str::to_owned),
                        None => None,
                    };
                    if let Some(queue) = queue {
                        self.queue.cancel(&queue, &job_id).await?;
                        ops.s.insert(format!("s.{k}.{i}"), "c".into());
                        ops.sdel.push(format!("j.{k}.{i}"));
                    }
                }
            }
        }
        if let Applied::Done { .. } = self.apply(rec, &ops).await?
            && first
            && let Some(m) = &self.metrics
        {
            let outcome = rec.outcome.as_deref().unwrap_or(rec.status.as_str());
            m.finished_total
                .with_label_values(&[rec.ptype.as_str(), outcome])
                .inc();
            if let (Some(gate), Some(opened), Some(end)) = (
                rec.gate.as_deref(),
                rec.num("gate_opened"),
                rec.num("finished"),
            ) && rec.phase == "done"
                && rec.num("decided_at").is_none()
                && (outcome == "timed_out" || outcome == "cancelled")
            {
                m.gate_wait_seconds
                    .with_label_values(&[rec.ptype.as_str(), gate, outcome])
                    .observe(end.saturating_sub(opened) as f64 / 1000.0);
            }
        }
        Ok(())
    }

    fn observe(&self, def: &Pipeline, rec: &Record, ops: &Ops, now_ms: u64) {
        let Some(m) = &self.metrics else { return };
        if rec.stage < 0 || !ops.now.iter().any(|f| f.starts_with("t1.")) {
            return;
        }
        let k = rec.stage as usize;
        let Some(stage) = def.stages.get(k) else {
            return;
        };
        if let StageKind::Gate { .. } = stage.kind {
            if let (Some(opened), Some(decided)) = (rec.num("gate_opened"), rec.num("decided_at")) {
                m.gate_wait_seconds
                    .with_label_values(&[rec.ptype.as_str(), stage.name.as_str(), "decided"])
                    .observe(decided.saturating_sub(opened) as f64 / 1000.0);
            }
        } else if let Some(t0) = rec.num(&format!("t0.{k}")) {
            m.stage_duration_seconds
                .with_label_values(&[rec.ptype.as_str(), stage.name.as_str()])
                .observe(now_ms.saturating_sub(t0) as f64 / 1000.0);
        }
    }
}

/// A stable 64-bit FNV-1a digest (hex) of a stage description.
fn digest(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The ops that end a pipeline with `outcome` at its current stage.
fn finish_ops(rec: &Record, outcome: &str, class: &str, error: &str, result: &str) -> Ops {
    Ops {
        finish: Some(FinishOp {
            outcome: outcome.to_owned(),
            class: class.to_owned(),
            error: error.to_owned(),
            stage: rec.stage.max(-1).to_string(),
            result: result.to_owned(),
        }),
        ..Ops::default()
    }
}
