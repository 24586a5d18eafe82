//! Runway's developer API (<https://docs.dev.runwayml.com/api/>): `POST
//! {base}/image_to_video` `{"model", "promptImage", "promptText", "ratio",
//! "duration"}` (a video; `promptImage` may be a data URI) or `POST
//! {base}/text_to_image` `{"model", "promptText", "ratio"}` (an image), answering
//! `{"id"}`; `GET {base}/tasks/{id}` with `status` `PENDING` / `THROTTLED` /
//! `RUNNING` / `SUCCEEDED` / `FAILED` / `CANCELLED`, `progress` (0-1), `output`
//! (URLs), `failure` and `failureCode`
//! (<https://docs.dev.runwayml.com/api-details/task-failures>: `SAFETY.*` and
//! `INPUT_PREPROCESSING.SAFETY.*` are moderation); `DELETE {base}/tasks/{id}`
//! cancels (or deletes) a task. Every request carries `Authorization: Bearer` and
//! `X-Runway-Version`. Base URL `https://api.dev.runwayml.com/v1`. No idempotency key.

use reqwest::{StatusCode, header::HeaderMap};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Ctx, checked_id, data_uri, field, merge, number, snippet};
use crate::{
    call::decode,
    error::{ProviderError, ProviderErrorKind},
    keys::ApiKey,
    task_types::{ProviderTask, TaskKind, TaskStatus},
};

/// The API version genq was written against.
pub(crate) const DEFAULT_VERSION: &str = "2024-11-06";

#[derive(Deserialize)]
struct Created {
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Task {
    status: String,
    #[serde(default)]
    progress: Option<f64>,
    #[serde(default)]
    output: Option<Vec<String>>,
    #[serde(default)]
    failure: Option<String>,
    #[serde(default)]
    failure_code: Option<String>,
}

fn version(ctx: &Ctx<'_>) -> String {
    ctx.options
        .api_version
        .clone()
        .unwrap_or_else(|| DEFAULT_VERSION.to_owned())
}

pub(crate) async fn submit(
    ctx: &Ctx<'_>,
    model: &str,
    kind: TaskKind,
    input: &Value,
) -> Result<(ApiKey, String), ProviderError> {
    let mut body = Map::new();
    body.insert("model".into(), model.into());
    let path = match kind {
        TaskKind::Video => {
            let image = field(input, "image_b64").ok_or_else(|| {
                ProviderError::new(
                    ProviderErrorKind::BadInput,
                    "runway: image_to_video needs a starting image",
                )
            })?;
            body.insert("promptImage".into(), data_uri(image).into());
            if let Some(p) = field(input, "prompt") {
                body.insert("promptText".into(), p.into());
            }
            body.insert("ratio".into(), "1280:720".into());
            if let Some(s) = number(input, "seconds") {
                body.insert("duration".into(), s.into());
            }
            "/image_to_video"
        }
        TaskKind::Image => {
            body.insert(
                "promptText".into(),
                field(input, "prompt").unwrap_or_default().into(),
            );
            if let (Some(w), Some(h)) = (number(input, "width"), number(input, "height")) {
                body.insert("ratio".into(), format!("{w}:{h}").into());
            }
            "/text_to_image"
        }
        TaskKind::FaceSwap | TaskKind::Upscale => {
            return Err(ProviderError::new(
                ProviderErrorKind::BadInput,
                format!("runway does not offer {kind:?} tasks: configure another provider for it"),
            ));
        }
    };
    merge(&mut body, &ctx.options.params);
    let url = ctx.caller.url(path);
    let version = version(ctx);
    let body = Value::Object(body);
    let (key, raw) = ctx
        .caller
        .send("submit", |http, _| {
            http.post(&url)
                .header("X-Runway-Version", &version)
                .json(&body)
        })
        .await?;
    let created: Created = decode(&ctx.caller.name, "submit", &raw)?;
    Ok((key, checked_id("runway", &created.id)?))
}

pub(crate) async fn status(
    ctx: &Ctx<'_>,
    key: &ApiKey,
    task: &ProviderTask,
) -> Result<TaskStatus, ProviderError> {
    let id = checked_id("runway", &task.id)?;
    let url = ctx.caller.url(&format!("/tasks/{id}"));
    let version = version(ctx);
    let raw = ctx
        .caller
        .send_with("poll", key, |http, _| {
            http.get(&url).header("X-Runway-Version", &version)
        })
        .await?;
    let t: Task = decode(&ctx.caller.name, "poll", &raw)?;
    Ok(match t.status.as_str() {
        "PENDING" | "THROTTLED" => TaskStatus::Pending { progress: Some(0) },
        "RUNNING" => TaskStatus::Pending {
            progress: t
                .progress
                .filter(|p| p.is_finite())
                .map(|p| (p.clamp(0.0, 1.0) * 100.0) as u8),
        },
        "SUCCEEDED" => super::delivered(t.output.and_then(|o| o.into_iter().next()), || {
            format!("runway task {id} succeeded without output")
        }),
        "FAILED" => {
            let code = t.failure_code.unwrap_or_default();
            let kind =
                if code.starts_with("SAFETY") || code.starts_with("INPUT_PREPROCESSING.SAFETY") {
                    ProviderErrorKind::ContentPolicy
                } else if code.starts_with("ASSET.INVALID") {
                    ProviderErrorKind::BadInput
                } else {
                    ProviderErrorKind::Transient
                };
            TaskStatus::Failed(ProviderError::new(
                kind,
                format!(
                    "runway task {id} failed ({code}): {}",
                    t.failure.unwrap_or_default()
                ),
            ))
        }
        "CANCELLED" => super::broken(format!("runway task {id} was cancelled")),
        other => super::broken(format!("runway task {id} has unknown status '{other}'")),
    })
}

pub(crate) async fn cancel(
    ctx: &Ctx<'_>,
    key: &ApiKey,
    task: &ProviderTask,
) -> Result<(), ProviderError> {
    let id = checked_id("runway", &task.id)?;
    let url = ctx.caller.url(&format!("/tasks/{id}"));
    let version = version(ctx);
    // 404: already gone
    super::cancel_answer(
        ctx.caller
            .send_with("cancel", key, |http, _| {
                http.delete(&url).header("X-Runway-Version", &version)
            })
            .await,
    )
}

/// Runway's errors `{"error": "...", "issues"?: [...]}`: 401 → billing, 429 → rate
/// limited, 400 "not enough credits" → billing, 400 otherwise → bad input, 5xx →
/// transient.
pub(crate) fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<ProviderError> {
    if status.is_success() {
        return None;
    }
    let said = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| snippet(body));
    let mut kind = super::kind_of_status(status, headers);
    if status.is_client_error() && super::sounds_like_billing(&said) {
        kind = ProviderErrorKind::Billing;
    } else if status.is_client_error() && super::sounds_like_policy(&said) {
        kind = ProviderErrorKind::ContentPolicy;
    }
    Some(ProviderError::new(
        kind,
        format!("runway answered {status}: {said}"),
    ))
}
