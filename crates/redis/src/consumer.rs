//! [`QueueConsumer`]: one per worker process and queue. It owns the leases of the
//! jobs this process runs from the queue: it leases them in batches, renews them on
//! a heartbeat, hands them back on shutdown, recovers the jobs of dead workers, and
//! hears new work and cancellations over pub/sub.
//!
//! **Self-fencing.** Each leased job remembers when the request that last extended
//! its lease was *sent* (the fetch, or a heartbeat whose renewal succeeded). Redis
//! set the deadline to its own time at processing plus the lease, which is no
//! earlier than that send plus the lease, so the lease is certainly ours until
//! `sent + lease`. When a job has gone `lease - fence margin` without a successful
//! renewal (Redis unreachable, this host cut off), the watchdog fires the job's
//! cancellation token: the handler is dropped, so it makes no further provider
//! call, a full margin before another worker's reaper may see the lease expire and
//! run the job again. A fenced run's outcome is never recorded (it is handed back,
//! or left to expire); see [`crate::RedisConfig::fence_margin`].

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{FutureExt, StreamExt, future::BoxFuture};
use genq_core::{Progress, ProgressSink};
use tokio::{sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    error::QueueError,
    queue::{Outcome, RedisQueue, WorkerInfo, as_string, as_u64, now_ms},
    raw_job::RawJob,
    scripts,
};

/// What the consumer tells Redis about its worker process.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// The most jobs of this queue the process runs at once (fetches never lease more).
    pub concurrency: usize,
    /// All queues the process serves (for the worker list).
    pub queues: Vec<String>,
    pub host: String,
    pub pid: u32,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        Self {
            concurrency: 100,
            queues: Vec::new(),
            host: "localhost".to_owned(),
            pid: std::process::id(),
        }
    }
}

struct InFlight {
    attempt: u32,
    cancel: CancellationToken,
    /// When the request that last extended this job's lease was sent.
    leased_at: Instant,
    /// Stopped because its lease could not be renewed in time.
    fenced: bool,
}

pub(crate) struct Inner {
    pub(crate) queue: RedisQueue,
    pub(crate) name: String,
    pub(crate) worker: String,
    opts: ConsumerOptions,
    in_flight: Mutex<HashMap<String, InFlight>>,
    notify: watch::Sender<u64>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Jobs stopped by self-fencing since the consumer started.
    fenced: AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(tasks) = self.tasks.lock() {
            for t in tasks.iter() {
                t.abort();
            }
        }
    }
}

/// See the module docs. Cheap to clone; background tasks stop when the last clone drops.
#[derive(Clone)]
pub struct QueueConsumer {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for QueueConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueConsumer")
            .field("queue", &self.inner.name)
            .field("worker", &self.inner.worker)
            .finish()
    }
}

impl QueueConsumer {
    /// Starts consuming `queue` as worker instance `worker` (unique per process).
    pub async fn start(
        queue: RedisQueue,
        name: &str,
        worker: &str,
        opts: ConsumerOptions,
    ) -> Result<Self, QueueError> {
        queue.register_queue(name).await?;
        let (notify, _) = watch::channel(0);
        let consumer = Self {
            inner: Arc::new(Inner {
                queue,
                name: name.to_owned(),
                worker: worker.to_owned(),
                opts,
                in_flight: Mutex::default(),
                notify,
                tasks: Mutex::default(),
                fenced: AtomicU64::new(0),
            }),
        };
        consumer.heartbeat_once().await?;
        let weak = Arc::downgrade(&consumer.inner);
        let heartbeat = tokio::spawn(heartbeat_loop(weak.clone()));
        let fence = tokio::spawn(fence_loop(weak.clone()));
        let listener = tokio::spawn(pubsub_loop(weak));
        if let Ok(mut tasks) = consumer.inner.tasks.lock() {
            tasks.push(heartbeat);
            tasks.push(fence);
            tasks.push(listener);
        }
        Ok(consumer)
    }

    pub fn queue_name(&self) -> &str {
        &self.inner.name
    }

    pub fn worker_id(&self) -> &str {
        &self.inner.worker
    }

    pub fn queue(&self) -> &RedisQueue {
        &self.inner.queue
    }

    /// Jobs this consumer stopped because it could not renew their leases in time.
    pub fn fenced_count(&self) -> u64 {
        self.inner.fenced.load(Ordering::Relaxed)
    }

    /// Stops every job whose lease was last extended longer than the fence point
    /// (`lease - fence margin`) ago; how many it stopped now.
    fn fence_expiring(&self) -> usize {
        let cfg = self.inner.queue.config();
        let fence_after = cfg.lease.saturating_sub(cfg.effective_fence_margin());
        let now = Instant::now();
        let mut stopped = Vec::new();
        if let Ok(mut m) = self.inner.in_flight.lock() {
            for (id, f) in m.iter_mut() {
                if !f.fenced && now.duration_since(f.leased_at) >= fence_after {
                    f.fenced = true;
                    f.cancel.cancel();
                    stopped.push(id.clone());
                }
            }
        }
        if !stopped.is_empty() {
            self.inner
                .fenced
                .fetch_add(stopped.len() as u64, Ordering::Relaxed);
            warn!(
                queue = %self.inner.name,
                jobs = stopped.len(),
                ids = %stopped.join(","),
                fence_after = ?fence_after,
                "leases not renewed in time (Redis unreachable?): stopping these jobs before another worker may take them over"
            );
        }
        stopped.len()
    }

    /// Whether run `attempt` of job `id` was stopped by self-fencing.
    fn was_fenced(&self, id: &str, attempt: u32) -> bool {
        self.inner
            .in_flight
            .lock()
            .map(|m| m.get(id).is_some_and(|f| f.fenced && f.attempt == attempt))
            .unwrap_or(false)
    }

    /// Jobs leased by this process from this queue (running or buffered).
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.lock().map(|m| m.len()).unwrap_or(0)
    }

    fn in_flight_ids(&self) -> Vec<String> {
        self.inner
            .in_flight
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Leases up to `n` jobs. Also returns how long until the next scheduled job is
    /// due (by the Redis server's clock).
    pub(crate) async fn fetch(&self, n: usize) -> Result<(Vec<RawJob>, Option<u64>), QueueError> {
        let q = &self.inner.queue;
        let cfg = q.config();
        let mut c = q.conn.clone();
        let sent = Instant::now();
        let reply: Vec<redis::Value> = scripts::FETCH
            .key(q.base_key(&self.inner.name))
            .arg(n)
            .arg(cfg.lease.as_millis() as u64)
            .arg(&self.inner.worker)
            .arg(1000)
            .arg(cfg.dead_letter_cap)
            .arg(cfg.events_maxlen)
            .invoke_async(&mut c)
            .await?;
        let Some((next_due, rest)) = reply.split_first() else {
            return Err(QueueError::Protocol("fetch returned nothing".to_owned()));
        };
        let next_due = as_string(next_due)?.parse::<f64>().ok().map(|v| v as u64);
        let mut jobs = Vec::with_capacity(rest.len() / 5);
        for f in rest.chunks(5) {
            let [id, job_type, payload, attempt, enq] = f else {
                return Err(QueueError::Protocol(
                    "fetch reply has a partial job".to_owned(),
                ));
            };
            jobs.push(RawJob {
                id: as_string(id)?,
                queue: self.inner.name.clone(),
                job_type: as_string(job_type)?,
                payload: as_string(payload)?,
                attempt: as_u64(attempt)? as u32,
                enqueued_at_ms: as_string(enq)?.parse().ok(),
                cancel: CancellationToken::new(),
            });
        }
        if let Ok(mut m) = self.inner.in_flight.lock() {
            for j in &jobs {
                m.insert(
                    j.id.clone(),
                    InFlight {
                        attempt: j.attempt,
                        cancel: j.cancel.clone(),
                        leased_at: sent,
                        fenced: false,
                    },
                );
            }
        }
        Ok((jobs, next_due))
    }

    /// Leases jobs, waiting for work (a push notification, a due retry, or the poll
    /// interval) when there is none. Redis errors are logged and retried with backoff:
    /// the worker rides out a Redis restart instead of dying with its running jobs.
    pub(crate) async fn fetch_or_wait(self, start_delay: Duration) -> Vec<RawJob> {
        if !start_delay.is_zero() {
            tokio::time::sleep(start_delay).await;
        }
        let poll = self.inner.queue.config().poll_interval;
        let mut failures = 0u32;
        let mut wake = self.inner.notify.subscribe();
        loop {
            wake.borrow_and_update();
            let free = self
                .inner
                .opts
                .concurrency
                .saturating_sub(self.in_flight())
                .max(1);
            let n = free.min(self.inner.queue.config().fetch_batch);
            match self.fetch(n).await {
                Ok((jobs, next_due)) => {
                    if failures > 0 {
                        info!(queue = %self.inner.name, "redis reachable again; fetching resumed");
                        failures = 0;
                    }
                    if !jobs.is_empty() {
                        return jobs;
                    }
                    let wait = next_due
                        .map(Duration::from_millis)
                        .map_or(poll, |d| d.min(poll));
                    let _ = tokio::time::timeout(wait, wake.changed()).await;
                }
                Err(e) => {
                    failures += 1;
                    let delay = backoff(failures);
                    warn!(queue = %self.inner.name, error = %e, retry_in = ?delay,
                        "redis error while fetching jobs; reconnecting");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Records a run's outcome, retrying Redis errors for a while. Returns whether the
    /// run still held the job (false: its lease had expired and the outcome was dropped).
    pub(crate) async fn record(
        &self,
        id: &str,
        attempt: u32,
        outcome: &Outcome,
    ) -> Result<bool, QueueError> {
        if self.was_fenced(id, attempt) {
            // the run was stopped because its lease may have been lost: its outcome
            // (cancelled) is not the job's; give the job back if it is still ours
            let handed = self.hand_back(&[id.to_owned()]).await.unwrap_or(0);
            info!(
                job_id = id,
                attempt,
                handed_back = handed,
                "fenced run ended; outcome not recorded"
            );
            return Ok(false);
        }
        let mut tries = 0;
        let result = loop {
            match self
                .inner
                .queue
                .complete(&self.inner.name, id, attempt, &self.inner.worker, outcome)
                .await
            {
                Ok(applied) => break Ok(applied),
                Err(e) if tries < 6 => {
                    tries += 1;
                    let delay = backoff(tries + 2);
                    warn!(job_id = id, error = %e, retry_in = ?delay, "could not record job outcome; retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => break Err(e),
            }
        };
        self.forget(id);
        result
    }

    /// Drops a job from the in-flight set without telling Redis.
    pub(crate) fn forget(&self, id: &str) {
        if let Ok(mut m) = self.inner.in_flight.lock() {
            m.remove(id);
        }
    }

    /// Hands jobs back to the queue at once (their interrupted run is not counted).
    pub async fn hand_back(&self, ids: &[String]) -> Result<u64, QueueError> {
        if ids.is_empty() {
            return Ok(0);
        }
        for id in ids {
            self.forget(id);
        }
        let q = &self.inner.queue;
        let mut inv = scripts::HANDBACK.key(q.base_key(&self.inner.name));
        inv.arg(&self.inner.worker);
        for id in ids {
            inv.arg(id);
        }
        let mut c = q.conn.clone();
        Ok(inv.invoke_async(&mut c).await?)
    }

    /// Hands back every job this process holds from the queue (for shutdown), and
    /// cancels their handlers.
    pub async fn hand_back_all(&self) -> Result<u64, QueueError> {
        let ids = self.in_flight_ids();
        if let Ok(m) = self.inner.in_flight.lock() {
            for f in m.values() {
                f.cancel.cancel();
            }
        }
        let mut n = self.hand_back(&ids).await?;
        // a fetch whose reply this process never read (stopped mid-fetch) leased
        // jobs it does not know: they are ours by the worker field
        n += self.hand_back(&["*".to_owned()]).await?;
        if n > 0 {
            info!(queue = %self.inner.name, handed_back = n, "handed unfinished jobs back to the queue");
        }
        Ok(n)
    }

    /// Renews this process's leases, records the worker, stops lost or cancelled jobs,
    /// recovers jobs whose worker died and promotes due scheduled jobs.
    pub async fn heartbeat_once(&self) -> Result<(), QueueError> {
        let q = &self.inner.queue;
        let cfg = q.config();
        let base = q.base_key(&self.inner.name);
        let info = WorkerInfo {
            instance: self.inner.worker.clone(),
            host: self.inner.opts.host.clone(),
            pid: self.inner.opts.pid,
            queues: self.inner.opts.queues.clone(),
            concurrency: self.inner.opts.concurrency,
            in_flight: self.in_flight(),
            last_heartbeat_ms: now_ms(),
        };
        let info = serde_json::to_string(&info)
            .map_err(|e| QueueError::Protocol(format!("worker info: {e}")))?;
        let ids = self.in_flight_ids();
        let mut inv = scripts::RENEW.key(&base);
        inv.arg(cfg.lease.as_millis() as u64)
            .arg(&self.inner.worker)
            .arg(info)
            .arg((cfg.lease * 3).as_millis() as u64);
        for id in &ids {
            inv.arg(id);
        }
        let mut c = q.conn.clone();
        let sent = Instant::now();
        let stop: Vec<String> = inv.invoke_async(&mut c).await?;
        self.renewed(&ids, &stop, sent);
        for id in stop {
            self.signal_cancel(&id);
        }
        let recovered: u64 = scripts::REAP
            .key(&base)
            .arg(1000)
            .arg(cfg.max_lost_leases)
            .arg(cfg.dead_letter_cap)
            .arg(cfg.events_maxlen)
            .arg(cfg.result_ttl.as_millis() as u64)
            .arg(1000)
            .invoke_async(&mut c)
            .await?;
        if recovered > 0 {
            info!(queue = %self.inner.name, recovered, "requeued jobs of a worker that stopped heartbeating");
        }
        Ok(())
    }

    /// Records that the leases of `ids` (except `lost`) were extended by a request
    /// sent at `sent`.
    fn renewed(&self, ids: &[String], lost: &[String], sent: Instant) {
        if let Ok(mut m) = self.inner.in_flight.lock() {
            for id in ids.iter().filter(|id| !lost.contains(id)) {
                if let Some(f) = m.get_mut(id)
                    && f.leased_at < sent
                {
                    f.leased_at = sent;
                }
            }
        }
    }

    fn signal_cancel(&self, id: &str) {
        if let Ok(m) = self.inner.in_flight.lock()
            && let Some(f) = m.get(id)
        {
            debug!(
                job_id = id,
                attempt = f.attempt,
                "stopping job: cancelled or lease lost"
            );
            f.cancel.cancel();
        }
    }

    fn wake(&self) {
        self.inner.notify.send_modify(|v| *v = v.wrapping_add(1));
    }
}

impl ProgressSink for QueueConsumer {
    fn save_checkpoint(
        &self,
        job_id: &str,
        checkpoint: String,
    ) -> BoxFuture<'static, Result<(), String>> {
        let this = self.clone();
        let id = job_id.to_owned();
        async move {
            let stored = this
                .inner
                .queue
                .save_checkpoint(&this.inner.name, &id, &this.inner.worker, &checkpoint)
                .await
                .map_err(|e| e.to_string())?;
            if stored {
                Ok(())
            } else {
                Err("this run no longer holds the job".to_owned())
            }
        }
        .boxed()
    }

    fn load_checkpoint(&self, job_id: &str) -> BoxFuture<'static, Result<Option<String>, String>> {
        let this = self.clone();
        let id = job_id.to_owned();
        async move {
            this.inner
                .queue
                .checkpoint(&this.inner.name, &id)
                .await
                .map_err(|e| e.to_string())
        }
        .boxed()
    }

    fn cancel_requested(&self, job_id: &str) -> BoxFuture<'static, Result<bool, String>> {
        let this = self.clone();
        let id = job_id.to_owned();
        async move {
            this.inner
                .queue
                .job(&this.inner.name, &id)
                .await
                .map(|state| state.is_some_and(|s| s.cancel_requested))
                .map_err(|e| e.to_string())
        }
        .boxed()
    }

    fn report(&self, job_id: &str, progress: Progress) -> BoxFuture<'static, Result<(), String>> {
        let this = self.clone();
        let id = job_id.to_owned();
        async move {
            this.inner
                .queue
                .report_progress(&this.inner.name, &id, &this.inner.worker, &progress)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        .boxed()
    }
}

/// 100 ms doubling up to 5 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << failures.min(6).saturating_sub(1)))
        .min(Duration::from_secs(5))
}

async fn heartbeat_loop(weak: Weak<Inner>) {
    let period = match weak.upgrade() {
        Some(inner) => inner.queue.config().heartbeat,
        None => return,
    };
    let mut failures = 0u32;
    loop {
        tokio::time::sleep(period).await;
        let Some(inner) = weak.upgrade() else { return };
        let consumer = QueueConsumer { inner };
        match consumer.heartbeat_once().await {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                warn!(queue = %consumer.inner.name, error = %e, failures, "heartbeat failed; leases may expire if Redis stays away");
            }
        }
    }
}

/// Watches the in-flight jobs' leases (see the module docs), independently of the
/// heartbeat (which may hang on a dead connection).
async fn fence_loop(weak: Weak<Inner>) {
    let period = match weak.upgrade() {
        Some(inner) => (inner.queue.config().effective_fence_margin() / 4)
            .clamp(Duration::from_millis(20), Duration::from_millis(250)),
        None => return,
    };
    loop {
        tokio::time::sleep(period).await;
        let Some(inner) = weak.upgrade() else { return };
        QueueConsumer { inner }.fence_expiring();
    }
}

async fn pubsub_loop(weak: Weak<Inner>) {
    let mut failures = 0u32;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let queue = inner.queue.clone();
        let notify_ch = queue.notify_channel(&inner.name);
        let cancel_ch = queue.cancel_channel(&inner.name);
        drop(inner);
        match queue
            .subscribe(&[notify_ch.clone(), cancel_ch.clone()])
            .await
        {
            Ok(mut stream) => {
                failures = 0;
                if let Some(inner) = weak.upgrade() {
                    QueueConsumer { inner }.wake();
                }
                while let Some(msg) = stream.next().await {
                    let Some(inner) = weak.upgrade() else { return };
                    let consumer = QueueConsumer { inner };
                    if msg.channel == cancel_ch {
                        consumer.signal_cancel(&msg.payload);
                    } else {
                        consumer.wake();
                    }
                }
                debug!(channel = %notify_ch, "pub/sub connection closed; resubscribing");
            }
            Err(e) => {
                failures += 1;
                let delay = backoff(failures);
                warn!(channel = %notify_ch, error = %e, retry_in = ?delay, "cannot subscribe for new-work notifications; polling meanwhile");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod parking_tests {
    //! Parking against a real Redis (the shared one, a prefix of its own).

    use std::time::Duration;

    use genq_core::{JobError, JobStatus};

    use super::*;
    use crate::{NewJob, RedisConfig, queue::Outcome};

    /// A queue `video` under a prefix of its own with `n` jobs pushed and fetched
    /// (running on worker `w-1`): the prefix, the queue, its consumer, the ids.
    async fn running_jobs(n: usize) -> (String, RedisQueue, QueueConsumer, Vec<String>) {
        let prefix = genq_testkit::unique_prefix("parking");
        let queue =
            RedisQueue::connect(RedisConfig::with_url(genq_testkit::redis_url()).prefix(&prefix))
                .await
                .expect("connect");
        let mut ids = Vec::new();
        for _ in 0..n {
            let pushed = queue.push(NewJob::new("video", "probe", "{}")).await;
            ids.push(pushed.expect("push").id);
        }
        let consumer =
            QueueConsumer::start(queue.clone(), "video", "w-1", ConsumerOptions::default())
                .await
                .expect("consumer");
        let (jobs, _) = consumer.fetch(n).await.expect("fetch");
        assert_eq!(jobs.len(), n);
        (prefix, queue, consumer, ids)
    }

    /// Records run 1 of `id` as parked for 600 s.
    async fn park(consumer: &QueueConsumer, id: &str) {
        let park = JobError::parked("waiting on task t-1", Duration::from_secs(600));
        let outcome = Outcome::Deferred {
            after: Duration::from_secs(600),
            error: park,
        };
        assert!(consumer.record(id, 1, &outcome).await.expect("record"));
    }

    async fn parked_run(wake_while_running: bool) -> genq_core::JobState {
        let (prefix, queue, consumer, ids) = running_jobs(1).await;
        let id = &ids[0];
        if wake_while_running {
            // the vendor's webhook arrives while the run still polls in its slot
            assert!(queue.wake("video", id).await.expect("wake"));
        }
        park(&consumer, id).await;
        let state = queue.job("video", id).await.expect("read").expect("job");
        genq_testkit::cleanup_prefix(&genq_testkit::redis_url(), &prefix).await;
        state
    }

    #[tokio::test]
    async fn a_park_is_not_an_attempt_and_waits_its_interval() {
        let state = parked_run(false).await;
        assert_eq!(
            (state.status, state.parked, state.attempts),
            (JobStatus::Scheduled, true, 0)
        );
        let wait = state
            .due_at_ms
            .unwrap_or(0)
            .saturating_sub(state.started_at_ms.unwrap_or(0));
        assert!(wait >= 590_000, "due in about 600 s: {wait} ms");
    }

    #[tokio::test]
    async fn a_webhook_during_the_run_makes_its_park_due_at_once() {
        let state = parked_run(true).await;
        assert_eq!((state.status, state.parked), (JobStatus::Scheduled, true));
        let wait = state
            .due_at_ms
            .unwrap_or(0)
            .saturating_sub(state.started_at_ms.unwrap_or(0));
        assert!(wait < 10_000, "due at once, not in 600 s: {wait} ms");
    }

    /// Cancelled while parked, and again once due: the job stays to be run (first
    /// in line), with a cancel its run sees but the heartbeat does not act on.
    #[tokio::test]
    async fn a_cancelled_parked_job_is_run_to_stop_its_vendor_task() {
        let (prefix, queue, consumer, ids) = running_jobs(2).await;
        let (other, id) = (ids[0].clone(), ids[1].clone());
        park(&consumer, &id).await;
        // the other job goes back to the queue first, as a backlog
        consumer
            .hand_back(std::slice::from_ref(&other))
            .await
            .expect("hand back");

        let cancel = queue.cancel("video", &id).await.expect("cancel");
        assert_eq!(cancel, crate::CancelOutcome::Signalled);
        let state = queue.job("video", &id).await.expect("read").expect("job");
        assert_eq!(
            (state.status, state.cancel_requested),
            (JobStatus::Queued, true)
        );
        // cancelled again while it waits to run: still run, not ended unstopped
        let again = queue.cancel("video", &id).await.expect("cancel");
        assert_eq!(again, crate::CancelOutcome::Signalled);
        // it runs before the backlog, and the heartbeat does not stop it
        let (jobs, _) = consumer.fetch(1).await.expect("fetch");
        assert_eq!(jobs.first().map(|j| j.id.as_str()), Some(id.as_str()));
        let mut renew = crate::scripts::RENEW.key(queue.base_key("video"));
        renew
            .arg(30_000u64)
            .arg("w-1")
            .arg("{}")
            .arg(90_000u64)
            .arg(&id);
        let mut c = queue.connection();
        let stop: Vec<String> = renew.invoke_async(&mut c).await.expect("renew");
        assert!(
            !stop.contains(&id),
            "the heartbeat leaves a parked cancel to its run"
        );
        let state = queue.job("video", &id).await.expect("read").expect("job");
        assert_eq!(
            (state.status, state.cancel_requested),
            (JobStatus::Running, true)
        );
        genq_testkit::cleanup_prefix(&genq_testkit::redis_url(), &prefix).await;
    }
}
