//! Vendor completion webhooks, end to end: a real `genq run` (workers and the admin
//! serving `/webhooks/<provider>`) on the shared Redis under a prefix of its own,
//! against the fake fal, Replicate and KIE, which send their webhooks signed as the
//! vendors do.
//!
//! A video job parks at once after its submit (`wait_in_slot_secs = 0`: no worker
//! slot held while the vendor works). With a webhook its fallback poll is ten
//! minutes away, so only the webhook can finish it within the test; a forged
//! webhook is refused (401) and the job is finished by polling; so is one whose
//! webhook never comes. A parked job that is cancelled has its vendor task cancelled.

use std::time::Duration;

use genq_core::{JobState, JobStatus};
use genq_redis::{NewJob, RedisConfig, RedisQueue};
use genq_testkit::{
    ChildProcess, FakeVendor, FakeVendorKind, KIE_WEBHOOK_KEY, REPLICATE_WEBHOOK_SECRET,
    WebhookMode, cleanup_prefix, free_port, http_get, redis_url, unique_prefix, wait_until,
};
use serde_json::json;

struct Service {
    fake: FakeVendor,
    queue: RedisQueue,
    prefix: String,
    dir: std::path::PathBuf,
    admin: String,
    _genq: ChildProcess,
}

/// How long a parked job waits before it looks at its task again by itself.
enum Fallback {
    /// Ten minutes: only a webhook finishes the job within a test.
    Never,
    /// One second: polling finishes it.
    Soon,
}

fn model_of(kind: FakeVendorKind) -> &'static str {
    match kind {
        FakeVendorKind::Fal => "fal-ai/kling-video/v2/master/text-to-video",
        FakeVendorKind::Replicate => "minimax/video-01",
        _ => "sora-2-text-to-video",
    }
}

impl Service {
    async fn start(kind: FakeVendorKind, fallback: Fallback) -> Self {
        let fake = FakeVendor::start(kind).await;
        let prefix = unique_prefix("webhooks");
        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(dir.join("artifacts")).expect("temp dir");
        let admin = format!("127.0.0.1:{}", free_port());
        let signing = match kind {
            FakeVendorKind::Fal => format!("webhook_jwks_url = \"{}\"", fake.jwks_url()),
            FakeVendorKind::Replicate => {
                format!("webhook_secret = \"{REPLICATE_WEBHOOK_SECRET}\"")
            }
            _ => format!("webhook_secret = \"{KIE_WEBHOOK_KEY}\""),
        };
        let fallback_secs = match fallback {
            Fallback::Never => 600,
            Fallback::Soon => 1,
        };
        let config = format!(
            r#"
[artifacts]
dir = "{artifacts}"

[providers.video]
kind = "{kind}"
base_url = "{base}"
keys = ["vendor-key"]
wait_in_slot_secs = 0
webhook_url = "http://{admin}/webhooks/video"
webhook_fallback_poll_secs = {fallback_secs}
{signing}

[jobs.generate_video]
provider = "video"
model = "{model}"
poll_interval_ms = 200
"#,
            artifacts = dir.join("artifacts").display(),
            kind = kind.config_kind(),
            base = fake.base_url(),
            model = model_of(kind),
        );
        let path = dir.join("genq.toml");
        std::fs::write(&path, config).expect("write config");
        let genq = ChildProcess::spawn(
            env!("CARGO_BIN_EXE_genq"),
            &["run", "--no-database"],
            &[
                ("GENQ_REDIS_URL", redis_url()),
                ("GENQ_PREFIX", prefix.clone()),
                ("GENQ_CONFIG", path.display().to_string()),
                ("GENQ_ADMIN_ADDR", admin.clone()),
                ("GENQ_METRICS_ADDR", format!("127.0.0.1:{}", free_port())),
                ("GENQ_LOG", "info".to_owned()),
            ],
        )
        .expect("spawn genq run");
        let up = wait_until(Duration::from_secs(30), || async {
            http_get(&admin, "/healthz").filter(|b| b.contains("ok"))
        })
        .await;
        assert!(up.is_some(), "the admin answers");
        let queue = RedisQueue::connect(RedisConfig::with_url(redis_url()).prefix(&prefix))
            .await
            .expect("connect");
        Self {
            fake,
            queue,
            prefix,
            dir,
            admin,
            _genq: genq,
        }
    }

    async fn push_video(&self) -> String {
        let job = NewJob::json(
            "video",
            "generate_video",
            &json!({ "prompt": "a storm over the sea", "template": "custom" }),
        )
        .expect("payload");
        self.queue.push(job).await.expect("push").id
    }

    async fn state(&self, id: &str) -> Option<JobState> {
        self.queue.job("video", id).await.ok().flatten()
    }

    async fn wait_final(&self, id: &str, within: Duration) -> Option<JobState> {
        wait_until(within, || async {
            self.state(id).await.filter(|s| s.status.is_final())
        })
        .await
    }

    async fn wait_parked(&self, id: &str) {
        let parked = wait_until(Duration::from_secs(30), || async {
            self.state(id).await.filter(|s| s.parked)
        })
        .await;
        assert!(parked.is_some(), "the job parks after its submit");
    }

    /// `genq_admin_webhooks_total{provider="video",outcome=…}`.
    fn webhooks_counted(&self, outcome: &str) -> u64 {
        let metrics = http_get(&self.admin, "/metrics").unwrap_or_default();
        let needle =
            format!("genq_admin_webhooks_total{{outcome=\"{outcome}\",provider=\"video\"}}");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&needle))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    async fn cleanup(self) {
        cleanup_prefix(&redis_url(), &self.prefix).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The webhook wakes the parked job: it succeeds with one submit, long before its
/// own next look (ten minutes away).
async fn a_webhook_finishes_the_parked_job(kind: FakeVendorKind) {
    let svc = Service::start(kind, Fallback::Never).await;
    svc.fake.set_task_duration(Duration::from_secs(2));
    let id = svc.push_video().await;
    svc.wait_parked(&id).await;
    let done = svc.wait_final(&id, Duration::from_secs(60)).await;
    let done = done.unwrap_or_else(|| panic!("{kind:?}: the webhook did not finish the job"));
    assert_eq!(done.status, JobStatus::Succeeded, "{kind:?}: {done:?}");
    assert_eq!(svc.fake.submits(), 1, "{kind:?}: one billable task");
    assert_eq!(svc.fake.webhook_deliveries(), vec![200], "{kind:?}");
    assert_eq!(svc.webhooks_counted("woke"), 1, "{kind:?}");
    svc.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fal_webhook_wakes_the_parked_job() {
    a_webhook_finishes_the_parked_job(FakeVendorKind::Fal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicate_webhook_wakes_the_parked_job() {
    a_webhook_finishes_the_parked_job(FakeVendorKind::Replicate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kie_callback_wakes_the_parked_job() {
    a_webhook_finishes_the_parked_job(FakeVendorKind::Kie).await;
}

/// A forged webhook is refused and wakes nothing; a missing one is not waited for:
/// either way the job is finished by its own polls.
async fn without_a_true_webhook_polling_finishes(kind: FakeVendorKind, mode: WebhookMode) {
    let svc = Service::start(kind, Fallback::Soon).await;
    svc.fake.set_webhook_mode(mode);
    svc.fake.set_task_duration(Duration::from_secs(2));
    let id = svc.push_video().await;
    let done = svc.wait_final(&id, Duration::from_secs(60)).await;
    let done = done.unwrap_or_else(|| panic!("{kind:?} {mode:?}: the job did not end"));
    assert_eq!(
        done.status,
        JobStatus::Succeeded,
        "{kind:?} {mode:?}: {done:?}"
    );
    assert_eq!(svc.fake.submits(), 1);
    assert!(
        svc.fake.calls("poll") >= 2,
        "{kind:?} {mode:?}: finished by polling"
    );
    // the forgery's delivery is sent once the task ends, perhaps after the job
    let expected = match mode {
        WebhookMode::Forge => vec![401],
        _ => vec![],
    };
    let deliveries = wait_until(Duration::from_secs(10), || async {
        let d = svc.fake.webhook_deliveries();
        (d.len() == expected.len()).then_some(d)
    })
    .await;
    assert_eq!(deliveries, Some(expected), "{kind:?} {mode:?}");
    assert_eq!(svc.webhooks_counted("woke"), 0, "{kind:?} {mode:?}");
    if mode == WebhookMode::Forge {
        assert_eq!(svc.webhooks_counted("refused"), 1, "{kind:?}");
    }
    svc.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_fal_webhook_is_refused() {
    without_a_true_webhook_polling_finishes(FakeVendorKind::Fal, WebhookMode::Forge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_replicate_webhook_is_refused() {
    without_a_true_webhook_polling_finishes(FakeVendorKind::Replicate, WebhookMode::Forge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_kie_callback_is_refused() {
    without_a_true_webhook_polling_finishes(FakeVendorKind::Kie, WebhookMode::Forge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_never_comes_falls_back_to_polling() {
    without_a_true_webhook_polling_finishes(FakeVendorKind::Replicate, WebhookMode::Off).await;
}

/// The same signed webhook delivered twice (a replay within the timestamp window):
/// the second is answered 200 and wakes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_webhook_wakes_nothing() {
    let svc = Service::start(FakeVendorKind::Kie, Fallback::Never).await;
    svc.fake.set_webhook_mode(WebhookMode::Replay);
    svc.fake.set_task_duration(Duration::from_secs(2));
    let id = svc.push_video().await;
    let done = svc.wait_final(&id, Duration::from_secs(60)).await;
    assert_eq!(done.map(|s| s.status), Some(JobStatus::Succeeded));
    let deliveries = wait_until(Duration::from_secs(10), || async {
        let d = svc.fake.webhook_deliveries();
        (d.len() == 2).then_some(d)
    })
    .await;
    assert_eq!(deliveries, Some(vec![200, 200]));
    assert_eq!(svc.webhooks_counted("woke"), 1);
    assert_eq!(svc.webhooks_counted("duplicate"), 1);
    assert_eq!(svc.fake.submits(), 1);
    svc.cleanup().await;
}

/// Cancelled while parked (no worker holds it): the job runs once more to cancel
/// the vendor's task, and ends cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_parked_job_cancels_the_vendor_task() {
    let svc = Service::start(FakeVendorKind::Fal, Fallback::Never).await;
    svc.fake.set_task_duration(Duration::from_secs(120));
    let id = svc.push_video().await;
    svc.wait_parked(&id).await;
    let outcome = svc.queue.cancel("video", &id).await.expect("cancel");
    assert_eq!(outcome, genq_redis::CancelOutcome::Signalled);
    let done = svc.wait_final(&id, Duration::from_secs(30)).await;
    assert_eq!(
        done.map(|s| s.status),
        Some(JobStatus::Cancelled),
        "the parked job ends cancelled"
    );
    let cancelled = wait_until(Duration::from_secs(10), || async {
        (svc.fake.cancels() == 1).then_some(())
    })
    .await;
    assert!(
        cancelled.is_some(),
        "the vendor's cancel endpoint was called"
    );
    assert_eq!(svc.fake.submits(), 1);
    svc.cleanup().await;
}
