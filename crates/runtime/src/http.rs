//! A process's own `/metrics` (Prometheus text) and `/healthz`.

use std::{future::Future, net::SocketAddr};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use prometheus::Registry;

pub fn router(registry: Registry) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(registry)
}

async fn metrics(State(registry): State<Registry>) -> impl IntoResponse {
    match genq_metrics::render(&registry) {
        Ok(text) => (
            StatusCode::OK,
            [("content-type", "text/plain; version=0.0.4")],
            text,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "text/plain")],
            format!("could not render metrics: {e}\n"),
        ),
    }
}

/// Binds `addr` (failing at once if it cannot) and serves until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics and health on http://{addr}/metrics");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(registry))
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "metrics server stopped");
        }
    }))
}
