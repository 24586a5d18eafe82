//! A worker runtime in the test process, on real Redis, under its own key prefix.
#![allow(dead_code)]

use std::{sync::Arc, time::Duration};

use genq_core::{ClassRule, FailureClass, JobState, Registry, RetryPolicy};
use genq_job_probe::ProbeJob;
use genq_metrics::WorkerMetrics;
use genq_redis::{RedisConfig, RedisQueue};
use genq_runtime::{JobClient, WorkerError, WorkerRuntime, WorkerSettings};
use tokio::{sync::oneshot, task::JoinHandle};

pub const QUEUE: &str = "default";

/// Short delays so that retries happen within a test.
pub fn fast_policy() -> RetryPolicy {
    let backoff = ClassRule::Backoff {
        max_attempts: 3,
        base: Duration::from_millis(100),
        max: Duration::from_millis(400),
        jitter: 0.1,
    };
    RetryPolicy::default()
        .with(FailureClass::Transient, backoff.clone())
        .with(FailureClass::Timeout, backoff)
        .with(
            FailureClass::RateLimited,
            ClassRule::RetryAfter {
                max_attempts: 4,
                fallback: vec![Duration::from_millis(200)],
                cap: Duration::from_secs(30),
            },
        )
}

pub fn test_config(url: &str, prefix: &str) -> RedisConfig {
    RedisConfig {
        lease: Duration::from_secs(2),
        heartbeat: Duration::from_millis(300),
        poll_interval: Duration::from_millis(500),
        ..RedisConfig::with_url(url).prefix(prefix)
    }
}

pub fn probe_registry(probe: ProbeJob) -> Arc<Registry> {
    let mut r = Registry::new();
    r.register(probe).expect("register probe");
    Arc::new(r)
}

pub struct Harness {
    pub url: String,
    pub prefix: String,
    pub queue: RedisQueue,
    pub client: JobClient,
    pub prom: prometheus::Registry,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), WorkerError>>>,
}

impl Harness {
    /// A worker on the shared Redis serving `default` with a fast-retrying probe.
    pub async fn start(test: &str, concurrency: usize) -> Self {
        let probe = ProbeJob::new().with_retry_policy(fast_policy());
        Self::start_with(
            &genq_testkit::redis_url(),
            &genq_testkit::unique_prefix(test),
            probe,
            concurrency,
            |c| c,
        )
        .await
    }

    pub async fn start_with(
        url: &str,
        prefix: &str,
        probe: ProbeJob,
        concurrency: usize,
        tweak: impl FnOnce(RedisConfig) -> RedisConfig,
    ) -> Self {
        let queue = RedisQueue::connect(tweak(test_config(url, prefix)))
            .await
            .expect("connect");
        let registry = probe_registry(probe);
        let prom = prometheus::Registry::new();
        let metrics = WorkerMetrics::new(&prom).expect("metrics");
        let mut settings = WorkerSettings::new(vec![QUEUE.to_owned()]);
        settings.concurrency = concurrency;
        settings.grace = Duration::from_secs(2);
        settings.stats_interval = Duration::from_millis(200);
        let runtime = WorkerRuntime::start(registry.clone(), queue.clone(), metrics, settings)
            .await
            .expect("start worker");
        let (tx, rx) = oneshot::channel();
        let handle = tokio::spawn(runtime.run(async move {
            let _ = rx.await;
        }));
        Self {
            url: url.to_owned(),
            prefix: prefix.to_owned(),
            client: JobClient::new(queue.clone(), registry),
            queue,
            prom,
            stop: Some(tx),
            handle: Some(handle),
        }
    }

    pub async fn push(&self, payload: serde_json::Value) -> String {
        self.client
            .enqueue_json("probe", &payload.to_string(), Default::default())
            .await
            .expect("push")
            .id
    }

    pub async fn state(&self, id: &str) -> Option<JobState> {
        self.queue.job(QUEUE, id).await.expect("job state")
    }

    /// Waits until the job reaches a final status (30 s at most).
    pub async fn wait_final(&self, id: &str) -> JobState {
        self.wait_for(id, |s| s.status.is_final()).await
    }

    pub async fn wait_for(&self, id: &str, pred: impl Fn(&JobState) -> bool) -> JobState {
        let found = genq_testkit::wait_until(Duration::from_secs(30), || async {
            self.state(id).await.filter(|s| pred(s))
        })
        .await;
        match found {
            Some(s) => s,
            None => panic!(
                "job {id} never reached the expected state; last: {:?}",
                self.state(id).await
            ),
        }
    }

    pub fn metrics_text(&self) -> String {
        genq_metrics::render(&self.prom).expect("render")
    }

    /// Stops the worker (graceful) and deletes the test's keys.
    pub async fn stop(mut self) {
        self.shutdown().await;
        genq_testkit::cleanup_prefix(&self.url, &self.prefix).await;
    }

    /// Stops the worker without deleting keys.
    pub async fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("worker task").expect("worker run");
        }
    }
}
