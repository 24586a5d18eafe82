//! Charge → relay → worker → settle, in one process, on real PostgreSQL and Redis.

use std::{sync::Arc, time::Duration};

use genq_core::Registry;
use genq_job_probe::ProbeJob;
use genq_metrics::WorkerMetrics;
use genq_redis::{RedisConfig, RedisQueue};
use genq_relay::{Relay, Settler};
use genq_runtime::{WorkerRuntime, WorkerSettings};
use genq_store::{PaidJob, Store, StoreConfig};
use genq_testkit::{TestSchema, cleanup_prefix, redis_url, unique_prefix, wait_until};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_jobs_run_and_failures_are_refunded_once() {
    let schema = TestSchema::create("seam").await.unwrap();
    let store = Store::open(&StoreConfig::new(&schema.url).schema(&schema.name))
        .await
        .unwrap();
    let prefix = unique_prefix("seam");
    let queue = RedisQueue::connect(RedisConfig::with_url(redis_url()).prefix(&prefix))
        .await
        .unwrap();

    let mut registry = Registry::new();
    registry.register(ProbeJob::new()).unwrap();
    let mut settings = WorkerSettings::new(vec!["default".to_owned()]);
    settings.concurrency = 10;
    let runtime = WorkerRuntime::start(
        Arc::new(registry),
        queue.clone(),
        WorkerMetrics::new(&prometheus::Registry::new()).unwrap(),
        settings,
    )
    .await
    .unwrap();
    let stop = CancellationToken::new();
    let worker_stop = stop.clone();
    let worker = tokio::spawn(runtime.run(async move { worker_stop.cancelled().await }));
    let relay = tokio::spawn(Relay::new(store.clone(), queue.clone()).run(stop.clone()));
    // two settlers, as two processes would: each event is seen twice
    let settlers: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(
                Settler::new(store.clone(), queue.clone(), vec!["default".to_owned()])
                    .run(stop.clone()),
            )
        })
        .collect();

    let user = store.upsert_user(4242, "en").await.unwrap();
    store.grant(user.id, 10, "test").await.unwrap();
    let charge = |payload: serde_json::Value| PaidJob {
        user_id: user.id,
        job_type: "probe".to_owned(),
        queue: "default".to_owned(),
        payload,
        price: 3,
        idempotency_key: None,
    };
    let ok = store
        .charge_and_enqueue(&charge(serde_json::json!({ "echo": "fine" })))
        .await
        .unwrap();
    let refused = store
        .charge_and_enqueue(&charge(
            serde_json::json!({ "fail": { "class": "user_violation" } }),
        ))
        .await
        .unwrap();
    // both were charged (the refusal may already be refunded: it fails at once)
    let charged: i64 = sqlx::query_scalar(
        "SELECT COALESCE(sum(amount), 0)::BIGINT FROM credit_ledger WHERE user_id = $1 AND kind = 'charge'",
    )
    .bind(user.id)
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(charged, -6);

    let settled = wait_until(Duration::from_secs(30), || async {
        let a = store.job(ok.job_id()).await.ok()??;
        let b = store.job(refused.job_id()).await.ok()??;
        (a.finished_at.is_some() && b.finished_at.is_some()).then_some((a, b))
    })
    .await
    .expect("both jobs settled in the database");
    assert_eq!(settled.0.status, "succeeded");
    assert_eq!(settled.1.status, "failed");
    assert_eq!(settled.1.error_class.as_deref(), Some("user_violation"));
    // give the second settler time to see the same events
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        store.balance(user.id).await.unwrap(),
        7,
        "the failed job's 3 credits came back, once"
    );
    assert_eq!(store.ledger_sum(user.id).await.unwrap(), 7);

    stop.cancel();
    worker.await.unwrap().unwrap();
    relay.await.unwrap();
    for s in settlers {
        s.await.unwrap().unwrap();
    }
    cleanup_prefix(&redis_url(), &prefix).await;
    schema.drop().await;
}
