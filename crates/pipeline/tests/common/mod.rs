//! A worker runtime and a pipeline driver in the test process, on real Redis under
//! the test's own key prefix, with probe-like job types and test pipelines.
#![allow(dead_code)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use genq_core::{ClassRule, FailureClass, Job, JobContext, JobError, Registry, RetryPolicy};
use genq_job_probe::ProbeJob;
use genq_metrics::WorkerMetrics;
use genq_pipeline::{
    BuildError, Pipeline, PipelineClient, PipelineDriver, PipelineMetrics, PipelineRegistry,
    PipelineView, StepSpec,
};
use genq_redis::{RedisConfig, RedisQueue};
use genq_runtime::{WorkerRuntime, WorkerSettings};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub const QUEUE: &str = "default";
pub const WAIT: Duration = Duration::from_secs(60);

/// Counts the `count` jobs running at once (and the most ever).
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    pub now: Arc<AtomicUsize>,
    pub max: Arc<AtomicUsize>,
    pub runs: Arc<AtomicUsize>,
}

/// A probe-like job that sleeps and returns its index; counts how many run at once.
#[derive(Debug, Clone)]
pub struct CountJob(pub InFlight);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CountPayload {
    pub index: usize,
    #[serde(default)]
    pub sleep_ms: u64,
}

impl Job for CountJob {
    type Payload = CountPayload;
    type Output = Value;
    const NAME: &'static str = "count";
    const DEFAULT_QUEUE: &'static str = QUEUE;

    async fn run(&self, p: CountPayload, _ctx: JobContext) -> Result<Value, JobError> {
        let f = &self.0;
        f.runs.fetch_add(1, Ordering::SeqCst);
        let now = f.now.fetch_add(1, Ordering::SeqCst) + 1;
        f.max.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(p.sleep_ms)).await;
        f.now.fetch_sub(1, Ordering::SeqCst);
        Ok(json!({"index": p.index}))
    }
}

fn probe(payload: Value) -> StepSpec {
    StepSpec::new("probe", payload)
}

fn gate_ms(input: &Value) -> Option<Duration> {
    input
        .get("gate_ms")
        .and_then(Value::as_u64)
        .map(Duration::from_millis)
}

/// The test pipelines:
/// - `four`: prepare → fan (N `count` jobs, 3 at once) → gate `review` → finish (gets the N outputs);
/// - `gated`: gate `approve` → after;
/// - `late-gate`: a 1.5 s step → gate `approve` → after;
/// - `failing`: fan of 4 probes, 2 at once, job `fail_index` failing as `fail_class`
///   (its fallback runs instead when `fallback` is true);
/// - `slow`: fan of 5 probes sleeping 30 s, all at once.
pub fn pipelines() -> PipelineRegistry {
    let mut r = PipelineRegistry::new();
    r.register(
        Pipeline::new("four")
            .step("prepare", |si| {
                let n = si.input["items"].as_u64().unwrap_or(10);
                Ok(probe(json!({"echo": {"items": n}})))
            })
            .fan_out("fan", 3, |si| {
                let n = si.previous()["echo"]["items"]
                    .as_u64()
                    .ok_or_else(|| BuildError::new("prepare gave no item count"))?;
                let sleep = si.input["sleep_ms"].as_u64().unwrap_or(100);
                Ok((0..n)
                    .map(|i| StepSpec::new("count", json!({"index": i, "sleep_ms": sleep})))
                    .collect())
            })
            .gate("review", Duration::from_secs(60))
            .gate_timeout_from(gate_ms)
            .step("finish", |si| {
                let joined: Vec<Value> = si
                    .output("fan")
                    .and_then(Value::as_array)
                    .ok_or_else(|| BuildError::new("no fan outputs"))?
                    .iter()
                    .map(|o| o["index"].clone())
                    .collect();
                let note = si.output("review").map(|d| d["body"].clone());
                Ok(probe(json!({"echo": {"joined": joined, "note": note}})))
            }),
    )
    .expect("four");
    r.register(
        Pipeline::new("gated")
            .gate("approve", Duration::from_secs(60))
            .gate_timeout_from(gate_ms)
            .step("after", |si| Ok(probe(json!({"echo": si.input["echo"]})))),
    )
    .expect("gated");
    r.register(
        Pipeline::new("late-gate")
            .step("first", |_| Ok(probe(json!({"sleep_ms": 1500}))))
            .gate("approve", Duration::from_secs(60))
            .step("after", |_| Ok(probe(json!({})))),
    )
    .expect("late-gate");
    r.register(
        Pipeline::new("failing")
            .fan_out("fan", 2, |si| {
                let fail = si.input["fail_index"].as_u64();
                let class = si.input["fail_class"].as_str().unwrap_or("user_violation");
                Ok((0..4)
                    .map(|i| {
                        let mut p = json!({"echo": {"index": i}});
                        if fail == Some(i) {
                            p["fail"] = json!({"class": class});
                        }
                        probe(p)
                    })
                    .collect())
            })
            .fallback(|si, i| {
                Ok(si.input["fallback"]
                    .as_bool()
                    .unwrap_or(false)
                    .then(|| probe(json!({"echo": {"index": i, "fallback": true}}))))
            }),
    )
    .expect("failing");
    r.register(
        Pipeline::new("unroutable")
            .step("first", |_| Ok(probe(json!({}))))
            .step("nowhere", |_| Ok(StepSpec::new("no_such_job", json!({})))),
    )
    .expect("unroutable");
    r.register(Pipeline::new("slow").fan_out("fan", 5, |_| {
        Ok((0..5)
            .map(|i| probe(json!({"echo": i, "sleep_ms": 30_000})))
            .collect())
    }))
    .expect("slow");
    r
}

pub fn fast_policy() -> RetryPolicy {
    RetryPolicy::default().with(
        FailureClass::Transient,
        ClassRule::Backoff {
            max_attempts: 3,
            base: Duration::from_millis(100),
            max: Duration::from_millis(400),
            jitter: 0.1,
        },
    )
}

pub fn test_config(url: &str, prefix: &str) -> RedisConfig {
    RedisConfig {
        lease: Duration::from_secs(2),
        heartbeat: Duration::from_millis(300),
        poll_interval: Duration::from_millis(200),
        ..RedisConfig::with_url(url).prefix(prefix)
    }
}

/// Workers (concurrency 20) and a driver in this process.
pub struct Harness {
    pub queue: RedisQueue,
    pub client: PipelineClient,
    pub inflight: InFlight,
    pub prom: prometheus::Registry,
    pub stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Harness {
    pub async fn start(test: &str) -> Self {
        Self::start_on(
            &genq_testkit::redis_url(),
            &genq_testkit::unique_prefix(test),
            20,
        )
        .await
    }

    pub async fn start_on(url: &str, prefix: &str, concurrency: usize) -> Self {
        let queue = RedisQueue::connect(test_config(url, prefix))
            .await
            .expect("connect");
        let inflight = InFlight::default();
        let mut registry = Registry::new();
        registry
            .register(ProbeJob::new().with_retry_policy(fast_policy()))
            .expect("probe");
        registry
            .register(CountJob(inflight.clone()))
            .expect("count");
        let registry = Arc::new(registry);
        let prom = prometheus::Registry::new();
        let mut settings = WorkerSettings::new(vec![QUEUE.to_owned()]);
        settings.concurrency = concurrency;
        settings.grace = Duration::from_secs(1);
        let runtime = WorkerRuntime::start(
            registry.clone(),
            queue.clone(),
            WorkerMetrics::new(&prom).expect("metrics"),
            settings,
        )
        .await
        .expect("start worker");
        let stop = CancellationToken::new();
        let driver =
            PipelineDriver::new(queue.clone(), pipelines(), registry, vec![QUEUE.to_owned()])
                .with_metrics(PipelineMetrics::new(&prom).expect("pipeline metrics"));
        let s = stop.clone();
        let tasks = vec![
            tokio::spawn(async move {
                let _ = runtime.run(async move { s.cancelled().await }).await;
            }),
            tokio::spawn(driver.run(stop.clone())),
        ];
        Self {
            client: PipelineClient::new(queue.clone()),
            queue,
            inflight,
            prom,
            stop,
            tasks,
        }
    }

    pub async fn view(&self, id: &str) -> Option<PipelineView> {
        self.client.view(id).await.expect("view")
    }

    /// Waits until the pipeline's view satisfies `pred`.
    pub async fn wait_for(
        &self,
        id: &str,
        what: &str,
        pred: impl Fn(&PipelineView) -> bool,
    ) -> PipelineView {
        let found =
            genq_testkit::wait_until(WAIT, || async { self.view(id).await.filter(|v| pred(v)) })
                .await;
        match found {
            Some(v) => v,
            None => panic!(
                "pipeline {id} never {what}; last: {:#?}",
                self.view(id).await
            ),
        }
    }

    pub async fn wait_parked(&self, id: &str) -> PipelineView {
        self.wait_for(id, "parked at a gate", |v| v.gate.is_some())
            .await
    }

    pub async fn wait_final(&self, id: &str) -> PipelineView {
        self.wait_for(id, "ended", |v| v.outcome.is_some()).await
    }

    /// Every stage-change event of pipeline `id` so far, as (kind, fields).
    pub async fn events_of(
        &self,
        id: &str,
    ) -> Vec<(String, std::collections::BTreeMap<String, String>)> {
        let mut c = self.queue.connection();
        let key = format!("{}:pl_events", self.queue.base_key("pipelines"));
        let all: Vec<(String, std::collections::BTreeMap<String, String>)> =
            redis::AsyncCommands::xrange_all(&mut c, key)
                .await
                .expect("events");
        all.into_iter()
            .filter(|(_, f)| f.get("id").map(String::as_str) == Some(id))
            .map(|(_, mut f)| (f.remove("kind").unwrap_or_default(), f))
            .collect()
    }

    pub async fn shutdown(mut self) {
        self.stop.cancel();
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        genq_testkit::cleanup_prefix(&genq_testkit::redis_url(), &self.queue.config().prefix).await;
    }
}
