//! [`RedisQueue`]: the producer and operator side of the backend.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures::stream::BoxStream;
use genq_core::{
    FailureClass, JobError, JobState, JobStatus, Progress, new_job_id, validate_queue_name,
};
use redis::{AsyncCommands, Value};
use serde::{Deserialize, Serialize};

use crate::{
    config::RedisConfig,
    conn::{Connector, PubSubMessage, RedisConn},
    error::QueueError,
    scripts,
    target::{RedisTarget, redact},
};

/// How long a request on the shared connection waits for its reply.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request on a blocking-read connection waits: longer than any block
/// genq asks for (`XREAD BLOCK 1000`), so that an idle stream is not an error.
const BLOCKING_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// A job to push.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub queue: String,
    pub job_type: String,
    /// JSON text.
    pub payload: String,
    pub delay: Option<Duration>,
    pub idempotency_key: Option<String>,
    /// Set to choose the id (e.g. the database's job id); a new ULID otherwise.
    pub id: Option<String>,
    /// The pipeline this job is a step of: its final outcome is handed to the
    /// pipeline in the script that ends it (see `genq-pipeline`).
    pub pipeline: Option<String>,
}

impl NewJob {
    pub fn new(
        queue: impl Into<String>,
        job_type: impl Into<String>,
        payload: impl Into<String>,
    ) -> Self {
        Self {
            queue: queue.into(),
            job_type: job_type.into(),
            payload: payload.into(),
            delay: None,
            idempotency_key: None,
            id: None,
            pipeline: None,
        }
    }

    /// A job whose payload is `payload` serialized as JSON.
    pub fn json<T: Serialize>(
        queue: impl Into<String>,
        job_type: impl Into<String>,
        payload: &T,
    ) -> Result<Self, QueueError> {
        let text = serde_json::to_string(payload)
            .map_err(|e| QueueError::InvalidJob(format!("payload could not be encoded: {e}")))?;
        Ok(Self::new(queue, job_type, text))
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Marks the job as a step of pipeline `pipeline_id`.
    pub fn pipeline(mut self, pipeline_id: impl Into<String>) -> Self {
        self.pipeline = Some(pipeline_id.into());
        self
    }

    fn validate(&self, max_payload: usize) -> Result<(), QueueError> {
        validate_queue_name(&self.queue)?;
        let bad = |m: String| Err(QueueError::InvalidJob(m));
        if self.job_type.is_empty() || self.job_type.len() > 64 {
            return bad(format!(
                "job type '{}' must be 1-64 characters",
                self.job_type
            ));
        }
        if self.payload.len() > max_payload {
            return bad(format!(
                "payload of {} bytes is over the {max_payload}-byte limit",
                self.payload.len()
            ));
        }
        if let Some(key) = &self.idempotency_key
            && (key.is_empty() || key.len() > 200)
        {
            return bad("idempotency key must be 1-200 characters".to_owned());
        }
        if let Some(id) = &self.id
            && (id.is_empty() || id.len() > 64 || id.contains([':', '{', '}', ' ']))
        {
            return bad(format!(
                "job id '{id}' must be 1-64 characters without ':', braces or spaces"
            ));
        }
        Ok(())
    }
}

/// The result of a push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pushed {
    pub id: String,
    /// False when the idempotency key named a job pushed before (this push did nothing).
    pub created: bool,
}

/// How a run ended, as the backend records it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Result JSON.
    Succeeded(String),
    /// Failed; runs again `after` this long (from the Redis server's clock).
    Retry {
        after: std::time::Duration,
        error: JobError,
    },
    /// No capacity (a provider limit was reached before anything was paid for): runs
    /// again `after` this long, and this run does not count as an attempt. Also a
    /// job parked on a vendor's task (`error.parked`: a webhook may wake it early).
    Deferred {
        after: std::time::Duration,
        error: JobError,
    },
    /// Failed for good: dead letters.
    Failed(JobError),
    Cancelled(JobError),
}

/// What a cancel did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelOutcome {
    /// It had not started: it is cancelled.
    Cancelled,
    /// It is running: its worker has been told to stop it (it ends as cancelled).
    Signalled,
    /// It had already ended with this status.
    AlreadyFinal(JobStatus),
    NotFound,
}

/// O(1) figures of one queue.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueStats {
    pub queue: String,
    pub ready: u64,
    pub scheduled: u64,
    pub running: u64,
    pub dead: u64,
    pub paused: bool,
    /// Age of the oldest ready job, in seconds (0 if none).
    pub oldest_ready_age_secs: f64,
    pub pushed: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub retried: u64,
    pub cancelled: u64,
    /// Runs whose worker died (lease expired).
    pub recovered: u64,
    /// Runs that found no provider capacity and were rescheduled (not attempts).
    #[serde(default)]
    pub deferred: u64,
    /// Runs that left their job parked on a vendor's task (not attempts).
    #[serde(default)]
    pub parked: u64,
}

/// Which of a queue's lists to page through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobList {
    /// Waiting to run, oldest first.
    Ready,
    /// Delayed or waiting for a retry, soonest first.
    Scheduled,
    /// Running, by lease deadline.
    Running,
    /// Dead letters, newest first.
    Dead,
}

impl std::str::FromStr for JobList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ready" => Ok(JobList::Ready),
            "scheduled" => Ok(JobList::Scheduled),
            "running" => Ok(JobList::Running),
            "dead" => Ok(JobList::Dead),
            other => Err(format!(
                "unknown list '{other}' (expected ready, scheduled, running or dead)"
            )),
        }
    }
}

/// What a delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteOutcome {
    Deleted,
    /// Refused: a running job is cancelled, not deleted.
    Running,
    NotFound,
}

/// A worker's heartbeat record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub instance: String,
    pub host: String,
    pub pid: u32,
    pub queues: Vec<String>,
    pub concurrency: usize,
    pub in_flight: usize,
    pub last_heartbeat_ms: u64,
}

/// The producer/operator handle: cheap to clone, one pooled (multiplexed,
/// auto-reconnecting) connection underneath — to one server, the primary of a
/// Sentinel set, or a Redis Cluster ([`RedisTarget`]).
#[derive(Clone)]
pub struct RedisQueue {
    pub(crate) conn: RedisConn,
    pub(crate) connector: Arc<Connector>,
    pub(crate) cfg: Arc<RedisConfig>,
    known_queues: Arc<Mutex<HashSet<String>>>,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("prefix", &self.cfg.prefix)
            .finish()
    }
}

impl RedisQueue {
    /// Connects (and checks the settings). The URL may name one server, a Sentinel
    /// set or a Cluster (see [`RedisTarget`]).
    pub async fn connect(cfg: RedisConfig) -> Result<Self, QueueError> {
        cfg.validate().map_err(QueueError::Config)?;
        let target = RedisTarget::parse(&cfg.url)?;
        let kind = target.kind();
        let connector = Connector::new(target)?;
        let conn = connector.connect(RESPONSE_TIMEOUT).await?;
        tracing::debug!(url = %redact(&cfg.url), kind, "connected to Redis");
        Ok(Self {
            conn,
            connector: Arc::new(connector),
            cfg: Arc::new(cfg),
            known_queues: Arc::default(),
        })
    }

    pub fn config(&self) -> &RedisConfig {
        &self.cfg
    }

    /// The shared, auto-reconnecting connection (for other genq parts that keep
    /// state in Redis, e.g. provider key cool-downs). Never block on it
    /// (`XREAD BLOCK`, `BLPOP`): use [`RedisQueue::blocking_connection`].
    pub fn connection(&self) -> RedisConn {
        self.conn.clone()
    }

    /// A new connection of its own for blocking reads (`XREAD BLOCK` up to 5 s),
    /// which would stall every request sharing a multiplexed one.
    pub async fn blocking_connection(&self) -> Result<RedisConn, QueueError> {
        Ok(self.connector.connect(BLOCKING_RESPONSE_TIMEOUT).await?)
    }

    /// Subscribes to pub/sub `channels` on a connection of its own. The stream ends
    /// when that connection does: subscribe again (on a Sentinel set, that finds
    /// the current primary).
    pub async fn subscribe(
        &self,
        channels: &[String],
    ) -> Result<BoxStream<'static, PubSubMessage>, QueueError> {
        Ok(self.connector.subscribe(channels).await?)
    }

    /// What the URL named: one server, a Sentinel set or a Cluster.
    pub fn target(&self) -> &RedisTarget {
        self.connector.target()
    }

    /// The base key of a queue: `<prefix>:{<queue>}` (the braces are the hash tag).
    pub fn base_key(&self, queue: &str) -> String {
        format!("{}:{{{}}}", self.cfg.prefix, queue)
    }

    pub(crate) fn job_key(&self, queue: &str, id: &str) -> String {
        format!("{}:job:{}", self.base_key(queue), id)
    }

    fn queues_key(&self) -> String {
        format!("{}:queues", self.cfg.prefix)
    }

    pub(crate) fn notify_channel(&self, queue: &str) -> String {
        format!("{}:notify", self.base_key(queue))
    }

    pub(crate) fn cancel_channel(&self, queue: &str) -> String {
        format!("{}:cancel", self.base_key(queue))
    }

    pub(crate) fn events_key(&self, queue: &str) -> String {
        format!("{}:events", self.base_key(queue))
    }

    /// Records a queue name so that operators can list it (once per process and queue).
    pub async fn register_queue(&self, queue: &str) -> Result<(), QueueError> {
        validate_queue_name(queue)?;
        let fresh = self
            .known_queues
            .lock()
            .map(|mut k| k.insert(queue.to_owned()))
            .unwrap_or(true);
        if fresh {
            let mut c = self.conn.clone();
            let _: () = c.sadd(self.queues_key(), queue).await?;
        }
        Ok(())
    }

    /// Every queue anything was pushed to or served from.
    pub async fn queues(&self) -> Result<BTreeSet<String>, QueueError> {
        let mut c = self.conn.clone();
        Ok(c.smembers(self.queues_key()).await?)
    }

    /// Pushes one job.
    pub async fn push(&self, job: NewJob) -> Result<Pushed, QueueError> {
        let mut out = self.push_bulk(vec![job]).await?;
        out.pop()
            .ok_or_else(|| QueueError::Protocol("push returned nothing".to_owned()))
    }

    /// Pushes many jobs (any queues), in order; one script call per queue and chunk.
    pub async fn push_bulk(&self, jobs: Vec<NewJob>) -> Result<Vec<Pushed>, QueueError> {
        for job in &jobs {
            job.validate(self.cfg.max_payload_bytes)?;
        }
        let mut by_queue: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, job) in jobs.iter().enumerate() {
            by_queue.entry(job.queue.as_str()).or_default().push(i);
        }
        let mut results: Vec<Option<Pushed>> = vec![None; jobs.len()];
        for (queue, idxs) in by_queue {
            self.register_queue(queue).await?;
            for chunk in idxs.chunks(1000) {
                let pushed = self
                    .push_chunk(queue, chunk.iter().map(|&i| &jobs[i]))
                    .await?;
                for (&i, p) in chunk.iter().zip(pushed) {
                    results[i] = Some(p);
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.ok_or_else(|| QueueError::Protocol("push reply too short".to_owned())))
            .collect()
    }

    async fn push_chunk<'a>(
        &self,
        queue: &str,
        jobs: impl ExactSizeIterator<Item = &'a NewJob>,
    ) -> Result<Vec<Pushed>, QueueError> {
        let mut inv = scripts::PUSH.key(self.base_key(queue));
        inv.arg(self.cfg.idempotency_ttl.as_secs().max(1))
            .arg(jobs.len());
        for job in jobs {
            let id = job.id.clone().unwrap_or_else(new_job_id);
            inv.arg(id)
                .arg(&job.job_type)
                .arg(&job.payload)
                .arg(job.delay.map(ms).unwrap_or(0))
                .arg(job.idempotency_key.as_deref().unwrap_or(""))
                .arg(job.pipeline.as_deref().unwrap_or(""));
        }
        let mut c = self.conn.clone();
        let reply: Vec<Value> = inv.invoke_async(&mut c).await?;
        reply
            .chunks(2)
            .map(|pair| match pair {
                [id, created] => Ok(Pushed {
                    id: as_string(id)?,
                    created: as_u64(created)? == 1,
                }),
                _ => Err(QueueError::Protocol(
                    "push reply has an odd length".to_owned(),
                )),
            })
            .collect()
    }

    /// A job's state by queue and id; `None` once its data has expired (or never existed).
    pub async fn job(&self, queue: &str, id: &str) -> Result<Option<JobState>, QueueError> {
        validate_queue_name(queue)?;
        let mut c = self.conn.clone();
        let fields: HashMap<String, String> = c.hgetall(self.job_key(queue, id)).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        Ok(Some(job_state(queue, id, fields)))
    }

    /// The states of many jobs (queue, id) in one round trip, in order; `None` for a
    /// job Redis does not know.
    pub async fn jobs(
        &self,
        ids: &[(String, String)],
    ) -> Result<Vec<Option<JobState>>, QueueError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (queue, id) in ids {
            validate_queue_name(queue)?;
            pipe.hgetall(self.job_key(queue, id));
        }
        let mut c = self.conn.clone();
        let all: Vec<HashMap<String, String>> = pipe.query_async(&mut c).await?;
        Ok(ids
            .iter()
            .zip(all)
            .map(|((queue, id), fields)| (!fields.is_empty()).then(|| job_state(queue, id, fields)))
            .collect())
    }

    /// A job's state by id alone, looking in every known queue.
    pub async fn find_job(&self, id: &str) -> Result<Option<JobState>, QueueError> {
        for queue in self.queues().await? {
            if let Some(state) = self.job(&queue, id).await? {
                return Ok(Some(state));
            }
        }
        Ok(None)
    }

    /// How many ready jobs will run before `id` (ready is LPUSHed and RPOPed, so the
    /// jobs ahead are those nearer the tail); `None` when `id` is not waiting in
    /// `ready`. Scans at most the 10,000 newest entries.
    pub async fn jobs_ahead(&self, queue: &str, id: &str) -> Result<Option<u64>, QueueError> {
        validate_queue_name(queue)?;
        let key = format!("{}:ready", self.base_key(queue));
        let mut c = self.conn.clone();
        let (pos, len): (Option<u64>, u64) = redis::pipe()
            .cmd("LPOS")
            .arg(&key)
            .arg(id)
            .arg("MAXLEN")
            .arg(10_000)
            .cmd("LLEN")
            .arg(&key)
            .query_async(&mut c)
            .await?;
        Ok(pos.map(|p| len.saturating_sub(p + 1)))
    }

    /// Cancels a queued or scheduled job at once; asks the worker of a running one to stop it.
    pub async fn cancel(&self, queue: &str, id: &str) -> Result<CancelOutcome, QueueError> {
        validate_queue_name(queue)?;
        let mut c = self.conn.clone();
        let reply: String = scripts::CANCEL
            .key(self.base_key(queue))
            .arg(id)
            .arg(ms(self.cfg.result_ttl))
            .arg(self.cfg.events_maxlen)
            .invoke_async(&mut c)
            .await?;
        Ok(match reply.as_str() {
            "cancelled" => CancelOutcome::Cancelled,
            "signalled" => CancelOutcome::Signalled,
            "missing" => CancelOutcome::NotFound,
            other => CancelOutcome::AlreadyFinal(
                other
                    .strip_prefix("final:")
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| QueueError::Protocol(format!("cancel replied '{other}'")))?,
            ),
        })
    }

    /// Makes a job parked on a vendor's task due now (a webhook said the task
    /// moved); a running one is marked so that a park its run records is due at
    /// once. False when it has ended or is unknown.
    pub async fn wake(&self, queue: &str, id: &str) -> Result<bool, QueueError> {
        validate_queue_name(queue)?;
        let mut c = self.conn.clone();
        let woke: i64 = scripts::WAKE
            .key(self.base_key(queue))
            .arg(id)
            .invoke_async(&mut c)
            .await?;
        Ok(woke == 1 || woke == 2)
    }

    /// Stops workers from taking jobs off the queue (running jobs go on).
    pub async fn pause(&self, queue: &str) -> Result<(), QueueError> {
        self.set_paused(queue, true).await
    }

    pub async fn resume(&self, queue: &str) -> Result<(), QueueError> {
        self.set_paused(queue, false).await
    }

    async fn set_paused(&self, queue: &str, paused: bool) -> Result<(), QueueError> {
        self.register_queue(queue).await?;
        let mut c = self.conn.clone();
        let _: i64 = scripts::PAUSE
            .key(self.base_key(queue))
            .arg(if paused { "1" } else { "0" })
            .invoke_async(&mut c)
            .await?;
        Ok(())
    }

    /// The queue's figures, in O(1).
    pub async fn stats(&self, queue: &str) -> Result<QueueStats, QueueError> {
        validate_queue_name(queue)?;
        let mut c = self.conn.clone();
        let reply: Vec<Value> = scripts::STATS
            .key(self.base_key(queue))
            .invoke_async(&mut c)
            .await?;
        if reply.len() < 6 {
            return Err(QueueError::Protocol("stats reply too short".to_owned()));
        }
        let oldest_age_ms = as_string(&reply[5])?;
        let mut stats = QueueStats {
            queue: queue.to_owned(),
            ready: as_u64(&reply[0])?,
            scheduled: as_u64(&reply[1])?,
            running: as_u64(&reply[2])?,
            dead: as_u64(&reply[3])?,
            paused: as_u64(&reply[4])? == 1,
            oldest_ready_age_secs: oldest_age_ms
                .parse::<f64>()
                .map(|age| age / 1000.0)
                .unwrap_or(0.0),
            ..QueueStats::default()
        };
        for pair in reply[6..].chunks(2) {
            if let [k, v] = pair {
                let v = as_string(v)?.parse::<u64>().unwrap_or(0);
                match as_string(k)?.as_str() {
                    "pushed" => stats.pushed = v,
                    "succeeded" => stats.succeeded = v,
                    "failed" => stats.failed = v,
                    "retried" => stats.retried = v,
                    "cancelled" => stats.cancelled = v,
                    "recovered" => stats.recovered = v,
                    "deferred" => stats.deferred = v,
                    "parked" => stats.parked = v,
                    _ => {}
                }
            }
        }
        Ok(stats)
    }

    /// Dead letters, newest first.
    pub async fn dead_letters(
        &self,
        queue: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<JobState>, QueueError> {
        validate_queue_name(queue)?;
        let mut c = self.conn.clone();
        let stop = offset.saturating_add(limit.max(1)).saturating_sub(1);
        let ids: Vec<String> = c
            .zrevrange(
                format!("{}:dead", self.base_key(queue)),
                offset as isize,
                stop as isize,
            )
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(state) = self.job(queue, &id).await? {
                out.push(state);
            }
        }
        Ok(out)
    }

    /// A page of one of a queue's lists, and the list's length.
    pub async fn list_jobs(
        &self,
        queue: &str,
        list: JobList,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<JobState>, u64), QueueError> {
        validate_queue_name(queue)?;
        let base = self.base_key(queue);
        let (start, stop) = (offset as isize, (offset + limit.max(1)) as isize - 1);
        let mut c = self.conn.clone();
        let (ids, total): (Vec<String>, u64) = match list {
            JobList::Ready => {
                let key = format!("{base}:ready");
                let len: u64 = c.llen(&key).await?;
                // the oldest is at the tail
                let ids: Vec<String> = c.lrange(&key, -(stop + 1), -(start + 1)).await?;
                (ids.into_iter().rev().collect(), len)
            }
            JobList::Scheduled | JobList::Running => {
                let key = format!(
                    "{base}:{}",
                    if list == JobList::Scheduled {
                        "scheduled"
                    } else {
                        "running"
                    }
                );
                (c.zrange(&key, start, stop).await?, c.zcard(&key).await?)
            }
            JobList::Dead => {
                let key = format!("{base}:dead");
                (c.zrevrange(&key, start, stop).await?, c.zcard(&key).await?)
            }
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(state) = self.job(queue, &id).await? {
                out.push(state);
            }
        }
        Ok((out, total))
    }

    /// Deletes a job that is not running (from whatever list holds it, with its data).
    pub async fn delete(&self, queue: &str, id: &str) -> Result<DeleteOutcome, QueueError> {
        validate_queue_name(queue)?;
        let mut c = self.conn.clone();
        let reply: String = scripts::DELETE
            .key(self.base_key(queue))
            .arg(id)
            .invoke_async(&mut c)
            .await?;
        Ok(match reply.as_str() {
            "deleted" => DeleteOutcome::Deleted,
            "running" => DeleteOutcome::Running,
            _ => DeleteOutcome::NotFound,
        })
    }

    /// Puts one dead-lettered job back on its queue. False if it is not a dead letter.
    pub async fn retry_dead(&self, queue: &str, id: &str) -> Result<bool, QueueError> {
        Ok(self.retry_dead_ids(queue, &[id.to_owned()]).await? == 1)
    }

    /// Puts every dead letter of a queue back; returns how many.
    pub async fn retry_all_dead(&self, queue: &str) -> Result<u64, QueueError> {
        validate_queue_name(queue)?;
        let key = format!("{}:dead", self.base_key(queue));
        let mut total = 0;
        loop {
            let mut c = self.conn.clone();
            let ids: Vec<String> = c.zrange(&key, 0, 499).await?;
            if ids.is_empty() {
                return Ok(total);
            }
            total += self.retry_dead_ids(queue, &ids).await?;
        }
    }

    async fn retry_dead_ids(&self, queue: &str, ids: &[String]) -> Result<u64, QueueError> {
        validate_queue_name(queue)?;
        let mut inv = scripts::RETRY_DEAD.key(self.base_key(queue));
        for id in ids {
            inv.arg(id);
        }
        let mut c = self.conn.clone();
        Ok(inv.invoke_async(&mut c).await?)
    }

    /// Workers that heartbeated on this queue recently.
    pub async fn workers(&self, queue: &str) -> Result<Vec<WorkerInfo>, QueueError> {
        validate_queue_name(queue)?;
        let mut c = self.conn.clone();
        let raw: HashMap<String, String> = c
            .hgetall(format!("{}:workers", self.base_key(queue)))
            .await?;
        let mut out: Vec<WorkerInfo> = raw
            .values()
            .filter_map(|v| serde_json::from_str(v).ok())
            .collect();
        out.sort_by(|a, b| a.instance.cmp(&b.instance));
        Ok(out)
    }

    // ---- worker side (used by the consumer and the ack layer) ----

    pub(crate) async fn complete(
        &self,
        queue: &str,
        id: &str,
        attempt: u32,
        worker: &str,
        outcome: &Outcome,
    ) -> Result<bool, QueueError> {
        let (kind, data, class, retry_after) = match outcome {
            Outcome::Succeeded(result) => ("succeeded", result.as_str(), "", 0),
            Outcome::Retry { after, error } => (
                "retry",
                error.message.as_str(),
                error.class.as_str(),
                ms(*after),
            ),
            Outcome::Deferred { after, error } => (
                if error.parked { "parked" } else { "deferred" },
                error.message.as_str(),
                error.class.as_str(),
                ms(*after),
            ),
            Outcome::Failed(error) => ("failed", error.message.as_str(), error.class.as_str(), 0),
            Outcome::Cancelled(error) => ("cancelled", error.message.as_str(), "cancelled", 0),
        };
        let mut c = self.conn.clone();
        let applied: i64 = scripts::COMPLETE
            .key(self.base_key(queue))
            .arg(id)
            .arg(attempt)
            .arg(worker)
            .arg(kind)
            .arg(data)
            .arg(class)
            .arg(retry_after)
            .arg(ms(self.cfg.result_ttl))
            .arg(self.cfg.dead_letter_cap)
            .arg(self.cfg.events_maxlen)
            .invoke_async(&mut c)
            .await?;
        Ok(applied == 1)
    }

    /// Stores a checkpoint on a job this worker runs. False if it no longer holds it.
    pub(crate) async fn save_checkpoint(
        &self,
        queue: &str,
        id: &str,
        worker: &str,
        checkpoint: &str,
    ) -> Result<bool, QueueError> {
        let mut c = self.conn.clone();
        let applied: i64 = scripts::CHECKPOINT
            .key(self.base_key(queue))
            .arg(id)
            .arg(worker)
            .arg(checkpoint)
            .invoke_async(&mut c)
            .await?;
        Ok(applied == 1)
    }

    /// A job's checkpoint, if a run stored one.
    pub async fn checkpoint(&self, queue: &str, id: &str) -> Result<Option<String>, QueueError> {
        validate_queue_name(queue)?;
        let mut c = self.conn.clone();
        Ok(c.hget(self.job_key(queue, id), "checkpoint").await?)
    }

    pub(crate) async fn report_progress(
        &self,
        queue: &str,
        id: &str,
        worker: &str,
        progress: &Progress,
    ) -> Result<bool, QueueError> {
        let json = serde_json::to_string(progress)
            .map_err(|e| QueueError::InvalidJob(format!("progress could not be encoded: {e}")))?;
        let mut c = self.conn.clone();
        let applied: i64 = scripts::PROGRESS
            .key(self.base_key(queue))
            .arg(id)
            .arg(worker)
            .arg(json)
            .invoke_async(&mut c)
            .await?;
        Ok(applied == 1)
    }
}

pub(crate) fn as_string(v: &Value) -> Result<String, QueueError> {
    match v {
        Value::BulkString(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Ok(s.clone()),
        Value::Int(i) => Ok(i.to_string()),
        Value::Nil => Ok(String::new()),
        other => Err(QueueError::Protocol(format!(
            "expected a string, got {other:?}"
        ))),
    }
}

pub(crate) fn as_u64(v: &Value) -> Result<u64, QueueError> {
    match v {
        Value::Int(i) => Ok((*i).max(0) as u64),
        other => as_string(other)?
            .parse()
            .map_err(|_| QueueError::Protocol(format!("expected a number, got {other:?}"))),
    }
}

fn job_state(queue: &str, id: &str, mut f: HashMap<String, String>) -> JobState {
    let num = |f: &HashMap<String, String>, k: &str| f.get(k).and_then(|v| v.parse::<u64>().ok());
    let text = |f: &mut HashMap<String, String>, k: &str| f.remove(k).filter(|v| !v.is_empty());
    JobState {
        id: id.to_owned(),
        queue: queue.to_owned(),
        status: f
            .get("status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(JobStatus::Queued),
        attempts: num(&f, "attempts").unwrap_or(0) as u32,
        enqueued_at_ms: num(&f, "enq"),
        started_at_ms: num(&f, "started"),
        finished_at_ms: num(&f, "finished"),
        due_at_ms: num(&f, "due"),
        // "parked": cancelled while parked on a vendor task (its run stops the task)
        cancel_requested: f.get("cancel").is_some_and(|v| v == "1" || v == "parked"),
        parked: f.get("parked").is_some_and(|v| v == "1"),
        job_type: text(&mut f, "type").unwrap_or_default(),
        payload: f.remove("payload").unwrap_or_default(),
        progress: text(&mut f, "progress").and_then(|p| serde_json::from_str(&p).ok()),
        result: text(&mut f, "result").and_then(|r| serde_json::from_str(&r).ok()),
        error: text(&mut f, "error"),
        error_class: text(&mut f, "error_class").and_then(|c| c.parse::<FailureClass>().ok()),
        idempotency_key: text(&mut f, "idem"),
        worker: text(&mut f, "worker"),
    }
}
