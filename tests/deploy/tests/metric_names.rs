//! Every metric the alerts (monitoring/alerts.yml) and the dashboard
//! (monitoring/grafana/dashboards/genq.json) query is one a live genq process
//! exports, with the labels the queries filter and group by.
//!
//! Live means scraped over HTTP from:
//! - a worker in this process on the shared Redis (own key prefix), built like the
//!   `worker` binary: the catalog's job types from config/genq.example.toml (pointed
//!   at a fake provider), `WorkerMetrics`, `/metrics` by `genq_runtime::http::serve`;
//!   it runs a probe that succeeds, one that fails once (a retry) and a
//!   GenerateReply (a provider call), so every labelled series has a child;
//! - the admin (`genq_admin_api::serve`, built as the `admin` binary does) on the
//!   same Redis prefix and a PostgreSQL schema of its own; its `/metrics` reads queues, workers, credits,
//!   users and key cool-downs on each scrape;
//! - the Telegram bot (`genq_telegram::run_bot`, as the `bot` binary runs it) on the
//!   same Redis prefix and schema against a fake Telegram, with the outbox relay
//!   that takes its orders to Redis: a user starts a dialog and writes, the worker
//!   answers, the bot's delivery worker sends the reply, so its update, order and
//!   delivery counters (and its delivery worker's `genq_jobs_*`) have children.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

use common::{
    Query, alert_queries, dashboard_queries, grouping_labels, metric_names, selector_labels,
    tokens, yaml,
};
use genq_redis::{RedisConfig, RedisQueue};
use genq_runtime::{EnqueueOptions, JobClient, WorkerRuntime, WorkerSettings};
use genq_testkit::{
    FakeProvider, FakeTelegram, SentKind, SentMessage, TestSchema, free_port, http_get, redis_url,
    unique_prefix,
};
use tokio_util::sync::CancellationToken;

/// Labels Prometheus adds to every scraped series (`service` by prometheus.yml's
/// relabelling of the worker targets).
const TARGET_LABELS: &[&str] = &["job", "instance", "service"];

/// Sample names of a Prometheus text exposition, with their label names.
fn exposition(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..name_end].to_owned()).or_default();
        if line[name_end..].starts_with('{') {
            // label="value" pairs; values may hold escaped quotes
            let mut rest = &line[name_end + 1..];
            while let Some(eq) = rest.find("=\"") {
                labels.insert(rest[..eq].trim_start_matches(',').trim().to_owned());
                let value = &rest[eq + 2..];
                let mut end = 0;
                let mut escaped = false;
                for (i, c) in value.char_indices() {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        end = i;
                        break;
                    }
                }
                rest = &value[end + 1..];
                if rest.starts_with('}') {
                    break;
                }
            }
        }
    }
    out
}

/// Every query of the alerts and the dashboard.
fn queries() -> Vec<Query> {
    let mut q = alert_queries();
    q.extend(dashboard_queries());
    q
}

/// The metric names the queries use, and where.
fn used_names() -> BTreeMap<String, Vec<String>> {
    let mut used: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for q in queries() {
        for name in metric_names(&q.expr) {
            used.entry(name).or_default().push(q.origin.clone());
        }
    }
    used
}

/// A worker like the `worker` binary's, in this process, serving `text`.
struct Worker {
    addr: SocketAddr,
    queue: RedisQueue,
    client: JobClient,
    prefix: String,
    dir: std::path::PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    run: Option<tokio::task::JoinHandle<Result<(), genq_runtime::WorkerError>>>,
    driver_stop: tokio_util::sync::CancellationToken,
    _fake: FakeProvider,
}

impl Worker {
    async fn start() -> (Self, genq_config::Config) {
        let fake = FakeProvider::start().await;
        let mut cfg = genq_config::Config::parse(
            include_str!("../../../config/genq.example.toml"),
            "config/genq.example.toml",
        )
        .expect("example config");
        let base = fake.base_url();
        cfg.apply_env(|var| match var {
            "GENQ_PROVIDER_LLM_BASE_URL" => Some(format!("{base}/v1")),
            "GENQ_PROVIDER_MEDIA_BASE_URL" => Some(format!("{base}/queue")),
            _ => None,
        });
        let prefix = unique_prefix("deploy-metrics");
        let dir = std::env::temp_dir().join(&prefix);
        cfg.artifacts.dir = dir.join("artifacts");
        cfg.validate().expect("valid config");

        let queue = RedisQueue::connect(RedisConfig {
            lease: Duration::from_secs(2),
            heartbeat: Duration::from_millis(300),
            poll_interval: Duration::from_millis(200),
            ..RedisConfig::with_url(redis_url()).prefix(&prefix)
        })
        .await
        .expect("Redis (scripts/services.sh starts it)");
        let prom = prometheus::Registry::new();
        // as the worker binary: the configured job types, the probe routed to `text`
        let build = genq_catalog::registry_builder(cfg.clone(), Some("probe=text".to_owned()));
        let registry = Arc::new(build(&queue, &prom).expect("catalog"));
        let metrics = genq_metrics::WorkerMetrics::new(&prom).expect("worker metrics");
        metrics.process_start_time_seconds.set(1);
        let mut settings = WorkerSettings::new(vec!["text".to_owned()]);
        settings.concurrency = 4;
        settings.grace = Duration::from_secs(2);
        settings.stats_interval = Duration::from_millis(200);
        let runtime = WorkerRuntime::start(registry.clone(), queue.clone(), metrics, settings)
            .await
            .expect("worker starts");
        // as run_worker: the catalog's pipelines, driven with metrics
        let driver_stop = tokio_util::sync::CancellationToken::new();
        let driver = genq_pipeline::PipelineDriver::new(
            queue.clone(),
            genq_catalog::pipelines().expect("pipelines"),
            registry.clone(),
            vec!["text".to_owned()],
        )
        .with_metrics(genq_metrics::PipelineMetrics::new(&prom).expect("pipeline metrics"));
        tokio::spawn(driver.run(driver_stop.clone()));

        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (server_stop, server_stopped) = tokio::sync::watch::channel(false);
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        genq_runtime::http::serve(addr, prom, async move {
            let mut rx = server_stopped;
            let _ = rx.wait_for(|s| *s).await;
        })
        .await
        .expect("metrics server");
        let run = tokio::spawn(runtime.run(async move {
            let _ = stopped.await;
            let _ = server_stop.send(true);
        }));
        (
            Self {
                addr,
                client: JobClient::new(queue.clone(), registry),
                queue,
                prefix,
                dir,
                stop: Some(stop),
                run: Some(run),
                driver_stop,
                _fake: fake,
            },
            cfg,
        )
    }

    async fn push(&self, job_type: &str, payload: serde_json::Value) {
        self.client
            .enqueue_json(job_type, &payload.to_string(), EnqueueOptions::default())
            .await
            .unwrap_or_else(|e| panic!("push {job_type}: {e}"));
    }

    /// A pipeline through a gate and a step, approved when it parks: so that the
    /// pipeline metrics have children.
    async fn run_pipeline(&self) {
        let client = genq_pipeline::PipelineClient::new(self.queue.clone());
        let id = client
            .start("probe-gate", &serde_json::json!({}))
            .await
            .expect("start a pipeline");
        let parked = genq_testkit::wait_until(Duration::from_secs(30), || async {
            client.view(&id).await.ok()?.filter(|v| v.gate.is_some())
        })
        .await;
        assert!(parked.is_some(), "the pipeline parked");
        client
            .signal(&id, "approve", "approve", &serde_json::Value::Null)
            .await
            .expect("signal")
            .expect("accepted");
        let done = genq_testkit::wait_until(Duration::from_secs(30), || async {
            client.view(&id).await.ok()?.filter(|v| v.outcome.is_some())
        })
        .await;
        assert_eq!(done.and_then(|v| v.outcome).as_deref(), Some("succeeded"));
    }

    async fn stop(mut self) {
        self.driver_stop.cancel();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(run) = self.run.take() {
            run.await.expect("worker task").expect("worker run");
        }
        genq_testkit::cleanup_prefix(&redis_url(), &self.prefix).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The admin as the `admin` binary builds it, on a free port and the worker's
/// Redis prefix.
async fn start_admin(
    worker: &Worker,
    cfg: &genq_config::Config,
    schema: &TestSchema,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let store =
        genq_store::Store::open(&genq_store::StoreConfig::new(&schema.url).schema(&schema.name))
            .await
            .expect("PostgreSQL (scripts/services.sh starts it)");
    let deps = genq_catalog::CatalogDeps {
        redis: worker.queue.connection(),
        prefix: worker.queue.config().prefix.clone(),
        metrics: &prometheus::Registry::new(),
    };
    let keys = genq_catalog::key_pools(cfg, &deps).expect("key pools");
    let state = genq_admin_api::AdminState::new(
        worker.queue.clone(),
        worker.client.clone(),
        Some(store),
        keys,
        Some("deploy-test-token-0123456789".to_owned()),
    )
    .expect("admin state");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    genq_admin_api::serve(addr, Arc::new(state), async move {
        let _ = stopped.await;
    })
    .await
    .expect("admin listens");
    (addr, stop)
}

/// The bot's token at the fake Telegram.
const BOT_TOKEN: &str = "123456:DEPLOY-TEST";
/// The chat (and user) that talks to the bot.
const CHAT: i64 = 4242;
/// How long the bot has for each step of the conversation.
const BOT_WAIT: Duration = Duration::from_secs(30);

/// The bot as the `bot` binary runs it, with the relay `genq relay` runs, until
/// `stop`: the worker's Redis prefix, the admin's schema, a fake Telegram.
struct Bot {
    addr: SocketAddr,
    tg: FakeTelegram,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Bot {
    async fn start(worker: &Worker, cfg: &genq_config::Config, schema: &TestSchema) -> Self {
        let tg = FakeTelegram::start(BOT_TOKEN).await;
        let store = genq_store::Store::open(
            &genq_store::StoreConfig::new(&schema.url).schema(&schema.name),
        )
        .await
        .expect("PostgreSQL (scripts/services.sh starts it)");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let stop = CancellationToken::new();
        let opts = genq_telegram::BotOptions {
            config: cfg.clone(),
            routes: Some("probe=text".to_owned()),
            token: BOT_TOKEN.to_owned(),
            api_url: Some(tg.api_url()),
            metrics_addr: Some(addr),
            webhook_secret: None,
        };
        let bot = genq_telegram::run_bot(opts, worker.queue.clone(), store.clone(), stop.clone());
        let relay = genq_relay::Relay::new(store, worker.queue.clone()).run(stop.clone());
        let tasks = vec![
            tokio::spawn(async move { bot.await.expect("the bot runs") }),
            tokio::spawn(relay),
        ];
        Self {
            addr,
            tg,
            stop,
            tasks,
        }
    }

    /// The first message sent to the chat after the first `after` that `pred` accepts.
    async fn wait_sent(
        &self,
        after: usize,
        what: &str,
        pred: impl Fn(&SentMessage) -> bool,
    ) -> SentMessage {
        genq_testkit::wait_until(BOT_WAIT, || {
            let found = self.tg.sent(CHAT).into_iter().skip(after).find(&pred);
            async move { found }
        })
        .await
        .unwrap_or_else(|| panic!("the bot never sent {what}; sent: {:#?}", self.tg.sent(CHAT)))
    }

    /// A user's first conversation: /start, a persona button, a text that becomes a
    /// paid GenerateReply, run by the worker and delivered by the bot.
    async fn converse(&self) {
        self.tg.user_sends_command(CHAT, CHAT, "/start");
        let menu = self
            .wait_sent(0, "the persona menu", |m| persona_button(m).is_some())
            .await;
        let data = persona_button(&menu).expect("a persona button");
        let before = self.tg.sent(CHAT).len();
        self.tg
            .user_presses_button(CHAT, CHAT, menu.message_id, &data);
        self.wait_sent(before, "the persona's greeting", |m| {
            m.kind == SentKind::Text
        })
        .await;
        let before = self.tg.sent(CHAT).len();
        self.tg.user_sends_text(CHAT, CHAT, "hello");
        self.wait_sent(before, "the reply", |m| {
            m.text.as_deref() == Some("Echo: hello")
        })
        .await;
    }

    async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            task.await.expect("bot task");
        }
    }
}

/// The callback data of the first `persona:` button under a message.
fn persona_button(m: &SentMessage) -> Option<String> {
    m.reply_markup.as_ref()?["inline_keyboard"]
        .as_array()?
        .iter()
        .filter_map(serde_json::Value::as_array)
        .flatten()
        .filter_map(|b| b["callback_data"].as_str())
        .find(|d| d.starts_with("persona:"))
        .map(str::to_owned)
}

async fn scrape(addr: SocketAddr) -> BTreeMap<String, BTreeSet<String>> {
    let addr = addr.to_string();
    let text = tokio::task::spawn_blocking(move || http_get(&addr, "/metrics"))
        .await
        .expect("scrape task")
        .unwrap_or_default();
    exposition(&text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_metric_the_alerts_and_the_dashboard_use_is_exported_live() {
    let used = used_names();
    assert!(used.len() >= 15, "{used:?}");

    let (worker, cfg) = Worker::start().await;
    let schema = TestSchema::create("deploy_metrics").await.expect("schema");
    let (admin_addr, admin_stop) = start_admin(&worker, &cfg, &schema).await;
    let bot = Bot::start(&worker, &cfg, &schema).await;

    // a success, a retry (transient failure on the first run), a provider call
    worker
        .push("probe", serde_json::json!({"echo": "ok"}))
        .await;
    worker
        .push(
            "probe",
            serde_json::json!({"fail": {"class": "transient", "until_attempt": 1}}),
        )
        .await;
    worker
        .push(
            "generate_reply",
            serde_json::json!({
                "persona_prompt": "You are Anna.",
                "messages": [{"role": "user", "content": "Hi"}]
            }),
        )
        .await;

    // a user's orders, run by the worker and delivered by the bot
    bot.converse().await;
    worker.run_pipeline().await;

    let exported = |scrapes: Vec<BTreeMap<String, BTreeSet<String>>>| {
        let mut all: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (k, v) in scrapes.into_iter().flatten() {
            all.entry(k).or_default().extend(v);
        }
        all
    };
    let missing = |all: &BTreeMap<String, BTreeSet<String>>| -> Vec<String> {
        used.keys()
            .filter(|n| *n != "up" && !all.contains_key(*n))
            .cloned()
            .collect()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let all = loop {
        let all = exported(vec![
            scrape(worker.addr).await,
            scrape(admin_addr).await,
            scrape(bot.addr).await,
        ]);
        if missing(&all).is_empty() || tokio::time::Instant::now() > deadline {
            break all;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    bot.stop().await;
    let _ = admin_stop.send(());
    worker.stop().await;
    schema.drop().await;

    let missing: Vec<String> = missing(&all)
        .into_iter()
        .map(|n| format!("{n} (used in {})", used[&n].join("; ")))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics used but not exported by a worker, the admin or the bot:\n  {}\nexported: {:?}",
        missing.join("\n  "),
        all.keys().collect::<Vec<_>>()
    );

    // labels: those a selector matches on exist on that metric; those grouped by
    // exist on one of the query's metrics (or are target labels / `le`)
    for q in queries() {
        let mut available: BTreeSet<String> =
            TARGET_LABELS.iter().map(|l| (*l).to_owned()).collect();
        for (name, labels) in selector_labels(&q.expr) {
            let have: BTreeSet<String> = if name == "up" {
                BTreeSet::new()
            } else {
                all[&name].clone()
            };
            for l in &labels {
                assert!(
                    have.contains(l) || TARGET_LABELS.contains(&l.as_str()),
                    "{}: {name} has no label '{l}' (it has {have:?})",
                    q.origin
                );
            }
            available.extend(have);
        }
        for l in grouping_labels(&q.expr) {
            assert!(
                available.contains(&l),
                "{}: groups by '{l}', a label none of its metrics has ({available:?})",
                q.origin
            );
        }
    }
}

#[test]
fn up_is_asked_only_of_jobs_prometheus_scrapes() {
    let prom = yaml("monitoring/prometheus.yml");
    let jobs: BTreeSet<&str> = prom["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .map(|c| c["job_name"].as_str().expect("job_name"))
        .collect();
    assert_eq!(jobs, ["admin", "worker", "bot"].into());
    let mut ups = 0;
    for q in queries() {
        let s = q.expr.replace(' ', "");
        for (at, _) in s.match_indices("up{") {
            if at > 0 && s.as_bytes()[at - 1].is_ascii_alphanumeric() {
                continue;
            }
            let inner = &s[at + 3..at + 3 + s[at + 3..].find('}').expect("}")];
            let job = inner
                .split(',')
                .find_map(|m| m.strip_prefix("job=\""))
                .and_then(|j| j.strip_suffix('"'))
                .unwrap_or_else(|| panic!("{}: up without a job", q.origin));
            assert!(jobs.contains(job), "{}: no scrape job '{job}'", q.origin);
            ups += 1;
        }
    }
    assert!(ups >= 2, "the admin and the bot being down are alerted on");
}

#[test]
fn the_dashboard_answers_the_operators_questions() {
    let exprs: Vec<String> = dashboard_queries().into_iter().map(|q| q.expr).collect();
    let all = exprs.join("\n");
    for name in [
        "genq_admin_queue_depth",
        "genq_admin_queue_oldest_ready_age_seconds",
        "genq_jobs_total",
        "genq_job_failures_total",
        "genq_job_duration_seconds_bucket",
        "genq_jobs_in_flight",
        "genq_job_retries_total",
        "genq_provider_call_duration_seconds_bucket",
        "genq_provider_calls_total",
        "genq_admin_provider_keys_cooling",
        "genq_admin_dead_letters",
        "genq_admin_workers_alive",
        "genq_admin_credits_today",
        "genq_admin_users_active",
        "genq_bot_updates_total",
        "genq_bot_orders_total",
        "genq_bot_deliveries_total",
        "genq_bot_watched_jobs",
    ] {
        assert!(
            exprs.iter().any(|e| metric_names(e).contains(name)),
            "no dashboard panel shows {name}"
        );
    }
    for q in ["0.5", "0.95", "0.99"] {
        assert!(
            all.contains(&format!(
                "histogram_quantile({q}, sum by (le, job_type) (rate(genq_job_duration_seconds_bucket"
            )),
            "job duration quantile {q}"
        );
    }
    assert!(all.contains(r#"genq_provider_calls_total{outcome!="ok"}"#));
}

#[test]
fn the_tokenizer_finds_names_labels_and_groupings() {
    let expr = r#"sum by (queue, class) (rate(genq_job_failures_total{class!="bad_input", job="genq_x"}[5m]))
        / ignoring (class) group_left sum by (queue) (rate(genq_jobs_total[5m])) > 0.2
        and on(queue) up{job="admin"} == 1"#;
    assert_eq!(
        metric_names(expr).into_iter().collect::<Vec<_>>(),
        ["genq_job_failures_total", "genq_jobs_total", "up"]
    );
    let sel = selector_labels(expr);
    assert_eq!(
        sel["genq_job_failures_total"].iter().collect::<Vec<_>>(),
        ["class", "job"]
    );
    assert!(sel["genq_jobs_total"].is_empty());
    assert_eq!(sel["up"].iter().collect::<Vec<_>>(), ["job"]);
    assert_eq!(
        grouping_labels(expr).into_iter().collect::<Vec<_>>(),
        ["class", "queue"]
    );
    // durations and numbers are not identifiers
    assert!(
        tokens("rate(x[15m]) > 1e3")
            .iter()
            .all(|(_, t)| t != "m" && t != "e3")
    );

    let text = "# TYPE genq_jobs_total counter\n\
        genq_jobs_total{job_type=\"a\\\"b\",queue=\"q\"} 1\n\
        genq_job_duration_seconds_bucket{le=\"0.5\",queue=\"q\"} 2\n\
        genq_process_start_time_seconds 3\n";
    let e = exposition(text);
    assert_eq!(
        e["genq_jobs_total"].iter().collect::<Vec<_>>(),
        ["job_type", "queue"]
    );
    assert_eq!(
        e["genq_job_duration_seconds_bucket"]
            .iter()
            .collect::<Vec<_>>(),
        ["le", "queue"]
    );
    assert!(e["genq_process_start_time_seconds"].is_empty());
}
