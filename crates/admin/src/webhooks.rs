//! `POST /webhooks/<provider>`: a vendor's completion webhook (fal, Replicate,
//! KIE). Checked against the vendor's signature (a forged or stale one is refused
//! with 401 and wakes nothing); a verified one wakes the job parked on that task,
//! which then reads the task from the vendor itself. The body is never trusted for
//! the result. Vendors retry a non-2xx answer, so only a refusal is one. The same
//! signed request a second time (a replay within the timestamp tolerance, or a
//! vendor's duplicate) is answered 200 and wakes nothing.

use std::sync::Arc;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use genq_providers::webhooks::{self, Verified, WebhookError, WebhookVerifier};

use crate::{AdminState, ApiError};

pub(crate) async fn receive(
    State(state): State<Arc<AdminState>>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (outcome, response) = handle(&state, &provider, &headers, &body).await;
    let label = if outcome == "unknown_provider" {
        "-"
    } else {
        provider.as_str()
    };
    state
        .metrics
        .webhooks
        .with_label_values(&[label, outcome])
        .inc();
    response
}

async fn handle(
    state: &AdminState,
    provider: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> (&'static str, Response) {
    let Some(verifier) = state.webhooks.iter().find(|v| v.provider() == provider) else {
        let e = ApiError::not_found(format!(
            "no provider '{provider}' takes webhooks here (set providers.{provider}.webhook_url)"
        ));
        return ("unknown_provider", e.into_response());
    };
    let verified = match verifier.verify(headers, body).await {
        Ok(v) => v,
        Err(e) => return refused(verifier, e),
    };
    let task_id = verified.task_id.as_str();
    match wake(state, provider, &verified).await {
        Ok(Some(woke)) => {
            let outcome = if woke { "woke" } else { "not_waiting" };
            let body = serde_json::json!({ "task": task_id, "woke": woke });
            (outcome, (StatusCode::OK, Json(body)).into_response())
        }
        Ok(None) => {
            // the same signed request again: handled once already
            let body = serde_json::json!({ "task": task_id, "woke": false, "duplicate": true });
            ("duplicate", (StatusCode::OK, Json(body)).into_response())
        }
        Err(message) => {
            tracing::warn!(provider, task = %task_id, error = %message, "webhook could not wake its job");
            // a 5xx: the vendor sends it again
            let e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message);
            ("error", e.into_response())
        }
    }
}

fn refused(verifier: &WebhookVerifier, e: WebhookError) -> (&'static str, Response) {
    tracing::warn!(provider = verifier.provider(), error = %e, "webhook refused");
    let status = match e {
        WebhookError::Malformed(_) => StatusCode::BAD_REQUEST,
        WebhookError::Keys(_) => StatusCode::SERVICE_UNAVAILABLE,
        WebhookError::NotConfigured(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::UNAUTHORIZED,
    };
    (
        "refused",
        ApiError::new(status, e.to_string()).into_response(),
    )
}

/// Wakes the job waiting on the webhook's task: `Some(false)` when none waits (it
/// ended, or was never parked), `None` for a delivery handled before (a replay).
async fn wake(
    state: &AdminState,
    provider: &str,
    verified: &Verified,
) -> Result<Option<bool>, String> {
    let Some(keys) = state.keys.iter().find(|k| k.provider() == provider) else {
        return Ok(Some(false));
    };
    if !webhooks::first_delivery(keys, &verified.delivery)
        .await
        .map_err(|e| e.to_string())?
    {
        return Ok(None);
    }
    let woke = wake_job(state, keys, &verified.task_id).await;
    if woke.is_err() {
        // handled it was not: the vendor's retry must be
        webhooks::forget_delivery(keys, &verified.delivery).await;
    }
    woke.map(Some)
}

async fn wake_job(
    state: &AdminState,
    keys: &genq_providers::KeyPool,
    task_id: &str,
) -> Result<bool, String> {
    let Some(job) = webhooks::waiting_job(keys, task_id)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(false);
    };
    state
        .queue
        .wake(&job.queue, &job.id)
        .await
        .map_err(|e| e.to_string())
}
