//! `genq-bench pipelines`: on a private Redis, one worker (probe jobs, concurrency
//! 200) and one pipeline driver in this process:
//!
//! - transitions/s: `probe-flow` pipelines (prepare → fan-out → gate → finish),
//!   each gate approved as soon as it opens; a transition is one entry on the
//!   stage-change stream (each written by one compare-and-set script);
//! - a fan-out of 1,000 no-op jobs (all at once): how long the fan-out takes, and
//!   the join latency (the last job's end → the next stage's start, server time);
//! - gate signal → next stage start, p50 and p99 (signals at a steady rate);
//! - Redis memory per pipeline parked at a gate (10,000 parked).

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use genq_core::Registry;
use genq_job_probe::ProbeJob;
use genq_metrics::WorkerMetrics;
use genq_pipeline::{Pipeline, PipelineClient, PipelineDriver, PipelineEvents, StepSpec};
use genq_redis::{RedisConfig, RedisQueue};
use genq_runtime::{WorkerRuntime, WorkerSettings};
use genq_testkit::PrivateRedis;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What one run measures.
pub struct PipelineSizes {
    pub flows: usize,
    pub fan_out: usize,
    pub fan_runs: usize,
    pub signals: usize,
    pub parked: usize,
}

struct Rig {
    redis: PrivateRedis,
    queue: RedisQueue,
    client: PipelineClient,
    stop: CancellationToken,
}

fn bench_fan() -> Pipeline {
    Pipeline::new("bench-fan")
        .fan_out("fan", 10_000, |si| {
            let n = si.input["items"].as_u64().unwrap_or(1000);
            Ok((0..n)
                .map(|i| StepSpec::new("probe", json!({"echo": i})))
                .collect())
        })
        .step("join", |si| {
            let n = si.previous().as_array().map(Vec::len).unwrap_or(0);
            Ok(StepSpec::new("probe", json!({"echo": n})))
        })
}

async fn rig() -> anyhow::Result<Rig> {
    let redis = PrivateRedis::start()
        .await
        .context("starting a private redis-server")?;
    let queue =
        RedisQueue::connect(RedisConfig::with_url(redis.url()).prefix("genqbench-pl")).await?;
    let mut registry = Registry::new();
    registry.register(ProbeJob::new())?;
    let registry = Arc::new(registry);
    let mut settings = WorkerSettings::new(vec!["default".to_owned()]);
    settings.concurrency = 200;
    let runtime = WorkerRuntime::start(
        registry.clone(),
        queue.clone(),
        WorkerMetrics::new(&prometheus::Registry::new())?,
        settings,
    )
    .await?;
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        let _ = runtime.run(async move { s.cancelled().await }).await;
    });
    let mut pipelines = genq_catalog::pipelines()?;
    pipelines.register(bench_fan())?;
    let driver = PipelineDriver::new(queue.clone(), pipelines, registry, vec!["default".into()]);
    tokio::spawn(driver.run(stop.clone()));
    Ok(Rig {
        client: PipelineClient::new(queue.clone()),
        redis,
        queue,
        stop,
    })
}

/// Stage-change events as they arrive: (pipeline id, kind, stage, when seen).
async fn follow(
    queue: &RedisQueue,
) -> anyhow::Result<mpsc::UnboundedReceiver<(String, String, String, Instant, String)>> {
    let mut events = PipelineEvents::follow(queue, None).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let ev = events.next().await;
            let stage = ev.field("stage").unwrap_or_default().to_owned();
            if tx
                .send((ev.pipeline_id, ev.kind, stage, Instant::now(), ev.event_id))
                .is_err()
            {
                return;
            }
        }
    });
    Ok(rx)
}

fn stream_ms(id: &str) -> u64 {
    id.split('-')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}

fn pct(xs: &mut [f64], p: f64) -> f64 {
    xs.sort_by(f64::total_cmp);
    if xs.is_empty() {
        return f64::NAN;
    }
    xs[((xs.len() - 1) as f64 * p).round() as usize]
}

async fn transitions(rig: &Rig, flows: usize) -> anyhow::Result<()> {
    let mut rx = follow(&rig.queue).await?;
    let started = Instant::now();
    let starts: Vec<(String, Value)> = (0..flows)
        .map(|_| ("probe-flow".to_owned(), json!({"items": 5})))
        .collect();
    let ids = rig.client.start_many(&starts).await?;
    let mut open: std::collections::HashSet<String> = ids.into_iter().collect();
    let mut count = 0usize;
    while !open.is_empty() {
        let Some((id, kind, _, _, _)) =
            tokio::time::timeout(Duration::from_secs(60), rx.recv()).await?
        else {
            anyhow::bail!("event stream ended");
        };
        if !open.contains(&id) {
            continue;
        }
        count += 1;
        match kind.as_str() {
            "gate_open" => {
                let client = rig.client.clone();
                tokio::spawn(async move {
                    let _ = client.signal(&id, "review", "approve", &Value::Null).await;
                });
            }
            "finished" => {
                open.remove(&id);
            }
            _ => {}
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "transitions: {count} stage changes of {flows} probe-flow pipelines (5-way fan-out, a gate approved at once) in {secs:.2} s: {:.0} transitions/s, {:.0} pipelines/s",
        count as f64 / secs,
        flows as f64 / secs
    );
    Ok(())
}

async fn fan_out(rig: &Rig, items: usize, runs: usize) -> anyhow::Result<()> {
    let mut joins = Vec::new();
    let mut spans = Vec::new();
    for _ in 0..runs {
        let mut rx = follow(&rig.queue).await?;
        let id = rig
            .client
            .start("bench-fan", &json!({"items": items}))
            .await?;
        let (mut first_stage, mut last_step, mut join_start) = (None, 0u64, None);
        while join_start.is_none() {
            let Some((pid, kind, stage, _, event_id)) =
                tokio::time::timeout(Duration::from_secs(120), rx.recv()).await?
            else {
                anyhow::bail!("event stream ended");
            };
            if pid != id {
                continue;
            }
            let ms = stream_ms(&event_id);
            match (kind.as_str(), stage.as_str()) {
                ("stage", "0") => first_stage = Some(ms),
                ("step", "0") => last_step = last_step.max(ms),
                ("stage", "1") => join_start = Some(ms),
                _ => {}
            }
        }
        let (first, join) = (first_stage.unwrap_or(0), join_start.unwrap_or(0));
        spans.push(last_step.saturating_sub(first) as f64);
        joins.push(join.saturating_sub(last_step) as f64);
    }
    println!(
        "fan-out of {items} jobs (all at once), median of {runs}: the fan-out took {:.0} ms; join latency (last job's end to the next stage's start) {:.0} ms",
        pct(&mut spans, 0.5),
        pct(&mut joins, 0.5)
    );
    Ok(())
}

async fn signals(rig: &Rig, n: usize) -> anyhow::Result<()> {
    let starts: Vec<(String, Value)> = (0..n)
        .map(|_| ("probe-gate".to_owned(), json!({})))
        .collect();
    let ids = rig.client.start_many(&starts).await?;
    let parked = genq_testkit::wait_until(Duration::from_secs(60), || async {
        let c = rig.client.counts().await.ok()?;
        (c.parked as usize >= n).then_some(())
    })
    .await;
    ensure!(parked.is_some(), "the pipelines did not all park");
    let mut rx = follow(&rig.queue).await?;
    let mut sent: HashMap<String, Instant> = HashMap::new();
    let mut lat = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let mut next = ids.iter();
    while lat.len() < n {
        tokio::select! {
            _ = tick.tick() => {
                if let Some(id) = next.next() {
                    sent.insert(id.clone(), Instant::now());
                    let accepted = rig.client.signal(id, "approve", "approve", &Value::Null).await?;
                    ensure!(accepted.is_ok(), "signal refused: {accepted:?}");
                }
            }
            ev = rx.recv() => {
                let Some((pid, kind, stage, at, _)) = ev else { anyhow::bail!("event stream ended") };
                if kind == "stage" && stage == "1"
                    && let Some(t0) = sent.get(&pid)
                {
                    lat.push(at.duration_since(*t0).as_secs_f64() * 1000.0);
                }
            }
        }
    }
    println!(
        "gate signal -> next stage start ({n} signals, one every 5 ms): p50 {:.2} ms, p99 {:.2} ms",
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99)
    );
    Ok(())
}

async fn parked(rig: &Rig, n: usize) -> anyhow::Result<()> {
    let before = rig.redis.used_memory().await.context("used_memory")?;
    let base = rig.client.counts().await?.parked as usize;
    let starts: Vec<(String, Value)> = (0..n)
        .map(|i| ("probe-gate".to_owned(), json!({"echo": i})))
        .collect();
    for chunk in starts.chunks(1000) {
        rig.client.start_many(chunk).await?;
    }
    let started = Instant::now();
    let done = genq_testkit::wait_until(Duration::from_secs(120), || async {
        let c = rig.client.counts().await.ok()?;
        (c.parked as usize >= base + n).then_some(())
    })
    .await;
    ensure!(done.is_some(), "the pipelines did not all park");
    let secs = started.elapsed().as_secs_f64();
    let after = rig.redis.used_memory().await.context("used_memory")?;
    println!(
        "parked: {n} pipelines parked at a gate in {secs:.2} s ({:.0}/s); Redis memory per parked pipeline {} bytes; worker slots held 0 (running jobs: {})",
        n as f64 / secs,
        after.saturating_sub(before) / n as u64,
        rig.queue.stats("default").await?.running
    );
    Ok(())
}

pub async fn run(s: &PipelineSizes) -> anyhow::Result<()> {
    let rig = rig().await?;
    transitions(&rig, s.flows).await?;
    fan_out(&rig, s.fan_out, s.fan_runs).await?;
    signals(&rig, s.signals).await?;
    let rig2 = {
        rig.stop.cancel();
        drop(rig);
        self::rig().await?
    };
    parked(&rig2, s.parked).await?;
    rig2.stop.cancel();
    Ok(())
}
