//! `genq`: the all-in-one process and the operator's command line.
//!
//! - `genq` / `genq run`: the whole service in one process on local Redis and
//!   PostgreSQL: every queue's worker (`/metrics` on :9100), the outbox relay and the
//!   settler, the admin on 127.0.0.1:9090, and the Telegram bot when `GENQ_BOT_TOKEN`
//!   is set. Zero configuration.
//! - `genq relay`, `genq settle`, `genq migrate`: the database seam on its own.
//! - `genq push TYPE JSON`, `genq status ID`, `genq stats`, `genq cancel`, `genq pause`,
//!   `genq resume`, `genq dead`, `genq retry-dead`: operate the queues.
//! - `genq credits grant|deduct TELEGRAM_ID N --reason …`, `genq credits ledger
//!   TELEGRAM_ID`: move a user's credits by hand (audited in the ledger) and read them;
//!   `genq credits refund PAYMENT_ID --reason …`: refund a purchase.

mod pipelines;

use std::{sync::Arc, time::Duration};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use genq_redis::{CancelOutcome, RedisQueue};
use genq_relay::{Relay, Settler};
use genq_runtime::{
    EnqueueOptions, JobClient, RedisArgs, WorkerArgs, init_tracing, run_worker, shutdown_signal,
};
use genq_store::{DatabaseArgs, Store};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "genq",
    version,
    about = "genq: AI generation jobs for Telegram bots, on Redis"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Route job types to other queues: type=queue,type=queue.
    #[arg(long, env = "GENQ_ROUTES", global = true)]
    routes: Option<String>,
    /// Configuration file (TOML); see config/genq.example.toml.
    #[arg(long, env = "GENQ_CONFIG", global = true)]
    config: Option<std::path::PathBuf>,
}

/// The configuration and routes every command builds its job types from.
struct Setup {
    config: genq_config::Config,
    routes: Option<String>,
}

impl Setup {
    /// The configured job types, for a process that does not run them (push, settle).
    fn registry(&self, queue: &RedisQueue) -> anyhow::Result<genq_core::Registry> {
        let build = genq_catalog::registry_builder(self.config.clone(), self.routes.clone());
        build(queue, &prometheus::Registry::new()).map_err(anyhow::Error::msg)
    }
}

/// Opens the store, naming the database in the error.
async fn open_store(db: &DatabaseArgs) -> anyhow::Result<Store> {
    db.open()
        .await
        .with_context(|| format!("cannot open the PostgreSQL database at {}", db.url))
}

/// How the settler reconciles PostgreSQL with Redis.
#[derive(clap::Args, Debug, Clone)]
struct ReconcileArgs {
    /// Seconds between comparisons of open jobs with Redis (1-3600): a job Redis
    /// lost is back on its queue (or refunded) within about twice this.
    #[arg(long = "reconcile-secs", env = "GENQ_RECONCILE_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    every_secs: u64,
}

impl ReconcileArgs {
    fn every(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.every_secs)
    }
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    #[command(flatten)]
    worker: WorkerArgs,
    #[command(flatten)]
    db: DatabaseArgs,
    /// Run only the workers (no relay or settler; nothing touches PostgreSQL).
    #[arg(long, env = "GENQ_NO_DATABASE")]
    no_database: bool,
    #[command(flatten)]
    reconcile: ReconcileArgs,
    /// Where the admin API, page and cluster metrics listen.
    #[arg(long, env = "GENQ_ADMIN_ADDR", default_value = "127.0.0.1:9090")]
    admin_addr: std::net::SocketAddr,
    /// Bearer token of the admin API (required unless it listens on loopback).
    #[arg(long = "admin-token", env = "GENQ_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Do not serve the admin in this process.
    #[arg(long)]
    no_admin: bool,
    /// The Telegram bot token (@BotFather); without it the bot is not started.
    #[arg(long = "bot-token", env = genq_telegram::TOKEN_ENV, hide_env_values = true)]
    bot_token: Option<String>,
    /// The Bot API's URL (a local Bot API server); Telegram's by default.
    #[arg(long = "bot-api-url", env = "GENQ_BOT_API_URL")]
    bot_api_url: Option<String>,
    /// Webhook mode: the secret Telegram sends with each update (the same on every replica).
    #[arg(
        long = "bot-webhook-secret",
        env = "GENQ_BOT_WEBHOOK_SECRET",
        hide_env_values = true
    )]
    bot_webhook_secret: Option<String>,
    /// Where the bot's `/metrics` listens.
    #[arg(
        long = "bot-metrics-addr",
        env = "GENQ_BOT_METRICS_ADDR",
        default_value = "0.0.0.0:9101"
    )]
    bot_metrics_addr: std::net::SocketAddr,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole service in one process (the default).
    Run(RunArgs),
    /// Push committed jobs from the database outbox to Redis, until SIGTERM.
    Relay {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        redis: RedisArgs,
    },
    /// Record final outcomes in the database and refund failures, until SIGTERM.
    Settle {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        redis: RedisArgs,
        #[command(flatten)]
        reconcile: ReconcileArgs,
    },
    /// Store a file (e.g. a photo to upscale) as an artifact; prints its key.
    PutArtifact {
        /// The file.
        path: std::path::PathBuf,
    },
    /// Apply pending database migrations.
    Migrate {
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Push a job: genq push probe '{"echo":"hi"}'.
    Push {
        job_type: String,
        /// The payload, JSON.
        payload: String,
        /// Another queue than the job type's.
        #[arg(long)]
        queue: Option<String>,
        /// Run after this many milliseconds.
        #[arg(long)]
        delay_ms: Option<u64>,
        /// Dedupe on this key.
        #[arg(long)]
        key: Option<String>,
        /// Wait for the job to end and print its final state.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        redis: RedisArgs,
    },
    /// Show a job by id.
    Status {
        id: String,
        #[arg(long)]
        queue: Option<String>,
        #[command(flatten)]
        redis: RedisArgs,
    },
    /// Show every queue's figures.
    Stats {
        #[command(flatten)]
        redis: RedisArgs,
    },
    /// Cancel a job.
    Cancel {
        queue: String,
        id: String,
        #[command(flatten)]
        redis: RedisArgs,
    },
    /// Stop workers taking jobs from a queue.
    Pause {
        queue: String,
        #[command(flatten)]
        redis: RedisArgs,
    },
    /// Let workers take jobs from a queue again.
    Resume {
        queue: String,
        #[command(flatten)]
        redis: RedisArgs,
    },
    /// List a queue's dead letters, newest first.
    Dead {
        queue: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        redis: RedisArgs,
    },
    /// Put dead letters back on their queue: one by id, or all.
    RetryDead {
        queue: String,
        /// A job id; every dead letter of the queue when absent.
        id: Option<String>,
        #[command(flatten)]
        redis: RedisArgs,
    },
    /// A user's credits: grant, deduct, refund a purchase (audited in the ledger), read the ledger.
    Credits {
        #[command(subcommand)]
        command: CreditsCommand,
    },
    /// Pipelines: list by state, show one (stage timeline), start, signal a gate, cancel.
    Pipelines {
        #[command(subcommand)]
        command: pipelines::PipelinesCommand,
    },
}

/// Credit moves by an operator: `actor` in the ledger is `operator:cli:$USER`
/// unless `--actor` names someone (`--actor alice` → `operator:alice`).
#[derive(Debug, Subcommand)]
enum CreditsCommand {
    /// Give a user credits: genq credits grant 123456789 100 --reason "beta tester".
    Grant {
        #[command(flatten)]
        args: CreditMoveArgs,
    },
    /// Take credits away (refused if the balance would go negative).
    Deduct {
        #[command(flatten)]
        args: CreditMoveArgs,
    },
    /// Refund a purchase: its credits are taken back now (refused if the user spent
    /// them), and the bot returns the Stars through Telegram.
    Refund {
        /// The payment's id (see the admin's /api/users/{telegram_id}/payments).
        payment_id: i64,
        #[command(flatten)]
        audit: Audit,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// A user's balance and last ledger entries, newest first.
    Ledger {
        /// The user's Telegram id.
        telegram_id: i64,
        /// Entries to show (1-500).
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

#[derive(Debug, clap::Args)]
struct CreditMoveArgs {
    /// The user's Telegram id.
    telegram_id: i64,
    /// Credits (1 to 1,000,000).
    #[arg(allow_negative_numbers = true)]
    amount: i64,
    #[command(flatten)]
    audit: Audit,
    #[command(flatten)]
    db: DatabaseArgs,
}

/// Why an operator moves credits, and who does it: kept in the ledger.
#[derive(Debug, clap::Args)]
struct Audit {
    /// Why (1-500 characters); kept in the ledger.
    #[arg(long)]
    reason: String,
    /// Who does it (default: operator:cli:$USER).
    #[arg(long)]
    actor: Option<String>,
}

/// The ledger's `actor` for a move from the command line.
fn cli_actor(actor: Option<&str>) -> String {
    match actor.map(str::trim).filter(|a| !a.is_empty()) {
        Some(a) if a.starts_with("operator:") => a.to_owned(),
        Some(a) => format!("operator:{a}"),
        None => match std::env::var("USER").ok().filter(|u| !u.trim().is_empty()) {
            Some(user) => format!("operator:cli:{}", user.trim()),
            None => "operator:cli".to_owned(),
        },
    }
}

async fn credits(command: CreditsCommand) -> anyhow::Result<()> {
    match command {
        CreditsCommand::Grant { args } => {
            let store = open_store(&args.db).await?;
            let actor = cli_actor(args.audit.actor.as_deref());
            let moved = store
                .grant_credits(args.telegram_id, args.amount, &args.audit.reason, &actor)
                .await?;
            print_json(&moved)?;
        }
        CreditsCommand::Deduct { args } => {
            let store = open_store(&args.db).await?;
            let actor = cli_actor(args.audit.actor.as_deref());
            let moved = store
                .deduct_credits(args.telegram_id, args.amount, &args.audit.reason, &actor)
                .await?;
            print_json(&moved)?;
        }
        CreditsCommand::Refund {
            payment_id,
            audit,
            db,
        } => {
            let store = open_store(&db).await?;
            if store.payment(payment_id).await?.is_none() {
                bail!("no payment {payment_id}");
            }
            let actor = cli_actor(audit.actor.as_deref());
            let refund = store
                .request_payment_refund(payment_id, &actor, audit.reason.trim())
                .await?;
            print_json(&refund)?;
        }
        CreditsCommand::Ledger {
            telegram_id,
            limit,
            db,
        } => {
            let store = open_store(&db).await?;
            let user = store
                .user_by_telegram_id(telegram_id)
                .await?
                .ok_or(genq_store::StoreError::UnknownTelegramUser(telegram_id))?;
            let entries = store.ledger_of(user.id, limit).await?;
            print_json(&serde_json::json!({
                "telegram_id": telegram_id,
                "user_id": user.id,
                "balance": user.credits,
                "entries": entries,
            }))?;
        }
    }
    Ok(())
}

async fn connect(args: &RedisArgs) -> anyhow::Result<RedisQueue> {
    args.connect_checked().await.map_err(anyhow::Error::msg)
}

fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Every queue a job type is routed to, and every queue Redis has seen.
async fn served_queues(setup: &Setup, queue: &RedisQueue) -> anyhow::Result<Vec<String>> {
    let mut all = setup.registry(queue)?.queues();
    all.extend(queue.queues().await?);
    all.insert(genq_pipeline::PIPELINES_QUEUE.to_owned());
    Ok(all.into_iter().collect())
}

/// The job types this configuration runs (a lost job of another type cannot be requeued).
fn served_types(setup: &Setup, queue: &RedisQueue) -> anyhow::Result<Vec<String>> {
    let mut types: Vec<String> = setup
        .registry(queue)?
        .job_types()
        .into_iter()
        .map(str::to_owned)
        .collect();
    types.extend(genq_catalog::pipelines_for(&setup.config)?.names());
    Ok(types)
}

/// Serves the admin (API, page, cluster metrics) in this process until `stop`.
async fn start_admin(
    args: &RunArgs,
    setup: &Setup,
    store: Option<Store>,
    stop: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let token = genq_admin_api::check_token(args.admin_addr, args.admin_token.as_deref())
        .map_err(anyhow::Error::msg)?;
    let queue = connect(&args.worker.redis).await?;
    let deps = genq_catalog::CatalogDeps {
        redis: queue.connection(),
        prefix: queue.config().prefix.clone(),
        metrics: &prometheus::Registry::new(),
    };
    let keys = genq_catalog::key_pools(&setup.config, &deps)?;
    let webhooks = genq_catalog::webhook_verifiers(&setup.config)?;
    let client = JobClient::new(queue.clone(), Arc::new(setup.registry(&queue)?));
    let state = Arc::new(
        genq_admin_api::AdminState::new(queue, client, store, keys, token)?.with_webhooks(webhooks),
    );
    genq_admin_api::serve(
        args.admin_addr,
        state,
        async move { stop.cancelled().await },
    )
    .await
    .with_context(|| {
        format!(
            "cannot listen on {} for the admin (GENQ_ADMIN_ADDR)",
            args.admin_addr
        )
    })
}

/// Workers, the admin, and (unless `--no-database`) the relay and the settler, until SIGTERM.
/// Serves the Telegram bot in this process when a token is set; otherwise says how
/// to set one (everything else runs without it).
async fn start_bot(
    args: &RunArgs,
    setup: &Setup,
    store: Option<Store>,
    stop: CancellationToken,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(token) = args.bot_token.clone().filter(|t| !t.trim().is_empty()) else {
        tracing::warn!("{}", genq_telegram::no_token_hint());
        return Ok(None);
    };
    let Some(store) = store else {
        tracing::warn!("the bot needs PostgreSQL: it is not started with --no-database");
        return Ok(None);
    };
    let queue = connect(&args.worker.redis).await?;
    let opts = genq_telegram::BotOptions {
        config: setup.config.clone(),
        routes: setup.routes.clone(),
        token,
        api_url: args.bot_api_url.clone(),
        metrics_addr: Some(args.bot_metrics_addr),
        webhook_secret: args.bot_webhook_secret.clone(),
    };
    Ok(Some(tokio::spawn(async move {
        if let Err(e) = genq_telegram::run_bot(opts, queue, store, stop).await {
            tracing::error!(error = %e, "the bot stopped with an error");
        }
    })))
}

async fn run_all(args: RunArgs, setup: Setup) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let mut seam = Vec::new();
    let mut store_for_admin = None;
    if !args.no_database {
        let store = open_store(&args.db)
            .await
            .context("set GENQ_DATABASE_URL, or pass --no-database to run only the workers")?;
        let queue = connect(&args.worker.redis).await?;
        let queues = served_queues(&setup, &queue).await?;
        store_for_admin = Some(store.clone());
        seam.push(tokio::spawn(
            Relay::new(store.clone(), queue.clone()).run(stop.clone()),
        ));
        let settler = Settler::new(store, queue.clone(), queues)
            .job_types(served_types(&setup, &queue)?)
            .reconcile_every(args.reconcile.every());
        let settler_stop = stop.clone();
        seam.push(tokio::spawn(async move {
            if let Err(e) = settler.run(settler_stop).await {
                tracing::error!(error = %e, "settler stopped with an error");
            }
        }));
    }
    if !args.no_admin {
        seam.push(start_admin(&args, &setup, store_for_admin.clone(), stop.clone()).await?);
    }
    if let Some(bot) = start_bot(&args, &setup, store_for_admin, stop.clone()).await? {
        seam.push(bot);
    }
    let schedules = genq_catalog::schedules(&setup.config)?;
    let pipelines = genq_catalog::pipelines_for(&setup.config)?;
    let build = genq_catalog::registry_builder(setup.config, setup.routes);
    let result = run_worker(args.worker, build, schedules, pipelines).await;
    stop.cancel();
    for task in seam {
        let _ = task.await;
    }
    Ok(result?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    let setup = Setup {
        config: genq_config::Config::load(cli.config.as_deref())?,
        routes: cli.routes,
    };
    let command = match cli.command {
        Some(c) => c,
        None => match Cli::parse_from(["genq", "run"]).command {
            Some(run) => run,
            None => bail!("no command"),
        },
    };
    match command {
        Command::Run(args) => run_all(args, setup).await?,
        Command::Relay { db, redis } => {
            let relay = Relay::new(open_store(&db).await?, connect(&redis).await?);
            let stop = CancellationToken::new();
            let task = tokio::spawn(relay.run(stop.clone()));
            shutdown_signal().await;
            stop.cancel();
            task.await?;
        }
        Command::Settle {
            db,
            redis,
            reconcile,
        } => {
            let queue = connect(&redis).await?;
            let queues = served_queues(&setup, &queue).await?;
            let settler = Settler::new(open_store(&db).await?, queue.clone(), queues)
                .job_types(served_types(&setup, &queue)?)
                .reconcile_every(reconcile.every());
            let stop = CancellationToken::new();
            let task = tokio::spawn(settler.run(stop.clone()));
            shutdown_signal().await;
            stop.cancel();
            task.await??;
        }
        Command::PutArtifact { path } => {
            use genq_artifacts::ArtifactStore;
            let store = genq_artifacts::LocalArtifacts::new(&setup.config.artifacts.dir)?;
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or("bin")
                .to_ascii_lowercase();
            print_json(&store.put(bytes, &ext, "application/octet-stream").await?)?;
        }
        Command::Migrate { db } => {
            open_store(&db).await?;
            println!("database is at the latest migration");
        }
        Command::Push {
            job_type,
            payload,
            queue,
            delay_ms,
            key,
            wait,
            redis,
        } => {
            let redis_queue = connect(&redis).await?;
            let registry = setup.registry(&redis_queue)?;
            let client = JobClient::new(redis_queue, Arc::new(registry));
            let opts = EnqueueOptions {
                delay: delay_ms.map(Duration::from_millis),
                idempotency_key: key,
                queue,
                id: None,
            };
            let q = match &opts.queue {
                Some(q) => q.clone(),
                None => client.registry().queue_of(&job_type)?.to_owned(),
            };
            let pushed = client.enqueue_json(&job_type, &payload, opts).await?;
            if wait {
                loop {
                    match client.queue().job(&q, &pushed.id).await? {
                        Some(state) if state.status.is_final() => return print_json(&state),
                        Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                        None => bail!("job {} disappeared (its data expired)", pushed.id),
                    }
                }
            }
            print_json(
                &serde_json::json!({ "id": pushed.id, "queue": q, "created": pushed.created }),
            )?;
        }
        Command::Status { id, queue, redis } => {
            let q = connect(&redis).await?;
            let state = match queue {
                Some(queue) => q.job(&queue, &id).await?,
                None => q.find_job(&id).await?,
            };
            match state {
                Some(s) => print_json(&s)?,
                None => bail!("no job {id} (unknown, or its data expired)"),
            }
        }
        Command::Stats { redis } => {
            let q = connect(&redis).await?;
            let mut all = Vec::new();
            for name in q.queues().await? {
                all.push(q.stats(&name).await?);
            }
            print_json(&all)?;
        }
        Command::Cancel { queue, id, redis } => {
            let outcome = connect(&redis).await?.cancel(&queue, &id).await?;
            print_json(&outcome)?;
            if outcome == CancelOutcome::NotFound {
                bail!("no job {id} in queue {queue}");
            }
        }
        Command::Pause { queue, redis } => {
            connect(&redis).await?.pause(&queue).await?;
            println!("paused {queue}");
        }
        Command::Resume { queue, redis } => {
            connect(&redis).await?.resume(&queue).await?;
            println!("resumed {queue}");
        }
        Command::Dead {
            queue,
            limit,
            redis,
        } => {
            print_json(
                &connect(&redis)
                    .await?
                    .dead_letters(&queue, 0, limit)
                    .await?,
            )?;
        }
        Command::RetryDead { queue, id, redis } => {
            let q = connect(&redis).await?;
            let n = match id {
                Some(id) => u64::from(q.retry_dead(&queue, &id).await?),
                None => q.retry_all_dead(&queue).await?,
            };
            println!("requeued {n}");
        }
        Command::Credits { command } => credits(command).await?,
        Command::Pipelines { command } => pipelines::run(command, &setup.config).await?,
    }
    Ok(())
}
