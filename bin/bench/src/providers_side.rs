//! `genq-bench providers`: GenerateImage through three workers ("hosts", in this
//! process, sharing one Redis) against a fake vendor that allows 10 tasks in flight
//! per key (2 keys) and answers 429 (`Retry-After: 1`) beyond: jobs/s, the vendor's
//! 429s and its peak in flight, with genq's provider limits off, static
//! (`max_in_flight = 10`) and adaptive (limit undeclared, found by AIMD).
//!
//! Then waiting on long tasks: one worker (concurrency 4) and tasks of 3 s at a
//! vendor without limits, a job holding its worker slot while it polls
//! (`wait_in_slot_secs` past the task) against a job parked after its submit
//! (`wait_in_slot_secs = 0`, no slot held while the vendor works).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use genq_metrics::WorkerMetrics;
use genq_redis::{NewJob, RedisConfig, RedisQueue};
use genq_runtime::{WorkerRuntime, WorkerSettings};
use genq_testkit::FakeProvider;

pub struct ProviderSizes {
    pub jobs: usize,
    pub hosts: usize,
    pub concurrency: usize,
    pub task: Duration,
    /// The fake vendor allows [`VENDOR_LIMIT`] tasks per key (else no limit).
    pub vendor_limited: bool,
}

struct Figures {
    mode: &'static str,
    drain: Duration,
    succeeded: u64,
    failed: u64,
    refused: usize,
    submits: usize,
    peak: usize,
    deferred: u64,
}

const VENDOR_LIMIT: usize = 10;

fn config(
    base_url: &str,
    artifacts: &std::path::Path,
    limits: &str,
) -> anyhow::Result<genq_config::Config> {
    let text = format!(
        r#"
[artifacts]
dir = "{}"
[providers.media]
protocol = "queue"
base_url = "{base_url}/queue"
keys = ["bench-key-a", "bench-key-b"]
rate_limit_cooldown_secs = 1
{limits}
[jobs.generate_image]
provider = "media"
poll_interval_ms = 50
"#,
        artifacts.display()
    );
    let cfg = genq_config::Config::parse(&text, "bench")?;
    cfg.validate()?;
    Ok(cfg)
}

async fn run_mode(
    url: &str,
    ns: &str,
    mode: &'static str,
    limits: &str,
    s: &ProviderSizes,
) -> anyhow::Result<Figures> {
    let fake = FakeProvider::start().await;
    fake.set_task_duration(s.task);
    if s.vendor_limited {
        fake.set_task_limit_per_key(Some(VENDOR_LIMIT));
        fake.set_limit_retry_after(Some(1));
    }
    let artifacts = std::env::temp_dir().join(format!("{ns}-artifacts"));
    let queue = RedisQueue::connect(RedisConfig::with_url(url).prefix(ns))
        .await
        .context("connecting to Redis")?;
    let payload = serde_json::json!({ "prompt": "a lighthouse", "width": 64, "height": 64 });
    let batch = (0..s.jobs)
        .map(|_| NewJob::json("img", "generate_image", &payload))
        .collect::<Result<Vec<_>, _>>()?;
    queue.push_bulk(batch).await?;

    let started = Instant::now();
    let mut stops = Vec::new();
    let mut workers = Vec::new();
    for _ in 0..s.hosts {
        let cfg = config(&fake.base_url(), &artifacts, limits)?;
        let prom = prometheus::Registry::new();
        let registry =
            genq_catalog::registry_builder(cfg, None)(&queue, &prom).map_err(anyhow::Error::msg)?;
        let mut settings = WorkerSettings::new(vec!["img".to_owned()]);
        settings.concurrency = s.concurrency;
        let runtime = WorkerRuntime::start(
            Arc::new(registry),
            queue.clone(),
            WorkerMetrics::new(&prom)?,
            settings,
        )
        .await?;
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        stops.push(stop);
        workers.push(tokio::spawn(runtime.run(async move {
            let _ = rx.await;
        })));
    }
    let deadline = Instant::now() + Duration::from_secs(900);
    let stats = loop {
        let st = queue.stats("img").await?;
        if st.succeeded + st.failed >= s.jobs as u64 {
            break st;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{mode}: only {} of {} jobs after 15 minutes",
            st.succeeded,
            s.jobs
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let drain = started.elapsed();
    for stop in stops {
        let _ = stop.send(());
    }
    for w in workers {
        w.await??;
    }
    let _ = std::fs::remove_dir_all(&artifacts);
    Ok(Figures {
        mode,
        drain,
        succeeded: stats.succeeded,
        failed: stats.failed,
        refused: fake.rate_limited_answers(),
        submits: fake.calls("submit"),
        peak: fake.peak_tasks_in_flight(),
        deferred: stats.deferred,
    })
}

pub async fn run(url: &str, ns: &str, s: &ProviderSizes) -> anyhow::Result<()> {
    let modes: [(&'static str, &str); 3] = [
        ("off", ""),
        ("static", "max_in_flight = 10\ndefer_ms = 200"),
        (
            "adaptive",
            "adaptive = true\nadaptive_start = 2\nmax_in_flight = 40\ndefer_ms = 200",
        ),
    ];
    let mut rows = Vec::new();
    for (mode, limits) in modes {
        let ns = format!("{ns}-{mode}");
        let f = run_mode(url, &ns, mode, limits, s).await?;
        genq_testkit::cleanup_prefix(url, &ns).await;
        rows.push(f);
    }
    println!(
        "GenerateImage x {} through {} workers (concurrency {} each), fake vendor: 2 keys x {VENDOR_LIMIT} tasks in flight, tasks of {} ms, 429 with Retry-After: 1 beyond",
        s.jobs,
        s.hosts,
        s.concurrency,
        s.task.as_millis()
    );
    println!(
        "{:<10}{:>10}{:>10}{:>10}{:>10}{:>12}{:>10}{:>12}",
        "limits", "jobs/s", "ok", "failed", "429s", "submits", "peak", "deferrals"
    );
    for f in rows {
        println!(
            "{:<10}{:>10.1}{:>10}{:>10}{:>10}{:>12}{:>10}{:>12}",
            f.mode,
            f.succeeded as f64 / f.drain.as_secs_f64(),
            f.succeeded,
            f.failed,
            f.refused,
            f.submits,
            f.peak,
            f.deferred
        );
    }
    println!(
        "peak: the vendor's most tasks in flight at once (its limit is {}); deferrals: runs that waited for capacity (not attempts)",
        2 * VENDOR_LIMIT
    );
    parking(url, ns, s).await
}

/// Long tasks, one worker: slots held while polling against jobs parked.
async fn parking(url: &str, ns: &str, s: &ProviderSizes) -> anyhow::Result<()> {
    let sizes = ProviderSizes {
        jobs: (s.jobs / 5).max(8),
        hosts: 1,
        concurrency: 4,
        task: Duration::from_secs(3),
        vendor_limited: false,
    };
    let modes: [(&'static str, &str); 2] = [
        ("held", "wait_in_slot_secs = 600"),
        ("parked", "wait_in_slot_secs = 0"),
    ];
    let mut rows = Vec::new();
    for (mode, wait) in modes {
        let ns = format!("{ns}-wait-{mode}");
        let f = run_mode(url, &ns, mode, wait, &sizes).await?;
        genq_testkit::cleanup_prefix(url, &ns).await;
        rows.push(f);
    }
    println!();
    println!(
        "GenerateImage x {} on 1 worker (concurrency {}), tasks of {} ms, no vendor limit: waiting in the worker slot vs parked",
        sizes.jobs,
        sizes.concurrency,
        sizes.task.as_millis()
    );
    println!(
        "{:<10}{:>10}{:>10}{:>10}{:>12}{:>16}",
        "waiting", "jobs/s", "ok", "failed", "drain (s)", "vendor peak"
    );
    for f in &rows {
        println!(
            "{:<10}{:>10.2}{:>10}{:>10}{:>12.1}{:>16}",
            f.mode,
            f.succeeded as f64 / f.drain.as_secs_f64(),
            f.succeeded,
            f.failed,
            f.drain.as_secs_f64(),
            f.peak
        );
    }
    if let [held, parked] = &rows[..] {
        println!(
            "parked / held throughput: {:.1}x (vendor peak: how many tasks ran at once for one 4-slot worker)",
            held.drain.as_secs_f64() / parked.drain.as_secs_f64()
        );
    }
    Ok(())
}
