//! Pipelines end to end on real Redis: a four-stage pipeline (step → fan-out of 10,
//! 3 at once → gate → step), gates answered, cancelled, timed out, raced and asked
//! too early or too late, failures, fallbacks and cancellation of running steps.

mod common;

use std::{collections::BTreeMap, sync::atomic::Ordering, time::Duration};

use common::{Harness, QUEUE};
use genq_pipeline::{PipelineCancel, PipelineState, SignalRefused};
use serde_json::{Value, json};

fn count_kind(events: &[(String, BTreeMap<String, String>)], kind: &str) -> usize {
    events.iter().filter(|(k, _)| k == kind).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_stages_complete_with_the_join_in_order_and_at_most_three_at_once() {
    let h = Harness::start("pl_four").await;
    let id = h
        .client
        .start("four", &json!({"items": 10, "sleep_ms": 150}))
        .await
        .expect("start");

    let parked = h.wait_parked(&id).await;
    let gate = parked.gate.clone().expect("open gate");
    assert_eq!(gate.name, "review");
    assert_eq!(gate.choices, vec!["approve", "cancel"]);
    assert!(gate.deadline_ms >= gate.opened_ms + 59_000, "{gate:?}");
    assert_eq!(parked.stage_name.as_deref(), Some("review"));
    let fan = &parked.stages[1];
    assert_eq!((fan.jobs, fan.done, fan.state.as_str()), (10, 10, "done"));
    assert!(
        fan.steps
            .iter()
            .all(|s| s.status == "succeeded" && s.attempts == 1)
    );
    assert_eq!(
        h.inflight.runs.load(Ordering::SeqCst),
        10,
        "each fan-out job ran once"
    );
    let max = h.inflight.max.load(Ordering::SeqCst);
    assert!(
        (1..=3).contains(&max),
        "at most 3 fan-out jobs at once, saw {max}"
    );
    let parked_list = h
        .client
        .list(PipelineState::Parked, 10)
        .await
        .expect("list");
    assert_eq!(parked_list.len(), 1);
    assert_eq!(parked_list[0].gate.as_deref(), Some("review"));

    let accepted = h
        .client
        .signal(&id, "review", "approve", &json!({"note": "looks good"}))
        .await
        .expect("signal")
        .expect("accepted");
    assert_eq!(accepted.choice, "approve");

    let done = h.wait_final(&id).await;
    assert_eq!(done.outcome.as_deref(), Some("succeeded"), "{done:#?}");
    let result = done.result.expect("result");
    let joined: Vec<u64> = result["echo"]["joined"]
        .as_array()
        .expect("joined")
        .iter()
        .map(|v| v.as_u64().expect("index"))
        .collect();
    assert_eq!(
        joined,
        (0..10).collect::<Vec<u64>>(),
        "the join keeps the fan-out's order"
    );
    assert_eq!(result["echo"]["note"], json!({"note": "looks good"}));
    assert_eq!(done.percent, 100);

    let events = h.events_of(&id).await;
    assert_eq!(
        count_kind(&events, "stage"),
        4,
        "each stage started once: {events:?}"
    );
    assert_eq!(
        count_kind(&events, "step"),
        12,
        "1 + 10 + 1 jobs ended once each"
    );
    assert_eq!(count_kind(&events, "gate_decided"), 1);
    assert_eq!(count_kind(&events, "finished"), 1);
    let stats = h.queue.stats(QUEUE).await.expect("stats");
    assert_eq!(stats.pushed, 12, "no job was pushed twice");
    let finished = h
        .client
        .list(PipelineState::Finished, 10)
        .await
        .expect("list");
    assert_eq!(finished.first().map(|p| p.id.as_str()), Some(id.as_str()));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gates_are_approved_cancelled_or_time_out_exactly_once() {
    let h = Harness::start("pl_gates").await;
    let approve = h
        .client
        .start("gated", &json!({"echo": "a"}))
        .await
        .expect("start");
    let cancel = h
        .client
        .start("gated", &json!({"echo": "c"}))
        .await
        .expect("start");
    let timeout = h
        .client
        .start("gated", &json!({"echo": "t", "gate_ms": 1000}))
        .await
        .expect("start");
    for id in [&approve, &cancel, &timeout] {
        h.wait_parked(id).await;
    }

    // approve continues
    h.client
        .signal(&approve, "approve", "approve", &Value::Null)
        .await
        .expect("signal")
        .expect("accepted");
    let a = h.wait_final(&approve).await;
    assert_eq!(a.outcome.as_deref(), Some("succeeded"));
    assert_eq!(a.result.expect("result")["echo"], json!("a"));

    // cancel ends it cancelled, and nothing after the gate runs
    h.client
        .signal(&cancel, "approve", "cancel", &Value::Null)
        .await
        .expect("signal")
        .expect("accepted");
    let c = h.wait_final(&cancel).await;
    assert_eq!(
        (c.status.as_str(), c.outcome.as_deref()),
        ("cancelled", Some("cancelled"))
    );
    assert_eq!(c.failed_stage, Some(0));

    // no signal within the timeout: timed out
    let t = h.wait_final(&timeout).await;
    assert_eq!(
        (t.status.as_str(), t.outcome.as_deref()),
        ("cancelled", Some("timed_out"))
    );
    assert_eq!(t.error_class.as_deref(), Some("timeout"));

    // signals to closed gates get typed answers
    let late = h
        .client
        .signal(&approve, "approve", "approve", &Value::Null)
        .await
        .expect("signal");
    assert_eq!(
        late,
        Err(SignalRefused::AlreadyDecided {
            choice: "approve".into()
        })
    );
    let late = h
        .client
        .signal(&timeout, "approve", "approve", &Value::Null)
        .await
        .expect("signal");
    assert_eq!(
        late,
        Err(SignalRefused::Finished {
            outcome: "timed_out".into()
        })
    );
    let late = h
        .client
        .signal(&cancel, "approve", "approve", &Value::Null)
        .await
        .expect("signal");
    assert_eq!(
        late,
        Err(SignalRefused::AlreadyDecided {
            choice: "cancel".into()
        })
    );
    let unknown = h
        .client
        .signal("nope", "approve", "approve", &Value::Null)
        .await
        .expect("signal");
    assert_eq!(unknown, Err(SignalRefused::UnknownPipeline));
    let stats = h.queue.stats(QUEUE).await.expect("stats");
    assert_eq!(stats.pushed, 1, "only the approved pipeline ran its step");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_double_approve_and_an_approve_cancel_race_each_make_one_transition() {
    let h = Harness::start("pl_race").await;
    let mut doubles = Vec::new();
    let mut races = Vec::new();
    for _ in 0..10 {
        doubles.push(h.client.start("gated", &json!({})).await.expect("start"));
        races.push(h.client.start("gated", &json!({})).await.expect("start"));
    }
    for id in doubles.iter().chain(&races) {
        h.wait_parked(id).await;
    }
    for id in &doubles {
        let (a, b) = tokio::join!(
            h.client.signal(id, "approve", "approve", &Value::Null),
            h.client.signal(id, "approve", "approve", &Value::Null)
        );
        let answers = [a.expect("signal"), b.expect("signal")];
        assert_eq!(
            answers.iter().filter(|r| r.is_ok()).count(),
            1,
            "{answers:?}"
        );
        assert!(answers.contains(&Err(SignalRefused::AlreadyDecided {
            choice: "approve".into()
        })));
    }
    let mut approved = 0;
    for id in &races {
        let (a, c) = tokio::join!(
            h.client.signal(id, "approve", "approve", &Value::Null),
            h.client.signal(id, "approve", "cancel", &Value::Null)
        );
        let (a, c) = (a.expect("signal"), c.expect("signal"));
        assert!(a.is_ok() != c.is_ok(), "exactly one wins: {a:?} {c:?}");
        if a.is_ok() {
            approved += 1;
        }
    }
    for id in &doubles {
        let v = h.wait_final(id).await;
        assert_eq!(v.outcome.as_deref(), Some("succeeded"));
        let ev = h.events_of(id).await;
        assert_eq!(count_kind(&ev, "gate_decided"), 1);
        assert_eq!(
            count_kind(&ev, "stage"),
            2,
            "the step after the gate started once"
        );
    }
    let mut succeeded = 0;
    for id in &races {
        let v = h.wait_final(id).await;
        let ev = h.events_of(id).await;
        assert_eq!(count_kind(&ev, "gate_decided"), 1);
        assert_eq!(count_kind(&ev, "finished"), 1);
        if v.outcome.as_deref() == Some("succeeded") {
            succeeded += 1;
        } else {
            assert_eq!(v.outcome.as_deref(), Some("cancelled"));
        }
    }
    assert_eq!(
        succeeded, approved,
        "each race ended as its winning signal said"
    );
    let stats = h.queue.stats(QUEUE).await.expect("stats");
    assert_eq!(
        stats.pushed as usize,
        doubles.len() + approved,
        "one step per approval"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_too_early_to_a_wrong_gate_or_with_a_wrong_choice_are_refused() {
    let h = Harness::start("pl_early").await;
    let id = h
        .client
        .start("late-gate", &json!({}))
        .await
        .expect("start");
    h.wait_for(&id, "started its first step", |v| v.stage == Some(0))
        .await;
    let early = h
        .client
        .signal(&id, "approve", "approve", &Value::Null)
        .await
        .expect("signal");
    assert_eq!(early, Err(SignalRefused::NotOpenYet));
    let wrong = h
        .client
        .signal(&id, "nope", "approve", &Value::Null)
        .await
        .expect("signal");
    assert_eq!(wrong, Err(SignalRefused::NoSuchGate));
    h.wait_parked(&id).await;
    let bad = h
        .client
        .signal(&id, "approve", "maybe", &Value::Null)
        .await
        .expect("signal");
    assert_eq!(
        bad,
        Err(SignalRefused::BadChoice {
            allowed: "approve,cancel".into()
        })
    );
    let too_big = h
        .client
        .signal(&id, "approve", "approve", &json!("x".repeat(20_000)))
        .await;
    assert!(too_big.unwrap_err().to_string().contains("limit"));
    h.client
        .signal(&id, "approve", "approve", &Value::Null)
        .await
        .expect("signal")
        .expect("accepted");
    assert_eq!(
        h.wait_final(&id).await.outcome.as_deref(),
        Some("succeeded")
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_failing_for_good_fails_the_pipeline_unless_its_fallback_runs() {
    let h = Harness::start("pl_fail").await;
    let failing = h
        .client
        .start(
            "failing",
            &json!({"fail_index": 2, "fail_class": "user_violation"}),
        )
        .await
        .expect("start");
    let v = h.wait_final(&failing).await;
    assert_eq!(
        (v.status.as_str(), v.outcome.as_deref()),
        ("failed", Some("failed"))
    );
    assert_eq!(v.error_class.as_deref(), Some("user_violation"));
    assert_eq!(v.failed_stage, Some(0));
    assert!(v.error.as_deref().unwrap_or("").contains("fan"), "{v:#?}");

    let rescued = h
        .client
        .start("failing", &json!({"fail_index": 1, "fallback": true}))
        .await
        .expect("start");
    let v = h.wait_final(&rescued).await;
    assert_eq!(v.outcome.as_deref(), Some("succeeded"), "{v:#?}");
    let out = v.result.expect("result");
    assert_eq!(out[1]["echo"], json!({"index": 1, "fallback": true}));
    assert_eq!(out[3]["echo"], json!({"index": 3}));
    assert!(v.stages[0].steps[1].fallback);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_running_steps_and_the_pipeline_ends_once() {
    let h = Harness::start("pl_cancel").await;
    let id = h.client.start("slow", &json!({})).await.expect("start");
    h.wait_for(&id, "ran its jobs", |v| {
        v.stages
            .first()
            .is_some_and(|s| s.steps.len() == 5 && s.steps.iter().all(|s| s.status == "running"))
    })
    .await;
    assert_eq!(
        h.client
            .cancel(&id, "the user changed their mind")
            .await
            .expect("cancel"),
        PipelineCancel::Cancelled
    );
    assert_eq!(
        h.client.cancel(&id, "again").await.expect("cancel"),
        PipelineCancel::AlreadyEnded("cancelled".into())
    );
    let v = h.wait_final(&id).await;
    assert_eq!(v.outcome.as_deref(), Some("cancelled"));
    let stopped = genq_testkit::wait_until(Duration::from_secs(20), || async {
        let s = h.queue.stats(QUEUE).await.ok()?;
        (s.cancelled == 5 && s.running == 0).then_some(s)
    })
    .await;
    assert!(
        stopped.is_some(),
        "the running jobs were stopped: {:?}",
        h.queue.stats(QUEUE).await
    );
    assert_eq!(count_kind(&h.events_of(&id).await, "finished"), 1);
    // the stopped jobs' outcomes arrive after the end: the outcome is counted once
    tokio::time::sleep(Duration::from_secs(1)).await;
    let text = genq_metrics::render(&h.prom).expect("metrics");
    assert!(
        text.contains("genq_pipelines_finished_total{outcome=\"cancelled\",type=\"slow\"} 1"),
        "{text}"
    );
    let counts = h.client.counts().await.expect("counts");
    assert_eq!((counts.active, counts.parked), (0, 0), "{counts:?}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generic_job_cancel_of_an_operator_reaches_a_parked_pipeline() {
    let h = Harness::start("pl_op_cancel").await;
    let id = h.client.start("gated", &json!({})).await.expect("start");
    h.wait_parked(&id).await;
    let outcome = h.queue.cancel("pipelines", &id).await.expect("cancel");
    assert_eq!(outcome, genq_redis::CancelOutcome::Signalled);
    let v = h.wait_final(&id).await;
    assert_eq!(v.outcome.as_deref(), Some("cancelled"));
    assert_eq!(count_kind(&h.events_of(&id).await, "finished"), 1);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_sees_every_stage_change_in_order_ending_with_one_final_event() {
    let h = Harness::start("pl_events").await;
    let mut events = genq_pipeline::PipelineEvents::follow(&h.queue, None)
        .await
        .expect("follow");
    let id = h
        .client
        .start(
            "failing",
            &json!({"fail_index": 0, "fail_class": "billing"}),
        )
        .await
        .expect("start");
    let mut kinds = Vec::new();
    let finished = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let ev = events.next().await;
            if ev.pipeline_id != id {
                continue;
            }
            kinds.push(ev.kind.clone());
            if ev.kind == "finished" {
                return ev;
            }
        }
    })
    .await
    .expect("the pipeline ended");
    assert_eq!(
        kinds[..2],
        ["started".to_owned(), "stage".to_owned()],
        "{kinds:?}"
    );
    assert!(kinds.contains(&"step".to_owned()), "{kinds:?}");
    assert_eq!(finished.pipeline_type, "failing");
    assert_eq!(finished.field("outcome"), Some("failed"));
    assert_eq!(finished.field("stage"), Some("0"));
    assert_eq!(finished.field("class"), Some("billing"));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_cannot_be_routed_fails_the_pipeline_instead_of_stalling_it() {
    let h = Harness::start("pl_unroutable").await;
    let id = h
        .client
        .start("unroutable", &json!({}))
        .await
        .expect("start");
    let v = h.wait_final(&id).await;
    assert_eq!(
        (v.status.as_str(), v.outcome.as_deref()),
        ("failed", Some("failed"))
    );
    assert_eq!(v.error_class.as_deref(), Some("bad_input"));
    assert!(
        v.error.as_deref().unwrap_or("").contains("no_such_job"),
        "{v:#?}"
    );
    assert_eq!(v.failed_stage, Some(1));
    let too_long = h
        .client
        .start_with_id(&"x".repeat(41), "gated", &json!({}))
        .await;
    assert!(
        too_long
            .unwrap_err()
            .to_string()
            .contains("1-40 characters")
    );
    h.shutdown().await;
}
