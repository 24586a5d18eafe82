//! KIE's market task API: `POST /api/v1/jobs/createTask`, `GET
//! /api/v1/jobs/recordInfo?taskId=`, and its file upload `POST
//! /api/file-base64-upload`; `Authorization: Bearer`; failures in the body's
//! `code` with HTTP 200. KIE has no cancel endpoint.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

use super::{Phase, VShared, VendorFailure, VendorTaskFailure, json_body, new_id};

pub(crate) fn router() -> Router<Arc<VShared>> {
    Router::new()
        .route("/api/v1/jobs/createTask", post(create_task))
        .route("/api/v1/jobs/recordInfo", get(record_info))
        .route("/api/file-base64-upload", post(upload))
}

/// `{"code", "msg", "data"}` with HTTP 200, as KIE answers.
pub(crate) fn envelope(code: u16, msg: &str, data: Option<Value>) -> Response {
    Json(json!({"code": code, "msg": msg, "data": data})).into_response()
}

pub(crate) fn failure_response(f: VendorFailure) -> Response {
    match f {
        VendorFailure::Policy => envelope(
            400,
            "Your prompt was flagged for violating content policy",
            None,
        ),
        VendorFailure::Billing => envelope(402, "Credits insufficient", None),
        VendorFailure::RateLimited { retry_after_secs } => (
            [(header::RETRY_AFTER, retry_after_secs.to_string())],
            Json(json!({"code": 429, "msg": "Rate limited: too many requests", "data": null})),
        )
            .into_response(),
        VendorFailure::ServerError => envelope(455, "Service unavailable: under maintenance", None),
        VendorFailure::Validation => {
            envelope(422, "Validation error: input.prompt is required", None)
        }
    }
}

async fn create_task(
    State(shared): State<Arc<VShared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = shared.gate("submit", &headers) {
        return r;
    }
    let body = match json_body(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if model.is_empty() || !body.get("input").is_some_and(Value::is_object) {
        return failure_response(VendorFailure::Validation);
    }
    let id = format!("task_{}_{}", model.replace('/', "-"), new_id());
    let hook = body
        .get("callBackUrl")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Err(r) = shared.create(id.clone(), &headers, &model, model.contains("video"), body) {
        return r;
    }
    if let Some(url) = hook {
        shared.schedule_webhook(id.clone(), url);
    }
    shared.hold().await;
    envelope(200, "success", Some(json!({"taskId": id})))
}

async fn record_info(
    State(shared): State<Arc<VShared>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = shared.gate("poll", &headers) {
        return r;
    }
    let id = q.get("taskId").cloned().unwrap_or_default();
    let Some(phase) = shared.phase(&id) else {
        return envelope(404, "task not found", None);
    };
    let model = shared.model_of(&id).unwrap_or_default();
    let (state, result, fail_code, fail_msg) = match phase {
        Phase::Queued => ("waiting", String::new(), "", ""),
        Phase::Running(_) => ("generating", String::new(), "", ""),
        Phase::Done => (
            "success",
            json!({"resultUrls": [shared.file_url(&id)]}).to_string(),
            "",
            "",
        ),
        Phase::Failed(VendorTaskFailure::Policy) => (
            "fail",
            String::new(),
            "500",
            "Your content was flagged for violating content policy",
        ),
        Phase::Failed(VendorTaskFailure::Internal) | Phase::Cancelled => (
            "fail",
            String::new(),
            "501",
            "Generation failed, please try again later",
        ),
    };
    envelope(
        200,
        "success",
        Some(json!({
            "taskId": id,
            "model": model,
            "state": state,
            "param": "{}",
            "resultJson": result,
            "failCode": fail_code,
            "failMsg": fail_msg,
            "costTime": 0,
            "completeTime": null,
            "createTime": 1_764_583_200_000_u64,
        })),
    )
}

async fn upload(State(shared): State<Arc<VShared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = shared.gate("upload", &headers) {
        return r;
    }
    let body = match json_body(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(data) = body.get("base64Data").and_then(Value::as_str) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"success": false, "code": 400, "msg": "base64Data is required"})),
        )
            .into_response();
    };
    let name = body
        .get("fileName")
        .and_then(Value::as_str)
        .unwrap_or("upload.png");
    Json(json!({
        "success": true,
        "code": 200,
        "msg": "File uploaded successfully",
        "data": {
            "fileName": name,
            "filePath": format!("genq/{name}"),
            "downloadUrl": format!("{}/uploads/{}-{name}", shared.root, new_id()),
            "fileSize": data.len(),
            "mimeType": "image/png",
            "uploadedAt": "2026-12-01T10:00:00.000Z",
        }
    }))
    .into_response()
}
