//! `admin [--addr 127.0.0.1:9090] [--token …]`: genq's admin API, web page and
//! cluster metrics. Without a token it only listens on a loopback address.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use clap::Parser;
use genq_admin_api::AdminState;
use genq_catalog::CatalogDeps;
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    let token =
        genq_admin_api::check_token(cli.addr, cli.token.as_deref()).map_err(anyhow::Error::msg)?;
    let config = genq_config::Config::load(cli.config.as_deref())?;
    let queue = cli
        .redis
        .connect_checked()
        .await
        .map_err(anyhow::Error::msg)?;
    let store = match cli.no_database {
        true => None,
        false => Some(cli.db.open().await.with_context(|| {
            format!(
                "cannot open the PostgreSQL database at {} (or pass --no-database)",
                cli.db.url
            )
        })?),
    };
    let deps = CatalogDeps {
        redis: queue.connection(),
        prefix: queue.config().prefix.clone(),
        metrics: &prometheus::Registry::new(),
    };
    let keys = genq_catalog::key_pools(&config, &deps)?;
    let webhooks = genq_catalog::webhook_verifiers(&config)?;
    let registry = genq_catalog::registry_builder(config, cli.routes.clone())(
        &queue,
        &prometheus::Registry::new(),
    )
    .map_err(anyhow::Error::msg)?;
    let client = JobClient::new(queue.clone(), Arc::new(registry));
    let state =
        Arc::new(AdminState::new(queue, client, store, keys, token)?.with_webhooks(webhooks));
    let server = genq_admin_api::serve(cli.addr, state, shutdown_signal())
        .await
        .with_context(|| format!("cannot listen on {}", cli.addr))?;
    server.await?;
    Ok(())
}
