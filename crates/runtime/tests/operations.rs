//! Operations on a live queue: dedupe, cancel, pause/resume, dead letters, progress,
//! malformed input, completion events, lease recovery.

mod common;

use std::time::Duration;

use common::{Harness, QUEUE};
use genq_core::{FailureClass, JobStatus};
use genq_redis::{CancelOutcome, EventFollower, EventStart, NewJob};
use genq_runtime::EnqueueOptions;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_dedupes_concurrent_pushes() {
    let h = Harness::start("idem", 10).await;
    let pushes = (0..20).map(|_| {
        let client = h.client.clone();
        tokio::spawn(async move {
            let opts = EnqueueOptions {
                idempotency_key: Some("tap-42".to_owned()),
                ..Default::default()
            };
            client
                .enqueue_json("probe", r#"{"echo":"once"}"#, opts)
                .await
                .unwrap()
        })
    });
    let results: Vec<_> = futures::future::join_all(pushes)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let ids: std::collections::HashSet<_> = results.iter().map(|p| p.id.clone()).collect();
    assert_eq!(ids.len(), 1, "one job for one key");
    assert_eq!(
        results.iter().filter(|p| p.created).count(),
        1,
        "one push created it"
    );
    let id = ids.into_iter().next().unwrap();
    assert_eq!(h.wait_final(&id).await.status, JobStatus::Succeeded);
    assert_eq!(h.queue.stats(QUEUE).await.unwrap().pushed, 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_queued_and_running_jobs() {
    let h = Harness::start("cancel", 10).await;
    // queued: delayed so that it cannot start
    let queued = h
        .client
        .enqueue_json(
            "probe",
            "{}",
            EnqueueOptions {
                delay: Some(Duration::from_secs(60)),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id;
    assert_eq!(
        h.queue.cancel(QUEUE, &queued).await.unwrap(),
        CancelOutcome::Cancelled
    );
    assert_eq!(h.state(&queued).await.unwrap().status, JobStatus::Cancelled);
    assert_eq!(h.queue.stats(QUEUE).await.unwrap().scheduled, 0);

    let running = h.push(json!({ "sleep_ms": 60_000 })).await;
    h.wait_for(&running, |s| s.status == JobStatus::Running)
        .await;
    assert_eq!(
        h.queue.cancel(QUEUE, &running).await.unwrap(),
        CancelOutcome::Signalled
    );
    let s = h.wait_final(&running).await;
    assert_eq!(s.status, JobStatus::Cancelled);
    assert_eq!(s.error_class, Some(FailureClass::Cancelled));
    assert_eq!(
        h.queue.cancel(QUEUE, &running).await.unwrap(),
        CancelOutcome::AlreadyFinal(JobStatus::Cancelled)
    );
    assert_eq!(
        h.queue.cancel(QUEUE, "nope").await.unwrap(),
        CancelOutcome::NotFound
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_a_queue() {
    let h = Harness::start("pause", 10).await;
    h.queue.pause(QUEUE).await.unwrap();
    let id = h.push(json!({})).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        h.state(&id).await.unwrap().status,
        JobStatus::Queued,
        "paused: not taken"
    );
    assert!(h.queue.stats(QUEUE).await.unwrap().paused);
    h.queue.resume(QUEUE).await.unwrap();
    assert_eq!(h.wait_final(&id).await.status, JobStatus::Succeeded);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_can_be_retried() {
    let h = Harness::start("deadretry", 10).await;
    let id = h
        .push(json!({ "fail": { "class": "bad_input", "until_attempt": 1 } }))
        .await;
    assert_eq!(h.wait_final(&id).await.status, JobStatus::Failed);
    assert_eq!(h.queue.stats(QUEUE).await.unwrap().dead, 1);
    assert!(h.queue.retry_dead(QUEUE, &id).await.unwrap());
    assert!(
        !h.queue.retry_dead(QUEUE, &id).await.unwrap(),
        "no longer a dead letter"
    );
    let s = h.wait_final(&id).await;
    assert_eq!(s.status, JobStatus::Succeeded);
    assert_eq!(s.attempts, 2, "runs keep counting across a manual retry");
    assert_eq!(h.queue.stats(QUEUE).await.unwrap().dead, 0);

    // bulk retry
    let a = h
        .push(json!({ "fail": { "class": "user_violation", "until_attempt": 1 } }))
        .await;
    let b = h
        .push(json!({ "fail": { "class": "user_violation", "until_attempt": 1 } }))
        .await;
    h.wait_final(&a).await;
    h.wait_final(&b).await;
    assert_eq!(h.queue.retry_all_dead(QUEUE).await.unwrap(), 2);
    assert_eq!(h.wait_final(&a).await.status, JobStatus::Succeeded);
    assert_eq!(h.wait_final(&b).await.status, JobStatus::Succeeded);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_jobs_placed_by_hand_are_dead_lettered_and_the_worker_goes_on() {
    let h = Harness::start("malformed", 10).await;
    let client = redis::Client::open(h.url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let base = h.queue.base_key(QUEUE);
    // a job record whose payload is not JSON
    let _: () = redis::cmd("HSET")
        .arg(format!("{base}:job:byhand1"))
        .arg(&[
            "type",
            "probe",
            "payload",
            "{not json",
            "attempts",
            "0",
            "status",
            "queued",
        ])
        .query_async(&mut con)
        .await
        .unwrap();
    let _: () = redis::cmd("LPUSH")
        .arg(format!("{base}:ready"))
        .arg("byhand1")
        .query_async(&mut con)
        .await
        .unwrap();
    // raw text pushed straight onto the ready list
    let _: () = redis::cmd("LPUSH")
        .arg(format!("{base}:ready"))
        .arg(r#"{"some":"raw payload"}"#)
        .query_async(&mut con)
        .await
        .unwrap();
    // an unknown job type
    h.queue
        .push(NewJob::new(QUEUE, "no_such_type", "{}").id("byhand2"))
        .await
        .unwrap();

    let s = h.wait_final("byhand1").await;
    assert_eq!(s.status, JobStatus::Failed);
    assert_eq!(s.error_class, Some(FailureClass::BadInput));
    assert!(
        s.error
            .as_deref()
            .unwrap()
            .contains("payload for job type 'probe' is not valid"),
        "{s:?}"
    );

    let s = h.wait_final("byhand2").await;
    assert_eq!(s.error_class, Some(FailureClass::BadInput));
    assert!(
        s.error
            .as_deref()
            .unwrap()
            .contains("unknown job type 'no_such_type'"),
        "{s:?}"
    );

    let dead = h.queue.dead_letters(QUEUE, 0, 10).await.unwrap();
    assert_eq!(dead.len(), 3);
    let raw = dead
        .iter()
        .find(|d| d.payload.contains("raw payload"))
        .expect("raw entry dead-lettered");
    assert!(raw.error.as_deref().unwrap().contains("has no job record"));

    let ok = h.push(json!({ "echo": "fine" })).await;
    assert_eq!(h.wait_final(&ok).await.status, JobStatus::Succeeded);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_and_completion_events_are_visible_to_other_processes() {
    let h = Harness::start("events", 10).await;
    let mut events = EventFollower::start(&h.queue, &[QUEUE.to_owned()], EventStart::New)
        .await
        .unwrap();
    let slow = h
        .push(json!({ "sleep_ms": 1500, "progress_steps": 3 }))
        .await;
    let s = h.wait_for(&slow, |s| s.progress.is_some()).await;
    assert_eq!(s.status, JobStatus::Running);
    assert!(s.progress.unwrap().percent >= 33);
    let bad = h
        .push(json!({ "fail": { "class": "user_violation" } }))
        .await;

    let mut seen = std::collections::HashMap::new();
    while seen.len() < 2 {
        let ev = tokio::time::timeout(Duration::from_secs(20), events.next())
            .await
            .expect("event in time")
            .expect("follower alive");
        seen.insert(ev.job_id.clone(), ev);
    }
    assert_eq!(seen[&slow].status, JobStatus::Succeeded);
    assert_eq!(seen[&bad].status, JobStatus::Failed);
    assert_eq!(seen[&bad].error_class, Some(FailureClass::UserViolation));
    assert_eq!(seen[&bad].job_type, "probe");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_jobs_run_when_due_and_results_are_kept() {
    let h = Harness::start("delay", 10).await;
    let id = h
        .client
        .enqueue_json(
            "probe",
            r#"{"echo":"later"}"#,
            EnqueueOptions {
                delay: Some(Duration::from_millis(700)),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id;
    let s = h.state(&id).await.unwrap();
    assert_eq!(s.status, JobStatus::Scheduled);
    let done = h.wait_final(&id).await;
    assert!(done.started_at_ms.unwrap() >= s.enqueued_at_ms.unwrap() + 700);
    assert_eq!(done.result.unwrap()["echo"], "later");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pushes_are_refused_with_a_clear_error() {
    let h = Harness::start("badpush", 1).await;
    let err = h
        .client
        .enqueue_json("probe", "{nope", Default::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("payload for job type 'probe' is not valid"),
        "{err}"
    );
    let err = h
        .client
        .enqueue_json("nosuch", "{}", Default::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown job type 'nosuch'"),
        "{err}"
    );
    let err = h
        .queue
        .push(NewJob::new("Bad Queue", "probe", "{}"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("invalid queue name 'Bad Queue'"),
        "{err}"
    );
    let err = h
        .queue
        .push(NewJob::new(QUEUE, "probe", "x".repeat(2 * 1024 * 1024)))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("over the 1048576-byte limit"),
        "{err}"
    );
    h.stop().await;
}
