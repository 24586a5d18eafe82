//! fal's queue API (<https://docs.fal.ai/model-endpoints/queue>):
//! `POST {base}/{model_id}` with the model input as the body, `Authorization: Key
//! <key>`, answers `{"request_id", "status_url", "response_url", "cancel_url"}`;
//! `GET {base}/{app}/requests/{id}/status` is `IN_QUEUE` / `IN_PROGRESS` /
//! `COMPLETED`; `GET {base}/{app}/requests/{id}` is the model's result (or its
//! error, e.g. 422 with `detail[].type = "content_policy_violation"`);
//! `PUT {base}/{app}/requests/{id}/cancel`. `{app}` is the model id without its
//! subpath (`fal-ai/flux/dev` → `fal-ai/flux`). Base URL `https://queue.fal.run`.

use reqwest::{StatusCode, header::HeaderMap};
use serde::Deserialize;
use serde_json::Value;

use super::{Ctx, checked_id, common_input, data_uri, first_url, snippet};
use crate::{
    call::decode,
    error::{ProviderError, ProviderErrorKind},
    keys::ApiKey,
    task_types::{ProviderTask, TaskKind, TaskStatus},
};

#[derive(Deserialize)]
struct Queued {
    request_id: String,
}

#[derive(Deserialize)]
struct Status {
    status: String,
    #[serde(default)]
    queue_position: Option<u64>,
    /// Present on a COMPLETED request that failed (fal's status payload).
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_type: Option<String>,
}

/// fal's app id: the first two segments of a model id (`owner/app[/subpath]`).
fn app_id(model: &str) -> Result<String, ProviderError> {
    let mut parts = model.trim_matches('/').split('/');
    match (parts.next(), parts.next()) {
        (Some(owner), Some(app)) if !owner.is_empty() && !app.is_empty() => {
            Ok(format!("{owner}/{app}"))
        }
        _ => Err(ProviderError::new(
            ProviderErrorKind::BadInput,
            format!("fal: model '{model}' is not an endpoint id like 'fal-ai/flux/dev'"),
        )),
    }
}

fn model_path(model: &str) -> Result<String, ProviderError> {
    app_id(model)?;
    Ok(model
        .trim_matches('/')
        .split('/')
        .map(super::encode)
        .collect::<Vec<_>>()
        .join("/"))
}

fn request_url(ctx: &Ctx<'_>, task: &ProviderTask, suffix: &str) -> Result<String, ProviderError> {
    let model = task.model.as_deref().ok_or_else(|| {
        ProviderError::transient(format!("fal: task {} has no model recorded", task.id))
    })?;
    let app = app_id(model)?;
    let id = checked_id("fal", &task.id)?;
    Ok(ctx.caller.url(&format!("/{app}/requests/{id}{suffix}")))
}

pub(crate) async fn submit(
    ctx: &Ctx<'_>,
    model: &str,
    kind: TaskKind,
    input: &Value,
) -> Result<(ApiKey, String), ProviderError> {
    let mut url = ctx.caller.url(&format!("/{}", model_path(model)?));
    if let Some(hook) = &ctx.options.webhook {
        // fal posts the result here when the request ends
        url = format!("{url}?fal_webhook={}", super::encode(&hook.url));
    }
    let body = Value::Object(common_input(ctx.options, kind, input, data_uri));
    let (key, queued): (ApiKey, Queued) = ctx.post_json("submit", &url, &body).await?;
    Ok((key, checked_id("fal", &queued.request_id)?))
}

pub(crate) async fn status(
    ctx: &Ctx<'_>,
    key: &ApiKey,
    task: &ProviderTask,
) -> Result<TaskStatus, ProviderError> {
    let url = request_url(ctx, task, "/status")?;
    let status: Status = ctx.get_json("poll", key, &url).await?;
    match status.status.as_str() {
        "IN_QUEUE" | "IN_PROGRESS" => Ok(TaskStatus::Pending {
            progress: status.queue_position.map(|_| 0),
        }),
        "COMPLETED" => {
            if let Some(error) = status.error.filter(|e| !e.is_empty()) {
                let kind = match status.error_type.as_deref() {
                    Some(t) if t.contains("content_policy") => ProviderErrorKind::ContentPolicy,
                    _ if super::sounds_like_policy(&error) => ProviderErrorKind::ContentPolicy,
                    _ => ProviderErrorKind::Transient,
                };
                return Ok(TaskStatus::Failed(ProviderError::new(
                    kind,
                    format!("fal request {} failed: {error}", task.id),
                )));
            }
            result(ctx, key, task).await
        }
        other => Ok(super::broken(format!(
            "fal request {} has unknown status '{other}'",
            task.id
        ))),
    }
}

/// Reads a COMPLETED request's result: the model's output, or its error.
async fn result(
    ctx: &Ctx<'_>,
    key: &ApiKey,
    task: &ProviderTask,
) -> Result<TaskStatus, ProviderError> {
    let url = request_url(ctx, task, "")?;
    match ctx
        .caller
        .send_with("result", key, |http, _| http.get(&url))
        .await
    {
        Ok(raw) => {
            let output: Value = decode(&ctx.caller.name, "result", &raw)?;
            Ok(super::delivered(first_url(&output), || {
                format!(
                    "fal request {} completed without a media URL: {}",
                    task.id,
                    snippet(&raw)
                )
            }))
        }
        // the model refused the request (policy, validation): the task failed
        Err(e)
            if matches!(
                e.kind,
                ProviderErrorKind::ContentPolicy | ProviderErrorKind::BadInput
            ) =>
        {
            Ok(TaskStatus::Failed(e))
        }
        Err(e) => Err(e),
    }
}

pub(crate) async fn cancel(
    ctx: &Ctx<'_>,
    key: &ApiKey,
    task: &ProviderTask,
) -> Result<(), ProviderError> {
    let url = request_url(ctx, task, "/cancel")?;
    // 400 ALREADY_COMPLETED: nothing left to stop
    super::cancel_answer(
        ctx.caller
            .send_with("cancel", key, |http, _| http.put(&url))
            .await,
    )
}

/// fal's errors: model errors `{"detail": [{"loc", "msg", "type"}]}` (type
/// `content_policy_violation` → user violation), request errors `{"detail":
/// "...", "error_type": "..."}`; 401/403 (a locked user: "Exhausted balance") →
/// billing, 429 → rate limited, 400/422 → bad input, 5xx → transient.
pub(crate) fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<ProviderError> {
    if status.is_success() {
        return None;
    }
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let detail = parsed.as_ref().and_then(|v| v.get("detail"));
    let (said, types): (String, Vec<String>) = match detail {
        Some(Value::Array(items)) => (
            items
                .iter()
                .filter_map(|i| i.get("msg").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("; "),
            items
                .iter()
                .filter_map(|i| i.get("type").and_then(Value::as_str).map(str::to_owned))
                .collect(),
        ),
        Some(Value::String(s)) => (
            s.clone(),
            parsed
                .as_ref()
                .and_then(|v| v.get("error_type"))
                .and_then(Value::as_str)
                .map(|t| vec![t.to_owned()])
                .unwrap_or_default(),
        ),
        _ => (snippet(body), Vec::new()),
    };
    let said = if said.is_empty() { snippet(body) } else { said };
    let mut kind = super::kind_of_status(status, headers);
    if types.iter().any(|t| t.contains("content_policy")) {
        kind = ProviderErrorKind::ContentPolicy;
    } else if super::sounds_like_billing(&said) {
        kind = ProviderErrorKind::Billing;
    }
    Some(ProviderError::new(
        kind,
        format!("fal answered {status}: {said}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_ids_drop_the_subpath() {
        assert_eq!(app_id("fal-ai/flux/dev").unwrap(), "fal-ai/flux");
        assert_eq!(
            app_id("fal-ai/kling-video/v2/master/image-to-video").unwrap(),
            "fal-ai/kling-video"
        );
        assert!(app_id("flux").is_err());
    }

    #[test]
    fn errors_map_to_classes() {
        let h = HeaderMap::new();
        let policy = br#"{"detail":[{"loc":["body","prompt"],"msg":"flagged","type":"content_policy_violation"}]}"#;
        assert_eq!(
            classify(StatusCode::UNPROCESSABLE_ENTITY, &h, policy)
                .unwrap()
                .kind,
            ProviderErrorKind::ContentPolicy
        );
        let locked = br#"{"detail":"User is locked. Reason: Exhausted balance."}"#;
        assert_eq!(
            classify(StatusCode::FORBIDDEN, &h, locked).unwrap().kind,
            ProviderErrorKind::Billing
        );
        assert_eq!(classify(StatusCode::OK, &h, b"{}"), None);
    }
}
