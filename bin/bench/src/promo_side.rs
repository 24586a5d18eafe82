//! `genq-bench promo`: N `promo` pipelines at once, in this process, on a private
//! Redis, against the in-process fake provider at chosen latencies: the catalog's
//! job types built from a config pointing at the fake, workers on `text`, `img` and
//! `video`, one pipeline driver, real ffmpeg, a temporary artifacts directory. Every
//! gate is approved as soon as its `gate_open` event arrives.
//!
//! Figures: wall time against one pipeline's ideal critical path (chat + rounds of
//! images × image + rounds of clips × (clip task + one poll interval) + speech; the
//! local ffmpeg work — fitting the voice, assembling — counts against genq),
//! per-stage medians against their ideal (from the views' stage start/end, server
//! time), gate open → approved (the signal's `waited_ms`), peak RSS of this process,
//! provider calls against the expected counts, failed pipelines.

use std::{
    collections::HashSet,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use genq_catalog::{
    CatalogDeps, PROMO,
    promo::{APPROVE, stages},
};
use genq_config::Config;
use genq_metrics::WorkerMetrics;
use genq_pipeline::{PipelineClient, PipelineDriver, PipelineEvents, PipelineView};
use genq_redis::{RedisConfig, RedisQueue};
use genq_runtime::{WorkerRuntime, WorkerSettings};
use genq_testkit::{FakeProvider, PrivateRedis, promo_toml, providers_toml};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const QUEUES: [&str; 3] = ["text", "img", "video"];
/// How long the run may take before unfinished pipelines count as failed.
const BUDGET: Duration = Duration::from_secs(900);

/// What one run measures.
#[derive(Debug, Clone)]
pub struct PromoSizes {
    pub pipelines: usize,
    pub chat: Duration,
    pub image: Duration,
    /// How long the fake's clip (animation) task runs after its submit.
    pub clip: Duration,
    /// `jobs.generate_video.poll_interval_ms`.
    pub poll: Duration,
    pub speech: Duration,
    pub image_parallelism: usize,
    pub clip_parallelism: usize,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The work stages of one pipeline and their ideal durations (ms) for `segments`
/// segments: the provider's latencies only (the assembly, local ffmpeg, ideally 0).
fn ideal_stages(s: &PromoSizes, segments: usize) -> [(&'static str, f64); 5] {
    let rounds = |par: usize| segments.div_ceil(par.max(1)) as f64;
    [
        (stages::SCRIPT, ms(s.chat)),
        (stages::IMAGES, rounds(s.image_parallelism) * ms(s.image)),
        (
            stages::CLIPS,
            rounds(s.clip_parallelism) * (ms(s.clip) + ms(s.poll)),
        ),
        (stages::VOICE, ms(s.speech)),
        (stages::ASSEMBLE, 0.0),
    ]
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(
    fake: &FakeProvider,
    artifacts: &std::path::Path,
    s: &PromoSizes,
) -> anyhow::Result<Config> {
    let text = providers_toml(&fake.base_url(), artifacts)
        + &format!(
            r#"
[jobs.generate_image]
provider = "llm"

[jobs.generate_video]
provider = "media"
poll_interval_ms = {}
"#,
            s.poll.as_millis().max(1)
        )
        + &promo_toml(3600);
    let mut cfg = Config::parse(&text, "genq-bench promo").context("the bench's config")?;
    cfg.promo.image_parallelism = s.image_parallelism;
    cfg.promo.clip_parallelism = s.clip_parallelism;
    cfg.validate().context("the bench's config")?;
    Ok(cfg)
}

/// What the run saw.
struct Run {
    wall: Duration,
    views: Vec<Option<PipelineView>>,
    waited_ms: Vec<f64>,
    refused: usize,
}

pub async fn run(s: &PromoSizes) -> anyhow::Result<()> {
    ensure!(s.pipelines > 0, "--pipelines must be at least 1");
    let redis = PrivateRedis::start()
        .await
        .context("starting a private redis-server")?;
    let fake = FakeProvider::start().await;
    fake.set_endpoint_latency("chat", s.chat);
    fake.set_endpoint_latency("images", s.image);
    fake.set_endpoint_latency("speech", s.speech);
    fake.set_task_duration(s.clip);
    let dir = TempDir(std::env::temp_dir().join(format!("genqbench-promo-{}", crate::now_us())));
    let cfg = config(&fake, &dir.0.join("artifacts"), s)?;
    let segments = cfg.promo.segments() as usize;

    let prefix = "genqbench-promo";
    let queue = RedisQueue::connect(RedisConfig::with_url(redis.url()).prefix(prefix)).await?;
    let providers_prom = prometheus::Registry::new();
    let deps = CatalogDeps {
        redis: queue.connection(),
        prefix: prefix.to_owned(),
        metrics: &providers_prom,
    };
    let registry = Arc::new(genq_catalog::build(&cfg, &deps)?);
    let queues: Vec<String> = QUEUES.iter().map(|q| (*q).to_owned()).collect();
    let mut settings = WorkerSettings::new(queues.clone());
    // enough slots that the fan-outs of every pipeline run at once
    settings.concurrency = s.pipelines * s.image_parallelism.max(s.clip_parallelism).max(1);
    settings.grace = Duration::from_secs(1);
    let concurrency = settings.concurrency;
    let runtime = WorkerRuntime::start(
        registry.clone(),
        queue.clone(),
        WorkerMetrics::new(&prometheus::Registry::new())?,
        settings,
    )
    .await?;
    let pipelines = genq_catalog::pipelines_for(&cfg)?;
    ensure!(
        pipelines.names().contains(&PROMO.to_owned()),
        "the promo pipeline type is not registered"
    );
    let driver = PipelineDriver::new(queue.clone(), pipelines, registry, queues);
    let stop = CancellationToken::new();
    let st = stop.clone();
    let tasks = vec![
        tokio::spawn(async move {
            let _ = runtime.run(async move { st.cancelled().await }).await;
        }),
        tokio::spawn(driver.run(stop.clone())),
    ];

    let client = PipelineClient::new(queue.clone());
    let measured = drive(&queue, &client, s.pipelines).await;
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    let run = measured?;
    print(s, segments, concurrency, &fake, &run);
    let failed = failed(&run.views);
    ensure!(failed == 0, "{failed} of {} pipelines failed", s.pipelines);
    Ok(())
}

/// Starts the pipelines, approves each gate as it opens, waits for them all to end.
async fn drive(queue: &RedisQueue, client: &PipelineClient, n: usize) -> anyhow::Result<Run> {
    let mut events = PipelineEvents::follow(queue, None).await?;
    let starts: Vec<(String, Value)> = (0..n)
        .map(|i| {
            (
                PROMO.to_owned(),
                json!({"brief": format!("Fresh roasted coffee delivered every morning, shop {i}"), "lang": "en"}),
            )
        })
        .collect();
    let started = Instant::now();
    let ids = client.start_many(&starts).await?;
    let mut open: HashSet<String> = ids.iter().cloned().collect();
    let mut approvals = JoinSet::new();
    let deadline = tokio::time::Instant::from_std(started + BUDGET);
    while !open.is_empty() {
        let Ok(ev) = tokio::time::timeout_at(deadline, events.next()).await else {
            eprintln!(
                "{} pipelines still running after {BUDGET:?}: counted as failed",
                open.len()
            );
            break;
        };
        if !open.contains(&ev.pipeline_id) {
            continue;
        }
        match ev.kind.as_str() {
            "gate_open" => {
                let gate = ev.field("gate").unwrap_or_default().to_owned();
                let (client, id) = (client.clone(), ev.pipeline_id);
                approvals
                    .spawn(async move { client.signal(&id, &gate, APPROVE, &Value::Null).await });
            }
            "finished" => {
                open.remove(&ev.pipeline_id);
            }
            _ => {}
        }
    }
    let wall = started.elapsed();
    let (mut waited_ms, mut refused) = (Vec::new(), 0);
    while let Some(answer) = approvals.join_next().await {
        match answer {
            Ok(Ok(Ok(accepted))) => waited_ms.push(accepted.waited_ms as f64),
            Ok(Ok(Err(refusal))) => {
                eprintln!("a signal was refused: {refusal}");
                refused += 1;
            }
            Ok(Err(e)) => {
                eprintln!("a signal failed: {e}");
                refused += 1;
            }
            Err(e) => {
                eprintln!("a signal task failed: {e}");
                refused += 1;
            }
        }
    }
    let mut views = Vec::with_capacity(ids.len());
    for id in &ids {
        views.push(client.view(id).await?);
    }
    Ok(Run {
        wall,
        views,
        waited_ms,
        refused,
    })
}

/// Pipelines that did not succeed (or whose view is gone).
fn failed(views: &[Option<PipelineView>]) -> usize {
    views
        .iter()
        .filter(|v| v.as_ref().and_then(|v| v.outcome.as_deref()) != Some("succeeded"))
        .count()
}

/// Each view's duration (ms) of stage `name`, where it started and ended.
fn stage_ms(views: &[Option<PipelineView>], name: &str) -> Vec<f64> {
    views
        .iter()
        .flatten()
        .filter_map(|v| v.stages.iter().find(|st| st.name == name))
        .filter_map(|st| Some(st.ended_ms?.saturating_sub(st.started_ms?) as f64))
        .collect()
}

fn print(s: &PromoSizes, segments: usize, concurrency: usize, fake: &FakeProvider, run: &Run) {
    let n = s.pipelines;
    let ideal = ideal_stages(s, segments);
    let ideal_ms: f64 = ideal.iter().map(|(_, ms)| ms).sum();
    let wall_ms = ms(run.wall);
    println!(
        "promo: {n} pipelines at once, {segments} segments each (images {} at once, clips {} at once), \
         every gate approved when it opens; one process: workers (concurrency {concurrency} per queue \
         on {}), a pipeline driver, the fake provider, real ffmpeg; private Redis",
        s.image_parallelism,
        s.clip_parallelism,
        QUEUES.join(", "),
    );
    println!(
        "fake provider: chat {} ms, image {} ms, clip task {} ms (polled every {} ms), speech {} ms",
        ms(s.chat),
        ms(s.image),
        ms(s.clip),
        ms(s.poll),
        ms(s.speech)
    );
    println!(
        "{:<40}{:>10.2} s   ideal {:.2} s   ratio {:.2}x",
        "wall time (start of all -> last ended)",
        wall_ms / 1000.0,
        ideal_ms / 1000.0,
        wall_ms / ideal_ms
    );
    println!(
        "{:<40}{:>10}{:>12}{:>10}",
        "stage (median of the pipelines)", "ms", "ideal ms", "ratio"
    );
    for (name, ideal) in ideal {
        let got = median(stage_ms(&run.views, name));
        let ratio = if ideal > 0.0 {
            format!("{:.2}x", got / ideal)
        } else {
            "-".to_owned()
        };
        println!("  {name:<38}{got:>10.0}{ideal:>12.0}{ratio:>10}");
    }
    let gate_stage: Vec<f64> = [
        stages::APPROVE_SCRIPT,
        stages::APPROVE_IMAGES,
        stages::APPROVE_CLIPS,
    ]
    .iter()
    .flat_map(|g| stage_ms(&run.views, g))
    .collect();
    let max_wait = run.waited_ms.iter().copied().fold(f64::NAN, f64::max);
    println!(
        "gate open -> approved: median {:.1} ms, max {:.1} ms ({} signals, {} refused); \
         gate open -> next stage start: median {:.1} ms",
        median(run.waited_ms.clone()),
        max_wait,
        run.waited_ms.len(),
        run.refused,
        median(gate_stage),
    );
    println!(
        "peak RSS of this process (VmHWM): {:.0} MB (ffmpeg and redis-server are processes of their own)",
        crate::peak_rss_kb() as f64 / 1024.0
    );
    println!("{:<40}{:>10}{:>12}", "provider calls", "got", "expected");
    for (what, got, expected) in [
        ("chat (scripts)", fake.calls("chat"), n),
        ("images", fake.calls("images"), segments * n),
        ("task submits (clips)", fake.submits(), segments * n),
        ("speech", fake.calls("speech"), n),
    ] {
        let verdict = if got == expected { "OK" } else { "MISMATCH" };
        println!("  {what:<38}{got:>10}{expected:>12}  {verdict}");
    }
    println!("failed pipelines: {} of {n}", failed(&run.views));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ideal_counts_rounds_of_each_fan_out() {
        let s = PromoSizes {
            pipelines: 20,
            chat: Duration::from_millis(300),
            image: Duration::from_millis(500),
            clip: Duration::from_millis(2000),
            poll: Duration::from_millis(100),
            speech: Duration::from_millis(300),
            image_parallelism: 3,
            clip_parallelism: 5,
        };
        let ideal = ideal_stages(&s, 10);
        let names: Vec<&str> = ideal.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["script", "images", "clips", "voice", "assemble"]);
        let ms: Vec<f64> = ideal.iter().map(|(_, ms)| *ms).collect();
        assert_eq!(ms, [300.0, 2000.0, 4200.0, 300.0, 0.0]);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }
}
