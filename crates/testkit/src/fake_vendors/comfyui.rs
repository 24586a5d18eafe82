//! A ComfyUI server: `POST /prompt`, `GET /history/{prompt_id}`, `GET /queue`,
//! `POST /queue` (`delete`), `POST /interrupt`, `POST /upload/image` (multipart),
//! `GET /view?filename=&subfolder=&type=`. No auth of its own.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Multipart, Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

use super::{Phase, VShared, VendorFailure, VendorTaskFailure, json_body, new_id};
use crate::fake_provider::lock;

pub(crate) fn router() -> Router<Arc<VShared>> {
    Router::new()
        .route("/prompt", post(prompt))
        .route("/history/{id}", get(history))
        .route("/queue", get(queue).post(queue_delete))
        .route("/interrupt", post(interrupt))
        .route("/upload/image", post(upload))
        .route("/view", get(view))
}

fn validation() -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": {}}, "node_errors": {}})),
    )
        .into_response()
}

pub(crate) fn failure_response(f: VendorFailure) -> Response {
    match f {
        VendorFailure::Policy | VendorFailure::Validation => validation(),
        VendorFailure::Billing => (StatusCode::FORBIDDEN, "forbidden").into_response(),
        VendorFailure::RateLimited { retry_after_secs } => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, retry_after_secs.to_string())],
            "too many requests",
        )
            .into_response(),
        VendorFailure::ServerError => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "500 Internal Server Error",
        )
            .into_response(),
    }
}

async fn prompt(State(shared): State<Arc<VShared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = shared.gate("submit", &headers) {
        return r;
    }
    let body = match json_body(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(graph) = body.get("prompt").filter(|g| g.is_object()) else {
        return validation();
    };
    let text = graph.to_string();
    if text.contains("{{") {
        // a placeholder left unfilled: ComfyUI would reject the value
        return validation();
    }
    let id = body
        .get("prompt_id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(new_id);
    if let Err(r) = shared.create(
        id.clone(),
        &headers,
        "workflow",
        text.contains("Video"),
        body.clone(),
    ) {
        return r;
    }
    shared.hold().await;
    let number = lock(&shared.order).len();
    Json(json!({"prompt_id": id, "number": number, "node_errors": {}})).into_response()
}

async fn history(
    State(shared): State<Arc<VShared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = shared.gate("poll", &headers) {
        return r;
    }
    let entry = match shared.phase(&id) {
        None | Some(Phase::Queued | Phase::Running(_)) => return Json(json!({})).into_response(),
        Some(Phase::Done) => {
            let (key, ext) = if shared.is_video(&id) {
                ("gifs", "mp4")
            } else {
                ("images", "png")
            };
            json!({
                "prompt": [0, id, {}, {}, ["9"]],
                "outputs": {"9": {key: [{"filename": format!("{id}.{ext}"), "subfolder": "", "type": "output"}]}},
                "status": {"status_str": "success", "completed": true, "messages": [["execution_start", {"prompt_id": id}], ["execution_success", {"prompt_id": id}]]},
            })
        }
        Some(Phase::Failed(f)) => {
            let message = match f {
                VendorTaskFailure::Policy => "Image rejected by the safety checker node",
                VendorTaskFailure::Internal => "CUDA out of memory. Tried to allocate 2.00 GiB",
            };
            json!({
                "prompt": [0, id, {}, {}, ["9"]],
                "outputs": {},
                "status": {"status_str": "error", "completed": false, "messages": [["execution_error", {"prompt_id": id, "node_id": "3", "node_type": "KSampler", "exception_message": message, "exception_type": "RuntimeError"}]]},
            })
        }
        Some(Phase::Cancelled) => json!({
            "prompt": [0, id, {}, {}, ["9"]],
            "outputs": {},
            "status": {"status_str": "error", "completed": false, "messages": [["execution_interrupted", {"prompt_id": id}]]},
        }),
    };
    Json(json!({ id: entry })).into_response()
}

async fn queue(State(shared): State<Arc<VShared>>, headers: HeaderMap) -> Response {
    if let Err(r) = shared.gate("queue", &headers) {
        return r;
    }
    let order = lock(&shared.order).clone();
    let (mut running, mut pending) = (Vec::new(), Vec::new());
    for (n, id) in order.iter().enumerate() {
        match shared.phase(id) {
            Some(Phase::Running(_)) => running.push(json!([n, id, {}, {}, ["9"]])),
            Some(Phase::Queued) => pending.push(json!([n, id, {}, {}, ["9"]])),
            _ => {}
        }
    }
    Json(json!({"queue_running": running, "queue_pending": pending})).into_response()
}

async fn queue_delete(
    State(shared): State<Arc<VShared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = shared.gate("cancel", &headers) {
        return r;
    }
    let body = match json_body(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    for id in body
        .get("delete")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(id) = id.as_str()
            && shared.phase(id) == Some(Phase::Queued)
        {
            shared.cancel(id);
        }
    }
    StatusCode::OK.into_response()
}

async fn interrupt(
    State(shared): State<Arc<VShared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = shared.gate("cancel", &headers) {
        return r;
    }
    let target = serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
        v.get("prompt_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let running: Vec<String> = lock(&shared.order)
        .iter()
        .filter(|id| matches!(shared.phase(id), Some(Phase::Running(_))))
        .cloned()
        .collect();
    for id in running {
        if target.as_deref().is_none_or(|t| t == id) {
            shared.cancel(&id);
        }
    }
    StatusCode::OK.into_response()
}

async fn upload(
    State(shared): State<Arc<VShared>>,
    headers: HeaderMap,
    mut form: Multipart,
) -> Response {
    if let Err(r) = shared.gate("upload", &headers) {
        return r;
    }
    while let Ok(Some(field)) = form.next_field().await {
        if field.name() == Some("image") {
            let name = field.file_name().unwrap_or("upload.png").to_owned();
            if field.bytes().await.is_err() {
                return (StatusCode::BAD_REQUEST, "unreadable upload").into_response();
            }
            return Json(json!({"name": name, "subfolder": "", "type": "input"})).into_response();
        }
    }
    StatusCode::BAD_REQUEST.into_response()
}

async fn view(
    State(shared): State<Arc<VShared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let name = q.get("filename").cloned().unwrap_or_default();
    super::file(State(shared), Path(name)).await
}
