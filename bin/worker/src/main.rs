//! `worker --queues img,video --concurrency 200 [--redis URL] [--metrics-addr 0.0.0.0:9100]`

use clap::Parser;
use genq_runtime::{WorkerArgs, init_tracing, run_worker};

#[derive(Debug, Parser)]
#[command(
    name = "worker",
    version,
    about = "Runs genq jobs from the given queues"
)]
struct Cli {
    #[command(flatten)]
    worker: WorkerArgs,
    /// Route job types to other queues: type=queue,type=queue.
    #[arg(long, env = "GENQ_ROUTES")]
    routes: Option<String>,
    /// Configuration file (TOML); see config/genq.example.toml.
    #[arg(long, env = "GENQ_CONFIG")]
    config: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    let config = genq_config::Config::load(cli.config.as_deref())?;
    let schedules = genq_catalog::schedules(&config)?;
    let pipelines = genq_catalog::pipelines_for(&config)?;
    run_worker(
        cli.worker,
        genq_catalog::registry_builder(config, cli.routes),
        schedules,
        pipelines,
    )
    .await?;
    Ok(())
}
