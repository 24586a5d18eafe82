//! GenerateImage through one worker against the fake provider with a fixed latency:
//! how close the drain comes to the ideal (jobs / concurrency × latency), and that
//! every job cost exactly one provider call.

use std::{sync::Arc, time::Duration, time::Instant};

use anyhow::Context;
use genq_metrics::WorkerMetrics;
use genq_redis::{NewJob, RedisConfig, RedisQueue};
use genq_runtime::{WorkerRuntime, WorkerSettings};
use genq_testkit::FakeProvider;

pub struct ImageFigures {
    pub jobs: usize,
    pub drain: Duration,
    pub ideal: Duration,
    pub provider_calls: usize,
    pub failed: u64,
}

fn config(base_url: &str, artifacts: &std::path::Path) -> anyhow::Result<genq_config::Config> {
    let text = format!(
        r#"
[artifacts]
dir = "{}"
[providers.llm]
protocol = "openai"
base_url = "{base_url}/v1"
keys = ["bench-key"]
[jobs.generate_image]
provider = "llm"
"#,
        artifacts.display()
    );
    let cfg = genq_config::Config::parse(&text, "bench")?;
    cfg.validate()?;
    Ok(cfg)
}

pub async fn run(
    url: &str,
    ns: &str,
    jobs: usize,
    concurrency: usize,
    latency: Duration,
) -> anyhow::Result<ImageFigures> {
    let fake = FakeProvider::start().await;
    fake.set_latency(latency);
    let artifacts = std::env::temp_dir().join(format!("{ns}-artifacts"));
    let cfg = config(&fake.base_url(), &artifacts)?;
    let queue = RedisQueue::connect(RedisConfig::with_url(url).prefix(ns))
        .await
        .context("connecting to Redis")?;
    let prom = prometheus::Registry::new();
    let registry =
        genq_catalog::registry_builder(cfg, None)(&queue, &prom).map_err(anyhow::Error::msg)?;

    let payload =
        serde_json::json!({ "prompt": "a lighthouse at dusk", "width": 256, "height": 256 });
    for chunk in (0..jobs).collect::<Vec<_>>().chunks(1000) {
        let batch = chunk
            .iter()
            .map(|_| NewJob::json("img", "generate_image", &payload))
            .collect::<Result<Vec<_>, _>>()?;
        queue.push_bulk(batch).await?;
    }
    let mut settings = WorkerSettings::new(vec!["img".to_owned()]);
    settings.concurrency = concurrency;
    let started = Instant::now();
    let runtime = WorkerRuntime::start(
        Arc::new(registry),
        queue.clone(),
        WorkerMetrics::new(&prom)?,
        settings,
    )
    .await?;
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(runtime.run(async move {
        let _ = rx.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(600);
    let stats = loop {
        let s = queue.stats("img").await?;
        if s.succeeded + s.failed >= jobs as u64 {
            break s;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {jobs} images after 10 minutes",
            s.succeeded
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let drain = started.elapsed();
    let _ = stop.send(());
    worker.await??;
    let _ = std::fs::remove_dir_all(&artifacts);
    Ok(ImageFigures {
        jobs,
        drain,
        ideal: latency * (jobs.div_ceil(concurrency) as u32),
        provider_calls: fake.calls("images"),
        failed: stats.failed,
    })
}
