//! Workers follow a Sentinel failover without a restart: a primary, a replica and
//! three sentinels started by the test; two real `worker` processes connected
//! through the sentinels (`redis+sentinel://…/mymaster`); the primary SIGKILLed
//! while they drain a backlog; the sentinels promote the replica, the same worker
//! processes go on against it, and every job ends.

use std::time::Duration;

use genq_core::JobStatus;
use genq_redis::{NewJob, RedisConfig, RedisQueue};
use genq_testkit::{ChildProcess, RedisSentinelSet, free_port, unique_prefix, wait_until};
use serde_json::json;

const JOBS: usize = 1000;
/// Long enough that the failover (about 1-3 s) does not expire live leases.
const LEASE_SECS: u64 = 10;

fn worker(url: &str, prefix: &str) -> ChildProcess {
    let env = [
        ("GENQ_REDIS_URL", url.to_owned()),
        ("GENQ_PREFIX", prefix.to_owned()),
        ("GENQ_LEASE_SECS", LEASE_SECS.to_string()),
        ("GENQ_HEARTBEAT_MS", "1000".to_owned()),
        ("GENQ_METRICS_ADDR", format!("127.0.0.1:{}", free_port())),
        ("GENQ_LOG", "info".to_owned()),
    ];
    ChildProcess::spawn(
        env!("CARGO_BIN_EXE_worker"),
        &["--queues", "default", "--concurrency", "50"],
        &env,
    )
    .expect("spawn worker")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_follow_a_sentinel_failover_and_every_job_ends() {
    let mut set = RedisSentinelSet::start()
        .await
        .expect("a primary, a replica and three sentinels");
    let url = set.url();
    let prefix = unique_prefix("sentinel");
    let queue = RedisQueue::connect(RedisConfig::with_url(&url).prefix(&prefix))
        .await
        .expect("connect through the sentinels");
    let mut workers = [worker(&url, &prefix), worker(&url, &prefix)];
    for w in &workers {
        assert!(
            w.wait_for_output("worker started", Duration::from_secs(30))
                .await,
            "a worker did not start"
        );
    }

    // jobs of 0.2-1 s: the backlog takes several seconds to drain
    let jobs: Vec<NewJob> = (0..JOBS)
        .map(|i| {
            let sleep_ms = 200 + (i * 137) % 801;
            NewJob::json("default", "probe", &json!({ "sleep_ms": sleep_ms })).expect("payload")
        })
        .collect();
    let ids: Vec<String> = queue
        .push_bulk(jobs)
        .await
        .expect("push")
        .into_iter()
        .map(|p| p.id)
        .collect();

    // under load: some done, most still to do
    let started = wait_until(Duration::from_secs(60), || async {
        let s = queue.stats("default").await.ok()?;
        (s.succeeded >= 150).then_some(s)
    })
    .await
    .expect("the workers made progress");
    assert!(
        started.succeeded < (JOBS as u64) / 2,
        "the primary dies under load: {started:?}"
    );
    set.kill_primary();
    assert!(
        set.wait_failover(Duration::from_secs(60)).await,
        "the sentinels promoted the replica"
    );
    assert_eq!(set.current_primary_port().await, Some(set.replica_port()));

    // the same workers drain the rest on the new primary
    let drained = wait_until(Duration::from_secs(120), || async {
        let s = queue.stats("default").await.ok()?;
        (s.ready == 0 && s.running == 0 && s.scheduled == 0).then_some(s)
    })
    .await;
    assert!(
        drained.is_some(),
        "the backlog drained after the failover: {:?}",
        queue.stats("default").await
    );
    for id in &ids {
        let s = queue
            .job("default", id)
            .await
            .expect("read on the new primary")
            .expect("the job is known");
        assert_eq!(s.status, JobStatus::Succeeded, "{s:?}");
    }
    for w in &mut workers {
        assert!(
            w.wait_exit(Duration::from_millis(100)).await.is_none(),
            "the worker was not restarted"
        );
        assert!(
            w.output_contains("connected to the primary the sentinels name now"),
            "the worker followed the new primary"
        );
    }
}
