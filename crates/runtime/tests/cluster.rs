//! genq on a real Redis Cluster of three primaries started by the test: six queues
//! spread over the shards (each queue's keys in one slot, by its hash tag), served
//! by one worker runtime; push (bulk over every queue at once), drain, a delayed
//! job, a retry, a cancel of a running job, pause and resume, and the completion
//! events of every queue followed to the end.

mod common;

use std::{collections::HashMap, time::Duration};

use common::{fast_policy, probe_registry, test_config};
use genq_core::JobStatus;
use genq_job_probe::ProbeJob;
use genq_metrics::WorkerMetrics;
use genq_redis::{CancelOutcome, EventFollower, EventStart, NewJob, RedisQueue, RedisTarget};
use genq_runtime::{WorkerRuntime, WorkerSettings};
use genq_testkit::{RedisClusterNodes, unique_prefix, wait_until};
use serde_json::json;

/// Six queues whose hash tags fall two to a shard (slots 0-5460, 5461-10922,
/// 10923-16383 as `redis-cli --cluster create` splits them).
const QUEUES: [&str; 6] = ["text", "video", "img", "default", "delivery", "beta"];
const JOBS_PER_QUEUE: usize = 40;
const WAIT: Duration = Duration::from_secs(60);

fn probe(queue: &str, payload: serde_json::Value) -> NewJob {
    NewJob::json(queue, "probe", &payload).expect("payload")
}

async fn wait_status(queue: &RedisQueue, q: &str, id: &str, status: JobStatus) {
    let reached = wait_until(WAIT, || async {
        let s = queue.job(q, id).await.ok()??;
        (s.status == status).then_some(())
    })
    .await;
    assert!(
        reached.is_some(),
        "{q}/{id} never became {status:?}: {:?}",
        queue.job(q, id).await
    );
}

/// Waits until nothing of queue `q` waits or runs and its pushed jobs succeeded.
async fn wait_drained(queue: &RedisQueue, q: &str) {
    let drained = wait_until(WAIT, || async {
        let s = queue.stats(q).await.ok()?;
        (s.ready == 0 && s.running == 0 && s.scheduled == 0 && s.succeeded >= JOBS_PER_QUEUE as u64)
            .then_some(s)
    })
    .await;
    assert!(
        drained.is_some(),
        "{q} did not drain: {:?}",
        queue.stats(q).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_queues_spread_over_a_three_primary_cluster_and_every_operation_works() {
    let cluster = RedisClusterNodes::start()
        .await
        .expect("a 3-primary cluster");
    let prefix = unique_prefix("cluster");
    let queue = RedisQueue::connect(test_config(&cluster.url(), &prefix))
        .await
        .expect("connect through the seed list");
    assert!(matches!(queue.target(), RedisTarget::Cluster { .. }));
    assert!(queue.connection().is_cluster());
    let nodes = queue.server_settings_per_node().await.expect("settings");
    assert_eq!(nodes.len(), 3, "every primary is checked: {nodes:?}");
    queue
        .check_server(false)
        .await
        .expect("noeviction everywhere");

    let names: Vec<String> = QUEUES.iter().map(|q| (*q).to_owned()).collect();
    let mut events = EventFollower::start(&queue, &names, EventStart::New)
        .await
        .expect("follow events");

    // a paused queue keeps its job until resumed
    queue.pause("beta").await.expect("pause");
    let held = queue
        .push(probe("beta", json!({ "echo": "held" })))
        .await
        .expect("push")
        .id;

    let registry = probe_registry(ProbeJob::new().with_retry_policy(fast_policy()));
    let prom = prometheus::Registry::new();
    let mut settings = WorkerSettings::new(names.clone());
    settings.concurrency = 50;
    settings.grace = Duration::from_secs(2);
    let runtime = WorkerRuntime::start(
        registry,
        queue.clone(),
        WorkerMetrics::new(&prom).expect("metrics"),
        settings,
    )
    .await
    .expect("start the worker");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(runtime.run(async move {
        let _ = stopped.await;
    }));

    // one bulk push over every queue at once: the client splits it per slot
    let mut jobs = Vec::new();
    for q in QUEUES {
        for i in 0..JOBS_PER_QUEUE {
            jobs.push(probe(q, json!({ "echo": format!("{q}-{i}") })));
        }
    }
    let pushed = queue.push_bulk(jobs).await.expect("bulk push");
    assert_eq!(pushed.len(), QUEUES.len() * JOBS_PER_QUEUE);

    let delayed = queue
        .push(probe("img", json!({ "echo": "later" })).delay(Duration::from_millis(1500)))
        .await
        .expect("push delayed")
        .id;
    let retried = queue
        .push(probe(
            "video",
            json!({ "fail": { "class": "transient", "until_attempt": 1 } }),
        ))
        .await
        .expect("push retried")
        .id;
    let long = queue
        .push(probe("delivery", json!({ "sleep_ms": 120_000 })))
        .await
        .expect("push long")
        .id;

    wait_status(&queue, "delivery", &long, JobStatus::Running).await;
    assert_eq!(
        queue.cancel("delivery", &long).await.expect("cancel"),
        CancelOutcome::Signalled
    );
    wait_status(&queue, "delivery", &long, JobStatus::Cancelled).await;
    wait_status(&queue, "img", &delayed, JobStatus::Succeeded).await;
    wait_status(&queue, "video", &retried, JobStatus::Succeeded).await;

    // every pushed job of the running queues drained
    for q in QUEUES.iter().filter(|q| **q != "beta") {
        wait_drained(&queue, q).await;
    }
    let delayed_state = queue
        .job("img", &delayed)
        .await
        .expect("read")
        .expect("job");
    let (enq, started) = (
        delayed_state.enqueued_at_ms.expect("enqueued"),
        delayed_state.started_at_ms.expect("started"),
    );
    assert!(
        started >= enq + 1400,
        "the delayed job waited: {enq} → {started}"
    );
    let retried_state = queue
        .job("video", &retried)
        .await
        .expect("read")
        .expect("job");
    assert_eq!(retried_state.attempts, 2, "{retried_state:?}");
    assert_eq!(queue.stats("video").await.expect("stats").retried, 1);

    // the paused queue still holds its jobs after the others drained, until resumed
    let beta = queue.stats("beta").await.expect("stats");
    assert!(
        beta.paused && beta.ready == JOBS_PER_QUEUE as u64 + 1 && beta.succeeded == 0,
        "{beta:?}"
    );
    assert_eq!(
        queue
            .job("beta", &held)
            .await
            .expect("read")
            .expect("job")
            .status,
        JobStatus::Queued
    );
    queue.resume("beta").await.expect("resume");
    wait_drained(&queue, "beta").await;
    wait_status(&queue, "beta", &held, JobStatus::Succeeded).await;

    // one final event per job of every queue
    let expected = QUEUES.len() * JOBS_PER_QUEUE + 4;
    let mut seen: HashMap<String, JobStatus> = HashMap::new();
    let collected = tokio::time::timeout(WAIT, async {
        while seen.len() < expected {
            let ev = events.next().await.expect("events keep coming");
            assert!(
                seen.insert(ev.job_id.clone(), ev.status).is_none(),
                "one event per job: {ev:?}"
            );
        }
    })
    .await;
    assert!(collected.is_ok(), "{} of {expected} events", seen.len());
    assert_eq!(seen.get(&long), Some(&JobStatus::Cancelled));
    assert_eq!(seen.get(&retried), Some(&JobStatus::Succeeded));
    assert_eq!(
        seen.values()
            .filter(|s| **s == JobStatus::Succeeded)
            .count(),
        expected - 1
    );

    // each queue's keys on one node; the queues on all three
    let per_node = cluster.keys_per_node(&format!("{prefix}:*")).await;
    let mut node_of: HashMap<&str, u16> = HashMap::new();
    for (port, keys) in &per_node {
        for key in keys {
            let Some(q) = QUEUES
                .iter()
                .find(|q| key.starts_with(&format!("{prefix}:{{{q}}}:")))
            else {
                continue;
            };
            let first = *node_of.entry(q).or_insert(*port);
            assert_eq!(first, *port, "all of {q}'s keys on one node ({key})");
        }
    }
    assert_eq!(node_of.len(), QUEUES.len(), "{node_of:?}");
    let used: std::collections::BTreeSet<u16> = node_of.values().copied().collect();
    assert_eq!(
        used.len(),
        3,
        "the queues spread over the shards: {node_of:?}"
    );

    let _ = stop.send(());
    worker
        .await
        .expect("worker task")
        .expect("worker stopped cleanly");
}
