//! The `promo` pipeline end to end in this process: the catalog's job types built
//! from a config pointing at the fake provider, workers on `text`, `img` and
//! `video`, a pipeline driver, real Redis (a private key prefix), real ffmpeg, and
//! a temporary artifacts directory. Each gate is approved when it opens.

use std::{path::PathBuf, sync::Arc, time::Duration};

use genq_catalog::{CatalogDeps, PROMO, promo::stages};
use genq_config::Config;
use genq_job_assemble_video::AssembleOutput;
use genq_job_write_script::{Part, Script};
use genq_metrics::WorkerMetrics;
use genq_pipeline::{PipelineClient, PipelineDriver, PipelineView};
use genq_redis::{RedisConfig, RedisQueue};
use genq_runtime::{WorkerRuntime, WorkerSettings};
use genq_testkit::{
    FakeProvider, cleanup_prefix, promo_toml, providers_toml, redis_url, unique_prefix, wait_until,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(180);
const QUEUES: [&str; 3] = ["text", "img", "video"];

struct Harness {
    fake: FakeProvider,
    client: PipelineClient,
    prefix: String,
    dir: PathBuf,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn config(fake: &FakeProvider, artifacts: &std::path::Path) -> Config {
    let text = providers_toml(&fake.base_url(), artifacts)
        + r#"
[jobs.generate_image]
provider = "llm"

[jobs.generate_video]
provider = "media"
poll_interval_ms = 100
"# + &promo_toml(120);
    let cfg = Config::parse(&text, "promo test").expect("config");
    cfg.validate().expect("valid config");
    cfg
}

impl Harness {
    async fn start(test: &str) -> Self {
        let fake = FakeProvider::start().await;
        fake.set_task_duration(Duration::from_millis(200));
        let prefix = unique_prefix(test);
        let dir = std::env::temp_dir().join(&prefix);
        let cfg = config(&fake, &dir.join("artifacts"));
        let queue = RedisQueue::connect(RedisConfig {
            poll_interval: Duration::from_millis(200),
            ..RedisConfig::with_url(redis_url()).prefix(&prefix)
        })
        .await
        .expect("connect");
        let providers_prom = prometheus::Registry::new();
        let deps = CatalogDeps {
            redis: queue.connection(),
            prefix: prefix.clone(),
            metrics: &providers_prom,
        };
        let registry = Arc::new(genq_catalog::build(&cfg, &deps).expect("registry"));
        let queues: Vec<String> = QUEUES.iter().map(|q| (*q).to_owned()).collect();
        let mut settings = WorkerSettings::new(queues.clone());
        settings.concurrency = 10;
        settings.grace = Duration::from_secs(1);
        let prom = prometheus::Registry::new();
        let runtime = WorkerRuntime::start(
            registry.clone(),
            queue.clone(),
            WorkerMetrics::new(&prom).expect("metrics"),
            settings,
        )
        .await
        .expect("workers");
        let pipelines = genq_catalog::pipelines_for(&cfg).expect("pipelines");
        assert!(pipelines.names().contains(&PROMO.to_owned()));
        let driver = PipelineDriver::new(queue.clone(), pipelines, registry, queues);
        let stop = CancellationToken::new();
        let s = stop.clone();
        let tasks = vec![
            tokio::spawn(async move {
                let _ = runtime.run(async move { s.cancelled().await }).await;
            }),
            tokio::spawn(driver.run(stop.clone())),
        ];
        Self {
            fake,
            client: PipelineClient::new(queue),
            prefix,
            dir,
            stop,
            tasks,
        }
    }

    async fn wait_for(
        &self,
        id: &str,
        what: &str,
        pred: impl Fn(&PipelineView) -> bool,
    ) -> PipelineView {
        let found = wait_until(WAIT, || async {
            self.client
                .view(id)
                .await
                .expect("view")
                .filter(|v| pred(v))
        })
        .await;
        match found {
            Some(v) => v,
            None => panic!(
                "pipeline {id} never {what}: {:#?}",
                self.client.view(id).await
            ),
        }
    }

    /// Waits for `gate` to open and approves it; the view at the gate.
    async fn approve(&self, id: &str, gate: &str) -> PipelineView {
        let view = self
            .wait_for(id, &format!("parked at {gate}"), |v| {
                v.gate.as_ref().is_some_and(|g| g.name == gate) || v.outcome.is_some()
            })
            .await;
        assert!(view.outcome.is_none(), "ended before {gate}: {view:#?}");
        self.client
            .signal(id, gate, "approve", &Value::Null)
            .await
            .expect("signal")
            .expect("accepted");
        view
    }

    fn artifact(&self, key: &str) -> PathBuf {
        self.dir.join("artifacts").join(key)
    }

    async fn stop(self) {
        self.stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        cleanup_prefix(&redis_url(), &self.prefix).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn stage<'a>(view: &'a PipelineView, name: &str) -> &'a genq_pipeline::StageView {
    view.stages
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no stage {name}"))
}

/// ffprobe's stream types of `path`.
fn stream_types(path: &std::path::Path) -> Vec<String> {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_promo_video_is_made_from_a_brief_with_each_gate_approved() {
    let h = Harness::start("promo-e2e").await;
    let id = h
        .client
        .start(
            PROMO,
            &json!({"brief": "Fresh roasted coffee delivered every morning", "lang": "en"}),
        )
        .await
        .expect("start");

    let at_script = h.approve(&id, stages::APPROVE_SCRIPT).await;
    let output = stage(&at_script, stages::SCRIPT).steps[0]
        .output
        .clone()
        .expect("the script step's output in the view");
    let script: Script = serde_json::from_value(output).expect("a Script");
    assert_eq!(script.segments.len(), 10);
    assert_eq!(script.segments[0].part, Part::Intro);
    assert_eq!(script.segments[9].part, Part::Outro);
    assert!(
        script.title.contains("Fresh roasted coffee"),
        "{}",
        script.title
    );

    let at_images = h.approve(&id, stages::APPROVE_IMAGES).await;
    let images = stage(&at_images, stages::IMAGES);
    assert_eq!(images.steps.len(), 10);
    for step in &images.steps {
        let key = step.output.as_ref().expect("image output")["artifact"]["key"]
            .as_str()
            .expect("image key")
            .to_owned();
        assert!(h.artifact(&key).exists(), "{key}");
    }

    let at_clips = h.approve(&id, stages::APPROVE_CLIPS).await;
    assert_eq!(stage(&at_clips, stages::CLIPS).steps.len(), 10);

    let done = h.wait_for(&id, "ended", |v| v.outcome.is_some()).await;
    assert_eq!(done.outcome.as_deref(), Some("succeeded"), "{done:#?}");
    let result: AssembleOutput =
        serde_json::from_value(done.result.clone().expect("result")).expect("an AssembleOutput");
    assert_eq!(result.title.as_deref(), Some(script.title.as_str()));
    let path = h.artifact(&result.artifact.key);
    let info = genq_media::probe_media(&path).await.expect("ffprobe");
    assert!((info.duration_secs - 50.0).abs() <= 1.0, "{info:?}");
    assert_eq!((info.video_streams, info.audio_streams), (1, 1), "{info:?}");
    assert_eq!(stream_types(&path), ["video", "audio"]);
    let bytes = std::fs::metadata(&path).expect("video file").len();
    assert!(bytes < 50 * 1024 * 1024, "{bytes} bytes");
    let voice: genq_job_voice_over::VoiceOutput = serde_json::from_value(
        stage(&done, stages::VOICE).steps[0]
            .output
            .clone()
            .expect("voice output"),
    )
    .expect("a VoiceOutput");
    assert!((voice.duration_secs - 50.0).abs() <= 0.5, "{voice:?}");

    assert_eq!(h.fake.calls("chat"), 1, "one script");
    assert_eq!(h.fake.calls("image"), 10, "one image per segment");
    assert_eq!(h.fake.submits(), 10, "one animation task per image");
    assert_eq!(h.fake.calls("submit"), 10);
    assert_eq!(h.fake.calls("speech"), 1, "one voice-over");

    let scratch = h.dir.join("artifacts").join(genq_artifacts::SCRATCH_DIR);
    let left: Vec<_> = std::fs::read_dir(&scratch)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_script_malformed_twice_fails_the_pipeline_as_bad_input() {
    let h = Harness::start("promo-malformed").await;
    h.fake.set_malformed_scripts(2);
    let id = h
        .client
        .start(PROMO, &json!({"brief": "A bakery", "lang": "en"}))
        .await
        .expect("start");
    let done = h.wait_for(&id, "ended", |v| v.outcome.is_some()).await;
    assert_eq!(done.outcome.as_deref(), Some("failed"), "{done:#?}");
    assert_eq!(done.error_class.as_deref(), Some("bad_input"), "{done:#?}");
    assert!(
        done.error
            .as_deref()
            .unwrap_or_default()
            .contains("unusable script twice"),
        "{done:#?}"
    );
    assert_eq!(h.fake.calls("chat"), 2, "asked once more, then gave up");
    assert_eq!(h.fake.calls("image"), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_script_malformed_once_is_asked_for_again() {
    let h = Harness::start("promo-retry").await;
    h.fake.set_malformed_scripts(1);
    let id = h
        .client
        .start(PROMO, &json!({"brief": "A bakery", "lang": "en"}))
        .await
        .expect("start");
    let view = h
        .wait_for(&id, "parked at approve_script", |v| {
            v.gate.is_some() || v.outcome.is_some()
        })
        .await;
    assert_eq!(
        view.gate.map(|g| g.name).as_deref(),
        Some(stages::APPROVE_SCRIPT)
    );
    assert_eq!(h.fake.calls("chat"), 2);
    h.client.cancel(&id, "test over").await.expect("cancel");
    h.stop().await;
}

/// What a SIGKILLed worker leaves during the `clips` stage at worst: a run killed
/// after its submit but before its checkpoint was stored. The re-run (same job id,
/// next attempt, no checkpoint) submits again with the same `Idempotency-Key` and
/// gets the same task: the provider creates (and is paid for) one task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_animation_rerun_without_its_checkpoint_pays_once() {
    use genq_core::{Job, JobContext, RetryPolicy};
    use genq_job_generate_video::{GenerateVideo, Template, VideoRequest};
    use genq_jobkit::{MediaDeps, RunSettings};
    use genq_providers::{KeyPool, ProviderConfig, TaskClient};

    let fake = FakeProvider::start().await;
    fake.set_task_duration(Duration::from_millis(100));
    let prefix = unique_prefix("promo-resume");
    let dir = std::env::temp_dir().join(&prefix);
    let queue = RedisQueue::connect(RedisConfig::with_url(redis_url()).prefix(&prefix))
        .await
        .expect("connect");
    let metrics = genq_metrics::ProviderMetrics::new(&prometheus::Registry::new()).unwrap();
    let keys = KeyPool::new(
        "media",
        &["k".to_owned()],
        queue.connection(),
        &prefix,
        metrics.clone(),
    )
    .unwrap();
    let cfg = ProviderConfig {
        name: "media".to_owned(),
        base_url: format!("{}/queue", fake.base_url()),
        keys: vec![],
        timeout: Duration::from_secs(10),
    };
    let client = TaskClient::new(&cfg, keys, metrics).unwrap();
    let artifacts = genq_artifacts::LocalArtifacts::new(dir.join("artifacts")).unwrap();
    let job = GenerateVideo::new(
        client,
        "video-1",
        MediaDeps {
            artifacts: Arc::new(artifacts),
            limits: genq_media::ImageLimits::default(),
        },
        Duration::from_millis(50),
        RunSettings::new(Duration::from_secs(60), RetryPolicy::default()),
    );
    let request = VideoRequest {
        prompt: "slow camera push-in".into(),
        template: Template::Custom,
        image: None,
        seconds: 5,
    };
    let ctx = |attempt| {
        JobContext::new(
            "p1.4.0",
            "video",
            "generate_video",
            attempt,
            CancellationToken::new(),
        )
    };

    fake.set_tasks_never_finish(true);
    let killed =
        tokio::time::timeout(Duration::from_millis(600), job.run(request.clone(), ctx(1))).await;
    assert!(
        killed.is_err(),
        "the first run was still polling when it was killed"
    );
    assert_eq!(fake.submits(), 1);

    fake.set_tasks_never_finish(false);
    let out = job.run(request, ctx(2)).await.expect("the re-run finishes");
    assert!(out.duration_secs > 0.0);
    assert_eq!(fake.calls("submit"), 2, "the re-run submitted again");
    assert_eq!(fake.submits(), 1, "but the provider made one task");
    cleanup_prefix(&redis_url(), &prefix).await;
    let _ = std::fs::remove_dir_all(&dir);
}
