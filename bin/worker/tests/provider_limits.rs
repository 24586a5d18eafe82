//! Provider limits shared by every host: three `worker` processes against a fake
//! vendor that refuses (429) a key's 11th task in flight, and one whose limit is
//! undeclared (adaptive mode finds it).

mod common;

use std::{ops::Deref, time::Duration};

use common::Sandbox;
use genq_core::JobStatus;
use genq_testkit::{ChildProcess, FakeProvider, redis_url, wait_until};

struct Env {
    fake: FakeProvider,
    sandbox: Sandbox,
}

impl Deref for Env {
    type Target = Sandbox;

    fn deref(&self) -> &Sandbox {
        &self.sandbox
    }
}

impl Env {
    async fn start(test: &str, keys: &[&str], limits: &str) -> Self {
        let fake = FakeProvider::start().await;
        fake.set_task_duration(Duration::from_millis(200));
        let sandbox = Sandbox::new(test).await;
        sandbox.write_config(&format!(
            r#"
[artifacts]
dir = "{artifacts}"

[providers.media]
protocol = "queue"
base_url = "{base}/queue"
keys = [{keys}]
{limits}

[jobs.generate_image]
provider = "media"
poll_interval_ms = 50
"#,
            artifacts = sandbox.artifacts.display(),
            base = fake.base_url(),
            keys = common::toml_list(keys),
        ));
        Self { fake, sandbox }
    }

    fn worker(&self) -> ChildProcess {
        self.sandbox
            .worker_with(&["--queues", "img", "--concurrency", "40"], 5, "warn")
    }

    /// Pushes `n` `generate_image` jobs; their ids.
    async fn push_images(&self, n: usize) -> Vec<String> {
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let payload =
                serde_json::json!({ "prompt": format!("picture {i}"), "width": 64, "height": 64 });
            ids.push(self.push("img", "generate_image", payload).await);
        }
        ids
    }

    async fn succeeded(&self) -> u64 {
        self.queue.stats("img").await.expect("stats").succeeded
    }

    /// Waits until `n` jobs succeeded (none may fail).
    async fn wait_succeeded(&self, n: u64) {
        let done = wait_until(Duration::from_secs(240), || async {
            let stats = self.queue.stats("img").await.expect("stats");
            assert_eq!(stats.failed, 0, "no job fails: {stats:?}");
            (stats.succeeded >= n).then_some(())
        })
        .await;
        assert!(
            done.is_some(),
            "{n} jobs did not succeed in time: {:?}",
            self.queue.stats("img").await
        );
    }

    async fn cleanup(self) {
        self.sandbox.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_never_exceed_a_vendors_task_limit_and_get_no_429() {
    let env = Env::start(
        "limits_static",
        &["media-key-a", "media-key-b"],
        "max_in_flight = 10\ndefer_ms = 200",
    )
    .await;
    env.fake.set_task_limit_per_key(Some(10));
    let workers: Vec<ChildProcess> = (0..3).map(|_| env.worker()).collect();
    let ids = env.push_images(200).await;
    env.wait_succeeded(200).await;

    assert_eq!(env.fake.rate_limited_answers(), 0, "zero 429s");
    let peak = env.fake.peak_tasks_in_flight();
    assert!(
        peak <= 20,
        "at most 2 keys x 10 tasks in flight, saw {peak}"
    );
    for (key, peak) in env.fake.peak_tasks_in_flight_per_key() {
        assert!(peak <= 10, "key {key}: {peak} tasks in flight");
    }
    assert!(peak > 10, "both keys were used together (peak {peak})");
    assert_eq!(env.fake.submits(), 200, "one task per job");
    // waiting for capacity is not an attempt
    let stats = env.queue.stats("img").await.expect("stats");
    assert!(
        stats.deferred > 0,
        "120 worker slots for 20 vendor slots: {stats:?}"
    );
    assert_eq!(stats.retried, 0, "{stats:?}");
    for id in ids.iter().take(50) {
        let state = env.queue.job("img", id).await.expect("state").expect("job");
        assert_eq!(state.status, JobStatus::Succeeded);
        assert_eq!(state.attempts, 1, "job {id}: deferrals are not attempts");
    }
    drop(workers);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_mode_finds_an_undeclared_limit_of_seven() {
    let env = Env::start(
        "limits_adaptive",
        &["media-key-a"],
        "adaptive = true\nadaptive_start = 2\nmax_in_flight = 40\ndefer_ms = 200",
    )
    .await;
    // the vendor refuses the 8th task in flight of a key, and says nothing more
    env.fake.set_task_limit_per_key(Some(7));
    let workers: Vec<ChildProcess> = (0..3).map(|_| env.worker()).collect();
    env.push_images(400).await;

    // warm-up: the limit climbs from 2 and meets the vendor's
    env.wait_succeeded(100).await;
    let (calls0, refused0) = (env.fake.calls("submit"), env.fake.rate_limited_answers());
    env.wait_succeeded(400).await;
    let calls = env.fake.calls("submit") - calls0;
    let refused = env.fake.rate_limited_answers() - refused0;
    let rate = refused as f64 / calls.max(1) as f64;
    assert!(
        rate < 0.05,
        "after warm-up {refused} of {calls} submits were refused ({:.1} %)",
        rate * 100.0
    );
    assert!(
        env.fake.peak_tasks_in_flight() >= 5,
        "the limit was used, not starved: peak {}",
        env.fake.peak_tasks_in_flight()
    );
    // the learned limit sits around the vendor's 7
    let mut con = redis::Client::open(redis_url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let pattern = format!("{}:provider:{{media}}:limit:*", env.prefix);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(&pattern)
        .query_async(&mut con)
        .await
        .expect("keys");
    assert_eq!(keys.len(), 1, "{keys:?}");
    let eff: u32 = redis::cmd("HGET")
        .arg(&keys[0])
        .arg("eff")
        .query_async(&mut con)
        .await
        .expect("eff");
    assert!((3..=10).contains(&eff), "learned limit {eff}");
    assert_eq!(env.succeeded().await, 400);
    drop(workers);
    env.cleanup().await;
}
