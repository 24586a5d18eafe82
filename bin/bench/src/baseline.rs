//! The apalis-redis 1.0 side of the benchmark.
//!
//! Every benchmark works on its own apalis queue, `{ns}:apalis-<bench>`, so all
//! the keys it creates start with `{ns}:`. Exception: apalis-redis also records
//! every queue a worker registers on in the global sorted set
//! `core:apalis:queues:list`. Nothing is cleaned up here; the caller deletes
//! the keys.
//!
//! Behaviour of apalis-redis 1.0.0 that shapes this module (measured on the
//! benchmark machine, explained by reading its source):
//!
//! * A bare `RedisStorage` never polls by itself. Every push lands in the
//!   `scheduled` sorted set (the push script clamps `run_at` to "now"), so the
//!   pub/sub "available" signal never fires. Workers therefore get an explicit
//!   interval poll strategy (see `POLL_INTERVAL` and `SteadyPoll`).
//! * `fetch_next.lua` moves *all* due scheduled jobs to the active list with a
//!   single `unpack`. With more than ~8,000 ids that fails with "too many
//!   results to unpack". So a queue that a worker consumes never holds more
//!   than `MAX_DUE` outstanding jobs: `drain_noop` pushes and drains in waves,
//!   and `sleep_drain` tops the queue up as jobs complete. The push-only
//!   benchmarks run no worker and have no such limit.
//! * The backend reschedules failed jobs, so the handler never fails.
//! * A worker name stays in the workers set after the worker stops, and
//!   registering it again within the orphan threshold fails. So every worker
//!   here gets a name that is used only once per namespace.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, ensure};
use apalis::layers::WorkerBuilderExt as _;
use apalis_core::backend::TaskSink as _;
use apalis_core::backend::ext::BackendExt as _;
use apalis_core::backend::ext::poll_strategy::{PollSnapshot, PollStrategy};
use apalis_core::error::WorkerError;
use apalis_core::task::data::Data;
use apalis_core::worker::builder::WorkerBuilder;
use apalis_redis::{Config, RedisStorage};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::{JoinError, JoinSet};
use tokio::time::MissedTickBehavior;

/// How often an idle worker polls Redis for new jobs.
///
/// A busy worker is not held back by this: it fetches its next batch as soon
/// as its buffer is empty. The interval only bounds how late an idle worker
/// notices new jobs, so it adds about half of it to the push-to-start latency.
/// 10 ms is five times the 1-2 ms at which the stock interval strategy was
/// seen to stall, and an idle worker then makes 100 cheap fetches a second.
/// `SteadyPoll` explains why this module does not use the stock strategy.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Most jobs a consumed queue may hold at once. This stays well below the
/// ~8,000 due jobs at which `fetch_next.lua` fails (see the module docs).
const MAX_DUE: usize = 5_000;

/// Jobs per bulk push when filling or topping up a queue that a worker drains.
const FILL_CHUNK: usize = 1_000;

/// Upper bound on the run time of each public benchmark function.
const RUN_LIMIT: Duration = Duration::from_secs(600);

/// How long a stopped worker may take to finish before it is aborted.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How often the driver checks the completion counter.
const PROGRESS_TICK: Duration = Duration::from_millis(2);

/// Pause between two pushes in `push_to_start`.
const SAMPLE_SPACING: Duration = Duration::from_millis(5);

/// Worker concurrency in `push_to_start`. The jobs are no-ops, so this only
/// has to be large enough that jobs fetched together in one poll start
/// together.
const LATENCY_CONCURRENCY: usize = 8;

/// The apalis-redis storage used by every benchmark.
type Storage = RedisStorage<BenchJob>;

/// The benchmark job: when it was pushed and how long the handler sleeps.
#[derive(Serialize, Deserialize, Clone)]
struct BenchJob {
    /// Wall-clock push time, in microseconds since the Unix epoch.
    pushed_at_us: u64,
    /// How long the handler sleeps, in microseconds (0 for a no-op job).
    sleep_us: u64,
}

impl BenchJob {
    /// A job stamped with the current time.
    fn new(sleep: Duration) -> Self {
        Self {
            pushed_at_us: unix_micros(),
            sleep_us: saturating_micros(sleep),
        }
    }
}

/// Completion tracking shared by a worker's handler and the benchmark driver.
struct Progress {
    /// When the run started, normally just before its worker is spawned.
    origin: Instant,
    /// Number of jobs whose handler has finished.
    done: AtomicUsize,
    /// Latest handler finish, in nanoseconds after `origin`.
    last_done_ns: AtomicU64,
    /// Delays from push to handler start, if this run records them.
    delays: Option<Mutex<Vec<Duration>>>,
}

impl Progress {
    /// Starts tracking a run now. Push-to-start delays are kept only if
    /// `record_delays` is true.
    fn start(record_delays: bool) -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            done: AtomicUsize::new(0),
            last_done_ns: AtomicU64::new(0),
            delays: record_delays.then(|| Mutex::new(Vec::new())),
        })
    }

    /// Records one finished job and how long it waited between push and start.
    fn complete(&self, delay: Duration) {
        if let Some(delays) = &self.delays {
            delays
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(delay);
        }
        let finished_ns = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_done_ns.fetch_max(finished_ns, Ordering::AcqRel);
        self.done.fetch_add(1, Ordering::AcqRel);
    }

    /// Number of jobs finished so far.
    fn done(&self) -> usize {
        self.done.load(Ordering::Acquire)
    }

    /// Time from `origin` to the latest job completion.
    fn until_last_done(&self) -> Duration {
        Duration::from_nanos(self.last_done_ns.load(Ordering::Acquire))
    }

    /// Takes the delays recorded so far, leaving an empty list.
    fn take_delays(&self) -> Vec<Duration> {
        self.delays.as_ref().map_or_else(Vec::new, |delays| {
            std::mem::take(&mut *delays.lock().unwrap_or_else(PoisonError::into_inner))
        })
    }
}

/// The handler: records the delay from push to start, sleeps if asked, then
/// counts the job as done. It never fails, because the backend would
/// reschedule a failed job.
async fn handle_job(job: BenchJob, progress: Data<Arc<Progress>>) {
    let delay = Duration::from_micros(unix_micros().saturating_sub(job.pushed_at_us));
    if job.sleep_us > 0 {
        tokio::time::sleep(Duration::from_micros(job.sleep_us)).await;
    }
    progress.complete(delay);
}

/// Wakes the worker every `POLL_INTERVAL` and never loses a wake-up.
///
/// This is a fix for a flaw in apalis-core 1.0.0, used through its public
/// `PollStrategy` extension point. The stock `IntervalStrategy`
/// (`poll_with_interval`) re-arms its timer when the timer fires, but does not
/// poll the new timer. `PollWith` polls the strategy only before each fetch.
/// So if the next fetch, together with any lock/ack flush, takes longer than
/// one interval, the idle worker parks with no timer armed. It then wakes only
/// at the next heartbeat (every 30 s) or task completion. This is the likely
/// cause of the measured stalls at 1-2 ms. It can matter at 10 ms too:
/// with thousands of jobs in flight, one lock/ack flush can run for tens of
/// milliseconds. `poll_drive` below consumes every elapsed tick until the
/// interval returns `Pending`, so a wake-up is always registered.
struct SteadyPoll(tokio::time::Interval);

impl SteadyPoll {
    /// A strategy that first fires at once, then every `POLL_INTERVAL`.
    fn new() -> Self {
        let mut interval = tokio::time::interval(POLL_INTERVAL);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self(interval)
    }
}

impl PollStrategy for SteadyPoll {
    fn poll_drive(&mut self, cx: &mut Context<'_>, _: &PollSnapshot) -> Poll<Option<()>> {
        let mut fired = false;
        while self.0.poll_tick(cx).is_ready() {
            fired = true;
        }
        if fired {
            Poll::Ready(Some(()))
        } else {
            Poll::Pending
        }
    }
}

/// An apalis worker running on its own tokio task.
///
/// Dropping it (for example on an error path) aborts the worker task.
struct RunningWorker {
    /// Asks the worker to shut down gracefully.
    stop: oneshot::Sender<()>,
    /// Holds only the worker task. A `JoinSet` aborts the task when dropped.
    task: JoinSet<Result<(), WorkerError>>,
}

impl RunningWorker {
    /// Spawns a worker called `name`. It consumes `storage` with up to
    /// `concurrency` jobs in flight and reports to `progress`.
    fn spawn(storage: Storage, name: &str, concurrency: usize, progress: Arc<Progress>) -> Self {
        let (stop, stop_requested) = oneshot::channel::<()>();
        let worker = WorkerBuilder::new(name)
            .backend(storage.poll_with_strategy(SteadyPoll::new()))
            .data(progress)
            .concurrency(concurrency)
            .build(handle_job);
        let mut task = JoinSet::new();
        task.spawn(worker.run_until(async move {
            // A dropped sender also means "stop".
            let _ = stop_requested.await;
            Ok::<(), WorkerError>(())
        }));
        Self { stop, task }
    }

    /// Waits until at least `target` jobs are done. Fails if the worker exits
    /// first.
    async fn wait_for(&mut self, progress: &Progress, target: usize) -> anyhow::Result<()> {
        while progress.done() < target {
            self.tick()
                .await
                .with_context(|| format!("{} of {target} jobs done", progress.done()))?;
        }
        Ok(())
    }

    /// Sleeps for one progress tick. Fails if the worker exits in the meantime.
    async fn tick(&mut self) -> anyhow::Result<()> {
        tokio::select! {
            exited = self.task.join_next() => Err(early_exit(exited)),
            () = tokio::time::sleep(PROGRESS_TICK) => Ok(()),
        }
    }

    /// Stops the worker and waits for its task to end. If it does not end
    /// within `STOP_GRACE`, the task is aborted and a warning is printed.
    async fn stop(self) -> anyhow::Result<()> {
        let Self { stop, mut task } = self;
        // An error only means that the worker has already gone away.
        let _ = stop.send(());
        match tokio::time::timeout(STOP_GRACE, task.join_next()).await {
            Ok(Some(joined)) => joined
                .context("apalis worker task panicked")?
                .context("apalis worker failed while stopping"),
            Ok(None) => Ok(()),
            Err(_) => {
                task.abort_all();
                while task.join_next().await.is_some() {}
                eprintln!("warning: apalis worker did not stop within {STOP_GRACE:?}; aborted it");
                Ok(())
            }
        }
    }
}

/// Describes why a worker task ended before its jobs were done.
fn early_exit(exited: Option<Result<Result<(), WorkerError>, JoinError>>) -> anyhow::Error {
    match exited {
        Some(Ok(Ok(()))) => anyhow!("apalis worker stopped before its jobs were done"),
        Some(Ok(Err(error))) => anyhow!(error).context("apalis worker failed"),
        Some(Err(error)) => anyhow!(error).context("apalis worker task panicked"),
        None => anyhow!("apalis worker task had already ended"),
    }
}

/// Push `n` jobs one call per job from `concurrency` tasks in parallel; returns jobs/s.
pub async fn push_single(url: &str, ns: &str, n: usize, concurrency: usize) -> anyhow::Result<f64> {
    ensure!(
        n > 0 && concurrency > 0,
        "push_single needs n > 0 and concurrency > 0"
    );
    within("push_single", async {
        let storage = open_storage(url, &queue_name(ns, "push-single"), 1).await?;
        let started = Instant::now();
        let mut pushers = JoinSet::new();
        for share in shares(n, concurrency) {
            let mut storage = storage.clone();
            pushers.spawn(async move {
                for _ in 0..share {
                    push_one(&mut storage).await?;
                }
                anyhow::Ok(())
            });
        }
        while let Some(joined) = pushers.join_next().await {
            joined.context("push task panicked")??;
        }
        Ok(per_second(n, started.elapsed()))
    })
    .await
}

/// Push `n` jobs in batches of `batch` (apalis-redis bulk push API); returns jobs/s.
///
/// Each batch is one `TaskSink::push_bulk` call, which runs as a single
/// `batch_push.lua` invocation. No worker consumes this queue, so `n` is not
/// limited by the due-jobs cap.
pub async fn push_bulk(url: &str, ns: &str, n: usize, batch: usize) -> anyhow::Result<f64> {
    ensure!(n > 0 && batch > 0, "push_bulk needs n > 0 and batch > 0");
    within("push_bulk", async {
        let mut storage = open_storage(url, &queue_name(ns, "push-bulk"), 1).await?;
        let started = Instant::now();
        push_jobs(&mut storage, n, batch, Duration::ZERO).await?;
        Ok(per_second(n, started.elapsed()))
    })
    .await
}

/// Pre-push `n` no-op jobs, then time one worker (concurrency `concurrency`)
/// draining them all; returns jobs/s.
///
/// Because of the ~8,000-due-jobs limit, `n` is split into waves of at most
/// `MAX_DUE` jobs. Each wave is pushed while no worker runs, then drained by a
/// new worker that is stopped afterwards. Only the draining is timed, from
/// spawning the worker to its last job completing. The rate is `n` divided by
/// the summed drain times.
pub async fn drain_noop(url: &str, ns: &str, n: usize, concurrency: usize) -> anyhow::Result<f64> {
    ensure!(
        n > 0 && concurrency > 0,
        "drain_noop needs n > 0 and concurrency > 0"
    );
    within("drain_noop", async {
        let queue = queue_name(ns, "drain-noop");
        let mut pusher = open_storage(url, &queue, concurrency).await?;
        let storage = open_storage(url, &queue, concurrency).await?;
        let mut draining = Duration::ZERO;
        for (wave, size) in waves(n).enumerate() {
            push_jobs(&mut pusher, size, FILL_CHUNK, Duration::ZERO).await?;
            let progress = Progress::start(false);
            let name = format!("{queue}-worker-{wave}");
            let mut worker =
                RunningWorker::spawn(storage.clone(), &name, concurrency, progress.clone());
            worker
                .wait_for(&progress, size)
                .await
                .with_context(|| format!("draining wave {wave}"))?;
            draining += progress.until_last_done();
            worker.stop().await?;
        }
        Ok(per_second(n, draining))
    })
    .await
}

/// With an idle worker running, push `samples` jobs one at a time (about 5 ms
/// apart), each carrying its push time; the handler records the delay from push
/// to handler start. Returns the delays.
///
/// A warm-up job is pushed and completed first, so the worker is registered
/// and polling when sampling starts. Its delay is discarded. The delays come
/// back in handler-start order. Expect them to be dominated by the 10 ms idle
/// poll interval.
pub async fn push_to_start(url: &str, ns: &str, samples: usize) -> anyhow::Result<Vec<Duration>> {
    ensure!(samples > 0, "push_to_start needs samples > 0");
    within("push_to_start", async {
        let queue = queue_name(ns, "push-to-start");
        let mut pusher = open_storage(url, &queue, LATENCY_CONCURRENCY).await?;
        let storage = open_storage(url, &queue, LATENCY_CONCURRENCY).await?;
        let progress = Progress::start(true);
        let name = format!("{queue}-worker");
        let mut worker =
            RunningWorker::spawn(storage, &name, LATENCY_CONCURRENCY, progress.clone());

        push_one(&mut pusher).await?;
        worker
            .wait_for(&progress, 1)
            .await
            .context("waiting for the warm-up job")?;
        progress.take_delays();

        let mut spacing = tokio::time::interval(SAMPLE_SPACING);
        spacing.set_missed_tick_behavior(MissedTickBehavior::Delay);
        for _ in 0..samples {
            spacing.tick().await;
            push_one(&mut pusher).await?;
        }
        worker
            .wait_for(&progress, samples + 1)
            .await
            .context("waiting for the sampled jobs")?;
        worker.stop().await?;
        Ok(progress.take_delays())
    })
    .await
}

/// Push `n` jobs that each sleep `sleep` (`tokio::time::sleep`) and drain them
/// with concurrency `concurrency`; returns the wall time from worker start to
/// the last job's completion.
///
/// Because of the ~8,000-due-jobs limit, at most `MAX_DUE` jobs are pushed
/// before the worker starts. The rest are pushed in bulk chunks of
/// `FILL_CHUNK` while it runs, whenever fewer than `MAX_DUE` jobs are
/// outstanding (pushed but not done). Those top-up pushes fall inside the
/// measured time for `n > MAX_DUE`.
pub async fn sleep_drain(
    url: &str,
    ns: &str,
    n: usize,
    sleep: Duration,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    ensure!(
        n > 0 && concurrency > 0,
        "sleep_drain needs n > 0 and concurrency > 0"
    );
    within("sleep_drain", async {
        let queue = queue_name(ns, "sleep-drain");
        let mut pusher = open_storage(url, &queue, concurrency).await?;
        let storage = open_storage(url, &queue, concurrency).await?;
        let prefilled = n.min(MAX_DUE);
        push_jobs(&mut pusher, prefilled, FILL_CHUNK, sleep).await?;

        let progress = Progress::start(false);
        let name = format!("{queue}-worker");
        let mut worker = RunningWorker::spawn(storage, &name, concurrency, progress.clone());
        top_up_until_done(&mut worker, &mut pusher, &progress, prefilled, n, sleep).await?;
        worker.stop().await?;
        Ok(progress.until_last_done())
    })
    .await
}

/// Waits until `total` jobs are done. Meanwhile it pushes the jobs not yet
/// pushed (`pushed` so far), one chunk at a time, while that keeps at most
/// `MAX_DUE` jobs outstanding.
async fn top_up_until_done(
    worker: &mut RunningWorker,
    pusher: &mut Storage,
    progress: &Progress,
    mut pushed: usize,
    total: usize,
    sleep: Duration,
) -> anyhow::Result<()> {
    loop {
        let done = progress.done();
        if done >= total {
            return Ok(());
        }
        let chunk = FILL_CHUNK.min(total - pushed);
        let outstanding = pushed.saturating_sub(done);
        if chunk > 0 && outstanding + chunk <= MAX_DUE {
            push_jobs(pusher, chunk, chunk, sleep).await?;
            pushed += chunk;
        } else {
            worker
                .tick()
                .await
                .with_context(|| format!("{done} of {total} jobs done"))?;
        }
    }
}

/// Pushes one no-op job with a single `TaskSink::push` call.
async fn push_one(storage: &mut Storage) -> anyhow::Result<()> {
    storage
        .push(BenchJob::new(Duration::ZERO))
        .await
        .context("apalis-redis push failed")
}

/// Pushes `count` jobs sleeping `sleep`, using one `push_bulk` call per
/// `chunk` jobs.
async fn push_jobs(
    storage: &mut Storage,
    count: usize,
    chunk: usize,
    sleep: Duration,
) -> anyhow::Result<()> {
    let mut left = count;
    while left > 0 {
        let size = chunk.min(left);
        let jobs = vec![BenchJob::new(sleep); size];
        storage
            .push_bulk(jobs)
            .await
            .with_context(|| format!("apalis-redis bulk push of {size} jobs failed"))?;
        left -= size;
    }
    Ok(())
}

/// Connects to Redis and returns a storage for `queue`. Its fetch batch is
/// sized for a worker running `concurrency` jobs at a time.
///
/// The fetch batch is `2 * concurrency`, clamped to 10..=1,000. Each batch is
/// one `fetch_next.lua` call. A buffer of two full refills keeps every slot
/// busy while the next fetch is in flight. The floor is the crate default.
/// The cap keeps each script (one `unpack` and one `HGETALL` per job) short
/// and far from the Lua unpack limit. The batch also sizes the worker's
/// lock/ack event channel (4x batch).
async fn open_storage(url: &str, queue: &str, concurrency: usize) -> anyhow::Result<Storage> {
    let connection = apalis_redis::connect(url)
        .await
        .with_context(|| format!("connecting apalis-redis to {url}"))?;
    let fetch_batch = concurrency.saturating_mul(2).clamp(10, 1_000);
    let config = Config::default().queue(queue).batch_size(fetch_batch);
    Ok(RedisStorage::new(connection).with_config(config))
}

/// The apalis queue name for benchmark `bench` in namespace `ns`.
fn queue_name(ns: &str, bench: &str) -> String {
    format!("{ns}:apalis-{bench}")
}

/// Splits `n` jobs into `parts` near-equal shares.
fn shares(n: usize, parts: usize) -> impl Iterator<Item = usize> {
    (0..parts).map(move |part| n / parts + usize::from(part < n % parts))
}

/// Splits `n` jobs into waves of at most `MAX_DUE`.
fn waves(n: usize) -> impl Iterator<Item = usize> {
    (0..n)
        .step_by(MAX_DUE)
        .map(move |start| MAX_DUE.min(n - start))
}

/// Runs a benchmark body, failing if it takes longer than `RUN_LIMIT`.
async fn within<T>(
    bench: &str,
    body: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(RUN_LIMIT, body)
        .await
        .with_context(|| format!("apalis-redis {bench} did not finish within {RUN_LIMIT:?}"))?
        .with_context(|| format!("apalis-redis {bench}"))
}

/// Jobs per second for `jobs` jobs over `elapsed`.
fn per_second(jobs: usize, elapsed: Duration) -> f64 {
    jobs as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
}

/// Current wall-clock time in microseconds since the Unix epoch.
fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, saturating_micros)
}

/// `duration` in whole microseconds, saturating at `u64::MAX`.
fn saturating_micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}
