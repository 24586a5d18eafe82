//! `fake-provider --addr 127.0.0.1:8099 [--latency-ms N] [--task-ms N]`: the fake AI
//! provider of `docs/PROVIDER-PROTOCOLS.md` (`/v1/...` and `/queue/...`), until
//! Ctrl-C or SIGTERM.

use std::{io::IsTerminal, net::SocketAddr, time::Duration};

use anyhow::Context;
use clap::Parser;
use genq_testkit::FakeProvider;

#[derive(Debug, Parser)]
#[command(
    name = "fake-provider",
    version,
    about = "A fake AI provider for tests and benchmarks"
)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8099")]
    addr: SocketAddr,
    /// Every call waits this long before it is answered.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// A queue task succeeds this long after it was submitted.
    #[arg(long, default_value_t = 2000)]
    task_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let fake = FakeProvider::start_on(cli.addr)
        .await
        .with_context(|| format!("binding {}", cli.addr))?;
    fake.set_latency(Duration::from_millis(cli.latency_ms));
    fake.set_task_duration(Duration::from_millis(cli.task_ms));
    tracing::info!(
        base_url = %fake.base_url(),
        latency_ms = cli.latency_ms,
        task_ms = cli.task_ms,
        "fake provider ready: {0}/v1 and {0}/queue",
        fake.base_url()
    );
    shutdown_signal().await?;
    tracing::info!("fake provider stopping");
    drop(fake);
    Ok(())
}

/// Waits for Ctrl-C or SIGTERM.
async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}
