//! Each provider failure mapped to its class, and what the job does then — on real
//! worker processes, real Redis and the fake provider over HTTP.

mod common;

use std::time::Duration;

use common::{JobsEnv, ProviderSetup};
use genq_core::{FailureClass, JobStatus};
use genq_testkit::{FakeFailure, TaskErrorCode, wait_until};
use serde_json::json;

fn reply_payload() -> serde_json::Value {
    json!({ "persona_prompt": "You are Max.", "messages": [{ "role": "user", "content": "hello" }] })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_bad_requests_are_never_retried() {
    let env = JobsEnv::start("refusals", ProviderSetup::default()).await;
    let _worker = env.worker();
    for (failure, class) in [
        (FakeFailure::ContentPolicy, FailureClass::UserViolation),
        (FakeFailure::BadRequest, FailureClass::BadInput),
    ] {
        env.fake.fail_next(1, failure.clone());
        let id = env.push("text", "generate_reply", reply_payload()).await;
        let s = env.wait_final("text", &id).await;
        assert_eq!(
            (s.status, s.attempts, s.error_class),
            (JobStatus::Failed, 1, Some(class)),
            "{failure:?}: {s:?}"
        );
        assert!(
            env.queue
                .dead_letters("text", 0, 10)
                .await
                .unwrap()
                .iter()
                .any(|d| d.id == id)
        );
    }
    // a provider-side task refusal is a user violation too
    env.fake.fail_next_task(TaskErrorCode::ContentPolicy);
    let id = env
        .push(
            "video",
            "generate_video",
            json!({ "prompt": "x", "template": "ad" }),
        )
        .await;
    let s = env.wait_final("video", &id).await;
    assert_eq!(
        (s.status, s.error_class),
        (JobStatus::Failed, Some(FailureClass::UserViolation)),
        "{s:?}"
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_malformed_answers_are_retried_with_backoff() {
    let env = JobsEnv::start("transient", ProviderSetup::default()).await;
    let _worker = env.worker();
    for failure in [FakeFailure::ServerError, FakeFailure::MalformedJson] {
        env.fake.fail_next(1, failure.clone());
        let id = env.push("text", "generate_reply", reply_payload()).await;
        let waiting = env
            .wait_for("text", &id, |s| s.status == JobStatus::Scheduled)
            .await;
        assert_eq!(
            waiting.error_class,
            Some(FailureClass::Transient),
            "{failure:?}"
        );
        let s = env.wait_final("text", &id).await;
        assert_eq!(
            (s.status, s.attempts),
            (JobStatus::Succeeded, 2),
            "{failure:?}: {s:?}"
        );
    }
    // three failures in a row: dead-lettered after the third run
    env.fake.fail_next(3, FakeFailure::ServerError);
    let id = env.push("text", "generate_reply", reply_payload()).await;
    let s = env.wait_final("text", &id).await;
    assert_eq!(
        (s.status, s.attempts, s.error_class),
        (JobStatus::Failed, 3, Some(FailureClass::Transient)),
        "{s:?}"
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limiting_waits_for_retry_after_and_cools_the_key() {
    // one key, cooling 2 s: the job must wait for it, then succeed on its second run
    let setup = ProviderSetup {
        llm_keys: vec!["only-key"],
        rate_limit_cooldown_secs: 2,
        ..ProviderSetup::default()
    };
    let env = JobsEnv::start("ratelimit", setup).await;
    let _worker = env.worker();
    env.fake.fail_next(
        1,
        FakeFailure::RateLimited {
            retry_after_secs: Some(2),
        },
    );
    let id = env.push("text", "generate_reply", reply_payload()).await;
    let waiting = env
        .wait_for("text", &id, |s| s.status == JobStatus::Scheduled)
        .await;
    assert_eq!(waiting.error_class, Some(FailureClass::RateLimited));
    assert!(
        waiting.due_at_ms.unwrap() >= waiting.started_at_ms.unwrap() + 1900,
        "{waiting:?}"
    );
    let s = env.wait_final("text", &id).await;
    assert_eq!((s.status, s.attempts), (JobStatus::Succeeded, 2), "{s:?}");
    assert!(s.started_at_ms.unwrap() >= waiting.due_at_ms.unwrap());
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_billing_error_cools_the_key_for_every_worker_process() {
    let env = JobsEnv::start("billing", ProviderSetup::default()).await;
    env.fake.fail_key("llm-key-a", FakeFailure::Billing);
    let mut first = env.worker();
    // the first worker meets the blocked key, cools it, and serves the job with the other
    for _ in 0..2 {
        let id = env.push("text", "generate_reply", reply_payload()).await;
        let s = env.wait_final("text", &id).await;
        assert_eq!((s.status, s.attempts), (JobStatus::Succeeded, 1), "{s:?}");
    }
    let blocked_calls = env.fake.requests_with_key("llm-key-a");
    assert_eq!(blocked_calls, 1, "the key was tried once, then skipped");
    first.sigkill();

    // a second worker process never touches the cooled key
    let _second = env.worker();
    for _ in 0..4 {
        let id = env.push("text", "generate_reply", reply_payload()).await;
        assert_eq!(
            env.wait_final("text", &id).await.status,
            JobStatus::Succeeded
        );
    }
    assert_eq!(env.fake.requests_with_key("llm-key-a"), blocked_calls);
    assert!(env.fake.requests_with_key("llm-key-b") >= 6);

    // every key blocked: billing, never retried
    env.fake.fail_key("llm-key-b", FakeFailure::Billing);
    let id = env.push("text", "generate_reply", reply_payload()).await;
    let s = env.wait_final("text", &id).await;
    assert_eq!(
        (s.status, s.attempts, s.error_class),
        (JobStatus::Failed, 1, Some(FailureClass::Billing)),
        "{s:?}"
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_worker_killed_while_polling_is_resumed_without_a_second_submit() {
    let env = JobsEnv::start("videocrash", ProviderSetup::default()).await;
    env.fake.set_task_duration(Duration::from_secs(6));
    let mut first = env.worker();
    let id = env
        .push(
            "video",
            "generate_video",
            json!({ "prompt": "a storm", "template": "custom" }),
        )
        .await;
    let polled = wait_until(Duration::from_secs(30), || async {
        (env.fake.submits() == 1 && env.fake.calls("poll") >= 2).then_some(())
    })
    .await;
    assert!(
        polled.is_some(),
        "the first worker submitted and is polling"
    );
    first.sigkill();

    let _second = env.worker();
    let s = env.wait_final("video", &id).await;
    assert_eq!((s.status, s.attempts), (JobStatus::Succeeded, 2), "{s:?}");
    assert_eq!(
        env.fake.submits(),
        1,
        "the second run resumed the same provider task"
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_slower_than_its_timeout_is_a_transient_failure() {
    let setup = ProviderSetup {
        timeout_secs: 1,
        ..ProviderSetup::default()
    };
    let env = JobsEnv::start("slowprovider", setup).await;
    let _worker = env.worker();
    env.fake.set_latency(Duration::from_millis(2500));
    let id = env.push("text", "generate_reply", reply_payload()).await;
    let waiting = env
        .wait_for("text", &id, |s| s.status == JobStatus::Scheduled)
        .await;
    assert_eq!(waiting.error_class, Some(FailureClass::Transient));
    assert!(waiting.error.unwrap().contains("timed out"));
    env.fake.set_latency(Duration::ZERO);
    let s = env.wait_final("text", &id).await;
    assert_eq!((s.status, s.attempts), (JobStatus::Succeeded, 2), "{s:?}");
    env.cleanup().await;
}
