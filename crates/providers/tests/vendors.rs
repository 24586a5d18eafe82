//! The vendor adapters against their fakes over real HTTP (key pools in real
//! Redis): a task to its file, every failure class mapped, cancel reaching the
//! vendor's cancel endpoint.

use std::time::Duration;

use base64::Engine;
use genq_metrics::ProviderMetrics;
use genq_providers::{
    KeyLimits, KeyPool, ProviderConfig, ProviderErrorKind, ProviderTask, TaskClient, TaskKind,
    Vendor, VendorOptions,
};
use genq_testkit::{
    FakeVendor, FakeVendorKind, VendorFailure, VendorTaskFailure, cleanup_prefix, redis_url,
    unique_prefix,
};
use serde_json::json;

const KINDS: [FakeVendorKind; 5] = [
    FakeVendorKind::Fal,
    FakeVendorKind::Replicate,
    FakeVendorKind::Runway,
    FakeVendorKind::Kie,
    FakeVendorKind::ComfyUi,
];

fn vendor(kind: FakeVendorKind) -> Vendor {
    match kind {
        FakeVendorKind::Fal => Vendor::Fal,
        FakeVendorKind::Replicate => Vendor::Replicate,
        FakeVendorKind::Runway => Vendor::Runway,
        FakeVendorKind::Kie => Vendor::Kie,
        FakeVendorKind::ComfyUi => Vendor::ComfyUi,
    }
}

fn model(kind: FakeVendorKind) -> &'static str {
    match kind {
        FakeVendorKind::Fal => "fal-ai/kling-video/v2/master/image-to-video",
        FakeVendorKind::Replicate => "minimax/video-01",
        FakeVendorKind::Runway => "gen4_turbo",
        FakeVendorKind::Kie => "sora-2-image-to-video",
        FakeVendorKind::ComfyUi => "wan2.1.safetensors",
    }
}

fn png_b64() -> String {
    let img = image::RgbImage::from_pixel(8, 8, image::Rgb([10, 20, 30]));
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    base64::engine::general_purpose::STANDARD.encode(out.into_inner())
}

fn video_input() -> serde_json::Value {
    json!({ "prompt": "a storm at sea", "template": "custom", "image_b64": png_b64(), "seconds": 5 })
}

/// A client of `fake` with one key (a fresh Redis prefix: no cool-downs carried over).
async fn client(fake: &FakeVendor, prom: &prometheus::Registry) -> (TaskClient, String) {
    client_with(fake, prom, KeyLimits::default()).await
}

/// [`client`] with genq's limits per key.
async fn client_with(
    fake: &FakeVendor,
    prom: &prometheus::Registry,
    limits: KeyLimits,
) -> (TaskClient, String) {
    let prefix = unique_prefix("vendors");
    let metrics = match ProviderMetrics::new(prom) {
        Ok(m) => m,
        Err(_) => ProviderMetrics::new(&prometheus::Registry::new()).unwrap(),
    };
    let con = redis::aio::ConnectionManager::new(redis::Client::open(redis_url()).unwrap())
        .await
        .unwrap()
        .into();
    let keys = KeyPool::new(
        "vendor",
        &["vk-1".to_owned()],
        con,
        &prefix,
        metrics.clone(),
    )
    .unwrap()
    .with_limits(limits);
    let mut options = VendorOptions::new(vendor(fake.kind()));
    if fake.kind() == FakeVendorKind::Kie {
        options.upload_url = Some(fake.root_url());
    }
    if fake.kind() == FakeVendorKind::ComfyUi {
        options.workflow = Some(json!({
            "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}"}},
            "5": {"class_type": "LoadImage", "inputs": {"image": "{{image}}"}},
            "7": {"class_type": "KSampler", "inputs": {"seed": "{{seed}}", "ckpt": "{{model}}"}},
            "9": {"class_type": "SaveVideo", "inputs": {"filename_prefix": "genq"}}
        }));
    }
    let cfg = ProviderConfig {
        name: "vendor".to_owned(),
        base_url: fake.base_url(),
        keys: vec![],
        timeout: Duration::from_secs(10),
    };
    (
        TaskClient::for_vendor(&cfg, options, keys, metrics).unwrap(),
        prefix,
    )
}

async fn wait(
    client: &TaskClient,
    task: &ProviderTask,
) -> Result<(String, Option<String>), genq_providers::ProviderError> {
    tokio::time::timeout(
        Duration::from_secs(20),
        client.wait(task, Duration::from_millis(50), |_| {}),
    )
    .await
    .expect("the task ends")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_vendor_runs_a_video_task_to_its_file() {
    let prom = prometheus::Registry::new();
    for kind in KINDS {
        let fake = FakeVendor::start(kind).await;
        let (client, prefix) = client(&fake, &prom).await;
        let task = client
            .submit(model(kind), TaskKind::Video, video_input(), "genq-job-1")
            .await
            .unwrap_or_else(|e| panic!("{kind:?} submit: {e}"));
        assert_eq!(fake.submits(), 1, "{kind:?}");
        let (url, _) = wait(&client, &task)
            .await
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        let bytes = client.download(&task, &url).await.unwrap();
        assert_eq!(&bytes[4..8], b"ftyp", "{kind:?}: an MP4 came back");
        // the vendor's own auth scheme
        let auth = fake.auth_headers();
        match kind {
            FakeVendorKind::Fal => assert!(auth.iter().all(|a| a == "Key vk-1"), "{auth:?}"),
            FakeVendorKind::ComfyUi => {}
            _ => assert!(auth.iter().all(|a| a == "Bearer vk-1"), "{kind:?} {auth:?}"),
        }
        assert_eq!(fake.calls("file"), 1, "{kind:?}");
        // the vendor's request shape
        let body = &fake.submitted_bodies()[0];
        match kind {
            FakeVendorKind::Fal => {
                assert_eq!(body["prompt"], "a storm at sea");
                assert!(
                    body["image_url"]
                        .as_str()
                        .unwrap()
                        .starts_with("data:image/png;base64,")
                );
            }
            FakeVendorKind::Replicate => assert_eq!(body["input"]["duration"], 5),
            FakeVendorKind::Runway => {
                assert_eq!(body["model"], "gen4_turbo");
                assert_eq!(body["promptText"], "a storm at sea");
            }
            FakeVendorKind::Kie => {
                assert_eq!(body["model"], "sora-2-image-to-video");
                assert_eq!(body["input"]["n_frames"], "10");
                assert_eq!(fake.calls("upload"), 1, "the image went up first");
            }
            FakeVendorKind::ComfyUi => {
                assert_eq!(body["prompt"]["3"]["inputs"]["text"], "a storm at sea");
                assert_eq!(body["prompt"]["7"]["inputs"]["ckpt"], "wan2.1.safetensors");
                assert!(body["prompt"]["7"]["inputs"]["seed"].is_u64());
                assert_eq!(fake.calls("upload"), 1);
            }
        }
        cleanup_prefix(&redis_url(), &prefix).await;
    }
}

fn expected(kind: FakeVendorKind, failure: VendorFailure) -> ProviderErrorKind {
    match failure {
        VendorFailure::Policy if kind == FakeVendorKind::ComfyUi => ProviderErrorKind::BadInput,
        VendorFailure::Policy => ProviderErrorKind::ContentPolicy,
        VendorFailure::Billing => ProviderErrorKind::Billing,
        VendorFailure::RateLimited { retry_after_secs } => ProviderErrorKind::RateLimited {
            retry_after: Some(Duration::from_secs(retry_after_secs)),
        },
        VendorFailure::ServerError => ProviderErrorKind::Transient,
        VendorFailure::Validation => ProviderErrorKind::BadInput,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_vendor_error_maps_to_its_failure_class() {
    let prom = prometheus::Registry::new();
    let failures = [
        VendorFailure::Policy,
        VendorFailure::Billing,
        VendorFailure::RateLimited {
            retry_after_secs: 2,
        },
        VendorFailure::ServerError,
        VendorFailure::Validation,
    ];
    for kind in KINDS {
        let fake = FakeVendor::start(kind).await;
        for failure in failures {
            let (client, prefix) = client(&fake, &prom).await;
            // the submit's first call fails (KIE's image upload, ComfyUI's look-up)
            fake.fail_next(1, failure);
            let e = client
                .submit(
                    model(kind),
                    TaskKind::Video,
                    video_input(),
                    &format!("genq-{failure:?}"),
                )
                .await
                .expect_err("the submit fails");
            assert_eq!(e.kind, expected(kind, failure), "{kind:?} {failure:?}: {e}");
            cleanup_prefix(&redis_url(), &prefix).await;
        }
        // the vendor's asynchronous failures
        for (failure, class) in [
            (VendorTaskFailure::Policy, ProviderErrorKind::ContentPolicy),
            (VendorTaskFailure::Internal, ProviderErrorKind::Transient),
        ] {
            let class = if kind == FakeVendorKind::ComfyUi {
                ProviderErrorKind::Transient
            } else {
                class
            };
            let (client, prefix) = client(&fake, &prom).await;
            fake.fail_next_task(failure);
            let task = client
                .submit(
                    model(kind),
                    TaskKind::Video,
                    video_input(),
                    &format!("genq-task-{failure:?}"),
                )
                .await
                .unwrap();
            let e = wait(&client, &task).await.expect_err("the task fails");
            assert_eq!(e.kind, class, "{kind:?} {failure:?}: {e}");
            cleanup_prefix(&redis_url(), &prefix).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_the_vendors_cancel_endpoint() {
    let prom = prometheus::Registry::new();
    for kind in KINDS {
        let fake = FakeVendor::start(kind).await;
        fake.set_task_duration(Duration::from_secs(30));
        let (client, prefix) = client(&fake, &prom).await;
        let task = client
            .submit(model(kind), TaskKind::Video, video_input(), "genq-cancel")
            .await
            .unwrap();
        client
            .cancel(&task)
            .await
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        if kind == FakeVendorKind::Kie {
            // KIE has no cancel endpoint: nothing is sent
            assert_eq!((fake.calls("cancel"), fake.cancels()), (0, 0));
        } else {
            assert_eq!(fake.cancels(), 1, "{kind:?}");
            wait(&client, &task)
                .await
                .expect_err("a cancelled task fails");
        }
        cleanup_prefix(&redis_url(), &prefix).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comfyui_finds_a_jobs_prompt_instead_of_queueing_it_twice() {
    let prom = prometheus::Registry::new();
    let fake = FakeVendor::start(FakeVendorKind::ComfyUi).await;
    fake.set_task_duration(Duration::from_secs(30));
    let (client, prefix) = client(&fake, &prom).await;
    let first = client
        .submit("m", TaskKind::Video, video_input(), "genq-same-job")
        .await
        .unwrap();
    let again = client
        .submit("m", TaskKind::Video, video_input(), "genq-same-job")
        .await
        .unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(fake.submits(), 1);
    cleanup_prefix(&redis_url(), &prefix).await;
}

/// Each fake vendor refuses a key's task over its limit with its own 429, which the
/// adapter maps to rate limited with the hint; with genq's `max_in_flight` at the
/// vendor's limit the same submit is a deferral and the vendor never says 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendors_task_limit_is_a_429_unless_genq_limits_first() {
    let prom = prometheus::Registry::new();
    for kind in KINDS {
        let fake = FakeVendor::start(kind).await;
        fake.set_task_limit_per_key(Some(2));
        fake.set_task_duration(Duration::from_secs(30));
        let (client, prefix) = client(&fake, &prom).await;
        for job in ["genq-a", "genq-b"] {
            client
                .submit(model(kind), TaskKind::Video, video_input(), job)
                .await
                .unwrap_or_else(|e| panic!("{kind:?} submit {job}: {e}"));
        }
        let refused = client
            .submit(model(kind), TaskKind::Video, video_input(), "genq-c")
            .await
            .expect_err("a third task over the vendor's limit");
        assert!(
            matches!(refused.kind, ProviderErrorKind::RateLimited { .. }),
            "{kind:?}: {refused}"
        );
        assert_eq!(fake.over_limit_answers(), 1, "{kind:?}");
        cleanup_prefix(&redis_url(), &prefix).await;

        let fake = FakeVendor::start(kind).await;
        fake.set_task_limit_per_key(Some(2));
        fake.set_task_duration(Duration::from_secs(30));
        let limits = KeyLimits {
            max_in_flight: Some(2),
            ..KeyLimits::default()
        };
        let (client, prefix) = client_with(&fake, &prom, limits).await;
        for job in ["genq-a", "genq-b"] {
            genq_providers::holding(
                job,
                client.submit(model(kind), TaskKind::Video, video_input(), job),
            )
            .await
            .unwrap_or_else(|e| panic!("{kind:?} submit {job}: {e}"));
        }
        let deferred = genq_providers::holding(
            "genq-c",
            client.submit(model(kind), TaskKind::Video, video_input(), "genq-c"),
        )
        .await
        .expect_err("no capacity for a third task");
        assert!(
            matches!(deferred.kind, ProviderErrorKind::NoCapacity { .. }),
            "{kind:?}: {deferred}"
        );
        assert_eq!(fake.over_limit_answers(), 0, "{kind:?}: never a 429");
        assert_eq!(fake.submits(), 2, "{kind:?}");
        cleanup_prefix(&redis_url(), &prefix).await;
    }
}
