//! The `worker` binary as operators run it: killed, stopped, scraped.

use std::time::Duration;

use genq_core::{JobState, JobStatus};
use genq_redis::{NewJob, RedisConfig, RedisQueue};
use genq_testkit::{
    ChildProcess, cleanup_prefix, free_port, http_get, redis_url, unique_prefix, wait_until,
};
use serde_json::json;

const LEASE_SECS: u64 = 3;

struct Setup {
    prefix: String,
    queue: RedisQueue,
}

impl Setup {
    async fn new(test: &str) -> Self {
        let prefix = unique_prefix(test);
        let queue = RedisQueue::connect(RedisConfig::with_url(redis_url()).prefix(&prefix))
            .await
            .expect("connect");
        Self { prefix, queue }
    }

    /// Starts `worker --queues default` with a short lease; returns it and its metrics address.
    fn worker(&self, grace_secs: u64) -> (ChildProcess, String) {
        let metrics = format!("127.0.0.1:{}", free_port());
        let env = [
            ("GENQ_REDIS_URL", redis_url()),
            ("GENQ_PREFIX", self.prefix.clone()),
            ("GENQ_LEASE_SECS", LEASE_SECS.to_string()),
            ("GENQ_HEARTBEAT_MS", "500".to_owned()),
            ("GENQ_METRICS_ADDR", metrics.clone()),
            ("GENQ_GRACE_SECS", grace_secs.to_string()),
            ("GENQ_LOG", "info".to_owned()),
        ];
        let child =
            ChildProcess::spawn(env!("CARGO_BIN_EXE_worker"), &["--queues", "default"], &env)
                .expect("spawn worker");
        (child, metrics)
    }

    async fn push(&self, payload: serde_json::Value) -> String {
        self.queue
            .push(NewJob::json("default", "probe", &payload).expect("payload"))
            .await
            .expect("push")
            .id
    }

    async fn wait_for(
        &self,
        id: &str,
        timeout: Duration,
        pred: impl Fn(&JobState) -> bool,
    ) -> JobState {
        let found = wait_until(timeout, || async {
            self.queue
                .job("default", id)
                .await
                .ok()
                .flatten()
                .filter(|s| pred(s))
        })
        .await;
        match found {
            Some(s) => s,
            None => panic!(
                "job {id}: expected state not reached; last {:?}",
                self.queue.job("default", id).await
            ),
        }
    }

    async fn cleanup(self) {
        cleanup_prefix(&redis_url(), &self.prefix).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_workers_job_is_finished_by_another_worker_with_attempts_2() {
    let s = Setup::new("sigkill").await;
    let (mut first, _) = s.worker(30);
    let id = s
        .push(json!({ "sleep_ms": 2000, "echo": "survivor" }))
        .await;
    let running = s
        .wait_for(&id, Duration::from_secs(20), |j| {
            j.status == JobStatus::Running
        })
        .await;
    assert_eq!(running.attempts, 1);
    first.sigkill();

    let (_second, _) = s.worker(30);
    // Back on the queue within the lease (plus a heartbeat), then run to the end.
    let done = s
        .wait_for(&id, Duration::from_secs(LEASE_SECS * 4 + 10), |j| {
            j.status.is_final()
        })
        .await;
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(done.attempts, 2, "the lost run is counted");
    assert_ne!(done.worker, running.worker, "another worker finished it");
    assert_eq!(done.result.unwrap()["echo"], "survivor");
    let stats = s.queue.stats("default").await.unwrap();
    assert_eq!(stats.recovered, 1);
    s.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_short_jobs_and_hands_back_long_ones() {
    let s = Setup::new("sigterm").await;
    let (mut worker, _) = s.worker(1);
    let short = s.push(json!({ "sleep_ms": 300 })).await;
    let long = s.push(json!({ "sleep_ms": 60_000 })).await;
    s.wait_for(&long, Duration::from_secs(20), |j| {
        j.status == JobStatus::Running
    })
    .await;
    s.wait_for(&short, Duration::from_secs(20), |j| {
        j.status == JobStatus::Running
    })
    .await;
    assert!(worker.sigterm());
    let status = worker
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("worker exits after its grace period");
    assert!(status.success(), "clean exit: {status:?}");
    assert_eq!(
        s.queue
            .job("default", &short)
            .await
            .unwrap()
            .unwrap()
            .status,
        JobStatus::Succeeded
    );
    let handed_back = s.queue.job("default", &long).await.unwrap().unwrap();
    assert_eq!(
        handed_back.status,
        JobStatus::Queued,
        "handed back at once, not left to its lease"
    );
    assert_eq!(handed_back.attempts, 0, "an interrupted run is not counted");
    s.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_counts_jobs_and_reports_health() {
    let s = Setup::new("metrics").await;
    let (_worker, addr) = s.worker(5);
    let id = s.push(json!({ "echo": 1 })).await;
    s.wait_for(&id, Duration::from_secs(20), |j| j.status.is_final())
        .await;
    let text = wait_until(Duration::from_secs(10), || {
        let addr = addr.clone();
        async move {
            http_get(&addr, "/metrics").filter(|t| {
                t.contains(
                    r#"genq_jobs_total{job_type="probe",outcome="succeeded",queue="default"} 1"#,
                )
            })
        }
    })
    .await
    .expect("the job is counted on /metrics");
    assert!(text.contains("genq_job_duration_seconds_bucket"));
    assert!(text.contains(r#"genq_queue_depth{queue="default",state="ready"}"#));
    assert_eq!(http_get(&addr, "/healthz").as_deref(), Some("ok\n"));
    s.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_are_named_at_start_up() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_worker"))
        .args(["--queues", "Bad Queue", "--redis", &redis_url()])
        .env("GENQ_PREFIX", unique_prefix("badcfg"))
        .output()
        .expect("run worker");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid queue name 'Bad Queue'"), "{err}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_worker"))
        .args(["--queues", "default", "--heartbeat-ms", "60000"])
        .output()
        .expect("run worker");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("heartbeat"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_may_evict_keys_is_refused_at_start_unless_allowed() {
    let redis = genq_testkit::PrivateRedis::start_with_args(&["--maxmemory-policy", "allkeys-lru"])
        .await
        .expect("a private redis-server");
    let env = |allow: bool| {
        let mut env = vec![
            ("GENQ_REDIS_URL", redis.url()),
            ("GENQ_PREFIX", unique_prefix("eviction")),
            ("GENQ_METRICS_ADDR", format!("127.0.0.1:{}", free_port())),
            ("GENQ_LOG", "info".to_owned()),
        ];
        if allow {
            env.push(("GENQ_ALLOW_EVICTION", "true".to_owned()));
        }
        env
    };
    let mut refused = ChildProcess::spawn(
        env!("CARGO_BIN_EXE_worker"),
        &["--queues", "default"],
        &env(false),
    )
    .expect("spawn worker");
    let status = refused
        .wait_exit(Duration::from_secs(30))
        .await
        .expect("the worker stops at once");
    assert!(!status.success());
    assert!(
        refused
            .wait_for_output("maxmemory-policy is 'allkeys-lru'", Duration::from_secs(10))
            .await,
        "the refusal names the setting"
    );
    // the documented override starts it, with a warning
    let allowed = ChildProcess::spawn(
        env!("CARGO_BIN_EXE_worker"),
        &["--queues", "default"],
        &env(true),
    )
    .expect("spawn worker");
    assert!(
        allowed
            .wait_for_output("worker started", Duration::from_secs(30))
            .await,
        "the worker starts with GENQ_ALLOW_EVICTION"
    );
    assert!(
        allowed
            .wait_for_output("allowed by GENQ_ALLOW_EVICTION", Duration::from_secs(10))
            .await
    );
    drop(allowed);
}
