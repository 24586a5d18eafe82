//! Paid jobs through a Sentinel failover: two `genq run` processes (workers, relay,
//! settler) reach Redis through three sentinels; the primary is SIGKILLed while
//! they work through paid jobs. The replica is promoted (with whatever it had not
//! replicated yet lost), the same processes go on against it, and PostgreSQL's
//! reconciliation puts back any paid job the failover dropped: every paid job ends,
//! refunded at most once, and the ledger balances.

use std::time::Duration;

use genq_store::{PaidJob, Store, StoreConfig};
use genq_testkit::{
    ChildProcess, RedisSentinelSet, TestSchema, free_port, unique_prefix, wait_until,
};

const JOBS: usize = 300;
const PRICE: i64 = 1;
const GRANT: i64 = 1000;

fn genq_run(url: &str, prefix: &str, schema: &TestSchema) -> ChildProcess {
    let env = [
        ("GENQ_REDIS_URL", url.to_owned()),
        ("GENQ_PREFIX", prefix.to_owned()),
        ("GENQ_DATABASE_URL", schema.url.clone()),
        ("GENQ_DATABASE_SCHEMA", schema.name.clone()),
        ("GENQ_DATABASE_MAX_CONNECTIONS", "5".to_owned()),
        ("GENQ_LEASE_SECS", "10".to_owned()),
        ("GENQ_HEARTBEAT_MS", "1000".to_owned()),
        ("GENQ_RECONCILE_SECS", "2".to_owned()),
        ("GENQ_METRICS_ADDR", format!("127.0.0.1:{}", free_port())),
        (
            "GENQ_BOT_METRICS_ADDR",
            format!("127.0.0.1:{}", free_port()),
        ),
        ("GENQ_BOT_TOKEN", String::new()),
        ("RUST_LOG", "info".to_owned()),
    ];
    ChildProcess::spawn(
        env!("CARGO_BIN_EXE_genq"),
        &[
            "run",
            "--no-admin",
            "--queues",
            "default",
            "--concurrency",
            "30",
        ],
        &env,
    )
    .expect("spawn genq run")
}

/// How many of the test's jobs have ended in the record.
async fn settled(store: &Store) -> usize {
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM jobs WHERE finished_at IS NOT NULL")
        .fetch_one(store.pool())
        .await
        .map_or(0, |n| n as usize)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_jobs_all_end_through_a_sentinel_failover() {
    let mut set = RedisSentinelSet::start()
        .await
        .expect("a primary, a replica and three sentinels");
    let url = set.url();
    let prefix = unique_prefix("sentinelpaid");
    let schema = TestSchema::create("sentinelpaid").await.expect("schema");
    let store = Store::open(&StoreConfig::new(&schema.url).schema(&schema.name))
        .await
        .expect("store");
    let mut runs = [
        genq_run(&url, &prefix, &schema),
        genq_run(&url, &prefix, &schema),
    ];
    for r in &runs {
        assert!(
            r.wait_for_output("worker started", Duration::from_secs(30))
                .await,
            "genq run did not start"
        );
    }
    let user = store.upsert_user(8080, "en").await.expect("user");
    store.grant(user.id, GRANT, "test").await.expect("grant");
    let mut ids = Vec::new();
    for i in 0..JOBS {
        let payload = if i % 10 == 9 {
            serde_json::json!({ "fail": { "class": "user_violation" } })
        } else {
            serde_json::json!({ "sleep_ms": 400 + (i * 137) % 801 })
        };
        let job = PaidJob {
            user_id: user.id,
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
                .expect("charge")
                .job_id()
                .to_owned(),
        );
    }

    // under load: some settled, most still to run
    let progress = wait_until(Duration::from_secs(60), || async {
        let n = settled(&store).await;
        (n >= 40).then_some(n)
    })
    .await
    .expect("the jobs are being worked on");
    assert!(
        progress < JOBS / 2,
        "the primary dies under load ({progress} settled)"
    );
    set.kill_primary();
    assert!(
        set.wait_failover(Duration::from_secs(60)).await,
        "the sentinels promoted the replica"
    );

    let all = wait_until(Duration::from_secs(180), || async {
        (settled(&store).await == JOBS).then_some(())
    })
    .await;
    assert!(
        all.is_some(),
        "every paid job ended ({} of {JOBS})",
        settled(&store).await
    );
    let mut succeeded = 0;
    for (i, id) in ids.iter().enumerate() {
        let j = store.job(id).await.expect("read").expect("known");
        let kinds = store.ledger_kinds_of_job(id).await.expect("ledger");
        let kinds: Vec<(&str, i64)> = kinds.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        if i % 10 == 9 {
            assert_eq!(j.status, "failed", "{id}");
            assert_eq!(kinds, vec![("charge", 1), ("refund", 1)], "{id}");
        } else {
            assert_eq!(j.status, "succeeded", "{id}: {:?}", j.error);
            assert_eq!(kinds, vec![("charge", 1)], "{id}");
            succeeded += 1;
        }
    }
    let balance = store.balance(user.id).await.expect("balance");
    assert_eq!(balance, GRANT - succeeded * PRICE);
    assert_eq!(store.ledger_sum(user.id).await.expect("sum"), balance);
    for r in &mut runs {
        assert!(
            r.wait_exit(Duration::from_millis(100)).await.is_none(),
            "genq run was not restarted"
        );
        r.sigkill();
    }
    schema.drop().await;
}
