//! `genq`: the all-in-one process and the operator's command line.
//!
//! - `genq` / `genq run`: every queue's worker in one process, on local Redis, with
//!   `/metrics` on :9100. Zero configuration. (The bot and admin join it as they land.)
//! - `genq push TYPE JSON`, `genq status ID`, `genq stats`, `genq cancel`, `genq pause`,
//!   `genq resume`, `genq dead`, `genq retry-dead`: operate the queues.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use genq_redis::{CancelOutcome, RedisQueue};
use genq_runtime::{EnqueueOptions, JobClient, RedisArgs, WorkerArgs, init_tracing, run_worker};

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
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole service in one process (the default).
    Run(WorkerArgs),
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
}

async fn connect(args: &RedisArgs) -> anyhow::Result<RedisQueue> {
    let cfg = args.to_config().map_err(anyhow::Error::msg)?;
    let url = cfg.url.clone();
    RedisQueue::connect(cfg)
        .await
        .with_context(|| format!("cannot connect to Redis at {url}"))
}

fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    let registry = genq_catalog::registry(cli.routes.as_deref())?;
    let command = match cli.command {
        Some(c) => c,
        None => match Cli::parse_from(["genq", "run"]).command {
            Some(run) => run,
            None => bail!("no command"),
        },
    };
    match command {
        Command::Run(args) => run_worker(args, registry).await?,
        Command::Push {
            job_type,
            payload,
            queue,
            delay_ms,
            key,
            wait,
            redis,
        } => {
            let client = JobClient::new(connect(&redis).await?, Arc::new(registry));
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
    }
    Ok(())
}
