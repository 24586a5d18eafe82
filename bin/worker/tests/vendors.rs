//! A real `worker` process on a vendor adapter (fal, Replicate, Runway, KIE,
//! ComfyUI) or on genq's own task protocol, against the vendor's fake: SIGKILLed
//! while it waits on the vendor task, the next worker resumes the same task (one submission);
//! SIGKILLed while its submit is in flight (the fake holds the answer), the re-run
//! gets the same task (one billable task).

mod common;

use std::{ops::Deref, time::Duration};

use common::{JobsEnv, ProviderSetup, Sandbox};
use genq_core::JobStatus;
use genq_testkit::{ChildProcess, FakeVendor, FakeVendorKind, wait_until};
use serde_json::json;

struct Env {
    fake: FakeVendor,
    sandbox: Sandbox,
}

impl Deref for Env {
    type Target = Sandbox;

    fn deref(&self) -> &Sandbox {
        &self.sandbox
    }
}

/// The workflow a ComfyUI provider runs (API format, with placeholders).
fn comfyui_workflow() -> serde_json::Value {
    json!({
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}"}},
        "7": {"class_type": "KSampler", "inputs": {"seed": "{{seed}}", "ckpt": "{{model}}"}},
        "9": {"class_type": "SaveVideo", "inputs": {"filename_prefix": "genq"}}
    })
}

impl Env {
    async fn start(kind: FakeVendorKind, model: &str) -> Self {
        let fake = FakeVendor::start(kind).await;
        let sandbox = Sandbox::new("vendorworker").await;
        let workflow = if kind == FakeVendorKind::ComfyUi {
            let path = sandbox.dir.join("workflow_api.json");
            std::fs::write(&path, comfyui_workflow().to_string()).expect("write workflow");
            format!("workflow = \"{}\"", path.display())
        } else {
            String::new()
        };
        sandbox.write_config(&format!(
            r#"
[artifacts]
dir = "{artifacts}"

[providers.video]
kind = "{kind}"
base_url = "{base}"
keys = ["vendor-key"]
{workflow}

[jobs.generate_video]
provider = "video"
model = "{model}"
poll_interval_ms = 100
backoff_base_ms = 200

[jobs.generate_image]
provider = "video"
model = "{model}"
poll_interval_ms = 100
backoff_base_ms = 200
"#,
            artifacts = sandbox.artifacts.display(),
            kind = kind.config_kind(),
            base = fake.base_url(),
        ));
        Self { fake, sandbox }
    }

    async fn cleanup(self) {
        self.sandbox.cleanup().await;
    }
}

/// `worker --queues video,img` (lease [`common::LEASE_SECS`]).
fn video_worker(sandbox: &Sandbox) -> ChildProcess {
    sandbox.worker(&["--queues", "video,img"])
}

/// What a test job asks the vendor for.
#[derive(Debug, Clone, Copy)]
enum Made {
    /// A `generate_video` job on queue `video`.
    Video,
    /// A `generate_image` job on queue `img` (Runway animates only a given
    /// picture: its text-only task is `text_to_image`).
    Image,
}

impl Made {
    fn queue(self) -> &'static str {
        match self {
            Made::Video => "video",
            Made::Image => "img",
        }
    }

    async fn push(self, sandbox: &Sandbox) -> String {
        match self {
            Made::Video => push_video(sandbox).await,
            Made::Image => {
                sandbox
                    .push(
                        "img",
                        "generate_image",
                        json!({ "prompt": "a storm", "width": 64, "height": 64 }),
                    )
                    .await
            }
        }
    }
}

/// Pushes a `generate_video` job; its id.
async fn push_video(sandbox: &Sandbox) -> String {
    sandbox
        .push(
            "video",
            "generate_video",
            json!({ "prompt": "a storm", "template": "custom" }),
        )
        .await
}

/// Waits for the job to end; asserts it succeeded on its second run.
async fn succeeded_on_the_rerun(sandbox: &Sandbox, queue: &str, id: &str, what: &str) {
    let s = sandbox.wait_final(queue, id).await;
    assert_eq!(
        (s.status, s.attempts),
        (JobStatus::Succeeded, 2),
        "{what}: {s:?}"
    );
}

async fn killed_while_waiting_resumes_the_same_task(kind: FakeVendorKind, model: &str) {
    killed_while_waiting_resumes(kind, model, Made::Video).await;
}

async fn killed_while_waiting_resumes(kind: FakeVendorKind, model: &str, made: Made) {
    let env = Env::start(kind, model).await;
    env.fake.set_task_duration(Duration::from_secs(6));
    let mut first = video_worker(&env);
    let id = made.push(&env).await;
    let polled = wait_until(Duration::from_secs(30), || async {
        (env.fake.submits() == 1 && env.fake.calls("poll") >= 2).then_some(())
    })
    .await;
    assert!(
        polled.is_some(),
        "{kind:?}: the first worker submitted and is polling"
    );
    first.sigkill();

    let _second = video_worker(&env);
    succeeded_on_the_rerun(&env, made.queue(), &id, &format!("{kind:?}")).await;
    assert_eq!(
        env.fake.submits(),
        1,
        "{kind:?}: the second run resumed the vendor task"
    );
    assert_eq!(env.fake.task_ids().len(), 1);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runway_worker_killed_while_waiting_resumes_the_same_task() {
    killed_while_waiting_resumes(FakeVendorKind::Runway, "gen4_image", Made::Image).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kie_worker_killed_while_waiting_resumes_the_same_task() {
    killed_while_waiting_resumes_the_same_task(FakeVendorKind::Kie, "sora-2-text-to-video").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comfyui_worker_killed_while_waiting_resumes_the_same_prompt() {
    killed_while_waiting_resumes_the_same_task(FakeVendorKind::ComfyUi, "wan-2.1").await;
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

/// A fake as the mid-submit test sees it: its `hold_submits` knob and its counts
/// of (submit requests received, tasks created).
struct HeldFake<'a> {
    what: &'a str,
    hold: &'a dyn Fn(bool),
    counts: &'a dyn Fn() -> (usize, usize),
}

/// A worker SIGKILLed while the fake holds its submit's answer (the task is made):
/// the re-run gets the same task, one billable task; `submit_requests` is how many
/// submit requests the fake gets in all.
async fn killed_mid_submit_gets_the_same_task(
    sandbox: &Sandbox,
    fake: HeldFake<'_>,
    submit_requests: usize,
) {
    let what = fake.what;
    (fake.hold)(true);
    let mut first = video_worker(sandbox);
    let id = push_video(sandbox).await;
    let held = wait_until(Duration::from_secs(30), || async {
        ((fake.counts)() == (1, 1)).then_some(())
    })
    .await;
    assert!(
        held.is_some(),
        "{what}: the first worker's submit reached the fake, which made the task and holds the answer: {:?}",
        (fake.counts)()
    );
    first.sigkill();
    (fake.hold)(false);

    let _second = video_worker(sandbox);
    succeeded_on_the_rerun(sandbox, "video", &id, what).await;
    assert_eq!(
        (fake.counts)(),
        (submit_requests, 1),
        "{what}: (submit requests received, tasks created)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_submit_gets_the_same_genq_task_by_its_idempotency_key() {
    let env = JobsEnv::start("midsubmit", ProviderSetup::default()).await;
    let fake = HeldFake {
        what: "genq task protocol",
        hold: &|on| env.fake.hold_submits(on),
        counts: &|| (env.fake.calls("submit"), env.fake.submits()),
    };
    // the re-run submits again with the same Idempotency-Key: the same task
    killed_mid_submit_gets_the_same_task(&env, fake, 2).await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comfyui_worker_killed_mid_submit_finds_its_prompt() {
    let env = Env::start(FakeVendorKind::ComfyUi, "wan2.1").await;
    let fake = HeldFake {
        what: "ComfyUI",
        hold: &|on| env.fake.hold_submits(on),
        counts: &|| (env.fake.calls("submit"), env.fake.submits()),
    };
    // the re-run looks its prompt id up (history, queue) before queueing and
    // finds it: no second `POST /prompt`
    killed_mid_submit_gets_the_same_task(&env, fake, 1).await;
    assert_eq!(env.fake.task_ids().len(), 1);
    env.cleanup().await;
}
