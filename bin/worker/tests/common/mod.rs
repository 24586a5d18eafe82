//! A `worker` process on real Redis with the fake provider, configured by a TOML
//! file written for the test: [`Sandbox`] (one test's prefix, queue, directory,
//! config and worker processes) and [`JobsEnv`] (a sandbox with the fake provider
//! and the job types' usual config).
#![allow(dead_code)]

use std::{ops::Deref, path::PathBuf, time::Duration};

use genq_core::JobState;
use genq_redis::{NewJob, RedisConfig, RedisQueue};
use genq_testkit::{
    ChildProcess, FakeProvider, cleanup_prefix, free_port, redis_url, unique_prefix, wait_until,
};

pub const LEASE_SECS: u64 = 3;

/// How the test's providers are set up.
pub struct ProviderSetup {
    /// Keys of the OpenAI-compatible provider `llm`.
    pub llm_keys: Vec<&'static str>,
    /// Keys of the queue-style provider `media`.
    pub media_keys: Vec<&'static str>,
    pub rate_limit_cooldown_secs: u64,
    /// Upscale locally instead of through `media`.
    pub local_upscale: bool,
    /// Per-request timeout of the providers.
    pub timeout_secs: u64,
}

impl Default for ProviderSetup {
    fn default() -> Self {
        Self {
            llm_keys: vec!["llm-key-a", "llm-key-b"],
            media_keys: vec!["media-key-a"],
            rate_limit_cooldown_secs: 3600,
            local_upscale: false,
            timeout_secs: 30,
        }
    }
}

/// One test's own corner: a Redis prefix and the queue on it, a temporary
/// directory with `artifacts/` and the config file `genq.toml`, and `worker`
/// processes started on them.
pub struct Sandbox {
    pub prefix: String,
    pub queue: RedisQueue,
    pub artifacts: PathBuf,
    pub config: PathBuf,
    pub dir: PathBuf,
}

impl Sandbox {
    /// A fresh prefix and directory for `test`; the config is not written yet.
    pub async fn new(test: &str) -> Self {
        let prefix = unique_prefix(test);
        let dir = std::env::temp_dir().join(&prefix);
        let artifacts = dir.join("artifacts");
        std::fs::create_dir_all(&artifacts).expect("temp dir");
        let queue = RedisQueue::connect(RedisConfig::with_url(redis_url()).prefix(&prefix))
            .await
            .expect("connect");
        Self {
            prefix,
            queue,
            artifacts,
            config: dir.join("genq.toml"),
            dir,
        }
    }

    /// Writes the config file the workers read.
    pub fn write_config(&self, toml: &str) {
        std::fs::write(&self.config, toml).expect("write config");
    }

    /// Starts `worker ARGS` with a [`LEASE_SECS`] lease, logging at `info`.
    pub fn worker(&self, args: &[&str]) -> ChildProcess {
        self.worker_with(args, LEASE_SECS, "info")
    }

    /// Starts `worker ARGS` with this lease and `GENQ_LOG` level.
    pub fn worker_with(&self, args: &[&str], lease_secs: u64, log: &str) -> ChildProcess {
        let env = [
            ("GENQ_REDIS_URL", redis_url()),
            ("GENQ_PREFIX", self.prefix.clone()),
            ("GENQ_CONFIG", self.config.display().to_string()),
            ("GENQ_LEASE_SECS", lease_secs.to_string()),
            ("GENQ_HEARTBEAT_MS", "500".to_owned()),
            ("GENQ_METRICS_ADDR", format!("127.0.0.1:{}", free_port())),
            ("GENQ_GRACE_SECS", "5".to_owned()),
            ("GENQ_LOG", log.to_owned()),
        ];
        ChildProcess::spawn(env!("CARGO_BIN_EXE_worker"), args, &env).expect("spawn worker")
    }

    pub async fn push(&self, queue: &str, job_type: &str, payload: serde_json::Value) -> String {
        self.queue
            .push(NewJob::json(queue, job_type, &payload).expect("payload"))
            .await
            .expect("push")
            .id
    }

    pub async fn state(&self, queue: &str, id: &str) -> Option<JobState> {
        self.queue.job(queue, id).await.expect("job state")
    }

    pub async fn wait_for(
        &self,
        queue: &str,
        id: &str,
        pred: impl Fn(&JobState) -> bool,
    ) -> JobState {
        let found = wait_until(Duration::from_secs(60), || async {
            self.state(queue, id).await.filter(|s| pred(s))
        })
        .await;
        match found {
            Some(s) => s,
            None => panic!(
                "job {id}: expected state not reached; last {:?}",
                self.state(queue, id).await
            ),
        }
    }

    pub async fn wait_final(&self, queue: &str, id: &str) -> JobState {
        self.wait_for(queue, id, |s| s.status.is_final()).await
    }

    /// Removes the prefix's keys and the directory.
    pub async fn cleanup(self) {
        cleanup_prefix(&redis_url(), &self.prefix).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A [`Sandbox`] (it derefs to one) with the fake provider as `llm` and `media`.
pub struct JobsEnv {
    pub fake: FakeProvider,
    pub sandbox: Sandbox,
}

impl Deref for JobsEnv {
    type Target = Sandbox;

    fn deref(&self) -> &Sandbox {
        &self.sandbox
    }
}

/// `"a", "b"`: a TOML list's items.
pub fn toml_list(list: &[&str]) -> String {
    list.iter()
        .map(|k| format!("\"{k}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

impl JobsEnv {
    pub async fn start(test: &str, setup: ProviderSetup) -> Self {
        let fake = FakeProvider::start().await;
        let sandbox = Sandbox::new(test).await;
        let base = fake.base_url();
        let text = format!(
            r#"
[artifacts]
dir = "{artifacts}"

[providers.llm]
protocol = "openai"
base_url = "{base}/v1"
keys = [{llm_keys}]
rate_limit_cooldown_secs = {rl}
timeout_secs = {timeout}

[providers.media]
protocol = "queue"
base_url = "{base}/queue"
keys = [{media_keys}]
rate_limit_cooldown_secs = {rl}
timeout_secs = {timeout}

[jobs.generate_reply]
provider = "llm"
backoff_base_ms = 200

[jobs.generate_image_prompt]
provider = "llm"

[jobs.generate_image]
provider = "llm"

[jobs.generate_video]
provider = "media"
poll_interval_ms = 100
backoff_base_ms = 200

[jobs.face_swap]
provider = "media"
poll_interval_ms = 100

[jobs.upscale]
{upscale_provider}
poll_interval_ms = 100
"#,
            artifacts = sandbox.artifacts.display(),
            llm_keys = toml_list(&setup.llm_keys),
            media_keys = toml_list(&setup.media_keys),
            rl = setup.rate_limit_cooldown_secs,
            timeout = setup.timeout_secs,
            upscale_provider = if setup.local_upscale {
                ""
            } else {
                "provider = \"media\""
            },
        );
        sandbox.write_config(&text);
        Self { fake, sandbox }
    }

    /// Starts `worker --queues text,img,video,maintenance` with a short lease.
    pub fn worker(&self) -> ChildProcess {
        self.sandbox
            .worker(&["--queues", "text,img,video,maintenance"])
    }

    /// Stores an input file in the artifact directory the worker uses; its key.
    pub fn put_input(&self, name: &str, bytes: &[u8]) -> String {
        let key = format!("inputs/{name}");
        let path = self.artifacts.join(&key);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, bytes).expect("write input");
        key
    }

    pub fn artifact_path(&self, key: &str) -> PathBuf {
        self.artifacts.join(key)
    }

    pub async fn cleanup(self) {
        self.sandbox.cleanup().await;
    }
}

/// A real PNG of the given size.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encode png");
    out.into_inner()
}
