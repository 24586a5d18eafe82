//! fal's queue API: `POST /{model_id}`, `GET /{app}/requests/{id}/status`, `GET
//! /{app}/requests/{id}`, `PUT /{app}/requests/{id}/cancel`; `Authorization: Key`.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::{Phase, VShared, VendorFailure, VendorTaskFailure, json_body, new_id};

pub(crate) fn router() -> Router<Arc<VShared>> {
    Router::new().fallback(dispatch)
}

pub(crate) fn failure_response(f: VendorFailure) -> Response {
    match f {
        VendorFailure::Policy => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"detail": [{"loc": ["body", "prompt"], "msg": "The content could not be processed because it contained material flagged by a content checker.", "type": "content_policy_violation", "url": "https://docs.fal.ai/errors#content_policy_violation"}]})),
        )
            .into_response(),
        VendorFailure::Billing => (
            StatusCode::FORBIDDEN,
            Json(json!({"detail": "User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing."})),
        )
            .into_response(),
        VendorFailure::RateLimited { retry_after_secs } => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, retry_after_secs.to_string())],
            Json(json!({"detail": "Rate limit exceeded: too many concurrent requests"})),
        )
            .into_response(),
        VendorFailure::ServerError => (
            StatusCode::SERVICE_UNAVAILABLE,
            [("X-Fal-Retryable", "true"), ("X-Fal-Error-Type", "runner_scheduling_failure")],
            Json(json!({"detail": "No runner could be allocated", "error_type": "runner_scheduling_failure"})),
        )
            .into_response(),
        VendorFailure::Validation => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"detail": [{"loc": ["body", "prompt"], "msg": "field required", "type": "missing", "url": "https://docs.fal.ai/errors#missing"}]})),
        )
            .into_response(),
    }
}

async fn dispatch(
    State(shared): State<Arc<VShared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_matches('/').to_owned();
    let parts: Vec<&str> = path.split('/').collect();
    let request = parts.iter().position(|p| *p == "requests");
    match (method, request) {
        (Method::POST, None) if parts.len() >= 2 => {
            let hook = webhook_of(uri.query());
            submit(&shared, &path, &headers, &body, hook).await
        }
        (m, Some(i)) if i == 2 && parts.len() >= 4 => {
            let app = format!("{}/{}", parts[0], parts[1]);
            let id = parts[3];
            match (m, parts.get(4).copied()) {
                (Method::GET, Some("status")) => status(&shared, &app, id, &headers),
                (Method::GET, None) => result(&shared, &app, id, &headers),
                (Method::PUT, Some("cancel")) => cancel(&shared, id, &headers),
                _ => (StatusCode::NOT_FOUND, "no such endpoint").into_response(),
            }
        }
        _ => (StatusCode::NOT_FOUND, Json(json!({"detail": "Not Found"}))).into_response(),
    }
}

fn urls(shared: &VShared, app: &str, id: &str) -> serde_json::Value {
    let base = format!("{}/{app}/requests/{id}", shared.root);
    json!({
        "request_id": id,
        "response_url": base,
        "status_url": format!("{base}/status"),
        "cancel_url": format!("{base}/cancel"),
    })
}

/// The `fal_webhook` query parameter, decoded.
fn webhook_of(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let value = pair.strip_prefix("fal_webhook=")?;
        percent_decode(value)
    })
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

async fn submit(
    shared: &Arc<VShared>,
    model: &str,
    headers: &HeaderMap,
    body: &Bytes,
    hook: Option<String>,
) -> Response {
    if let Err(r) = shared.gate("submit", headers) {
        return r;
    }
    let input = match json_body(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let id = new_id();
    if let Err(r) = shared.create(id.clone(), headers, model, model.contains("video"), input) {
        return r;
    }
    if let Some(url) = hook {
        shared.schedule_webhook(id.clone(), url);
    }
    shared.hold().await;
    let mut parts = model.split('/');
    let app = format!(
        "{}/{}",
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default()
    );
    let mut answer = urls(shared, &app, &id);
    answer["queue_position"] = json!(0);
    Json(answer).into_response()
}

fn status(shared: &VShared, app: &str, id: &str, headers: &HeaderMap) -> Response {
    if let Err(r) = shared.gate("poll", headers) {
        return r;
    }
    let response_url = format!("{}/{app}/requests/{id}", shared.root);
    match shared.phase(id) {
        None => (StatusCode::NOT_FOUND, Json(json!({"detail": "Request not found"}))).into_response(),
        Some(Phase::Queued) => (
            StatusCode::ACCEPTED,
            Json(json!({"status": "IN_QUEUE", "queue_position": 0, "response_url": response_url})),
        )
            .into_response(),
        Some(Phase::Running(_)) => (
            StatusCode::ACCEPTED,
            Json(json!({"status": "IN_PROGRESS", "response_url": response_url, "logs": null})),
        )
            .into_response(),
        Some(_) => Json(json!({"status": "COMPLETED", "response_url": response_url, "logs": null, "metrics": {"inference_time": 0.3}})).into_response(),
    }
}

fn result(shared: &VShared, _app: &str, id: &str, headers: &HeaderMap) -> Response {
    if let Err(r) = shared.gate("result", headers) {
        return r;
    }
    match shared.phase(id) {
        None => (StatusCode::NOT_FOUND, Json(json!({"detail": "Request not found"}))).into_response(),
        Some(Phase::Done) => {
            let url = shared.file_url(id);
            if shared.is_video(id) {
                Json(json!({"video": {"url": url, "content_type": "video/mp4", "file_name": "output.mp4"}})).into_response()
            } else {
                Json(json!({"images": [{"url": url, "width": 64, "height": 64, "content_type": "image/png"}], "seed": 42, "has_nsfw_concepts": [false]})).into_response()
            }
        }
        Some(Phase::Failed(VendorTaskFailure::Policy)) => failure_response(VendorFailure::Policy),
        Some(Phase::Failed(VendorTaskFailure::Internal)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"detail": "The runner encountered an internal server error", "error_type": "runner_server_error"})),
        )
            .into_response(),
        Some(Phase::Cancelled) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"detail": "Request was cancelled", "error_type": "client_cancelled"})),
        )
            .into_response(),
        Some(_) => (StatusCode::BAD_REQUEST, Json(json!({"detail": "Request is still in progress"}))).into_response(),
    }
}

fn cancel(shared: &VShared, id: &str, headers: &HeaderMap) -> Response {
    if let Err(r) = shared.gate("cancel", headers) {
        return r;
    }
    match shared.phase(id) {
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"detail": "Request not found"})),
        )
            .into_response(),
        Some(Phase::Queued | Phase::Running(_)) => {
            shared.cancel(id);
            (
                StatusCode::ACCEPTED,
                Json(json!({"status": "CANCELLATION_REQUESTED"})),
            )
                .into_response()
        }
        Some(_) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"status": "ALREADY_COMPLETED"})),
        )
            .into_response(),
    }
}
