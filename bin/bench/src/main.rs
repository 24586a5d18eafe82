//! `genq-bench`: genq's Redis backend and apalis-redis 1.0 side by side, in one run,
//! against the same local Redis (a private `redis-server` on a free port unless
//! `--redis` names one).
//!
//! Figures: single and bulk push rate, no-op drain rate with one worker process,
//! push-to-start latency at idle (p50/p99), and 10,000 jobs that each await 5 s at
//! concurrency 5,000 (efficiency against the ideal 10 s, and peak RSS, each backend
//! in a child process of its own so that peak RSS is its own).
//!
//! Subcommands: `store` (charge-and-enqueue on PostgreSQL), `images` (GenerateImage
//! against the fake provider), `bot` (the Telegram bot's acknowledgement and answer
//! latency under load, against the fake Telegram), `cluster` (drain throughput on a
//! three-primary Redis Cluster beside a single Redis), `pipelines` (pipeline
//! transitions/s, fan-out join latency, gate signal latency, parked memory), `promo`
//! (N promo-video pipelines at once against the fake provider: wall time against the
//! ideal critical path, stage medians, gate approval latency, peak RSS, provider calls),
//! `providers` (jobs/s and a vendor's 429s with provider limits off, static, adaptive).

mod baseline;
mod bot_side;
mod cluster_side;
mod genq_side;
mod images_side;
mod pipelines_side;
mod promo_side;
mod providers_side;
mod store_side;

use std::{
    process::Command,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

#[derive(Debug, Parser)]
#[command(
    name = "genq-bench",
    about = "genq's Redis backend vs apalis-redis 1.0, side by side"
)]
struct Cli {
    /// Redis to run against; a private redis-server on a free port when absent.
    #[arg(long)]
    redis: Option<String>,
    /// Smaller sizes, for a quick look (the targets apply to the full run).
    #[arg(long, global = true)]
    quick: bool,
    /// Only these backends.
    #[arg(long, value_delimiter = ',', default_values = ["genq", "apalis-redis"])]
    backends: Vec<BackendName>,
    #[command(subcommand)]
    child: Option<ChildRun>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
enum BackendName {
    Genq,
    ApalisRedis,
}

impl BackendName {
    fn label(self) -> &'static str {
        match self {
            BackendName::Genq => "genq",
            BackendName::ApalisRedis => "apalis-redis",
        }
    }
}

#[derive(Debug, Subcommand)]
enum ChildRun {
    /// Charge-and-enqueue throughput and latency on PostgreSQL.
    Store {
        /// PostgreSQL URL; the bench works in a schema of its own and drops it.
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
        database_url: String,
        /// Charges per user.
        #[arg(long, default_value_t = 2000)]
        per_user: usize,
    },
    /// GenerateImage jobs through one worker against the fake provider at a fixed latency.
    Images {
        /// Redis to run against; a private redis-server when absent.
        #[arg(long)]
        redis: Option<String>,
        #[arg(long, default_value_t = 5000)]
        jobs: usize,
        #[arg(long, default_value_t = 1000)]
        concurrency: usize,
        #[arg(long, default_value_t = 2000)]
        latency_ms: u64,
    },
    /// The Telegram bot under load: time to the acknowledgement and to the answer
    /// (fake Telegram and fake provider; bot, worker, relay and settler in this process).
    Bot {
        /// Redis to run against; a private redis-server when absent.
        #[arg(long)]
        redis: Option<String>,
        /// PostgreSQL URL; the bench works in a schema of its own and drops it.
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
        database_url: String,
        /// Steady load: users sending one text message each [default: 200, quick 50].
        #[arg(long)]
        users: Option<usize>,
        /// Steady load: seconds their messages are spread over, evenly [default: 10, quick 5].
        #[arg(long)]
        spread_secs: Option<f64>,
        /// Burst: users tapping Upscale x2 at the same instant [default: 100, quick 30].
        #[arg(long)]
        burst: Option<usize>,
        /// How long the fake provider's upscale tasks take.
        #[arg(long, default_value_t = 200)]
        task_ms: u64,
    },
    /// No-op drain throughput on a Redis Cluster of three primaries beside a single
    /// Redis (both private, started here): jobs spread over several queues, one
    /// worker serving them all; median of a few runs each, and the ratio.
    Cluster {
        /// Jobs per run [default: 60000, quick 12000].
        #[arg(long)]
        jobs: Option<usize>,
        /// Queues the jobs are spread over (their hash tags fall on every shard).
        #[arg(long, default_value_t = 6)]
        queues: usize,
        /// Concurrency per queue.
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
        /// Runs on each set-up; the median is reported [default: 3, quick 1].
        #[arg(long)]
        runs: Option<usize>,
    },
    /// Pipelines on a private Redis: transitions/s, a fan-out of 1,000 jobs and its
    /// join latency, gate signal -> next stage start p50/p99, memory per parked pipeline.
    Pipelines {
        /// probe-flow pipelines for the transitions figure [default: 2000, quick 300].
        #[arg(long)]
        flows: Option<usize>,
        /// Jobs in the fan-out.
        #[arg(long, default_value_t = 1000)]
        fan_out: usize,
        /// Fan-out runs; the median is reported [default: 5, quick 2].
        #[arg(long)]
        fan_runs: Option<usize>,
        /// Gate signals timed [default: 2000, quick 300].
        #[arg(long)]
        signals: Option<usize>,
        /// Pipelines parked for the memory figure.
        #[arg(long, default_value_t = 10_000)]
        parked: usize,
    },
    /// GenerateImage through three workers against a fake vendor allowing 10 tasks
    /// in flight per key (2 keys): jobs/s and 429s with provider limits off, static
    /// and adaptive.
    Providers {
        /// Redis to run against; a private redis-server when absent.
        #[arg(long)]
        redis: Option<String>,
        /// Jobs per mode [default: 200, quick 80].
        #[arg(long)]
        jobs: Option<usize>,
        /// Concurrency of each of the three workers.
        #[arg(long, default_value_t = 40)]
        concurrency: usize,
        /// How long the fake vendor's tasks take.
        #[arg(long, default_value_t = 200)]
        task_ms: u64,
    },
    /// N `promo` pipelines at once in this process (workers, driver, fake provider, real
    /// ffmpeg) on a private Redis, every gate approved when it opens: wall time against
    /// one pipeline's ideal critical path, stage medians, gate open -> approved, peak RSS,
    /// provider calls against the expected counts, failed pipelines.
    Promo {
        /// Pipelines started at once [default: 20, quick 4].
        #[arg(long)]
        pipelines: Option<usize>,
        /// The fake provider's chat (script) latency.
        #[arg(long, default_value_t = 300)]
        chat_ms: u64,
        /// The fake provider's image latency.
        #[arg(long, default_value_t = 500)]
        image_ms: u64,
        /// How long each clip (animation) task runs on the fake provider.
        #[arg(long, default_value_t = 2000)]
        clip_ms: u64,
        /// How often a clip's task is polled (`jobs.generate_video.poll_interval_ms`).
        #[arg(long, default_value_t = 100)]
        poll_ms: u64,
        /// The fake provider's speech latency.
        #[arg(long, default_value_t = 300)]
        speech_ms: u64,
        /// Images generated at once per pipeline [default: `promo.image_parallelism`'s, 3].
        #[arg(long)]
        image_parallelism: Option<usize>,
        /// Clips animated at once per pipeline [default: `promo.clip_parallelism`'s, 3].
        #[arg(long)]
        clip_parallelism: Option<usize>,
    },
    /// (internal) one sleep drain in this process; prints JSON.
    #[command(hide = true)]
    SleepDrain {
        #[arg(long)]
        backend: BackendName,
        #[arg(long)]
        redis: String,
        #[arg(long)]
        ns: String,
        #[arg(long)]
        n: usize,
        #[arg(long)]
        sleep_ms: u64,
        #[arg(long)]
        concurrency: usize,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct SleepDrainReport {
    secs: f64,
    peak_rss_kb: u64,
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Waits until `counter` reaches `target`.
pub async fn wait_for_count(
    counter: &AtomicUsize,
    target: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while counter.load(Ordering::Relaxed) < target {
        if Instant::now() > deadline {
            bail!(
                "only {} of {target} jobs done after {timeout:?}",
                counter.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

struct Sizes {
    single: usize,
    single_concurrency: usize,
    bulk: usize,
    bulk_batch: usize,
    drain: usize,
    drain_concurrency: usize,
    latency_samples: usize,
    sleepers: usize,
    sleep: Duration,
    sleep_concurrency: usize,
}

impl Sizes {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                single: 4_000,
                single_concurrency: 16,
                bulk: 20_000,
                bulk_batch: 1_000,
                drain: 10_000,
                drain_concurrency: 500,
                latency_samples: 50,
                sleepers: 1_000,
                sleep: Duration::from_secs(1),
                sleep_concurrency: 500,
            }
        } else {
            Self {
                single: 50_000,
                single_concurrency: 16,
                bulk: 200_000,
                bulk_batch: 1_000,
                drain: 50_000,
                drain_concurrency: 500,
                latency_samples: 300,
                sleepers: 10_000,
                sleep: Duration::from_secs(5),
                sleep_concurrency: 5_000,
            }
        }
    }
}

#[derive(Debug, Default)]
struct Figures {
    single: f64,
    bulk: f64,
    drain: f64,
    p50_ms: f64,
    p99_ms: f64,
    sleep_secs: f64,
    ideal_secs: f64,
    peak_rss_mb: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Where the run's keys go: a fresh namespace per step, wiped afterwards.
struct Target {
    url: String,
    private: bool,
}

impl Target {
    fn ns(&self, backend: BackendName, step: &str) -> String {
        format!("genqbench-{}-{step}-{}", backend.label(), now_us())
    }

    async fn wipe(&self, ns: &str) -> anyhow::Result<()> {
        if self.private {
            let client = redis::Client::open(self.url.as_str())?;
            let mut con = client.get_multiplexed_async_connection().await?;
            let _: () = redis::cmd("FLUSHALL").query_async(&mut con).await?;
        } else {
            genq_testkit::cleanup_prefix(&self.url, ns).await;
        }
        Ok(())
    }
}

async fn measure(backend: BackendName, t: &Target, s: &Sizes) -> anyhow::Result<Figures> {
    let mut f = Figures::default();
    let url = t.url.as_str();
    let step = |name: &str| {
        eprintln!("[{}] {name}…", backend.label());
        t.ns(backend, name)
    };

    let ns = step("push-single");
    f.single = match backend {
        BackendName::Genq => {
            genq_side::push_single(url, &ns, s.single, s.single_concurrency).await?
        }
        BackendName::ApalisRedis => {
            baseline::push_single(url, &ns, s.single, s.single_concurrency).await?
        }
    };
    t.wipe(&ns).await?;

    let ns = step("push-bulk");
    f.bulk = match backend {
        BackendName::Genq => genq_side::push_bulk(url, &ns, s.bulk, s.bulk_batch).await?,
        BackendName::ApalisRedis => baseline::push_bulk(url, &ns, s.bulk, s.bulk_batch).await?,
    };
    t.wipe(&ns).await?;

    let ns = step("drain");
    f.drain = match backend {
        BackendName::Genq => genq_side::drain_noop(url, &ns, s.drain, s.drain_concurrency).await?,
        BackendName::ApalisRedis => {
            baseline::drain_noop(url, &ns, s.drain, s.drain_concurrency).await?
        }
    };
    t.wipe(&ns).await?;

    let ns = step("latency");
    let mut delays = match backend {
        BackendName::Genq => genq_side::push_to_start(url, &ns, s.latency_samples).await?,
        BackendName::ApalisRedis => baseline::push_to_start(url, &ns, s.latency_samples).await?,
    };
    delays.sort();
    f.p50_ms = percentile(&delays, 0.50);
    f.p99_ms = percentile(&delays, 0.99);
    t.wipe(&ns).await?;

    let ns = step("sleep-drain");
    let report = sleep_drain_in_child(backend, url, &ns, s)?;
    f.sleep_secs = report.secs;
    f.ideal_secs = s.sleep.as_secs_f64() * (s.sleepers as f64 / s.sleep_concurrency as f64).ceil();
    f.peak_rss_mb = report.peak_rss_kb as f64 / 1024.0;
    t.wipe(&ns).await?;
    Ok(f)
}

fn sleep_drain_in_child(
    backend: BackendName,
    url: &str,
    ns: &str,
    s: &Sizes,
) -> anyhow::Result<SleepDrainReport> {
    let exe = std::env::current_exe().context("locating genq-bench")?;
    let backend_arg = match backend {
        BackendName::Genq => "genq",
        BackendName::ApalisRedis => "apalis-redis",
    };
    let out = Command::new(exe)
        .args([
            "sleep-drain",
            "--backend",
            backend_arg,
            "--redis",
            url,
            "--ns",
            ns,
        ])
        .args(["--n", &s.sleepers.to_string()])
        .args(["--sleep-ms", &s.sleep.as_millis().to_string()])
        .args(["--concurrency", &s.sleep_concurrency.to_string()])
        .output()
        .context("running the sleep-drain child")?;
    if !out.status.success() {
        bail!(
            "sleep-drain child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("reading the sleep-drain child's report")
}

async fn run_store_bench(database_url: &str, per_user: usize) -> anyhow::Result<()> {
    let schema = store_side::BenchSchema::create(database_url, 60).await?;
    println!(
        "{:<44}{:>12}{:>12}{:>12}",
        "charge-and-enqueue", "per second", "p50 (ms)", "p99 (ms)"
    );
    for users in [1, 50] {
        let per = if users == 1 {
            per_user
        } else {
            (per_user / 10).max(1)
        };
        let f = store_side::charge_and_enqueue(&schema.store, users, per).await?;
        println!(
            "{:<44}{:>12.0}{:>12.2}{:>12.2}",
            format!("{users} concurrent user(s) x {per} charges"),
            f.per_second,
            f.p50_ms,
            f.p99_ms
        );
    }
    schema.drop().await
}

async fn run_images_bench(
    redis: Option<String>,
    jobs: usize,
    concurrency: usize,
    latency: Duration,
) -> anyhow::Result<()> {
    let private = match &redis {
        Some(_) => None,
        None => Some(
            genq_testkit::PrivateRedis::start()
                .await
                .context("starting a private redis-server")?,
        ),
    };
    let url = redis
        .or_else(|| private.as_ref().map(|p| p.url()))
        .unwrap_or_default();
    let ns = format!("genqbench-images-{}", now_us());
    let f = images_side::run(&url, &ns, jobs, concurrency, latency).await?;
    if private.is_none() {
        genq_testkit::cleanup_prefix(&url, &ns).await;
    }
    println!("GenerateImage, fake provider at {latency:?}, 1 worker, concurrency {concurrency}");
    println!("{:<36}{:>12}", "jobs", f.jobs);
    println!("{:<36}{:>12.2}", "drain time (s)", f.drain.as_secs_f64());
    println!("{:<36}{:>12.2}", "ideal (s)", f.ideal.as_secs_f64());
    println!(
        "{:<36}{:>11.1}%",
        "time vs ideal",
        100.0 * f.drain.as_secs_f64() / f.ideal.as_secs_f64()
    );
    println!(
        "{:<36}{:>12}",
        "provider image calls (= jobs?)", f.provider_calls
    );
    println!("{:<36}{:>12}", "failed jobs", f.failed);
    anyhow::ensure!(
        f.provider_calls == f.jobs,
        "provider calls {} != jobs {}",
        f.provider_calls,
        f.jobs
    );
    Ok(())
}

/// Telegram's limit on a bot's messages, all chats together.
const TELEGRAM_MESSAGES_PER_SEC: f64 = 30.0;
/// The product promise: every request acknowledged within a second.
const ACK_TARGET: Duration = Duration::from_secs(1);

async fn run_bot_bench(
    redis: Option<String>,
    database_url: &str,
    sizes: bot_side::BotSizes,
) -> anyhow::Result<()> {
    let private = match &redis {
        Some(_) => None,
        None => Some(
            genq_testkit::PrivateRedis::start()
                .await
                .context("starting a private redis-server")?,
        ),
    };
    let url = redis
        .or_else(|| private.as_ref().map(|p| p.url()))
        .unwrap_or_default();
    let f = bot_side::run(&url, database_url, &sizes).await?;
    print_bot_table(&sizes, &f);
    Ok(())
}

fn print_bot_table(s: &bot_side::BotSizes, f: &bot_side::BotFigures) {
    let target_ms = ACK_TARGET.as_secs_f64() * 1000.0;
    let header = format!(
        "{:<44}{:>6}{:>11}{:>11}{:>11}{:>9}{:>10}{:>10}",
        "time from the update (ms)", "n", "p50", "p99", "max", "<= 1 s", "p50/1 s", "p99/1 s"
    );
    println!(
        "Telegram bot under load: fake Telegram + fake provider (upscale task {:?}); \
         bot, worker, relay, settler in this process",
        s.task
    );
    println!("{header}");
    println!("{}", "-".repeat(header.len()));
    let line = |name: &str, sorted: &[Duration]| {
        let p50 = percentile(sorted, 0.50);
        let p99 = percentile(sorted, 0.99);
        let max = sorted.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
        let within = sorted.iter().filter(|d| **d <= ACK_TARGET).count();
        println!(
            "{name:<44}{:>6}{p50:>11.1}{p99:>11.1}{max:>11.1}{:>8.0}%{:>9.2}x{:>9.2}x",
            sorted.len(),
            100.0 * within as f64 / sorted.len().max(1) as f64,
            p50 / target_ms,
            p99 / target_ms,
        );
    };
    println!(
        "steady: {} users, one text each over {:.0} s ({:.1}/s sent)",
        s.users,
        s.spread.as_secs_f64(),
        f.steady_rate
    );
    line("  ack: \"typing\"", &f.steady.ack);
    line("  reply \"Echo: …\"", &f.steady.done);
    println!(
        "burst: {} users tap Upscale x2 at the same instant",
        s.burst
    );
    line("  ack: the tap's answer, \"taken into work\"", &f.burst.tap);
    line("  status message with Cancel", &f.burst.ack);
    line("  photo / document", &f.burst.done);
    print_estimates(&f.burst_estimates);
    println!(
        "    (a cold start: no upscale has finished yet, so the estimate is the default from \
         the upscale's timeout, 300 s / 10)"
    );
    println!(
        "burst with {:.0}% of sends and edits answered 429 (retry after 1 s; {} refused): {} other users",
        bot_side::SHARE_429 * 100.0,
        f.refused_429,
        s.burst
    );
    line(
        "  ack: the tap's answer, \"taken into work\"",
        &f.burst_429.tap,
    );
    line("  status message with Cancel", &f.burst_429.ack);
    line("  photo / document", &f.burst_429.done);
    print_estimates(&f.burst_429_estimates);
    println!();
    println!(
        "Telegram allows a bot ~{TELEGRAM_MESSAGES_PER_SEC:.0} messages/s overall (chat actions, edits and \
         callback answers are not counted); the bot sends taps' answers first and reschedules \
         what Telegram refuses."
    );
    let per_message = 1.0 / TELEGRAM_MESSAGES_PER_SEC;
    println!(
        "  burst: the last of {} status messages cannot leave before ~{:.1} s ({:.0} per 1 s window), \
         later when results go first; {} messages in all (status + results) need ~{:.1} s.",
        s.burst,
        ((s.burst - 1) as f64 * per_message).floor(),
        TELEGRAM_MESSAGES_PER_SEC,
        f.burst_messages,
        f.burst_messages as f64 * per_message,
    );
    println!(
        "  steady: the ack (\"typing\") is not throttled; the replies ({:.1}/s) {} the limit. \
         {} of {} users also got a status message (a backlog at their ack): their reply \
         then waits out Telegram's 1 message/s per chat.",
        f.steady_rate,
        if f.steady_rate <= TELEGRAM_MESSAGES_PER_SEC {
            "stay under"
        } else {
            "queue behind"
        },
        f.steady_status_messages,
        s.users,
    );
    println!("Latency is seen by polling the fake's record of each waiting chat every 1-2 ms.");
}

/// The acknowledgements' time estimates against the actual waits (tap → photo).
fn print_estimates(e: &bot_side::EstimateFit) {
    println!(
        "  time estimate shown to {} of {} users: median {:.1} s against a median wait of {:.1} s; \
         estimate/actual median {:.2}, within a factor of 2: {:.0}%",
        e.shown,
        e.users,
        e.median_estimate.as_secs_f64(),
        e.median_actual.as_secs_f64(),
        e.median_ratio,
        100.0 * e.within_2x,
    );
}

async fn run_child(child: ChildRun, quick: bool) -> anyhow::Result<()> {
    let (backend, redis, ns, n, sleep_ms, concurrency) = match child {
        ChildRun::Bot {
            redis,
            database_url,
            users,
            spread_secs,
            burst,
            task_ms,
        } => {
            let sizes = bot_side::BotSizes {
                users: users.unwrap_or(if quick { 50 } else { 200 }),
                spread: Duration::try_from_secs_f64(spread_secs.unwrap_or(if quick {
                    5.0
                } else {
                    10.0
                }))
                .context("--spread-secs must be a number of seconds >= 0")?,
                burst: burst.unwrap_or(if quick { 30 } else { 100 }),
                task: Duration::from_millis(task_ms),
            };
            anyhow::ensure!(
                sizes.users > 0 && sizes.burst > 0,
                "--users and --burst must be at least 1"
            );
            return run_bot_bench(redis, &database_url, sizes).await;
        }
        ChildRun::Images {
            redis,
            jobs,
            concurrency,
            latency_ms,
        } => {
            return run_images_bench(redis, jobs, concurrency, Duration::from_millis(latency_ms))
                .await;
        }
        ChildRun::Store {
            database_url,
            per_user,
        } => {
            return run_store_bench(&database_url, per_user).await;
        }
        ChildRun::Cluster {
            jobs,
            queues,
            concurrency,
            runs,
        } => {
            let sizes = cluster_side::ClusterSizes {
                jobs: jobs.unwrap_or(if quick { 12_000 } else { 60_000 }),
                queues,
                concurrency,
                runs: runs.unwrap_or(if quick { 1 } else { 3 }),
            };
            return cluster_side::run(&sizes).await;
        }
        ChildRun::Pipelines {
            flows,
            fan_out,
            fan_runs,
            signals,
            parked,
        } => {
            let sizes = pipelines_side::PipelineSizes {
                flows: flows.unwrap_or(if quick { 300 } else { 2000 }),
                fan_out,
                fan_runs: fan_runs.unwrap_or(if quick { 2 } else { 5 }),
                signals: signals.unwrap_or(if quick { 300 } else { 2000 }),
                parked,
            };
            return pipelines_side::run(&sizes).await;
        }
        ChildRun::Providers {
            redis,
            jobs,
            concurrency,
            task_ms,
        } => {
            let private = match &redis {
                Some(_) => None,
                None => Some(
                    genq_testkit::PrivateRedis::start()
                        .await
                        .context("starting a private redis-server")?,
                ),
            };
            let url = redis
                .or_else(|| private.as_ref().map(|p| p.url()))
                .unwrap_or_default();
            let sizes = providers_side::ProviderSizes {
                jobs: jobs.unwrap_or(if quick { 80 } else { 200 }),
                hosts: 3,
                concurrency,
                task: Duration::from_millis(task_ms),
                vendor_limited: true,
            };
            let ns = format!("genqbench-providers-{}", now_us());
            return providers_side::run(&url, &ns, &sizes).await;
        }
        ChildRun::Promo {
            pipelines,
            chat_ms,
            image_ms,
            clip_ms,
            poll_ms,
            speech_ms,
            image_parallelism,
            clip_parallelism,
        } => {
            let defaults = genq_config::PromoSettings::default();
            let sizes = promo_side::PromoSizes {
                pipelines: pipelines.unwrap_or(if quick { 4 } else { 20 }),
                chat: Duration::from_millis(chat_ms),
                image: Duration::from_millis(image_ms),
                clip: Duration::from_millis(clip_ms),
                poll: Duration::from_millis(poll_ms),
                speech: Duration::from_millis(speech_ms),
                image_parallelism: image_parallelism.unwrap_or(defaults.image_parallelism),
                clip_parallelism: clip_parallelism.unwrap_or(defaults.clip_parallelism),
            };
            return promo_side::run(&sizes).await;
        }
        ChildRun::SleepDrain {
            backend,
            redis,
            ns,
            n,
            sleep_ms,
            concurrency,
        } => (backend, redis, ns, n, sleep_ms, concurrency),
    };
    let sleep = Duration::from_millis(sleep_ms);
    let took = match backend {
        BackendName::Genq => genq_side::sleep_drain(&redis, &ns, n, sleep, concurrency).await?,
        BackendName::ApalisRedis => {
            baseline::sleep_drain(&redis, &ns, n, sleep, concurrency).await?
        }
    };
    let report = SleepDrainReport {
        secs: took.as_secs_f64(),
        peak_rss_kb: peak_rss_kb(),
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn print_table(s: &Sizes, results: &[(BackendName, Figures)]) {
    let col = |f: &dyn Fn(&Figures) -> String| -> Vec<String> {
        results.iter().map(|(_, x)| f(x)).collect()
    };
    let ideal = results.first().map(|(_, f)| f.ideal_secs).unwrap_or(0.0);
    let rows: Vec<(String, Vec<String>, &str)> = vec![
        (
            format!("single push, {} tasks (jobs/s)", s.single_concurrency),
            col(&|f| format!("{:.0}", f.single)),
            ">= 15000",
        ),
        (
            format!("bulk push, batches of {} (jobs/s)", s.bulk_batch),
            col(&|f| format!("{:.0}", f.bulk)),
            ">= 100000",
        ),
        (
            format!(
                "no-op drain, 1 process, conc {} (jobs/s)",
                s.drain_concurrency
            ),
            col(&|f| format!("{:.0}", f.drain)),
            ">= 20000",
        ),
        (
            "push->start p50 at idle (ms)".to_owned(),
            col(&|f| format!("{:.2}", f.p50_ms)),
            "",
        ),
        (
            "push->start p99 at idle (ms)".to_owned(),
            col(&|f| format!("{:.2}", f.p99_ms)),
            "< 10",
        ),
        (
            format!(
                "{} x {:?} sleeps, conc {} (s)",
                s.sleepers, s.sleep, s.sleep_concurrency
            ),
            col(&|f| format!("{:.2}", f.sleep_secs)),
            "",
        ),
        (
            format!("  time vs ideal {ideal:.0} s"),
            col(&|f| format!("{:.1}%", 100.0 * f.sleep_secs / f.ideal_secs)),
            "<= 105%",
        ),
        (
            "  peak RSS of the worker process (MB)".to_owned(),
            col(&|f| format!("{:.0}", f.peak_rss_mb)),
            "< 200",
        ),
    ];
    let mut header = format!("{:<48}", "metric");
    for (b, _) in results {
        header.push_str(&format!("{:>14}", b.label()));
    }
    header.push_str(&format!("{:>12}", "target"));
    println!("{header}");
    println!("{}", "-".repeat(header.len()));
    for (name, values, target) in rows {
        let mut line = format!("{name:<48}");
        for v in values {
            line.push_str(&format!("{v:>14}"));
        }
        line.push_str(&format!("{target:>12}"));
        println!("{line}");
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(child) = cli.child {
        return run_child(child, cli.quick).await;
    }
    let private = match &cli.redis {
        Some(_) => None,
        None => Some(
            genq_testkit::PrivateRedis::start()
                .await
                .context("starting a private redis-server (or pass --redis URL)")?,
        ),
    };
    let target = Target {
        url: cli
            .redis
            .clone()
            .or_else(|| private.as_ref().map(|p| p.url()))
            .unwrap_or_default(),
        private: private.is_some(),
    };
    let sizes = Sizes::new(cli.quick);
    eprintln!(
        "genq-bench against {} ({} cores)",
        target.url,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let mut results = Vec::new();
    for backend in &cli.backends {
        results.push((*backend, measure(*backend, &target, &sizes).await?));
    }
    print_table(&sizes, &results);
    Ok(())
}
