//! Hosts whose clocks are a minute off run like any other: every time a lease, a
//! reap or a due time compares is the Redis server's (`TIME` inside the scripts),
//! never the calling host's. Real `worker` processes, two of them under libfaketime
//! (one 60 s ahead, one 60 s behind), on a Redis of the test's own.

use std::{path::Path, time::Duration};

use genq_core::JobStatus;
use genq_redis::{NewJob, RedisConfig, RedisQueue};
use genq_testkit::{ChildProcess, PrivateRedis, free_port, unique_prefix, wait_until};
use serde_json::json;

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const JOBS: usize = 2000;
const LEASE_SECS: u64 = 5;

/// `worker --queues default`, its wall clock moved by `skew` ("+60s") when given.
fn worker(redis: &str, prefix: &str, skew: Option<&str>) -> ChildProcess {
    let mut env = vec![
        ("GENQ_REDIS_URL", redis.to_owned()),
        ("GENQ_PREFIX", prefix.to_owned()),
        ("GENQ_LEASE_SECS", LEASE_SECS.to_string()),
        ("GENQ_HEARTBEAT_MS", "1000".to_owned()),
        ("GENQ_METRICS_ADDR", format!("127.0.0.1:{}", free_port())),
        ("GENQ_LOG", "info".to_owned()),
    ];
    if let Some(skew) = skew {
        env.push(("LD_PRELOAD", LIBFAKETIME.to_owned()));
        env.push(("FAKETIME", skew.to_owned()));
        // tokio's timers (monotonic) stay real; only the wall clock is off
        env.push(("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()));
    }
    ChildProcess::spawn(
        env!("CARGO_BIN_EXE_worker"),
        &["--queues", "default", "--concurrency", "150"],
        &env,
    )
    .expect("spawn worker")
}

/// The Redis server's clock (ms).
async fn server_ms(queue: &RedisQueue) -> u64 {
    let mut c = queue.connection();
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut c).await.expect("TIME");
    secs * 1000 + micros / 1000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_a_minute_ahead_or_behind_lose_no_lease_and_run_no_job_twice() {
    assert!(
        Path::new(LIBFAKETIME).exists(),
        "libfaketime is missing: run scripts/services.sh --test (Debian package faketime)"
    );
    let redis = PrivateRedis::start().await.expect("a private redis-server");
    let prefix = unique_prefix("clock_skew");
    let queue = RedisQueue::connect(RedisConfig::with_url(redis.url()).prefix(&prefix))
        .await
        .expect("connect");
    let workers: Vec<ChildProcess> = [None, None, Some("+60s"), Some("-60s")]
        .into_iter()
        .map(|skew| worker(&redis.url(), &prefix, skew))
        .collect();
    for w in &workers {
        assert!(
            w.wait_for_output("worker started", Duration::from_secs(30))
                .await,
            "a worker did not start"
        );
    }
    // the skew took: two workers report heartbeats a minute off the server's clock
    let skewed = wait_until(Duration::from_secs(30), || async {
        let seen = queue.workers("default").await.ok()?;
        if seen.len() < 4 {
            return None;
        }
        let now = server_ms(&queue).await;
        let off = seen
            .iter()
            .filter(|w| w.last_heartbeat_ms.abs_diff(now) > 50_000)
            .count();
        Some(off)
    })
    .await;
    assert_eq!(skewed, Some(2), "two workers' clocks are a minute off");

    // 2,000 jobs of 1-4 s, spread over the four
    let jobs: Vec<NewJob> = (0..JOBS)
        .map(|i| {
            let sleep_ms = 1000 + (i * 1237) % 3001;
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
    let done = wait_until(Duration::from_secs(240), || async {
        let s = queue.stats("default").await.ok()?;
        (s.succeeded + s.failed >= JOBS as u64).then_some(s)
    })
    .await
    .expect("every job ended");
    assert_eq!(done.succeeded, JOBS as u64, "{done:?}");
    assert_eq!(
        done.recovered, 0,
        "no lease was taken from a live worker: {done:?}"
    );
    assert_eq!(done.dead, 0, "{done:?}");
    let mut ran_twice = 0;
    let mut ran_on = std::collections::BTreeSet::new();
    for id in &ids {
        let s = queue
            .job("default", id)
            .await
            .expect("read")
            .expect("the job");
        assert_eq!(s.status, JobStatus::Succeeded);
        if s.attempts != 1 {
            ran_twice += 1;
        }
        ran_on.extend(s.worker);
    }
    assert_eq!(ran_twice, 0, "jobs run more than once");
    assert_eq!(
        ran_on.len(),
        4,
        "the skewed workers ran jobs too: {ran_on:?}"
    );
    drop(workers);
    drop(redis);
}
