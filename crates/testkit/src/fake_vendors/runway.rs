//! Runway's developer API under `/v1`: `POST /image_to_video`, `POST
//! /text_to_image`, `GET /tasks/{id}`, `DELETE /tasks/{id}`; `Authorization:
//! Bearer` and `X-Runway-Version` required.

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
        .route("/v1/image_to_video", post(image_to_video))
        .route("/v1/text_to_image", post(text_to_image))
        .route("/v1/tasks/{id}", get(task).delete(cancel))
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

pub(crate) fn failure_response(f: VendorFailure) -> Response {
    match f {
        VendorFailure::Policy => error(
            StatusCode::BAD_REQUEST,
            "Your prompt was rejected by content moderation (safety).",
        ),
        VendorFailure::Billing => error(
            StatusCode::BAD_REQUEST,
            "You do not have enough credits to run this task.",
        ),
        VendorFailure::RateLimited { retry_after_secs } => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, retry_after_secs.to_string())],
            Json(json!({"error": "You have exceeded the rate limit"})),
        )
            .into_response(),
        VendorFailure::ServerError => error(StatusCode::BAD_GATEWAY, "Upstream error"),
        VendorFailure::Validation => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "Validation of body failed", "issues": [{"path": ["ratio"], "message": "Invalid enum value"}]})),
        )
            .into_response(),
    }
}

async fn create(shared: &Arc<VShared>, headers: &HeaderMap, body: &Bytes, video: bool) -> Response {
    if let Err(r) = shared.gate("submit", headers) {
        return r;
    }
    if headers.get("X-Runway-Version").is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "The X-Runway-Version header is required",
        );
    }
    let body = match json_body(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if model.is_empty() || (video && body.get("promptImage").is_none()) {
        return failure_response(VendorFailure::Validation);
    }
    let id = new_id();
    if let Err(r) = shared.create(id.clone(), headers, &model, video, body) {
        return r;
    }
    shared.hold().await;
    Json(json!({"id": id})).into_response()
}

async fn image_to_video(
    State(shared): State<Arc<VShared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    create(&shared, &headers, &body, true).await
}

async fn text_to_image(
    State(shared): State<Arc<VShared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    create(&shared, &headers, &body, false).await
}

async fn task(
    State(shared): State<Arc<VShared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = shared.gate("poll", &headers) {
        return r;
    }
    let Some(phase) = shared.phase(&id) else {
        return error(StatusCode::NOT_FOUND, "Task not found");
    };
    let mut t = json!({"id": id, "createdAt": "2026-12-01T10:00:00.000Z"});
    match phase {
        Phase::Queued => t["status"] = json!("PENDING"),
        Phase::Running(p) => {
            t["status"] = json!("RUNNING");
            t["progress"] = json!(f64::from(p) / 100.0);
        }
        Phase::Done => {
            t["status"] = json!("SUCCEEDED");
            t["output"] = json!([shared.file_url(&id)]);
        }
        Phase::Failed(VendorTaskFailure::Policy) => {
            t["status"] = json!("FAILED");
            t["failure"] = json!("Your prompt text was flagged by content moderation.");
            t["failureCode"] = json!("SAFETY.INPUT.TEXT");
        }
        Phase::Failed(VendorTaskFailure::Internal) => {
            t["status"] = json!("FAILED");
            t["failure"] = json!("An internal error occurred.");
            t["failureCode"] = json!("INTERNAL.BAD_OUTPUT.CODE01");
        }
        Phase::Cancelled => t["status"] = json!("CANCELLED"),
    }
    Json(t).into_response()
}

async fn cancel(
    State(shared): State<Arc<VShared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = shared.gate("cancel", &headers) {
        return r;
    }
    match shared.phase(&id) {
        None => error(StatusCode::NOT_FOUND, "Task not found"),
        Some(Phase::Queued | Phase::Running(_)) => {
            shared.cancel(&id);
            StatusCode::NO_CONTENT.into_response()
        }
        // a finished task is deleted
        Some(_) => StatusCode::NO_CONTENT.into_response(),
    }
}
