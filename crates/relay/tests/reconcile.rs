//! Redis loses data under paid work: emptied by FLUSHALL, or restarted without
//! persistence. PostgreSQL holds what was paid for; the settlers (two, as two
//! processes would run) put every lost job back from it, or fail and refund the
//! ones that cannot run again. Every paid job ends, refunded at most once, and the
//! ledger balances to the credit.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use genq_core::Registry;
use genq_job_probe::ProbeJob;
use genq_metrics::WorkerMetrics;
use genq_redis::{RedisConfig, RedisQueue};
use genq_relay::{Relay, Settler};
use genq_runtime::{WorkerRuntime, WorkerSettings};
use genq_store::{PaidJob, Store, StoreConfig};
use genq_testkit::{PrivateRedis, TestSchema, unique_prefix, wait_until};
use tokio_util::sync::CancellationToken;

const JOBS: usize = 40;
const PRICE: i64 = 2;
const GRANT: i64 = 1000;
/// The settlers' reconcile interval in these tests.
const EVERY: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug)]
enum Damage {
    FlushAll,
    RestartEmpty,
}

struct Setup {
    store: Store,
    queue: RedisQueue,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn start(redis: &PrivateRedis, schema: &TestSchema, prefix: &str) -> Setup {
    let store = Store::open(&StoreConfig::new(&schema.url).schema(&schema.name))
        .await
        .unwrap();
    let config = RedisConfig {
        lease: Duration::from_secs(2),
        heartbeat: Duration::from_millis(300),
        poll_interval: Duration::from_millis(200),
        ..RedisConfig::with_url(redis.url()).prefix(prefix)
    };
    let queue = RedisQueue::connect(config).await.unwrap();
    let mut registry = Registry::new();
    registry.register(ProbeJob::new()).unwrap();
    let mut settings = WorkerSettings::new(vec!["default".to_owned()]);
    settings.concurrency = 8;
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
    let mut tasks = vec![tokio::spawn(async move {
        runtime
            .run(async move { worker_stop.cancelled().await })
            .await
            .unwrap();
    })];
    let relay = Relay::new(store.clone(), queue.clone());
    tasks.push(tokio::spawn(relay.run(stop.clone())));
    // two settlers, as two processes would run: each lost job is put back once
    for _ in 0..2 {
        let settler = Settler::new(store.clone(), queue.clone(), vec!["default".to_owned()])
            .job_types(["probe".to_owned()])
            .reconcile_every(EVERY);
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            settler.run(stop).await.unwrap();
        }));
    }
    Setup {
        store,
        queue,
        stop,
        tasks,
    }
}

/// Charges `JOBS` probe jobs (1 in 5 refused by the "provider") and one job on a
/// queue no worker or settler serves any more.
async fn charge_jobs(store: &Store, user_id: i64) -> (Vec<String>, String) {
    let mut ids = Vec::new();
    for i in 0..JOBS {
        let payload = if i % 5 == 4 {
            serde_json::json!({ "sleep_ms": 200, "fail": { "class": "user_violation" } })
        } else {
            serde_json::json!({ "echo": i, "sleep_ms": 300 + (i as u64 % 4) * 300 })
        };
        let job = PaidJob {
            user_id,
            job_type: "probe".to_owned(),
            queue: "default".to_owned(),
            payload,
            price: PRICE,
            idempotency_key: None,
        };
        ids.push(
            store
                .charge_and_enqueue(&job)
                .await
                .unwrap()
                .job_id()
                .to_owned(),
        );
    }
    let retired = PaidJob {
        user_id,
        job_type: "retired_type".to_owned(),
        queue: "retired".to_owned(),
        payload: serde_json::json!({}),
        price: PRICE,
        idempotency_key: None,
    };
    let retired = store
        .charge_and_enqueue(&retired)
        .await
        .unwrap()
        .job_id()
        .to_owned();
    (ids, retired)
}

async fn db_now(store: &Store) -> DateTime<Utc> {
    sqlx::query_scalar("SELECT now()")
        .fetch_one(store.pool())
        .await
        .unwrap()
}

async fn every_paid_job_ends_after(damage: Damage) {
    let mut redis = PrivateRedis::start().await.unwrap();
    let schema = TestSchema::create("reconcile").await.unwrap();
    let prefix = unique_prefix("reconcile");
    let s = start(&redis, &schema, &prefix).await;
    let user = s.store.upsert_user(5150, "en").await.unwrap();
    s.store.grant(user.id, GRANT, "test").await.unwrap();
    let (ids, retired) = charge_jobs(&s.store, user.id).await;
    let all: Vec<String> = ids.iter().cloned().chain([retired.clone()]).collect();

    // some jobs done, some running, most still queued: then Redis loses everything
    wait_until(Duration::from_secs(30), || async {
        let done = s.queue.stats("default").await.ok()?.succeeded;
        (done >= 4 && s.store.outbox_len().await.ok()? == 0).then_some(())
    })
    .await
    .expect("the first jobs ran");
    match damage {
        Damage::FlushAll => {
            let mut c = redis::Client::open(redis.url())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
        }
        Damage::RestartEmpty => redis.restart().await.unwrap(),
    }
    let lost_at = db_now(&s.store).await;

    let ended = wait_until(Duration::from_secs(120), || async {
        let mut open = 0;
        for id in &all {
            let j = s.store.job(id).await.ok()??;
            if j.finished_at.is_none() {
                open += 1;
            }
        }
        (open == 0).then_some(())
    })
    .await;
    assert!(ended.is_some(), "{damage:?}: every paid job ended");
    // let the second settler see whatever it would see
    tokio::time::sleep(EVERY * 2).await;

    let mut requeued = 0;
    let mut succeeded = 0i64;
    for (i, id) in ids.iter().enumerate() {
        let j = s.store.job(id).await.unwrap().unwrap();
        let ledger = s.store.ledger_kinds_of_job(id).await.unwrap();
        assert_eq!(ledger.get("charge"), Some(&1), "{id}: charged once");
        if i % 5 == 4 {
            assert_eq!(j.status, "failed", "{id}: the provider refused it");
            assert_eq!(ledger.get("refund"), Some(&1), "{id}: refunded once");
        } else {
            assert_eq!(
                j.status, "succeeded",
                "{id}: ran to the end ({:?})",
                j.error
            );
            assert_eq!(ledger.get("refund"), None, "{id}: not refunded");
            succeeded += 1;
        }
        let times = s.store.requeue_count(id).await.unwrap();
        assert!(
            times <= 1,
            "{id}: put back once per loss, not {times} times"
        );
        if times == 1 {
            requeued += 1;
            let back = j.pushed_at.unwrap();
            let bound = chrono::Duration::from_std(EVERY * 3 + Duration::from_secs(5)).unwrap();
            assert!(
                back - lost_at <= bound,
                "{id}: back on its queue {} after the loss (bound {bound})",
                back - lost_at
            );
        }
    }
    assert!(requeued > 0, "{damage:?}: some jobs had to be put back");
    // the job whose queue is no longer served cannot run again: failed and refunded
    let r = s.store.job(&retired).await.unwrap().unwrap();
    assert_eq!(r.status, "failed");
    assert!(
        r.error
            .as_deref()
            .unwrap_or("")
            .contains("no longer served"),
        "{:?}",
        r.error
    );
    assert_eq!(
        s.store
            .ledger_kinds_of_job(&retired)
            .await
            .unwrap()
            .get("refund"),
        Some(&1)
    );
    // the ledger balances to the credit
    let balance = s.store.balance(user.id).await.unwrap();
    assert_eq!(balance, GRANT - succeeded * PRICE);
    assert_eq!(s.store.ledger_sum(user.id).await.unwrap(), balance);
    assert_eq!(s.store.lost_job_counts().await.unwrap(), (requeued, 1));

    s.stop.cancel();
    for t in s.tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
    }
    redis.stop();
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_jobs_survive_a_flushall() {
    every_paid_job_ends_after(Damage::FlushAll).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_jobs_survive_a_redis_restart_without_persistence() {
    every_paid_job_ends_after(Damage::RestartEmpty).await;
}
