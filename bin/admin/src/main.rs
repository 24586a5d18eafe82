//! `admin [--addr 127.0.0.1:9090] [--token …]`: genq's admin API, web page and
//! cluster metrics. Without a token it only listens on a loopback address.

use std::{net::SocketAddr, sync::Arc};

use anyhow::{Context, bail};
use clap::Parser;
use genq_admin_api::{AdminMetrics, AdminState};
use genq_catalog::CatalogDeps;
use genq_redis::RedisQueue;
use genq_runtime::{JobClient, RedisArgs, init_tracing, shutdown_signal};
use genq_store::DatabaseArgs;

#[derive(Debug, Parser)]
#[command(
    name = "admin",
    version,
    about = "genq's admin API, web page and metrics"
)]
struct Cli {
    /// Where to listen.
    #[arg(long, env = "GENQ_ADMIN_ADDR", default_value = "127.0.0.1:9090")]
    addr: SocketAddr,
    /// Bearer token `/api` requires. Required unless --addr is a loopback address.
    #[arg(long, env = "GENQ_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Run without PostgreSQL (no user statistics or credit figures).
    #[arg(long, env = "GENQ_NO_DATABASE")]
    no_database: bool,
    /// Configuration file (job types, providers); see config/genq.example.toml.
    #[arg(long, env = "GENQ_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// Route job types to other queues: type=queue,type=queue.
    #[arg(long, env = "GENQ_ROUTES")]
    routes: Option<String>,
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    db: DatabaseArgs,
}

/// The token, checked against where the admin listens.
fn token(cli: &Cli) -> anyhow::Result<Option<String>> {
    match cli.token.as_deref().map(str::trim) {
        Some("") | None if !cli.addr.ip().is_loopback() => bail!(
            "refusing to serve the admin API on {} without a token: set GENQ_ADMIN_TOKEN (or --token), or listen on 127.0.0.1",
            cli.addr
        ),
        Some("") | None => Ok(None),
        Some(t) if t.len() < 16 => {
            bail!("GENQ_ADMIN_TOKEN is too short: use at least 16 characters")
        }
        Some(t) => Ok(Some(t.to_owned())),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    let token = token(&cli)?;
    let config = genq_config::Config::load(cli.config.as_deref())?;
    let redis_cfg = cli.redis.to_config().map_err(anyhow::Error::msg)?;
    let url = redis_cfg.url.clone();
    let queue = RedisQueue::connect(redis_cfg)
        .await
        .with_context(|| format!("cannot connect to Redis at {url}"))?;
    let store = match cli.no_database {
        true => None,
        false => Some(cli.db.open().await.with_context(|| {
            format!(
                "cannot open the PostgreSQL database at {} (or pass --no-database)",
                cli.db.url
            )
        })?),
    };
    let prom = prometheus::Registry::new();
    let deps = CatalogDeps {
        redis: queue.connection(),
        prefix: queue.config().prefix.clone(),
        metrics: &prometheus::Registry::new(),
    };
    let keys = genq_catalog::key_pools(&config, &deps)?;
    let registry = genq_catalog::registry_builder(config, cli.routes.clone())(
        &queue,
        &prometheus::Registry::new(),
    )
    .map_err(anyhow::Error::msg)?;
    let state = Arc::new(AdminState {
        client: JobClient::new(queue.clone(), Arc::new(registry)),
        queue,
        store,
        keys,
        token,
        metrics: AdminMetrics::new(&prom)?,
        prom,
    });
    let (router, _) = genq_admin_api::router(state);
    let listener = tokio::net::TcpListener::bind(cli.addr)
        .await
        .with_context(|| format!("cannot listen on {}", cli.addr))?;
    tracing::info!(addr = %cli.addr, "admin on http://{}/", cli.addr);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}
