//! A real `worker` process on a vendor adapter (fal, Replicate) against the vendor's
//! fake: SIGKILLed while it waits on the vendor task, the next worker resumes the
//! same task (one submission).

use std::time::Duration;

use genq_core::{JobState, JobStatus};
use genq_redis::{NewJob, RedisConfig, RedisQueue};
use genq_testkit::{
    ChildProcess, FakeVendor, FakeVendorKind, cleanup_prefix, free_port, redis_url, unique_prefix,
    wait_until,
};
use serde_json::json;

struct Env {
    fake: FakeVendor,
    prefix: String,
    queue: RedisQueue,
    config: std::path::PathBuf,
    dir: std::path::PathBuf,
}

impl Env {
    async fn start(kind: FakeVendorKind, model: &str) -> Self {
        let fake = FakeVendor::start(kind).await;
        let prefix = unique_prefix("vendorworker");
        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(dir.join("artifacts")).expect("temp dir");
        let config = dir.join("genq.toml");
        let text = format!(
            r#"
[artifacts]
dir = "{artifacts}"

[providers.video]
kind = "{kind}"
base_url = "{base}"
keys = ["vendor-key"]

[jobs.generate_video]
provider = "video"
model = "{model}"
poll_interval_ms = 100
backoff_base_ms = 200
"#,
            artifacts = dir.join("artifacts").display(),
            kind = kind.config_kind(),
            base = fake.base_url(),
        );
        std::fs::write(&config, text).expect("write config");
        let queue = RedisQueue::connect(RedisConfig::with_url(redis_url()).prefix(&prefix))
            .await
            .expect("connect");
        Self {
            fake,
            prefix,
            queue,
            config,
            dir,
        }
    }

    fn worker(&self) -> ChildProcess {
        let env = [
            ("GENQ_REDIS_URL", redis_url()),
            ("GENQ_PREFIX", self.prefix.clone()),
            ("GENQ_CONFIG", self.config.display().to_string()),
            ("GENQ_LEASE_SECS", "3".to_owned()),
            ("GENQ_HEARTBEAT_MS", "500".to_owned()),
            ("GENQ_METRICS_ADDR", format!("127.0.0.1:{}", free_port())),
            ("GENQ_GRACE_SECS", "5".to_owned()),
            ("GENQ_LOG", "info".to_owned()),
        ];
        ChildProcess::spawn(env!("CARGO_BIN_EXE_worker"), &["--queues", "video"], &env)
            .expect("spawn worker")
    }

    async fn final_state(&self, id: &str) -> JobState {
        let found = wait_until(Duration::from_secs(60), || async {
            self.queue
                .job("video", id)
                .await
                .ok()
                .flatten()
                .filter(|s| s.status.is_final())
        })
        .await;
        found.unwrap_or_else(|| panic!("job {id} did not end"))
    }

    async fn cleanup(self) {
        cleanup_prefix(&redis_url(), &self.prefix).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn killed_while_waiting_resumes_the_same_task(kind: FakeVendorKind, model: &str) {
    let env = Env::start(kind, model).await;
    env.fake.set_task_duration(Duration::from_secs(6));
    let mut first = env.worker();
    let id = env
        .queue
        .push(
            NewJob::json(
                "video",
                "generate_video",
                &json!({ "prompt": "a storm", "template": "custom" }),
            )
            .expect("payload"),
        )
        .await
        .expect("push")
        .id;
    let polled = wait_until(Duration::from_secs(30), || async {
        (env.fake.submits() == 1 && env.fake.calls("poll") >= 2).then_some(())
    })
    .await;
    assert!(
        polled.is_some(),
        "{kind:?}: the first worker submitted and is polling"
    );
    first.sigkill();

    let _second = env.worker();
    let s = env.final_state(&id).await;
    assert_eq!(
        (s.status, s.attempts),
        (JobStatus::Succeeded, 2),
        "{kind:?}: {s:?}"
    );
    assert_eq!(
        env.fake.submits(),
        1,
        "{kind:?}: the second run resumed the vendor task"
    );
    assert_eq!(env.fake.task_ids().len(), 1);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fal_worker_killed_while_waiting_resumes_the_same_request() {
    killed_while_waiting_resumes_the_same_task(
        FakeVendorKind::Fal,
        "fal-ai/kling-video/v2/master/image-to-video",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicate_worker_killed_while_waiting_resumes_the_same_prediction() {
    killed_while_waiting_resumes_the_same_task(FakeVendorKind::Replicate, "minimax/video-01").await;
}
