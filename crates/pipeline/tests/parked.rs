//! 10,000 pipelines parked at a gate hold no worker slot; the Redis memory each
//! takes is measured and bounded; all 10,000 time out, each once and none before
//! its deadline (server time). On a Redis of the test's own (memory is measured).

mod common;

use std::{collections::HashMap, time::Duration};

use common::{Harness, QUEUE};
use genq_testkit::{PrivateRedis, unique_prefix, wait_until};
use serde_json::json;

const PIPELINES: usize = 10_000;
const GATE_MS: u64 = 30_000;
/// The bound on Redis memory per parked pipeline (its hash, its step record, its
/// deadline entry and its share of the stage-event stream).
const MAX_BYTES_PER_PARKED: u64 = 1_200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_parked_pipelines_hold_no_slot_take_little_memory_and_all_time_out() {
    let redis = PrivateRedis::start().await.expect("a private redis-server");
    let prefix = unique_prefix("pl_parked");
    let h = Harness::start_on(&redis.url(), &prefix, 50).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = redis.used_memory().await.expect("used_memory");

    let starts: Vec<(String, serde_json::Value)> = (0..PIPELINES)
        .map(|i| ("gated".to_owned(), json!({"echo": i, "gate_ms": GATE_MS})))
        .collect();
    let mut ids = Vec::new();
    for chunk in starts.chunks(1000) {
        ids.extend(h.client.start_many(chunk).await.expect("start"));
    }
    let parked = wait_until(Duration::from_secs(GATE_MS / 1000 - 5), || async {
        let c = h.client.counts().await.ok()?;
        (c.parked as usize == PIPELINES).then_some(c)
    })
    .await;
    assert!(
        parked.is_some(),
        "all parked before their deadline: {:?}",
        h.client.counts().await
    );
    let after = redis.used_memory().await.expect("used_memory");
    let per = after.saturating_sub(before) / PIPELINES as u64;
    println!("redis memory per parked pipeline: {per} bytes ({before} -> {after} for {PIPELINES})");
    assert!(
        per <= MAX_BYTES_PER_PARKED,
        "{per} bytes per parked pipeline"
    );

    let stats = h.queue.stats(QUEUE).await.expect("stats");
    assert_eq!(
        (stats.running, stats.ready, stats.pushed),
        (0, 0, 0),
        "parked pipelines hold no worker slot and run nothing: {stats:?}"
    );
    let counts = h.client.counts().await.expect("counts");
    assert_eq!((counts.active, counts.queued), (0, 0), "{counts:?}");

    let ended = wait_until(Duration::from_secs(GATE_MS / 1000 + 90), || async {
        let c = h.client.counts().await.ok()?;
        (c.parked == 0 && c.active == 0 && c.finished as usize == PIPELINES).then_some(c)
    })
    .await;
    assert!(
        ended.is_some(),
        "all timed out: {:?}",
        h.client.counts().await
    );

    let mut c = h.queue.connection();
    let mut outcomes: HashMap<String, usize> = HashMap::new();
    for chunk in ids.chunks(1000) {
        let mut pipe = redis::pipe();
        for id in chunk {
            pipe.cmd("HMGET")
                .arg(format!("{}:job:{id}", h.queue.base_key("pipelines")))
                .arg("outcome")
                .arg("gate_opened")
                .arg("finished");
        }
        let rows: Vec<(Option<String>, Option<u64>, Option<u64>)> =
            pipe.query_async(&mut c).await.expect("read");
        for (id, (outcome, opened, finished)) in chunk.iter().zip(rows) {
            let (opened, finished) = (opened.expect("opened"), finished.expect("finished"));
            assert!(
                finished - opened >= GATE_MS,
                "{id} timed out {} ms early",
                GATE_MS - (finished - opened)
            );
            *outcomes.entry(outcome.unwrap_or_default()).or_default() += 1;
        }
    }
    assert_eq!(outcomes.get("timed_out"), Some(&PIPELINES), "{outcomes:?}");
    let pl_stats = h.queue.stats("pipelines").await.expect("stats");
    assert_eq!(
        pl_stats.cancelled as usize, PIPELINES,
        "each timed out once: {pl_stats:?}"
    );
    assert_eq!(
        h.queue.stats(QUEUE).await.expect("stats").pushed,
        0,
        "no step ran"
    );
    h.shutdown().await;
}
