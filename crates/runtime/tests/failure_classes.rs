//! Each failure class gets what PRODUCT.md's table says, on a real worker and Redis.

mod common;

use std::time::Duration;

use common::{Harness, QUEUE};
use genq_core::{FailureClass, JobStatus};
use genq_job_probe::ProbeJob;
use serde_json::json;

fn fail(class: &str) -> serde_json::Value {
    json!({ "fail": { "class": class } })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_violation_and_bad_input_are_never_retried() {
    let h = Harness::start("never", 10).await;
    for class in ["user_violation", "bad_input", "billing"] {
        let id = h.push(fail(class)).await;
        let s = h.wait_final(&id).await;
        assert_eq!(s.status, JobStatus::Failed, "{class}");
        assert_eq!(s.attempts, 1, "{class} must not be retried");
        assert_eq!(s.error_class, Some(class.parse().unwrap()));
        let dead = h.queue.dead_letters(QUEUE, 0, 10).await.unwrap();
        assert!(
            dead.iter().any(|d| d.id == id),
            "{class} job is a dead letter"
        );
    }
    let text = h.metrics_text();
    assert!(
        text.contains(
            r#"genq_job_failures_total{class="user_violation",job_type="probe",queue="default"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"genq_jobs_total{job_type="probe",outcome="failed",queue="default"} 3"#),
        "{text}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_is_retried_after_its_retry_after() {
    let h = Harness::start("ratelimit", 10).await;
    let id = h
        .push(json!({ "fail": { "class": "rate_limited", "retry_after_ms": 1500, "until_attempt": 1 } }))
        .await;
    // While it waits, it is scheduled for the time the provider asked for.
    let waiting = h.wait_for(&id, |s| s.status == JobStatus::Scheduled).await;
    let failed_at = waiting.started_at_ms.unwrap();
    let due = waiting.due_at_ms.unwrap();
    assert!(
        due >= failed_at + 1500,
        "due {due} must honour Retry-After after {failed_at}"
    );
    assert_eq!(waiting.error_class, Some(FailureClass::RateLimited));
    let done = h.wait_final(&id).await;
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(done.attempts, 2);
    assert!(
        done.started_at_ms.unwrap() >= due,
        "second run starts no earlier than due"
    );
    assert!(h.metrics_text().contains(
        r#"genq_job_retries_total{class="rate_limited",job_type="probe",queue="default"} 1"#
    ));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_backs_off_up_to_the_limit_then_dead_letters() {
    let h = Harness::start("transient", 10).await;
    let id = h.push(fail("transient")).await;
    let s = h.wait_final(&id).await;
    assert_eq!(s.status, JobStatus::Failed);
    assert_eq!(s.attempts, 3, "3 runs in all");
    assert_eq!(s.error_class, Some(FailureClass::Transient));
    assert!(
        s.error
            .unwrap()
            .contains("probe asked to fail as transient on run 3")
    );
    let stats = h.queue.stats(QUEUE).await.unwrap();
    assert_eq!((stats.retried, stats.failed, stats.dead), (2, 1, 1));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_is_enforced_per_job_type() {
    let probe = ProbeJob::new()
        .with_timeout(Duration::from_millis(300))
        .with_retry_policy(genq_core::RetryPolicy::never());
    let h = Harness::start_with(
        &genq_testkit::redis_url(),
        &genq_testkit::unique_prefix("timeout"),
        probe,
        10,
        |c| c,
    )
    .await;
    let id = h.push(json!({ "sleep_ms": 20_000 })).await;
    let s = h.wait_final(&id).await;
    assert_eq!(s.status, JobStatus::Failed);
    assert_eq!(s.error_class, Some(FailureClass::Timeout));
    assert!(s.error.unwrap().contains("ran past its 300ms timeout"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_a_transient_failure_and_the_worker_lives() {
    let h = Harness::start("panic", 10).await;
    let id = h
        .push(json!({ "panic_until_attempt": 1, "echo": "after panic" }))
        .await;
    let s = h.wait_final(&id).await;
    assert_eq!(s.status, JobStatus::Succeeded);
    assert_eq!(s.attempts, 2);
    assert_eq!(s.result.unwrap()["echo"], "after panic");
    let next = h.push(json!({ "echo": "still serving" })).await;
    assert_eq!(h.wait_final(&next).await.status, JobStatus::Succeeded);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_waiting_for_its_retry_holds_no_slot() {
    // One slot. The first job is rate limited for 3 s; the second must run meanwhile.
    let h = Harness::start("noslot", 1).await;
    let first = h
        .push(json!({ "fail": { "class": "rate_limited", "retry_after_ms": 3000, "until_attempt": 1 } }))
        .await;
    h.wait_for(&first, |s| s.status == JobStatus::Scheduled)
        .await;
    let second = h.push(json!({ "echo": 2 })).await;
    let second_done = h.wait_final(&second).await;
    let first_state = h.state(&first).await.unwrap();
    assert_eq!(second_done.status, JobStatus::Succeeded);
    assert_eq!(
        first_state.status,
        JobStatus::Scheduled,
        "the retry is still waiting, outside the slot"
    );
    assert_eq!(h.wait_final(&first).await.status, JobStatus::Succeeded);
    h.stop().await;
}
