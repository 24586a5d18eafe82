//! Each job type, run by a real `worker` process against real Redis and the fake
//! provider over HTTP.

mod common;

use common::{JobsEnv, ProviderSetup, png};
use genq_core::JobStatus;
use serde_json::json;

fn decoded_dims(path: &std::path::Path) -> (u32, u32) {
    let img =
        image::open(path).unwrap_or_else(|e| panic!("{} does not decode: {e}", path.display()));
    (img.width(), img.height())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_jobs_reply_and_hand_over_to_the_image_job() {
    let env = JobsEnv::start("textjobs", ProviderSetup::default()).await;
    let _worker = env.worker();
    let reply = env
        .push(
            "text",
            "generate_reply",
            json!({ "persona_prompt": "You are Anna, a barista.", "messages": [
                { "role": "assistant", "content": "Hi! Coffee?" },
                { "role": "user", "content": "A flat white, please" } ] }),
        )
        .await;
    let s = env.wait_final("text", &reply).await;
    assert_eq!(s.status, JobStatus::Succeeded, "{s:?}");
    assert_eq!(s.result.unwrap()["text"], "Echo: A flat white, please");

    let prompt = env
        .push(
            "text",
            "generate_image_prompt",
            json!({ "persona_look": "red scarf", "width": 640, "height": 480,
                    "messages": [{ "role": "user", "content": "we walk along the pier" }] }),
        )
        .await;
    let s = env.wait_final("text", &prompt).await;
    assert_eq!(s.status, JobStatus::Succeeded, "{s:?}");
    let result = s.result.unwrap();
    let image_job = result["image_job_id"]
        .as_str()
        .expect("image job id")
        .to_owned();
    let image = env.wait_final("img", &image_job).await;
    assert_eq!(image.status, JobStatus::Succeeded, "{image:?}");
    let key = image.result.unwrap()["artifact"]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(decoded_dims(&env.artifact_path(&key)), (640, 480));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_jobs_make_decodable_images_of_the_expected_size() {
    let env = JobsEnv::start("imagejobs", ProviderSetup::default()).await;
    let _worker = env.worker();
    let face = env.put_input("face.png", &png(120, 160));
    let scene = env.put_input("scene.png", &png(300, 200));

    let generated = env
        .push(
            "img",
            "generate_image",
            json!({ "prompt": "a lighthouse at dusk", "width": 512, "height": 256 }),
        )
        .await;
    let swapped = env
        .push(
            "img",
            "face_swap",
            json!({ "source": face, "target": scene }),
        )
        .await;
    let upscaled = env
        .push("img", "upscale", json!({ "image": scene, "factor": 4 }))
        .await;
    for (id, dims) in [
        (&generated, (512, 256)),
        (&swapped, (300, 200)),
        (&upscaled, (1200, 800)),
    ] {
        let s = env.wait_final("img", id).await;
        assert_eq!(s.status, JobStatus::Succeeded, "{s:?}");
        let result = s.result.unwrap();
        let key = result["artifact"]["key"].as_str().unwrap();
        assert_eq!(decoded_dims(&env.artifact_path(key)), dims, "{result}");
        assert_eq!(
            (result["width"].as_u64(), result["height"].as_u64()),
            (Some(dims.0 as u64), Some(dims.1 as u64))
        );
    }
    assert_eq!(
        env.fake.submits(),
        2,
        "face swap and upscale went to the queue-style provider"
    );

    let bad = env
        .push(
            "img",
            "upscale",
            json!({ "image": "inputs/missing.png", "factor": 2 }),
        )
        .await;
    let s = env.wait_final("img", &bad).await;
    assert_eq!((s.status, s.attempts), (JobStatus::Failed, 1));
    assert!(
        s.error
            .unwrap()
            .contains("no artifact 'inputs/missing.png'")
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_job_makes_an_mp4_that_ffprobe_accepts() {
    let env = JobsEnv::start("videojob", ProviderSetup::default()).await;
    let _worker = env.worker();
    let start = env.put_input("start.png", &png(320, 240));
    let id = env
        .push("video", "generate_video", json!({ "prompt": "waves on a beach", "template": "ugc", "image": start, "seconds": 5 }))
        .await;
    let s = env.wait_final("video", &id).await;
    assert_eq!(s.status, JobStatus::Succeeded, "{s:?}");
    let result = s.result.unwrap();
    let path = env.artifact_path(result["artifact"]["key"].as_str().unwrap());
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(&path)
        .output()
        .expect("ffprobe runs (install ffmpeg)");
    assert!(probe.status.success(), "ffprobe rejects {}", path.display());
    assert!(String::from_utf8_lossy(&probe.stdout).contains("h264"));
    assert!(result["duration_secs"].as_f64().unwrap() > 0.5);
    assert_eq!(env.fake.submits(), 1);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_removes_old_artifacts_and_reports_what_it_freed() {
    let env = JobsEnv::start("cleanupjob", ProviderSetup::default()).await;
    let _worker = env.worker();
    let a = env.put_input("old-a.png", &png(10, 10));
    let b = env.put_input("old-b.png", &png(20, 20));
    let bytes = std::fs::metadata(env.artifact_path(&a)).unwrap().len()
        + std::fs::metadata(env.artifact_path(&b)).unwrap().len();
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    let id = env
        .push("maintenance", "cleanup", json!({ "max_age_hours": 0 }))
        .await;
    let s = env.wait_final("maintenance", &id).await;
    assert_eq!(s.status, JobStatus::Succeeded, "{s:?}");
    let result = s.result.unwrap();
    assert_eq!(result["files"], 2);
    assert_eq!(result["bytes"], bytes);
    assert!(
        !env.artifact_path(&a).exists() && !env.artifact_path(&b).exists(),
        "files are gone"
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upscale_works_locally_without_a_provider() {
    let setup = ProviderSetup {
        local_upscale: true,
        ..ProviderSetup::default()
    };
    let env = JobsEnv::start("localupscale", setup).await;
    let _worker = env.worker();
    let small = env.put_input("small.png", &png(90, 60));
    let id = env
        .push("img", "upscale", json!({ "image": small, "factor": 2 }))
        .await;
    let s = env.wait_final("img", &id).await;
    assert_eq!(s.status, JobStatus::Succeeded, "{s:?}");
    let key = s.result.unwrap()["artifact"]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(decoded_dims(&env.artifact_path(&key)), (180, 120));
    assert_eq!(env.fake.submits(), 0, "no provider was called");

    let huge = env.put_input("huge.png", &png(3000, 20));
    let id = env
        .push("img", "upscale", json!({ "image": huge, "factor": 4 }))
        .await;
    let s = env.wait_final("img", &id).await;
    assert_eq!((s.status, s.attempts), (JobStatus::Failed, 1));
    assert!(
        s.error
            .unwrap()
            .contains("would be 12000x80, over the 8192 px side"),
        "clear size error"
    );
    env.cleanup().await;
}
