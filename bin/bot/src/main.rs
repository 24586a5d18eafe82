//! `bot [--config F] [--api-url URL] [--metrics-addr 0.0.0.0:9101]` with
//! `GENQ_BOT_TOKEN` set: the Telegram bot and its delivery worker. Workers, the
//! relay and the settler run elsewhere (`worker`, `genq relay`, `genq settle`, or
//! all of them in `genq run`).

use anyhow::Context;
use clap::Parser;
use genq_runtime::{RedisArgs, init_tracing, shutdown_signal};
use genq_store::DatabaseArgs;
use genq_telegram::{BotOptions, TOKEN_ENV, no_token_hint, run_bot};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(name = "bot", version, about = "genq's Telegram bot")]
struct Cli {
    /// The bot token from @BotFather.
    #[arg(long, env = TOKEN_ENV, hide_env_values = true)]
    token: Option<String>,
    /// The Bot API's URL (a local Bot API server); Telegram's by default.
    #[arg(long, env = "GENQ_BOT_API_URL")]
    api_url: Option<String>,
    /// Where the bot's `/metrics` and `/healthz` listen.
    #[arg(long, env = "GENQ_BOT_METRICS_ADDR", default_value = "0.0.0.0:9101")]
    metrics_addr: std::net::SocketAddr,
    /// Webhook mode: the secret Telegram sends with each update; set the same on every
    /// replica (1-256 of A-Z a-z 0-9 _ -). Generated when absent.
    #[arg(long, env = "GENQ_BOT_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
    /// Route job types to other queues: type=queue,type=queue.
    #[arg(long, env = "GENQ_ROUTES")]
    routes: Option<String>,
    /// Configuration file (TOML); see config/genq.example.toml.
    #[arg(long, env = "GENQ_CONFIG")]
    config: Option<std::path::PathBuf>,
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    db: DatabaseArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    let Some(token) = cli.token.filter(|t| !t.trim().is_empty()) else {
        anyhow::bail!(no_token_hint());
    };
    let config = genq_config::Config::load(cli.config.as_deref())?;
    let queue = cli
        .redis
        .connect_checked()
        .await
        .map_err(anyhow::Error::msg)?;
    let store = cli
        .db
        .open()
        .await
        .with_context(|| format!("cannot open the PostgreSQL database at {}", cli.db.url))?;
    let stop = CancellationToken::new();
    let signal_stop = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        signal_stop.cancel();
    });
    let opts = BotOptions {
        config,
        routes: cli.routes,
        token,
        api_url: cli.api_url,
        metrics_addr: Some(cli.metrics_addr),
        webhook_secret: cli.webhook_secret,
    };
    run_bot(opts, queue, store, stop).await?;
    Ok(())
}
