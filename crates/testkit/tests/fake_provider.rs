//! The fake provider over real HTTP: both protocols, scripted failures, counters.

use std::time::{Duration, Instant};

use base64::{Engine, engine::general_purpose::STANDARD};
use genq_testkit::{FakeFailure, FakeProvider, TaskErrorCode};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

const KEY: &str = "sk-test";

/// A fake provider and a client for it.
struct Setup {
    fake: FakeProvider,
    http: reqwest::Client,
}

impl Setup {
    async fn new() -> Self {
        Self {
            fake: FakeProvider::start().await,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.fake.base_url())
    }

    async fn post(&self, path: &str, key: &str, body: &Value) -> Response {
        self.http
            .post(self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    async fn get(&self, url: &str) -> Response {
        self.http
            .get(url)
            .bearer_auth(KEY)
            .send()
            .await
            .expect("request")
    }

    async fn chat(&self, key: &str, text: &str) -> Response {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": text}]});
        self.post("/v1/chat/completions", key, &body).await
    }

    /// Submits a task; its id.
    async fn submit(&self, kind: &str, input: Value) -> String {
        let resp = self
            .post(
                "/queue/tasks",
                KEY,
                &json!({"model": "m", "kind": kind, "input": input}),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = resp.json().await.expect("json");
        body["id"].as_str().expect("id").to_owned()
    }

    async fn poll(&self, id: &str) -> Value {
        let resp = self.get(&self.url(&format!("/queue/tasks/{id}"))).await;
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.expect("json")
    }

    /// Polls until the task is final (or 30 s pass); every status seen, and the last poll.
    async fn poll_until_final(&self, id: &str) -> (Vec<String>, Value) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        loop {
            let task = self.poll(id).await;
            let status = task["status"].as_str().unwrap_or("").to_owned();
            if seen.last() != Some(&status) {
                seen.push(status.clone());
            }
            if status == "succeeded" || status == "failed" || Instant::now() > deadline {
                return (seen, task);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn error_code(resp: Response) -> String {
    let body: Value = resp.json().await.expect("error body is JSON");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(body["error"]["type"].is_string(), "{body}");
    body["error"]["code"].as_str().unwrap_or("").to_owned()
}

fn png_b64(width: u32, height: u32) -> String {
    let img = image::RgbImage::from_pixel(width, height, image::Rgb([1, 2, 3]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    STANDARD.encode(out.into_inner())
}

fn dims(png: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory(png).expect("a decodable image");
    (img.width(), img.height())
}

#[tokio::test]
async fn chat_echoes_the_last_user_message() {
    let s = Setup::new().await;
    let body = json!({"model": "gpt-x", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "hello there"}
    ]});
    let resp = s.post("/v1/chat/completions", KEY, &body).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let reply: Value = resp.json().await.unwrap();
    assert_eq!(reply["object"], "chat.completion");
    assert_eq!(reply["model"], "gpt-x");
    assert_eq!(reply["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        reply["choices"][0]["message"]["content"],
        "Echo: hello there"
    );
    assert_eq!(reply["choices"][0]["finish_reason"], "stop");
    assert!(reply["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert_eq!(s.fake.calls("chat"), 1);
}

#[tokio::test]
async fn images_are_pngs_of_the_asked_size() {
    let s = Setup::new().await;
    let body = json!({"model": "m", "prompt": "a cat", "size": "64x32", "n": 1, "response_format": "b64_json"});
    let resp = s.post("/v1/images/generations", KEY, &body).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let reply: Value = resp.json().await.unwrap();
    let png = STANDARD
        .decode(reply["data"][0]["b64_json"].as_str().unwrap())
        .unwrap();
    assert_eq!(dims(&png), (64, 32));

    for size in ["0x10", "10x4097", "abc", "64X32", "64x", "-1x5"] {
        let body = json!({"prompt": "a cat", "size": size});
        let resp = s.post("/v1/images/generations", KEY, &body).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "size {size}");
        assert_eq!(error_code(resp).await, "invalid_request");
    }
    assert_eq!(s.fake.calls("images"), 7);
}

#[tokio::test]
async fn transcriptions_and_speech() {
    let s = Setup::new().await;
    let form = reqwest::multipart::Form::new()
        .text("model", "whisper-1")
        .part(
            "file",
            reqwest::multipart::Part::bytes(vec![7u8; 1234]).file_name("voice.ogg"),
        );
    let resp = s
        .http
        .post(s.url("/v1/audio/transcriptions"))
        .bearer_auth(KEY)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let reply: Value = resp.json().await.unwrap();
    assert_eq!(reply["text"], "transcribed 1234 bytes");

    let body = json!({"model": "tts", "input": "hi", "voice": "alloy"});
    let resp = s.post("/v1/audio/speech", KEY, &body).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "audio/wav");
    let wav = resp.bytes().await.unwrap();
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(&wav[8..12], b"WAVE");
    assert_eq!(wav.len(), 44 + 16_000);
    assert_eq!(s.fake.calls("transcriptions"), 1);
    assert_eq!(s.fake.calls("speech"), 1);
}

#[tokio::test]
async fn each_failure_has_its_status_body_and_header() {
    let s = Setup::new().await;
    let cases = [
        (
            FakeFailure::RateLimited {
                retry_after_secs: Some(7),
            },
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
        ),
        (
            FakeFailure::RateLimited {
                retry_after_secs: None,
            },
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
        ),
        (
            FakeFailure::ContentPolicy,
            StatusCode::BAD_REQUEST,
            "content_policy_violation",
        ),
        (
            FakeFailure::BadRequest,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            FakeFailure::Billing,
            StatusCode::PAYMENT_REQUIRED,
            "insufficient_quota",
        ),
        (
            FakeFailure::Unauthorized,
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
        ),
        (
            FakeFailure::ServerError,
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
        ),
    ];
    for (failure, status, code) in cases {
        s.fake.fail_next(1, failure.clone());
        let resp = s.chat(KEY, "x").await;
        assert_eq!(resp.status(), status, "{failure:?}");
        let retry_after = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let expected = match failure {
            FakeFailure::RateLimited { retry_after_secs } => {
                retry_after_secs.map(|s| s.to_string())
            }
            _ => None,
        };
        assert_eq!(retry_after, expected, "{failure:?}");
        assert_eq!(error_code(resp).await, code, "{failure:?}");
    }

    s.fake.fail_next(1, FakeFailure::MalformedJson);
    let resp = s.chat(KEY, "x").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.bytes().await.unwrap();
    assert!(serde_json::from_slice::<Value>(&body).is_err());

    // fail_next(n) fails exactly n calls, of any endpoint
    s.fake.fail_next(2, FakeFailure::ServerError);
    let id_resp = s
        .post(
            "/queue/tasks",
            KEY,
            &json!({"kind": "image", "input": {"width": 8, "height": 8}}),
        )
        .await;
    assert_eq!(id_resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        s.chat(KEY, "x").await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(s.chat(KEY, "x").await.status(), StatusCode::OK);
    assert_eq!(s.fake.calls("chat"), 10);
    assert_eq!(s.fake.calls("submit"), 1);
    assert_eq!(s.fake.submits(), 0);
}

#[tokio::test]
async fn a_call_without_a_key_is_401() {
    let s = Setup::new().await;
    let resp = s
        .http
        .post(s.url("/v1/chat/completions"))
        .json(&json!({"messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(resp).await, "invalid_api_key");
    assert!(s.fake.keys_seen().is_empty());
}

#[tokio::test]
async fn fail_key_fails_every_call_with_that_key() {
    let s = Setup::new().await;
    s.fake.fail_key("sk-bad", FakeFailure::Billing);
    assert_eq!(s.chat("sk-good", "a").await.status(), StatusCode::OK);
    assert_eq!(
        s.chat("sk-bad", "a").await.status(),
        StatusCode::PAYMENT_REQUIRED
    );
    assert_eq!(
        s.chat("sk-bad", "a").await.status(),
        StatusCode::PAYMENT_REQUIRED
    );
    assert_eq!(s.chat("sk-good", "a").await.status(), StatusCode::OK);
    assert_eq!(s.fake.keys_seen(), vec!["sk-good", "sk-bad"]);
    assert_eq!(s.fake.requests_with_key("sk-bad"), 2);
    assert_eq!(s.fake.requests_with_key("sk-good"), 2);
    assert_eq!(s.fake.requests_with_key("sk-none"), 0);

    s.fake.clear_key_failures();
    assert_eq!(s.chat("sk-bad", "a").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn latency_delays_every_call() {
    let s = Setup::new().await;
    s.fake.set_latency(Duration::from_millis(200));
    let start = Instant::now();
    assert_eq!(s.chat(KEY, "a").await.status(), StatusCode::OK);
    assert!(start.elapsed() >= Duration::from_millis(200));
    s.fake.set_latency(Duration::ZERO);
}

#[tokio::test]
async fn a_video_task_runs_then_succeeds_with_an_mp4() {
    let s = Setup::new().await;
    s.fake.set_task_duration(Duration::from_millis(1500));
    let id = s
        .submit(
            "video",
            json!({"prompt": "a dog surfing", "template": "ugc", "seconds": 5}),
        )
        .await;
    assert!(id.starts_with("task_"));
    assert_eq!(s.fake.submits(), 1);

    let first = s.poll(&id).await;
    assert!(
        first["status"] == "queued" || first["status"] == "running",
        "{first}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let running = s.poll(&id).await;
    assert_eq!(running["status"], "running");
    let early = running["progress"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = s.poll(&id).await["progress"].as_u64().unwrap_or(100);
    assert!(later > early, "progress grows: {early} then {later}");

    let (seen, task) = s.poll_until_final(&id).await;
    assert!(seen.contains(&"running".to_owned()), "{seen:?}");
    if which_ffmpeg().is_none() {
        eprintln!("ffmpeg is not on PATH: skipping the MP4 download check");
        assert_eq!(task["status"], "failed");
        assert_eq!(task["error"]["code"], "internal");
        assert_eq!(
            task["error"]["message"],
            "ffmpeg not installed on the fake provider"
        );
        return;
    }
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["progress"], 100);
    assert_eq!(task["result"]["content_type"], "video/mp4");
    let url = task["result"]["url"].as_str().unwrap();
    assert!(url.starts_with(&s.fake.base_url()), "absolute: {url}");
    let resp = s.get(url).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "video/mp4");
    let mp4 = resp.bytes().await.unwrap();
    assert_eq!(&mp4[4..8], b"ftyp", "an MP4 starts with an ftyp box");
    assert_eq!(s.fake.calls("file"), 1);
}

fn which_ffmpeg() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("ffmpeg"))
        .find(|p| p.is_file())
}

#[tokio::test]
async fn upscale_face_swap_and_image_results_have_the_right_size() {
    let s = Setup::new().await;
    s.fake.set_task_duration(Duration::from_millis(50));
    let upscale = s
        .submit(
            "upscale",
            json!({"image_b64": png_b64(20, 10), "factor": 4}),
        )
        .await;
    let swap = s
        .submit(
            "face_swap",
            json!({"source_b64": png_b64(5, 5), "target_b64": png_b64(30, 17)}),
        )
        .await;
    let image = s
        .submit("image", json!({"prompt": "p", "width": 40, "height": 24}))
        .await;
    for (id, want) in [(upscale, (80, 40)), (swap, (30, 17)), (image, (40, 24))] {
        let (_, task) = s.poll_until_final(&id).await;
        assert_eq!(task["status"], "succeeded", "{task}");
        assert_eq!(task["result"]["content_type"], "image/png");
        let resp = s.get(task["result"]["url"].as_str().unwrap()).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(dims(&resp.bytes().await.unwrap()), want);
    }
    assert_eq!(s.fake.submits(), 3);
}

#[tokio::test]
async fn invalid_task_input_is_400() {
    let s = Setup::new().await;
    let bad = [
        json!({"kind": "upscale", "input": {"image_b64": png_b64(4, 4), "factor": 3}}),
        json!({"kind": "upscale", "input": {"image_b64": "!!not base64!!", "factor": 2}}),
        json!({"kind": "upscale", "input": {"image_b64": STANDARD.encode(b"not an image"), "factor": 2}}),
        json!({"kind": "upscale", "input": {"factor": 2}}),
        json!({"kind": "face_swap", "input": {"source_b64": png_b64(4, 4), "target_b64": "AAAA"}}),
        json!({"kind": "image", "input": {"width": 0, "height": 10}}),
        json!({"kind": "image", "input": {"width": 10, "height": 5000}}),
        json!({"kind": "video", "input": {"template": "ugc"}}),
        json!({"kind": "music", "input": {}}),
        json!({"input": {}}),
    ];
    for body in bad {
        let resp = s.post("/queue/tasks", KEY, &body).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error_code(resp).await, "invalid_request", "{body}");
    }
    assert_eq!(s.fake.submits(), 0);
}

#[tokio::test]
async fn scripted_task_failures_and_tasks_that_never_finish() {
    let s = Setup::new().await;
    s.fake.set_task_duration(Duration::ZERO);
    s.fake.fail_next_task(TaskErrorCode::ContentPolicy);
    let failing = s.submit("image", json!({"width": 8, "height": 8})).await;
    let (_, task) = s.poll_until_final(&failing).await;
    assert_eq!(task["status"], "failed");
    assert_eq!(task["error"]["code"], "content_policy");
    let resp = s.get(&s.url(&format!("/queue/files/{failing}"))).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    s.fake.set_tasks_never_finish(true);
    let stuck = s.submit("image", json!({"width": 8, "height": 8})).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(s.poll(&stuck).await["status"], "running");
    s.fake.set_tasks_never_finish(false);
    let (_, task) = s.poll_until_final(&stuck).await;
    assert_eq!(task["status"], "succeeded");

    // fail_next applies to polls too
    s.fake.fail_next(
        1,
        FakeFailure::RateLimited {
            retry_after_secs: Some(1),
        },
    );
    let resp = s.get(&s.url(&format!("/queue/tasks/{stuck}"))).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(s.poll(&stuck).await["status"], "succeeded");
}

#[tokio::test]
async fn an_unknown_task_is_404() {
    let s = Setup::new().await;
    let resp = s.get(&s.url("/queue/tasks/task_nope")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(resp).await, "not_found");
    assert_eq!(s.fake.calls("poll"), 1);
}

#[tokio::test]
async fn bad_json_is_400_naming_the_problem() {
    let s = Setup::new().await;
    for path in [
        "/v1/chat/completions",
        "/queue/tasks",
        "/v1/images/generations",
    ] {
        let resp = s
            .http
            .post(s.url(path))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{path}");
        let body: Value = resp.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("invalid JSON"), "{path}: {message}");
    }
    let resp = s
        .post("/v1/chat/completions", KEY, &json!({"model": "m"}))
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages"),
        "{body}"
    );
}

#[tokio::test]
async fn a_dropped_provider_stops_serving() {
    let s = Setup::new().await;
    assert_eq!(s.chat(KEY, "a").await.status(), StatusCode::OK);
    let url = s.url("/v1/chat/completions");
    drop(s.fake);
    let stopped = genq_testkit::wait_until(Duration::from_secs(5), || async {
        let sent = reqwest::Client::new()
            .post(&url)
            .bearer_auth(KEY)
            .json(&json!({"messages": [{"role": "user", "content": "a"}]}))
            .send()
            .await;
        sent.is_err().then_some(())
    })
    .await;
    assert!(stopped.is_some(), "still serving after drop");
}
