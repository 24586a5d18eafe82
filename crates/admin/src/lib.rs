//! genq's admin HTTP API (axum): queues, jobs, dead letters, workers, API keys and
//! user statistics; its OpenAPI description (generated from the handlers with
//! utoipa, served at `/api/openapi.json`, so it cannot drift); a small web page at
//! `/`; and `/metrics`, `/healthz`, `/readyz`.
//!
//! `/api/*` needs `Authorization: Bearer <token>` when a token is configured
//! (compared in constant time). The admin binary refuses to start without a token
//! unless it listens on a loopback address.

mod api;
mod credits;
pub mod error;
pub mod metrics;
mod pipelines;
mod webhooks;

use std::sync::Arc;

use axum::{
    Router,
    extract::{DefaultBodyLimit, Request, State},
    http::{StatusCode, header},
    middleware::{self, Next},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
};
use genq_providers::KeyPool;
use genq_redis::RedisQueue;
use genq_runtime::JobClient;
use genq_store::Store;
use subtle::ConstantTimeEq;

pub use error::ApiError;
pub use metrics::AdminMetrics;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 256 * 1024;

/// What the admin works with.
pub struct AdminState {
    pub queue: RedisQueue,
    /// Validates and routes enqueues (the configured job types).
    pub client: JobClient,
    /// User statistics and credits; absent when the admin runs without a database.
    pub store: Option<Store>,
    /// Every provider's key pool (for cool-down state).
    pub keys: Vec<KeyPool>,
    /// The bearer token `/api` requires; `None` only on loopback.
    pub token: Option<String>,
    pub metrics: AdminMetrics,
    pub prom: prometheus::Registry,
    /// The webhook checks of the providers with a callback URL (`/webhooks/<provider>`).
    pub webhooks: Vec<genq_providers::webhooks::WebhookVerifier>,
}

impl AdminState {
    /// The state, with its metrics registered in a registry of its own.
    pub fn new(
        queue: RedisQueue,
        client: JobClient,
        store: Option<Store>,
        keys: Vec<KeyPool>,
        token: Option<String>,
    ) -> Result<Self, prometheus::Error> {
        let prom = prometheus::Registry::new();
        Ok(Self {
            queue,
            client,
            store,
            keys,
            token,
            metrics: AdminMetrics::new(&prom)?,
            prom,
            webhooks: Vec::new(),
        })
    }

    /// Serves vendor webhooks at `/webhooks/<provider>` with these checks.
    pub fn with_webhooks(
        mut self,
        webhooks: Vec<genq_providers::webhooks::WebhookVerifier>,
    ) -> Self {
        self.webhooks = webhooks;
        self
    }
}

/// Checks the token against where the admin listens: without one, only a loopback
/// address is allowed; a token has at least 16 characters.
pub fn check_token(
    addr: std::net::SocketAddr,
    token: Option<&str>,
) -> Result<Option<String>, String> {
    match token.map(str::trim) {
        Some("") | None if !addr.ip().is_loopback() => Err(format!(
            "refusing to serve the admin API on {addr} without a token: set GENQ_ADMIN_TOKEN (or --token), or listen on 127.0.0.1"
        )),
        Some("") | None => Ok(None),
        Some(t) if t.len() < 16 => {
            Err("GENQ_ADMIN_TOKEN is too short: use at least 16 characters".to_owned())
        }
        Some(t) => Ok(Some(t.to_owned())),
    }
}

/// Binds `addr` (failing at once if it cannot) and serves the admin until `shutdown`.
pub async fn serve(
    addr: std::net::SocketAddr,
    state: Arc<AdminState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let (router, _) = router(state);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "admin on http://{addr}/");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "admin server stopped");
        }
    }))
}

/// The whole router and the OpenAPI description generated from its `/api` handlers.
pub fn router(state: Arc<AdminState>) -> (Router, utoipa::openapi::OpenApi) {
    let (api, openapi) = api::routes().with_state(state.clone()).split_for_parts();
    let api = api.route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let doc =
        serde_json::to_string_pretty(&openapi).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    let router = Router::new()
        .route("/", get(|| async { Html(include_str!("page.html")) }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        // vendors call it: signed by the vendor, not by the admin token
        .route("/webhooks/{provider}", post(webhooks::receive))
        .route(
            "/api/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], doc) }
            }),
        )
        .with_state(state)
        .merge(api)
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    (router, openapi)
}

/// Checks the bearer token in constant time.
async fn require_token(State(state): State<Arc<AdminState>>, req: Request, next: Next) -> Response {
    let Some(expected) = &state.token else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        next.run(req).await
    } else {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (Authorization: Bearer <GENQ_ADMIN_TOKEN>)",
        )
        .into_response()
    }
}

/// Ready when Redis and (if configured) PostgreSQL answer.
async fn readyz(State(state): State<Arc<AdminState>>) -> Response {
    let redis_ok = state.queue.queues().await.is_ok();
    let pg_ok = match &state.store {
        Some(store) => store.ping().await,
        None => true,
    };
    let body = serde_json::json!({ "redis": redis_ok, "postgres": pg_ok });
    let status = if redis_ok && pg_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    state.metrics.refresh(&state).await;
    match genq_metrics::render(&state.prom) {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("metrics could not be rendered: {e}"),
        )
        .into_response(),
    }
}
