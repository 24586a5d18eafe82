//! Pipelines survive their drivers: real `worker` processes (each runs workers and
//! a pipeline driver) SIGKILLed during a fan-out, right after a step completed
//! (before its pipeline advanced) and right after a stage started (before its jobs
//! were pushed); and gates time out on the Redis server's clock when every driver's
//! host clock is a minute off. Every run of every job is counted in a log the
//! probe appends to (`GENQ_PROBE_RUNS_LOG`), independently of Redis.

use std::{collections::BTreeMap, path::Path, time::Duration};

use genq_pipeline::{PipelineClient, PipelineView};
use genq_redis::{RedisConfig, RedisQueue};
use genq_testkit::{ChildProcess, free_port, unique_prefix, wait_until};
use serde_json::{Value, json};

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const WAIT: Duration = Duration::from_secs(90);

fn worker(prefix: &str, runs_log: &Path, extra: &[(&str, String)]) -> ChildProcess {
    let mut env = vec![
        ("GENQ_REDIS_URL", genq_testkit::redis_url()),
        ("GENQ_PREFIX", prefix.to_owned()),
        ("GENQ_LEASE_SECS", "3".to_owned()),
        ("GENQ_HEARTBEAT_MS", "500".to_owned()),
        ("GENQ_METRICS_ADDR", format!("127.0.0.1:{}", free_port())),
        ("GENQ_LOG", "info".to_owned()),
        ("GENQ_PROBE_RUNS_LOG", runs_log.display().to_string()),
    ];
    env.extend(extra.iter().cloned());
    ChildProcess::spawn(
        env!("CARGO_BIN_EXE_worker"),
        &[
            "--queues",
            "default",
            "--concurrency",
            "10",
            "--grace-secs",
            "1",
        ],
        &env,
    )
    .expect("spawn worker")
}

/// A fresh file for the probe's run log.
fn runs_log(prefix: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("{}.runs.log", prefix.replace([':', '/'], "_")));
    let _ = std::fs::remove_file(&path);
    path
}

/// Runs per job id, from the probe's log.
fn runs(log: &Path) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(id) = line.split_whitespace().next() {
            *out.entry(id.to_owned()).or_insert(0) += 1;
        }
    }
    out
}

async fn view(client: &PipelineClient, id: &str) -> Option<PipelineView> {
    client.view(id).await.expect("view")
}

async fn wait_view(
    client: &PipelineClient,
    id: &str,
    what: &str,
    pred: impl Fn(&PipelineView) -> bool,
) -> PipelineView {
    let found = wait_until(WAIT, || async {
        view(client, id).await.filter(|v| pred(v))
    })
    .await;
    match found {
        Some(v) => v,
        None => panic!("pipeline {id} never {what}: {:#?}", view(client, id).await),
    }
}

async fn connect(prefix: &str) -> RedisQueue {
    RedisQueue::connect(RedisConfig::with_url(genq_testkit::redis_url()).prefix(prefix))
        .await
        .expect("connect")
}

/// Stage-change events of pipeline `id` by kind.
async fn event_counts(queue: &RedisQueue, id: &str) -> BTreeMap<String, usize> {
    let mut c = queue.connection();
    let key = format!("{}:pl_events", queue.base_key("pipelines"));
    let all: Vec<(String, BTreeMap<String, String>)> =
        redis::AsyncCommands::xrange_all(&mut c, key)
            .await
            .expect("events");
    let mut out = BTreeMap::new();
    for (_, f) in all {
        if f.get("id").map(String::as_str) == Some(id) {
            *out.entry(f.get("kind").cloned().unwrap_or_default())
                .or_insert(0) += 1;
        }
    }
    out
}

/// Approves the review gate and waits for success; checks the join and that each
/// stage started once and each job ended once.
async fn approve_and_finish(queue: &RedisQueue, client: &PipelineClient, id: &str, items: u64) {
    wait_view(client, id, "parked at review", |v| v.gate.is_some()).await;
    client
        .signal(id, "review", "approve", &Value::Null)
        .await
        .expect("signal")
        .expect("accepted");
    let done = wait_view(client, id, "ended", |v| v.outcome.is_some()).await;
    assert_eq!(done.outcome.as_deref(), Some("succeeded"), "{done:#?}");
    let joined: Vec<u64> = done.result.expect("result")["echo"]["joined"]
        .as_array()
        .expect("joined")
        .iter()
        .map(|v| v["index"].as_u64().expect("index"))
        .collect();
    assert_eq!(joined, (0..items).collect::<Vec<_>>());
    let events = event_counts(queue, id).await;
    assert_eq!(
        events.get("stage"),
        Some(&4),
        "each stage started once: {events:?}"
    );
    assert_eq!(
        events.get("step"),
        Some(&(items as usize + 2)),
        "each job recorded once: {events:?}"
    );
    assert_eq!(events.get("finished"), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_during_the_fan_out_finishes_elsewhere_without_rerunning_finished_steps() {
    let prefix = unique_prefix("pl_kill_fan");
    let log = runs_log(&prefix);
    // A alone at first, so that it surely runs fan-out jobs; B joins before the kill
    let mut a = worker(&prefix, &log, &[]);
    let queue = connect(&prefix).await;
    let client = PipelineClient::new(queue.clone());
    let items = 12;
    let id = client
        .start("probe-flow", &json!({"items": items, "sleep_ms": 1000}))
        .await
        .expect("start");

    // kill A while it runs a fan-out job and some fan-out jobs have finished
    let a_pid = a.pid().to_string();
    let before = wait_until(WAIT, || async {
        let v = view(&client, &id).await?;
        let fan = v.stages.get(1)?;
        if fan.done < 3 {
            return None;
        }
        let running: Vec<String> = fan
            .steps
            .iter()
            .filter(|s| s.status == "running")
            .map(|s| s.job_id.clone())
            .collect();
        let mut on_a = false;
        for job in &running {
            let state = queue.job("default", job).await.ok()??;
            on_a |= state
                .worker
                .as_deref()
                .is_some_and(|w| w.contains(&format!("-{a_pid}-")));
        }
        on_a.then_some(v)
    })
    .await
    .expect("A ran a fan-out job after some had finished");
    let b = worker(&prefix, &log, &[]);
    a.sigkill();
    let fan = &before.stages[1];
    let finished_before: Vec<String> = fan
        .steps
        .iter()
        .filter(|s| s.status == "succeeded")
        .map(|s| s.job_id.clone())
        .collect();
    let open_at_kill: Vec<String> = fan
        .steps
        .iter()
        .filter(|s| s.status != "succeeded")
        .map(|s| s.job_id.clone())
        .collect();
    assert!(finished_before.len() >= 3 && fan.steps.len() <= fan.done + 3);

    approve_and_finish(&queue, &client, &id, items).await;
    let runs = runs(&log);
    let prepare = format!("{id}.0.0");
    assert_eq!(runs.get(&prepare), Some(&1), "prepare ran once: {runs:?}");
    for i in 0..items {
        let job = format!("{id}.1.{i}");
        let n = runs.get(&job).copied().unwrap_or(0);
        if finished_before.contains(&job) {
            assert_eq!(
                n, 1,
                "{job} had finished before the kill and ran again: {runs:?}"
            );
        } else if open_at_kill.contains(&job) {
            assert!(
                (1..=2).contains(&n),
                "{job} was in flight at the kill: ran {n} times"
            );
        } else {
            assert_eq!(n, 1, "{job} started after the kill: ran {n} times");
        }
    }
    assert_eq!(runs.get(&format!("{id}.3.0")), Some(&1), "finish ran once");
    drop(b);
    genq_testkit::cleanup_prefix(&genq_testkit::redis_url(), &prefix).await;
}

/// A driver stopped at `failpoint` and SIGKILLed there; a second worker takes over.
async fn driver_killed_at(failpoint: &str) {
    let prefix = unique_prefix("pl_kill_driver");
    let log = runs_log(&prefix);
    let mut a = worker(&prefix, &log, &[("GENQ_FAILPOINT", failpoint.to_owned())]);
    let queue = connect(&prefix).await;
    let client = PipelineClient::new(queue.clone());
    let items = 4;
    let id = client
        .start("probe-flow", &json!({"items": items, "sleep_ms": 100}))
        .await
        .expect("start");
    assert!(
        a.wait_for_output(&format!("failpoint {failpoint} reached"), WAIT)
            .await,
        "A reached {failpoint}"
    );
    let stuck = view(&client, &id).await.expect("pipeline");
    assert_eq!(
        stuck.stage,
        Some(0),
        "the pipeline had not advanced past prepare: {stuck:#?}"
    );
    a.sigkill();
    let _b = worker(&prefix, &log, &[]);
    approve_and_finish(&queue, &client, &id, items).await;
    let runs = runs(&log);
    assert_eq!(runs.len(), items as usize + 2, "every job ran: {runs:?}");
    assert!(runs.values().all(|&n| n == 1), "no job ran twice: {runs:?}");
    genq_testkit::cleanup_prefix(&genq_testkit::redis_url(), &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_killed_after_a_step_completed_but_before_the_pipeline_advanced() {
    driver_killed_at("pipeline:after_step").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_killed_after_a_stage_started_but_before_its_jobs_were_pushed() {
    driver_killed_at("pipeline:before_push").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gates_time_out_on_the_servers_clock_when_driver_hosts_are_a_minute_off() {
    assert!(
        Path::new(LIBFAKETIME).exists(),
        "libfaketime is missing: run scripts/services.sh --test (Debian package faketime)"
    );
    let prefix = unique_prefix("pl_skew");
    let log = runs_log(&prefix);
    let skewed = |skew: &str| {
        worker(
            &prefix,
            &log,
            &[
                ("LD_PRELOAD", LIBFAKETIME.to_owned()),
                ("FAKETIME", skew.to_owned()),
                ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()),
            ],
        )
    };
    let _ahead = skewed("+60s");
    let _behind = skewed("-60s");
    let queue = connect(&prefix).await;
    let client = PipelineClient::new(queue.clone());
    let timeout_ms = 4000;
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(
            client
                .start("probe-gate", &json!({"gate_timeout_ms": timeout_ms}))
                .await
                .expect("start"),
        );
    }
    for id in &ids {
        let parked = wait_view(&client, id, "parked", |v| v.gate.is_some()).await;
        let gate = parked.gate.expect("gate");
        assert_eq!(
            gate.deadline_ms - gate.opened_ms,
            timeout_ms,
            "the deadline is server time + timeout"
        );
    }
    for id in &ids {
        let v = wait_view(&client, id, "timed out", |v| v.outcome.is_some()).await;
        assert_eq!(v.outcome.as_deref(), Some("timed_out"));
        let opened = v.stages[0].started_ms.expect("gate opened");
        let ended = v.finished_ms.expect("ended");
        let waited = ended - opened;
        // a host clock would have made it 60 s early (ahead) or 60 s late (behind)
        assert!(
            waited >= timeout_ms,
            "{id} timed out early: after {waited} ms"
        );
        assert!(
            waited < timeout_ms + 10_000,
            "{id} timed out late: after {waited} ms"
        );
    }
    assert!(runs(&log).is_empty(), "no step ran after a timed-out gate");
    genq_testkit::cleanup_prefix(&genq_testkit::redis_url(), &prefix).await;
}
