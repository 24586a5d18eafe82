//! Replicate's predictions API under `/v1`: `POST /models/{owner}/{name}/predictions`,
//! `POST /predictions` (with `version`), `GET /predictions/{id}`, `POST
//! /predictions/{id}/cancel`; `Authorization: Bearer`; problem-details errors.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

use super::{Phase, VShared, VendorFailure, VendorTaskFailure, json_body, new_id};

pub(crate) fn router() -> Router<Arc<VShared>> {
    Router::new()
        .route(
            "/v1/models/{owner}/{name}/predictions",
            post(create_for_model),
        )
        .route("/v1/predictions", post(create_for_version))
        .route("/v1/predictions/{id}", get(get_prediction))
        .route("/v1/predictions/{id}/cancel", post(cancel))
}

fn problem(status: StatusCode, title: &str, detail: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        Json(json!({"title": title, "detail": detail, "status": status.as_u16()})),
    )
        .into_response()
}

pub(crate) fn failure_response(f: VendorFailure) -> Response {
    match f {
        VendorFailure::Policy => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Input flagged",
            "The input or output was flagged as sensitive. Please try again with different inputs. (E005)",
        ),
        VendorFailure::Billing => problem(
            StatusCode::PAYMENT_REQUIRED,
            "Insufficient credit",
            "You have insufficient credit to run this model. Go to https://replicate.com/account/billing#billing to purchase credit.",
        ),
        VendorFailure::RateLimited { retry_after_secs } => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, retry_after_secs.to_string())],
            Json(json!({"detail": format!("Request was throttled. Expected available in {retry_after_secs} second."), "status": 429})),
        )
            .into_response(),
        VendorFailure::ServerError => problem(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error", "Something went wrong"),
        VendorFailure::Validation => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Input validation failed",
            "- input.prompt: Invalid type. Expected: string, given: integer",
        ),
    }
}

pub(crate) fn prediction(shared: &VShared, id: &str) -> Option<Value> {
    let phase = shared.phase(id)?;
    let model = shared.model_of(id).unwrap_or_default();
    let (status, output, error) = match phase {
        Phase::Queued => ("starting", Value::Null, Value::Null),
        Phase::Running(_) => ("processing", Value::Null, Value::Null),
        Phase::Done => {
            let url = shared.file_url(id);
            let output = if shared.is_video(id) {
                json!(url)
            } else {
                json!([url])
            };
            ("succeeded", output, Value::Null)
        }
        Phase::Failed(VendorTaskFailure::Policy) => (
            "failed",
            Value::Null,
            json!("NSFW content detected. The input or output was flagged as sensitive. (E005)"),
        ),
        Phase::Failed(VendorTaskFailure::Internal) => {
            ("failed", Value::Null, json!("CUDA error: out of memory"))
        }
        Phase::Cancelled => ("canceled", Value::Null, Value::Null),
    };
    let api = format!("{}/v1/predictions/{id}", shared.root);
    Some(json!({
        "id": id,
        "model": model,
        "version": "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa",
        "input": {},
        "logs": "",
        "output": output,
        "error": error,
        "status": status,
        "created_at": "2026-12-01T10:00:00.000Z",
        "data_removed": false,
        "urls": {"get": api, "cancel": format!("{api}/cancel"), "web": format!("https://replicate.com/p/{id}")},
    }))
}

async fn create(
    shared: &Arc<VShared>,
    model: String,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    if let Err(r) = shared.gate("submit", headers) {
        return r;
    }
    let body = match json_body(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !body.get("input").is_some_and(Value::is_object) {
        return failure_response(VendorFailure::Validation);
    }
    let id: String = new_id().chars().take(26).collect();
    let hook = body
        .get("webhook")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Err(r) = shared.create(id.clone(), headers, &model, model.contains("video"), body) {
        return r;
    }
    if let Some(url) = hook {
        shared.schedule_webhook(id.clone(), url);
    }
    shared.hold().await;
    match prediction(shared, &id) {
        Some(p) => (StatusCode::CREATED, Json(p)).into_response(),
        None => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal server error",
            "lost",
        ),
    }
}

async fn create_for_model(
    State(shared): State<Arc<VShared>>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    create(&shared, format!("{owner}/{name}"), &headers, &body).await
}

async fn create_for_version(
    State(shared): State<Arc<VShared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let version = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("version").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    create(&shared, version, &headers, &body).await
}

async fn get_prediction(
    State(shared): State<Arc<VShared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = shared.gate("poll", &headers) {
        return r;
    }
    match prediction(&shared, &id) {
        Some(p) => Json(p).into_response(),
        None => problem(
            StatusCode::NOT_FOUND,
            "Not found",
            "The requested resource could not be found.",
        ),
    }
}

async fn cancel(
    State(shared): State<Arc<VShared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = shared.gate("cancel", &headers) {
        return r;
    }
    if matches!(shared.phase(&id), Some(Phase::Queued | Phase::Running(_))) {
        shared.cancel(&id);
    }
    match prediction(&shared, &id) {
        Some(p) => Json(p).into_response(),
        None => problem(
            StatusCode::NOT_FOUND,
            "Not found",
            "The requested resource could not be found.",
        ),
    }
}
