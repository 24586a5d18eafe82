//! The provider clients against the fake provider over HTTP, with key pools in real Redis.

mod common;

use std::time::Duration;

use common::{cfg, pool};
use genq_metrics::ProviderMetrics;
use genq_providers::{
    ChatMessage, CoolReason, OpenAiClient, ProviderErrorKind, TaskClient, TaskKind, TaskStatus,
};
use genq_testkit::{FakeFailure, FakeProvider, cleanup_prefix, redis_url, unique_prefix};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_calls_rotate_keys_and_count_metrics() {
    let fake = FakeProvider::start().await;
    let prefix = unique_prefix("clients");
    let prom = prometheus::Registry::new();
    let metrics = ProviderMetrics::new(&prom).unwrap();
    let keys = pool(&prefix, &["k1", "k2"], &metrics).await;
    let client = OpenAiClient::new(&cfg(&fake, "/v1"), keys.clone(), metrics).unwrap();

    let reply = client
        .chat("m", &[ChatMessage::new("user", "ping")], None)
        .await
        .unwrap();
    assert_eq!(reply, "Echo: ping");
    assert_eq!(
        client
            .transcribe("whisper", vec![1, 2, 3, 4], "voice.ogg")
            .await
            .unwrap(),
        "transcribed 4 bytes"
    );
    let wav = client.speech("tts", "hello", "alloy").await.unwrap();
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(fake.keys_seen().len(), 2, "round-robin over both keys");

    // a rate-limited key cools for every holder of the pool, and the call moves on
    fake.fail_next(
        1,
        FakeFailure::RateLimited {
            retry_after_secs: Some(30),
        },
    );
    assert_eq!(
        client
            .chat("m", &[ChatMessage::new("user", "again")], None)
            .await
            .unwrap(),
        "Echo: again"
    );
    let cooling = keys.cooling().await.unwrap();
    assert_eq!(cooling.len(), 1);
    assert_eq!(cooling[0].reason, CoolReason::RateLimited);
    assert!(cooling[0].fingerprint.starts_with("key-") && !cooling[0].fingerprint.contains("k1"));

    let text = genq_metrics::render(&prom).unwrap();
    assert!(text.contains(r#"genq_provider_calls_total{operation="chat",outcome="rate_limited",provider="fake"} 1"#), "{text}");
    assert!(text.contains(r#"genq_provider_keys_cooling{provider="fake"}"#));
    cleanup_prefix(&redis_url(), &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_submit_poll_and_download_with_the_submitting_key() {
    let fake = FakeProvider::start().await;
    fake.set_task_duration(Duration::from_millis(200));
    let prefix = unique_prefix("tasks");
    let metrics = ProviderMetrics::new(&prometheus::Registry::new()).unwrap();
    let client = TaskClient::new(
        &cfg(&fake, "/queue"),
        pool(&prefix, &["t1"], &metrics).await,
        metrics,
    )
    .unwrap();
    let task = client
        .submit(
            "img",
            TaskKind::Image,
            serde_json::json!({ "prompt": "x", "width": 64, "height": 32 }),
            "genq-tasks-1",
        )
        .await
        .unwrap();
    assert!(matches!(
        client.status(&task).await.unwrap(),
        TaskStatus::Pending { .. }
    ));
    let (url, _) = client
        .wait(&task, Duration::from_millis(50), |_| {})
        .await
        .unwrap();
    let png = client.download(&task, &url).await.unwrap();
    assert_eq!(&png[1..4], b"PNG");

    let err = client
        .submit("v", TaskKind::Video, serde_json::json!({}), "genq-tasks-2")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderErrorKind::BadInput, "{err}");
    cleanup_prefix(&redis_url(), &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_idempotency_key_gets_the_same_task_and_pays_once() {
    let fake = FakeProvider::start().await;
    fake.set_task_duration(Duration::from_millis(100));
    let prefix = unique_prefix("idem");
    let metrics = ProviderMetrics::new(&prometheus::Registry::new()).unwrap();
    let client = TaskClient::new(
        &cfg(&fake, "/queue"),
        pool(&prefix, &["t1"], &metrics).await,
        metrics,
    )
    .unwrap();
    let input = serde_json::json!({ "prompt": "x", "width": 64, "height": 32 });
    let key = genq_providers::idempotency_key("job-1");
    assert_eq!(key, "genq-job-1");
    let first = client
        .submit("img", TaskKind::Image, input.clone(), &key)
        .await
        .unwrap();
    let again = client
        .submit("img", TaskKind::Image, input.clone(), &key)
        .await
        .unwrap();
    assert_eq!(
        (&first.id, &first.key),
        (&again.id, &again.key),
        "the same task for the same key"
    );
    assert_eq!(fake.submits(), 1, "one task created");
    assert_eq!(fake.calls("submit"), 2, "both HTTP calls counted");
    let other = client
        .submit("img", TaskKind::Image, input, "genq-job-2")
        .await
        .unwrap();
    assert_ne!(other.id, first.id);
    assert_eq!(fake.submits(), 2);
    cleanup_prefix(&redis_url(), &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_chat_answers_json_and_malformed_content_is_told_apart() {
    let fake = FakeProvider::start().await;
    let prefix = unique_prefix("structured");
    let metrics = ProviderMetrics::new(&prometheus::Registry::new()).unwrap();
    let client = OpenAiClient::new(
        &cfg(&fake, "/v1"),
        pool(&prefix, &["k"], &metrics).await,
        metrics,
    )
    .unwrap();
    let messages = [ChatMessage::new(
        "user",
        "Brief: fresh coffee\nLayout: 1 intro, 1 main, 1 outro segments of 4 seconds each.",
    )];
    let schema = serde_json::json!({"type": "object"});
    let script = client
        .chat_structured("m", &messages, "promo_script", schema.clone())
        .await
        .unwrap();
    assert_eq!(script["segments"].as_array().map(Vec::len), Some(3));
    assert_eq!(script["segments"][2]["end_secs"], 12);
    assert!(script["title"].as_str().unwrap().contains("fresh coffee"));

    fake.set_malformed_scripts(1);
    let err = client
        .chat_structured("m", &messages, "promo_script", schema.clone())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderErrorKind::MalformedOutput, "{err}");
    assert!(
        client
            .chat_structured("m", &messages, "promo_script", schema)
            .await
            .is_ok(),
        "only the next one was malformed"
    );
    assert_eq!(fake.calls("chat"), 3);
    cleanup_prefix(&redis_url(), &prefix).await;
}
