//! Paid pipelines: charged once with their creation (the outbox path every paid job
//! takes), refunded exactly once when they end cancelled at a gate, failed in a
//! step or timed out at a gate, and not refunded when they succeed. Real Redis and
//! PostgreSQL; the relay, the settler (following the `pipelines` queue's events and
//! reconciling), a worker and a pipeline driver, as `genq run` wires them.

use std::{sync::Arc, time::Duration};

use genq_core::Registry;
use genq_job_probe::ProbeJob;
use genq_metrics::WorkerMetrics;
use genq_pipeline::{PIPELINES_QUEUE, PipelineClient, PipelineDriver};
use genq_redis::{RedisConfig, RedisQueue};
use genq_relay::{Relay, Settler};
use genq_runtime::{WorkerRuntime, WorkerSettings};
use genq_store::{PaidJob, Store, StoreConfig};
use genq_testkit::{TestSchema, unique_prefix, wait_until};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const PRICE: i64 = 5;
const GRANT: i64 = 100;
const EVERY: Duration = Duration::from_secs(2);

async fn charge(store: &Store, user_id: i64, pipeline: &str, input: Value) -> String {
    let price = genq_catalog::pipelines()
        .unwrap()
        .get(pipeline)
        .unwrap()
        .price_of(&input);
    assert_eq!(price, PRICE, "the pipeline's price hook names the price");
    let job = PaidJob {
        user_id,
        job_type: pipeline.to_owned(),
        queue: PIPELINES_QUEUE.to_owned(),
        payload: input,
        price,
        idempotency_key: None,
    };
    store
        .charge_and_enqueue(&job)
        .await
        .unwrap()
        .job_id()
        .to_owned()
}

/// A worker (probe, queue `default`), a pipeline driver (the catalog's pipelines),
/// the relay and a settler following `default` and `pipelines`, as `genq run`
/// wires them, on the Redis at `url` under `prefix`.
struct Rig {
    store: Store,
    queue: RedisQueue,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Rig {
    async fn start(url: &str, schema: &TestSchema, prefix: &str) -> Self {
        let store = Store::open(&StoreConfig::new(&schema.url).schema(&schema.name))
            .await
            .unwrap();
        let config = RedisConfig {
            lease: Duration::from_secs(2),
            heartbeat: Duration::from_millis(300),
            poll_interval: Duration::from_millis(200),
            ..RedisConfig::with_url(url).prefix(prefix)
        };
        let queue = RedisQueue::connect(config).await.unwrap();
        let mut registry = Registry::new();
        registry.register(ProbeJob::new()).unwrap();
        let registry = Arc::new(registry);
        let mut settings = WorkerSettings::new(vec!["default".to_owned()]);
        settings.concurrency = 8;
        let runtime = WorkerRuntime::start(
            registry.clone(),
            queue.clone(),
            WorkerMetrics::new(&prometheus::Registry::new()).unwrap(),
            settings,
        )
        .await
        .unwrap();
        let stop = CancellationToken::new();
        let worker_stop = stop.clone();
        let mut tasks = vec![tokio::spawn(async move {
            let _ = runtime
                .run(async move { worker_stop.cancelled().await })
                .await;
        })];
        let driver = PipelineDriver::new(
            queue.clone(),
            genq_catalog::pipelines().unwrap(),
            registry,
            vec!["default".to_owned()],
        );
        tasks.push(tokio::spawn(driver.run(stop.clone())));
        tasks.push(tokio::spawn(
            Relay::new(store.clone(), queue.clone()).run(stop.clone()),
        ));
        let settler = Settler::new(
            store.clone(),
            queue.clone(),
            vec!["default".to_owned(), PIPELINES_QUEUE.to_owned()],
        )
        .job_types([
            "probe".to_owned(),
            "probe-flow".to_owned(),
            "probe-gate".to_owned(),
        ])
        .reconcile_every(EVERY);
        let settler_stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            settler.run(settler_stop).await.unwrap();
        }));
        Self {
            store,
            queue,
            stop,
            tasks,
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_pipelines_are_refunded_once_when_they_fail_are_cancelled_or_time_out() {
    let schema = TestSchema::create("pipeline_paid").await.unwrap();
    let prefix = unique_prefix("pipeline_paid");
    let rig = Rig::start(&genq_testkit::redis_url(), &schema, &prefix).await;
    let (store, queue) = (rig.store.clone(), rig.queue.clone());

    let user = store.upsert_user(7070, "en").await.unwrap();
    store.grant(user.id, GRANT, "test").await.unwrap();
    let cancelled = charge(&store, user.id, "probe-gate", json!({"price": PRICE})).await;
    let failed = charge(
        &store,
        user.id,
        "probe-flow",
        json!({"price": PRICE, "items": 3, "fail_index": 1, "fail_class": "user_violation"}),
    )
    .await;
    let timed_out = charge(
        &store,
        user.id,
        "probe-gate",
        json!({"price": PRICE, "gate_timeout_ms": 1500}),
    )
    .await;
    let succeeded = charge(
        &store,
        user.id,
        "probe-gate",
        json!({"price": PRICE, "echo": "ok"}),
    )
    .await;
    // (the failing one may already be refunded: the balance is checked at the end)

    let client = PipelineClient::new(queue.clone());
    for id in [&cancelled, &succeeded] {
        let parked = wait_until(Duration::from_secs(30), || async {
            client.view(id).await.ok()?.filter(|v| v.gate.is_some())
        })
        .await;
        assert!(parked.is_some(), "{id} parked at its gate");
    }
    client
        .signal(&cancelled, "approve", "cancel", &Value::Null)
        .await
        .unwrap()
        .unwrap();
    client
        .signal(&succeeded, "approve", "approve", &Value::Null)
        .await
        .unwrap()
        .unwrap();

    let all = [&cancelled, &failed, &timed_out, &succeeded];
    let ended = wait_until(Duration::from_secs(60), || async {
        for id in all {
            store.job(id).await.ok()??.finished_at?;
        }
        Some(())
    })
    .await;
    assert!(ended.is_some(), "every paid pipeline was settled");
    // the settler's reconcile rounds and any repeated event change nothing more
    tokio::time::sleep(EVERY * 2).await;

    for (id, status, refunds) in [
        (&cancelled, "cancelled", 1),
        (&failed, "failed", 1),
        (&timed_out, "cancelled", 1),
        (&succeeded, "succeeded", 0),
    ] {
        let job = store.job(id).await.unwrap().unwrap();
        assert_eq!(job.status, status, "{id}: {:?}", job.error);
        let kinds = store.ledger_kinds_of_job(id).await.unwrap();
        assert_eq!(kinds.get("charge"), Some(&1), "{id}: charged once");
        assert_eq!(
            kinds.get("refund").copied().unwrap_or(0),
            refunds,
            "{id} ({status}): refunds"
        );
    }
    let timed = store.job(&timed_out).await.unwrap().unwrap();
    assert_eq!(timed.error_class.as_deref(), Some("timeout"));
    let failed_job = store.job(&failed).await.unwrap().unwrap();
    assert_eq!(failed_job.error_class.as_deref(), Some("user_violation"));
    assert_eq!(store.balance(user.id).await.unwrap(), GRANT - PRICE);

    rig.stop().await;
    genq_testkit::cleanup_prefix(&genq_testkit::redis_url(), &prefix).await;
    schema.drop().await;
}

/// Redis loses a paid pipeline parked at its gate (FLUSHALL): the reconciler puts
/// it back from PostgreSQL with the same id, it starts over, parks again, and ends
/// when approved: one charge, no refund.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_pipeline_redis_lost_is_put_back_from_postgresql_and_finishes() {
    let redis = genq_testkit::PrivateRedis::start().await.unwrap();
    let schema = TestSchema::create("pipeline_lost").await.unwrap();
    let prefix = unique_prefix("pipeline_lost");
    let rig = Rig::start(&redis.url(), &schema, &prefix).await;
    let (store, queue) = (rig.store.clone(), rig.queue.clone());

    let user = store.upsert_user(7171, "en").await.unwrap();
    store.grant(user.id, GRANT, "test").await.unwrap();
    let id = charge(
        &store,
        user.id,
        "probe-gate",
        json!({"price": PRICE, "echo": "again"}),
    )
    .await;
    let client = PipelineClient::new(queue.clone());
    let parked = || async {
        wait_until(Duration::from_secs(60), || async {
            client.view(&id).await.ok()?.filter(|v| v.gate.is_some())
        })
        .await
    };
    assert!(parked().await.is_some(), "parked at its gate");
    let mut c = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
    assert!(client.view(&id).await.unwrap().is_none(), "Redis lost it");

    assert!(
        parked().await.is_some(),
        "put back with the same id and parked again"
    );
    client
        .signal(&id, "approve", "approve", &Value::Null)
        .await
        .unwrap()
        .unwrap();
    let settled = wait_until(Duration::from_secs(60), || async {
        let j = store.job(&id).await.ok()??;
        j.finished_at.is_some().then_some(j)
    })
    .await
    .expect("settled");
    assert_eq!(settled.status, "succeeded");
    let kinds = store.ledger_kinds_of_job(&id).await.unwrap();
    assert_eq!(kinds.get("charge"), Some(&1));
    assert_eq!(kinds.get("refund"), None);
    assert_eq!(store.balance(user.id).await.unwrap(), GRANT - PRICE);

    rig.stop().await;
    schema.drop().await;
}
