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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    let registry = genq_catalog::registry(cli.routes.as_deref())?;
    run_worker(cli.worker, registry).await?;
    Ok(())
}
