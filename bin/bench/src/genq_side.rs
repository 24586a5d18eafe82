//! genq's side of the benchmark: the full worker runtime (all middleware, metrics)
//! on genq's Redis backend, with one bench job type that counts its runs.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use genq_core::{Job, JobContext, JobError, Registry};
use genq_metrics::WorkerMetrics;
use genq_redis::{NewJob, RedisConfig, RedisQueue};
use genq_runtime::{WorkerRuntime, WorkerSettings};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::{now_us, wait_for_count};

const QUEUE: &str = "bench";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct BenchPayload {
    pushed_at_us: u64,
    sleep_ms: u64,
}

/// Sleeps as asked, counts its runs, records push-to-start delays.
#[derive(Clone, Default)]
struct BenchJob {
    done: Arc<AtomicUsize>,
    delays: Arc<Mutex<Vec<Duration>>>,
}

impl Job for BenchJob {
    type Payload = BenchPayload;
    type Output = ();
    const NAME: &'static str = "bench";
    const DEFAULT_QUEUE: &'static str = QUEUE;

    fn timeout(&self) -> Duration {
        Duration::from_secs(600)
    }

    async fn run(&self, p: BenchPayload, _ctx: JobContext) -> Result<(), JobError> {
        let delay = Duration::from_micros(now_us().saturating_sub(p.pushed_at_us));
        if let Ok(mut d) = self.delays.lock() {
            d.push(delay);
        }
        if p.sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(p.sleep_ms)).await;
        }
        self.done.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

async fn connect(url: &str, ns: &str) -> anyhow::Result<RedisQueue> {
    RedisQueue::connect(RedisConfig::with_url(url).prefix(ns))
        .await
        .with_context(|| format!("connecting genq to {url}"))
}

fn job(sleep_ms: u64) -> anyhow::Result<NewJob> {
    let payload = BenchPayload {
        pushed_at_us: now_us(),
        sleep_ms,
    };
    Ok(NewJob::json(QUEUE, BenchJob::NAME, &payload)?)
}

/// A worker runtime serving the bench queue, stopped by the returned sender.
struct RunningWorker {
    stop: oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<Result<(), genq_runtime::WorkerError>>,
}

impl RunningWorker {
    async fn start(queue: &RedisQueue, job: BenchJob, concurrency: usize) -> anyhow::Result<Self> {
        Self::start_on(queue, job, concurrency, vec![QUEUE.to_owned()]).await
    }

    async fn start_on(
        queue: &RedisQueue,
        job: BenchJob,
        concurrency: usize,
        queues: Vec<String>,
    ) -> anyhow::Result<Self> {
        let mut registry = Registry::new();
        registry.register(job)?;
        let metrics = WorkerMetrics::new(&prometheus::Registry::new())?;
        let mut settings = WorkerSettings::new(queues);
        settings.concurrency = concurrency;
        settings.grace = Duration::from_secs(1);
        let runtime =
            WorkerRuntime::start(Arc::new(registry), queue.clone(), metrics, settings).await?;
        let (stop, rx) = oneshot::channel();
        let handle = tokio::spawn(runtime.run(async move {
            let _ = rx.await;
        }));
        Ok(Self { stop, handle })
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .context("worker did not stop")???;
        Ok(())
    }
}

pub async fn push_single(url: &str, ns: &str, n: usize, concurrency: usize) -> anyhow::Result<f64> {
    let queue = connect(url, ns).await?;
    let per_task = n / concurrency;
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let queue = queue.clone();
            tokio::spawn(async move {
                for _ in 0..per_task {
                    queue.push(job(0)?).await?;
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok((per_task * concurrency) as f64 / started.elapsed().as_secs_f64())
}

pub async fn push_bulk(url: &str, ns: &str, n: usize, batch: usize) -> anyhow::Result<f64> {
    let queue = connect(url, ns).await?;
    let started = Instant::now();
    let pushed = push_backlog(&queue, n, batch, 0).await?;
    Ok(pushed as f64 / started.elapsed().as_secs_f64())
}

/// Pushes `n` (rounded down to whole batches) jobs in bulk; returns how many.
async fn push_backlog(
    queue: &RedisQueue,
    n: usize,
    batch: usize,
    sleep_ms: u64,
) -> anyhow::Result<usize> {
    for _ in 0..n / batch {
        let jobs = (0..batch)
            .map(|_| job(sleep_ms))
            .collect::<anyhow::Result<Vec<_>>>()?;
        queue.push_bulk(jobs).await?;
    }
    Ok(n / batch * batch)
}

/// Pushes a backlog, then times one worker process draining it (from its start).
async fn timed_drain(
    url: &str,
    ns: &str,
    n: usize,
    sleep_ms: u64,
    concurrency: usize,
) -> anyhow::Result<(usize, Duration)> {
    let queue = connect(url, ns).await?;
    let pushed = push_backlog(&queue, n, 1000, sleep_ms).await?;
    let bench = BenchJob::default();
    let done = bench.done.clone();
    let started = Instant::now();
    let worker = RunningWorker::start(&queue, bench, concurrency).await?;
    wait_for_count(&done, pushed, Duration::from_secs(600)).await?;
    let took = started.elapsed();
    worker.stop().await?;
    Ok((pushed, took))
}

pub async fn drain_noop(url: &str, ns: &str, n: usize, concurrency: usize) -> anyhow::Result<f64> {
    let (pushed, took) = timed_drain(url, ns, n, 0, concurrency).await?;
    Ok(pushed as f64 / took.as_secs_f64())
}

pub async fn push_to_start(url: &str, ns: &str, samples: usize) -> anyhow::Result<Vec<Duration>> {
    let queue = connect(url, ns).await?;
    let bench = BenchJob::default();
    let (done, delays) = (bench.done.clone(), bench.delays.clone());
    let worker = RunningWorker::start(&queue, bench, 100).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..samples {
        queue.push(job(0)?).await?;
        wait_for_count(&done, i + 1, Duration::from_secs(10)).await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    worker.stop().await?;
    let out = delays.lock().map(|d| d.clone()).unwrap_or_default();
    Ok(out)
}

pub async fn sleep_drain(
    url: &str,
    ns: &str,
    n: usize,
    sleep: Duration,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    let (_, took) = timed_drain(url, ns, n, sleep.as_millis() as u64, concurrency).await?;
    Ok(took)
}

/// `n` no-op jobs spread evenly over `queues`, drained by one worker runtime
/// serving them all (`concurrency` per queue); jobs per second from its start.
pub async fn drain_queues(
    url: &str,
    ns: &str,
    queues: &[String],
    n: usize,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let queue = connect(url, ns).await?;
    let per_queue = n / queues.len().max(1);
    for q in queues {
        for _ in 0..per_queue / 1000 {
            let jobs = (0..1000)
                .map(|_| {
                    let mut j = job(0)?;
                    j.queue = q.clone();
                    Ok(j)
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            queue.push_bulk(jobs).await?;
        }
    }
    let pushed = per_queue / 1000 * 1000 * queues.len();
    let bench = BenchJob::default();
    let done = bench.done.clone();
    let started = Instant::now();
    let worker = RunningWorker::start_on(&queue, bench, concurrency, queues.to_vec()).await?;
    wait_for_count(&done, pushed, Duration::from_secs(600)).await?;
    let took = started.elapsed();
    worker.stop().await?;
    Ok(pushed as f64 / took.as_secs_f64())
}
