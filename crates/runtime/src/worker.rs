//! [`WorkerRuntime`]: one apalis worker per served queue, on genq's Redis backend,
//! supervised by an apalis `Monitor`.

use std::{future::Future, sync::Arc, time::Duration};

use apalis::layers::limit::ConcurrencyLimitLayer;
use apalis_core::{monitor::Monitor, worker::builder::WorkerBuilder};
use genq_core::{JobSpawner, ProgressSink, Registry, validate_queue_name};
use genq_metrics::WorkerMetrics;
use genq_redis::{ConsumerOptions, QueueConsumer, QueueError, RedisQueue};
use tracing::{error, info, warn};

use crate::JobClient;
use crate::middleware::{Cancel, CatchPanic, JobService, Metrics, Timeout, Trace, WrapLayer};

/// What a worker process serves and how.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub queues: Vec<String>,
    /// Most jobs run at once, per queue.
    pub concurrency: usize,
    /// Unique per process: a new one each start.
    pub instance_id: String,
    pub host: String,
    /// On shutdown, how long running jobs may take to finish before they are handed back.
    pub grace: Duration,
    /// How often queue depth gauges are refreshed.
    pub stats_interval: Duration,
}

impl WorkerSettings {
    pub fn new(queues: Vec<String>) -> Self {
        let host = hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "unknown".to_owned());
        Self {
            queues,
            concurrency: 100,
            instance_id: format!(
                "{host}-{}-{}",
                std::process::id(),
                ulid::Ulid::new().to_string().to_lowercase()
            ),
            host,
            grace: Duration::from_secs(30),
            stats_interval: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("no queues to serve: give at least one with --queues")]
    NoQueues,
    #[error("concurrency must be at least 1")]
    ZeroConcurrency,
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Registry(#[from] genq_core::RegistryError),
}

/// A running worker process's queues.
pub struct WorkerRuntime {
    registry: Arc<Registry>,
    queue: RedisQueue,
    metrics: WorkerMetrics,
    settings: WorkerSettings,
    consumers: Vec<QueueConsumer>,
}

impl WorkerRuntime {
    /// Checks the settings against the registry and starts a consumer per queue.
    pub async fn start(
        registry: Arc<Registry>,
        queue: RedisQueue,
        metrics: WorkerMetrics,
        settings: WorkerSettings,
    ) -> Result<Self, WorkerError> {
        if settings.queues.is_empty() {
            return Err(WorkerError::NoQueues);
        }
        if settings.concurrency == 0 {
            return Err(WorkerError::ZeroConcurrency);
        }
        for q in &settings.queues {
            validate_queue_name(q)?;
            if registry.types_for_queue(q).is_empty() {
                warn!(
                    queue = %q,
                    routed = %registry.queues().into_iter().collect::<Vec<_>>().join(", "),
                    "no job type is routed to this queue; the worker runs any registered job type pushed to it"
                );
            }
        }
        let mut consumers = Vec::new();
        for q in &settings.queues {
            let opts = ConsumerOptions {
                concurrency: settings.concurrency,
                queues: settings.queues.clone(),
                host: settings.host.clone(),
                pid: std::process::id(),
            };
            consumers
                .push(QueueConsumer::start(queue.clone(), q, &settings.instance_id, opts).await?);
            metrics
                .worker_concurrency
                .with_label_values(&[q.as_str()])
                .set(settings.concurrency as i64);
            metrics.fenced_jobs_total.with_label_values(&[q.as_str()]);
        }
        metrics
            .worker_up
            .with_label_values(&[&settings.instance_id, &settings.host])
            .set(1);
        Ok(Self {
            registry,
            queue,
            metrics,
            settings,
            consumers,
        })
    }

    pub fn consumers(&self) -> &[QueueConsumer] {
        &self.consumers
    }

    pub fn settings(&self) -> &WorkerSettings {
        &self.settings
    }

    /// Runs until `shutdown` resolves; then stops fetching, lets running jobs finish
    /// within the grace period and hands the rest back to their queues at once.
    pub async fn run<F>(self, shutdown: F) -> Result<(), WorkerError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let stats = tokio::spawn(refresh_queue_gauges(
            self.queue.clone(),
            self.metrics.clone(),
            self.settings.queues.clone(),
            self.settings.stats_interval,
        ));
        let fencing = tokio::spawn(count_fenced_jobs(
            self.consumers.clone(),
            self.metrics.clone(),
        ));
        let restarts = self.metrics.worker_restarts_total.clone();
        let mut monitor = Monitor::new()
            .shutdown_timeout(self.settings.grace)
            .should_restart(move |ctx, err| {
                warn!(worker = ctx.name(), error = %err, "apalis worker stopped with an error; restarting");
                true
            });
        for consumer in &self.consumers {
            let consumer = consumer.clone();
            let registry = self.registry.clone();
            let metrics = self.metrics.clone();
            let concurrency = self.settings.concurrency;
            let name = format!("{}:{}", consumer.queue_name(), self.settings.instance_id);
            let restarts = restarts.clone();
            monitor = monitor.register(move |run| {
                let delay = restart_delay(run);
                if run > 0 {
                    restarts.with_label_values(&[consumer.queue_name()]).inc();
                    info!(queue = consumer.queue_name(), restart = run, delay = ?delay, "restarting worker after backoff");
                }
                let policies = registry.clone();
                let backend = consumer
                    .backend()
                    .with_policies(Arc::new(move |t: &str| policies.retry_policy(t)))
                    .with_start_delay(delay);
                let progress: Arc<dyn ProgressSink> = Arc::new(consumer.clone());
                let spawner: Arc<dyn JobSpawner> = Arc::new(JobClient::new(consumer.queue().clone(), registry.clone()));
                WorkerBuilder::new(name.as_str())
                    .backend(backend)
                    .layer(ConcurrencyLimitLayer::new(concurrency))
                    .layer(WrapLayer(Trace))
                    .layer(WrapLayer(Metrics {
                        metrics: metrics.clone(),
                        registry: registry.clone(),
                    }))
                    .layer(WrapLayer(CatchPanic))
                    .layer(WrapLayer(Cancel))
                    .layer(WrapLayer(Timeout(registry.clone())))
                    .build(JobService::new(registry.clone(), progress, spawner.clone()))
            });
        }
        let signal = async move {
            shutdown.await;
            info!("shutdown requested: no new jobs are taken; running jobs may finish");
            Ok(())
        };
        if let Err(e) = monitor.run_with_signal(signal).await {
            error!(error = %e, "worker monitor ended with an error");
        }
        stats.abort();
        fencing.abort();
        for consumer in &self.consumers {
            if let Err(e) = consumer.hand_back_all().await {
                error!(queue = consumer.queue_name(), error = %e, "could not hand jobs back; they return when their leases expire");
            }
        }
        self.metrics
            .worker_up
            .with_label_values(&[&self.settings.instance_id, &self.settings.host])
            .set(0);
        info!("worker stopped");
        Ok(())
    }
}

/// A restarted worker waits 0.5 s doubling up to 30 s.
fn restart_delay(run: usize) -> Duration {
    if run == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(500u64.saturating_mul(1 << run.min(7).saturating_sub(1)))
        .min(Duration::from_secs(30))
}

/// Moves each consumer's self-fencing count into `genq_worker_fenced_jobs_total`.
async fn count_fenced_jobs(consumers: Vec<QueueConsumer>, metrics: WorkerMetrics) {
    let mut seen = vec![0u64; consumers.len()];
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        for (c, seen) in consumers.iter().zip(seen.iter_mut()) {
            let now = c.fenced_count();
            if now > *seen {
                metrics
                    .fenced_jobs_total
                    .with_label_values(&[c.queue_name()])
                    .inc_by(now - *seen);
                *seen = now;
            }
        }
    }
}

async fn refresh_queue_gauges(
    queue: RedisQueue,
    metrics: WorkerMetrics,
    queues: Vec<String>,
    every: Duration,
) {
    loop {
        for q in &queues {
            match queue.stats(q).await {
                Ok(s) => {
                    let depth = &metrics.queue_depth;
                    depth
                        .with_label_values(&[q.as_str(), "ready"])
                        .set(s.ready as i64);
                    depth
                        .with_label_values(&[q.as_str(), "scheduled"])
                        .set(s.scheduled as i64);
                    depth
                        .with_label_values(&[q.as_str(), "running"])
                        .set(s.running as i64);
                    depth
                        .with_label_values(&[q.as_str(), "dead"])
                        .set(s.dead as i64);
                    metrics
                        .queue_oldest_ready_age_seconds
                        .with_label_values(&[q.as_str()])
                        .set(s.oldest_ready_age_secs);
                    metrics
                        .queue_paused
                        .with_label_values(&[q.as_str()])
                        .set(s.paused as i64);
                }
                Err(e) => {
                    metrics
                        .redis_errors_total
                        .with_label_values(&["stats"])
                        .inc();
                    warn!(queue = %q, error = %e, "could not read queue stats");
                }
            }
        }
        tokio::time::sleep(every).await;
    }
}
