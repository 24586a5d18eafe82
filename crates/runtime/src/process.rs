//! A whole worker process: flags, metrics endpoint, signals, the runtime.
//! Shared by the `worker` binary and the all-in-one `genq run`.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use clap::Args;
use genq_core::Registry;
use genq_metrics::{PipelineMetrics, WorkerMetrics};
use genq_pipeline::{PIPELINES_QUEUE, PipelineDriver, PipelineRegistry};
use genq_redis::RedisQueue;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::{
    JobClient, RedisArgs, Scheduled, WorkerError, WorkerRuntime, WorkerSettings, http,
    run_schedules,
};

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Queues to serve, comma-separated (e.g. img,video). Default: every queue a job type is routed to.
    #[arg(long, env = "GENQ_QUEUES", value_delimiter = ',')]
    pub queues: Vec<String>,
    /// Most jobs run at once, per queue.
    #[arg(long, env = "GENQ_CONCURRENCY", default_value_t = 100)]
    pub concurrency: usize,
    /// Where `/metrics` and `/healthz` listen.
    #[arg(long, env = "GENQ_METRICS_ADDR", default_value = "0.0.0.0:9100")]
    pub metrics_addr: SocketAddr,
    /// Seconds running jobs may take to finish after SIGTERM before they are handed back.
    #[arg(long, env = "GENQ_GRACE_SECS", default_value_t = 30)]
    pub grace_secs: u64,
    #[command(flatten)]
    pub redis: RedisArgs,
}

/// Builds the process's job registry once Redis and the metrics registry exist.
pub type BuildRegistry =
    Box<dyn FnOnce(&RedisQueue, &prometheus::Registry) -> Result<Registry, String> + Send>;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("job types: {0}")]
    Registry(String),
    #[error("invalid setting: {0}")]
    Config(String),
    #[error("cannot listen on {addr} for metrics: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot connect to Redis at {url}: {source}")]
    Connect {
        url: String,
        source: genq_redis::QueueError,
    },
    #[error(transparent)]
    Worker(#[from] WorkerError),
    #[error(transparent)]
    Metrics(#[from] genq_metrics::MetricsError),
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs a worker process until SIGTERM/Ctrl-C: the job types `build` makes, the
/// `schedules` whose job types go to a served queue, and a driver for `pipelines`
/// (which takes the step outcomes of the served queues).
pub async fn run_worker(
    args: WorkerArgs,
    build: BuildRegistry,
    schedules: Vec<Scheduled>,
    pipelines: PipelineRegistry,
) -> Result<(), ProcessError> {
    let cfg = args.redis.to_config().map_err(ProcessError::Config)?;
    let url = genq_redis::redact(&cfg.url);
    let queue = RedisQueue::connect(cfg)
        .await
        .map_err(|source| ProcessError::Connect {
            url: url.clone(),
            source,
        })?;
    queue
        .check_server(args.redis.allow_eviction)
        .await
        .map_err(|source| ProcessError::Connect { url, source })?;
    let prom = prometheus::Registry::new();
    let registry = build(&queue, &prom).map_err(ProcessError::Registry)?;
    let queues: Vec<String> = if args.queues.is_empty() {
        registry.queues().into_iter().collect()
    } else {
        args.queues
            .iter()
            .map(|q| q.trim().to_owned())
            .filter(|q| !q.is_empty())
            .collect()
    };
    if queues.iter().any(|q| q == PIPELINES_QUEUE) {
        return Err(ProcessError::Config(format!(
            "queue '{PIPELINES_QUEUE}' is reserved for pipelines (their drivers run in every worker); serve the queues of their jobs instead"
        )));
    }
    let metrics = WorkerMetrics::new(&prom)?;
    let pipeline_metrics = PipelineMetrics::new(&prom)?;
    metrics.process_start_time_seconds.set(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
    );
    let mut settings = WorkerSettings::new(queues.clone());
    settings.concurrency = args.concurrency;
    settings.grace = Duration::from_secs(args.grace_secs);
    let registry = Arc::new(registry);
    let schedules: Vec<Scheduled> = schedules
        .into_iter()
        .filter(|s| {
            registry
                .queue_of(&s.job_type)
                .is_ok_and(|q| queues.iter().any(|served| served == q))
        })
        .collect();
    let runtime = WorkerRuntime::start(registry.clone(), queue.clone(), metrics, settings).await?;

    let stop = CancellationToken::new();
    let server_stop = stop.clone();
    let server = http::serve(args.metrics_addr, prom, async move {
        server_stop.cancelled().await
    })
    .await
    .map_err(|source| ProcessError::Bind {
        addr: args.metrics_addr,
        source,
    })?;
    info!(
        job_types = %registry.job_types().join(","),
        instance = %runtime.settings().instance_id,
        queues = %runtime.settings().queues.join(","),
        concurrency = runtime.settings().concurrency,
        "worker started"
    );
    let driver = (!pipelines.is_empty()).then(|| {
        let driver =
            PipelineDriver::new(queue.clone(), pipelines, registry.clone(), queues.clone())
                .with_metrics(pipeline_metrics);
        tokio::spawn(driver.run(stop.clone()))
    });
    let scheduler = tokio::spawn(run_schedules(
        JobClient::new(queue, registry),
        schedules,
        stop.clone(),
    ));
    runtime.run(shutdown_signal()).await?;
    stop.cancel();
    let _ = server.await;
    let _ = scheduler.await;
    if let Some(d) = driver {
        let _ = d.await;
    }
    Ok(())
}
