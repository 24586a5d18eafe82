//! The outbox relay SIGKILLed between commit and push, and between push and mark:
//! after a restart every committed job is in Redis exactly once.

use std::time::Duration;

use genq_redis::{RedisConfig, RedisQueue};
use genq_store::{PaidJob, Store, StoreConfig};
use genq_testkit::{
    ChildProcess, TestSchema, cleanup_prefix, redis_url, unique_prefix, wait_until,
};

const JOBS: usize = 5;

fn relay(schema: &TestSchema, prefix: &str, failpoint: Option<&str>) -> ChildProcess {
    let mut env = vec![
        ("GENQ_DATABASE_URL", schema.url.clone()),
        ("GENQ_DATABASE_SCHEMA", schema.name.clone()),
        ("GENQ_REDIS_URL", redis_url()),
        ("GENQ_PREFIX", prefix.to_owned()),
        ("GENQ_LOG", "info".to_owned()),
    ];
    if let Some(f) = failpoint {
        env.push(("GENQ_FAILPOINT", f.to_owned()));
    }
    ChildProcess::spawn(env!("CARGO_BIN_EXE_genq"), &["relay"], &env).expect("spawn relay")
}

async fn killed_at(schema: &TestSchema, prefix: &str, failpoint: &str) {
    let mut p = relay(schema, prefix, Some(failpoint));
    assert!(
        p.wait_for_output(
            &format!("failpoint {failpoint} reached"),
            Duration::from_secs(30)
        )
        .await,
        "relay reached {failpoint}"
    );
    p.sigkill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_at_any_point_pushes_every_job_exactly_once() {
    let schema = TestSchema::create("relaycrash").await.unwrap();
    let store = Store::open(&StoreConfig::new(&schema.url).schema(&schema.name))
        .await
        .unwrap();
    let prefix = unique_prefix("relaycrash");
    let queue = RedisQueue::connect(RedisConfig::with_url(redis_url()).prefix(&prefix))
        .await
        .unwrap();
    let user = store.upsert_user(77, "en").await.unwrap();
    store.grant(user.id, 100, "test").await.unwrap();
    let mut ids = Vec::new();
    for i in 0..JOBS {
        let job = PaidJob {
            user_id: user.id,
            job_type: "probe".to_owned(),
            queue: "default".to_owned(),
            payload: serde_json::json!({ "echo": i }),
            price: 2,
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
    assert_eq!(store.outbox_len().await.unwrap(), JOBS as i64);

    // 1. committed, then killed before the push: nothing in Redis, nothing lost
    killed_at(&schema, &prefix, "relay:before_push").await;
    assert_eq!(queue.stats("default").await.unwrap().pushed, 0);
    assert_eq!(store.outbox_len().await.unwrap(), JOBS as i64);

    // 2. killed after the push, before marking: in Redis, still in the outbox
    killed_at(&schema, &prefix, "relay:after_push").await;
    let stats = queue.stats("default").await.unwrap();
    assert_eq!((stats.pushed, stats.ready), (JOBS as u64, JOBS as u64));
    assert_eq!(store.outbox_len().await.unwrap(), JOBS as i64);

    // 3. a healthy relay finishes the outbox without pushing anything twice
    let p = relay(&schema, &prefix, None);
    let drained = wait_until(Duration::from_secs(30), || async {
        (store.outbox_len().await.ok()? == 0).then_some(())
    })
    .await;
    assert!(drained.is_some(), "outbox drained");
    assert!(p.sigterm());
    let stats = queue.stats("default").await.unwrap();
    assert_eq!(
        (stats.pushed, stats.ready),
        (JOBS as u64, JOBS as u64),
        "each job once: {stats:?}"
    );
    for id in &ids {
        let state = queue
            .job("default", id)
            .await
            .unwrap()
            .expect("job in Redis");
        assert_eq!(state.job_type, "probe");
        assert!(store.job(id).await.unwrap().unwrap().pushed_at.is_some());
    }
    cleanup_prefix(&redis_url(), &prefix).await;
    schema.drop().await;
}
