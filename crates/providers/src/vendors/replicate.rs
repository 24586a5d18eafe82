//! Replicate's predictions API (<https://replicate.com/docs/reference/http>):
//! `POST {base}/models/{owner}/{name}/predictions` (an official model) or
//! `POST {base}/predictions` with `"version"` (model `owner/name:version`), body
//! `{"input": {...}}`, `Authorization: Bearer <token>`; the prediction's `status` is
//! `starting` / `processing` / `succeeded` / `failed` / `canceled` (and `aborted`,
//! <https://replicate.com/docs/topics/predictions/lifecycle>); `GET
//! {base}/predictions/{id}`; `POST {base}/predictions/{id}/cancel`. Errors are
//! problem details `{"title", "detail", "status"}`; 429 says
//! `{"detail": "Request was throttled. Expected available in 1 second."}`.
//! Base URL `https://api.replicate.com/v1`. No idempotency key.

use std::time::Duration;

use reqwest::{StatusCode, header::HeaderMap};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Ctx, checked_id, common_input, data_uri, first_url, snippet};
use crate::{
    error::{ProviderError, ProviderErrorKind},
    keys::ApiKey,
    task_types::{ProviderTask, TaskKind, TaskStatus},
};

#[derive(Deserialize)]
struct Prediction {
    id: String,
    status: String,
    #[serde(default)]
    output: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    logs: Option<String>,
}

pub(crate) async fn submit(
    ctx: &Ctx<'_>,
    model: &str,
    kind: TaskKind,
    input: &Value,
) -> Result<(ApiKey, String), ProviderError> {
    let model_input = Value::Object(common_input(ctx.options, kind, input, data_uri));
    let (url, body) = match model.split_once(':') {
        Some((_, version)) if !version.is_empty() => (
            ctx.caller.url("/predictions"),
            json!({ "version": version, "input": model_input }),
        ),
        _ => {
            let (owner, name) = model.split_once('/').filter(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/')).ok_or_else(|| {
                ProviderError::new(
                    ProviderErrorKind::BadInput,
                    format!("replicate: model '{model}' is neither 'owner/name' nor 'owner/name:version'"),
                )
            })?;
            (
                ctx.caller.url(&format!(
                    "/models/{}/{}/predictions",
                    super::encode(owner),
                    super::encode(name)
                )),
                json!({ "input": model_input }),
            )
        }
    };
    let mut body = body;
    if let Some(hook) = &ctx.options.webhook {
        // only the final state: Replicate retries that one until it is taken
        body["webhook"] = hook.url.clone().into();
        body["webhook_events_filter"] = json!(["completed"]);
    }
    let (key, p): (ApiKey, Prediction) = ctx.post_json("submit", &url, &body).await?;
    Ok((key, checked_id("replicate", &p.id)?))
}

pub(crate) async fn status(
    ctx: &Ctx<'_>,
    key: &ApiKey,
    task: &ProviderTask,
) -> Result<TaskStatus, ProviderError> {
    let id = checked_id("replicate", &task.id)?;
    let url = ctx.caller.url(&format!("/predictions/{id}"));
    let p: Prediction = ctx.get_json("poll", key, &url).await?;
    Ok(match p.status.as_str() {
        "starting" | "processing" => TaskStatus::Pending { progress: None },
        "succeeded" => super::delivered(p.output.as_ref().and_then(first_url), || {
            format!("replicate prediction {id} succeeded without a file URL in its output")
        }),
        "failed" => {
            let error = match &p.error {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => p.logs.clone().unwrap_or_default(),
            };
            // E005: "The input or output was flagged as sensitive"
            let kind = if error.contains("E005") || super::sounds_like_policy(&error) {
                ProviderErrorKind::ContentPolicy
            } else {
                ProviderErrorKind::Transient
            };
            TaskStatus::Failed(ProviderError::new(
                kind,
                format!("replicate prediction {id} failed: {error}"),
            ))
        }
        "canceled" | "aborted" => {
            super::broken(format!("replicate prediction {id} was {}", p.status))
        }
        other => super::broken(format!(
            "replicate prediction {id} has unknown status '{other}'"
        )),
    })
}

pub(crate) async fn cancel(
    ctx: &Ctx<'_>,
    key: &ApiKey,
    task: &ProviderTask,
) -> Result<(), ProviderError> {
    let id = checked_id("replicate", &task.id)?;
    let url = ctx.caller.url(&format!("/predictions/{id}/cancel"));
    ctx.caller
        .send_with("cancel", key, |http, _| http.post(&url))
        .await
        .map(|_| ())
}

/// "Expected available in N second(s)" in a throttled answer.
fn throttle_hint(detail: &str) -> Option<Duration> {
    let rest = detail.split("available in ").nth(1)?;
    let n: f64 = rest.split_whitespace().next()?.parse().ok()?;
    (n.is_finite() && n >= 0.0).then(|| Duration::from_secs_f64(n))
}

/// Replicate's problem details: 401 → billing (a bad token), 402 (insufficient
/// credit) → billing, 429 → rate limited (Retry-After, else the detail's "available
/// in N seconds"), 400/404/422 → bad input, 5xx → transient.
pub(crate) fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<ProviderError> {
    if status.is_success() {
        return None;
    }
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let text = |k: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (title, detail) = (text("title"), text("detail"));
    let said = match (title.is_empty(), detail.is_empty()) {
        (true, true) => snippet(body),
        (false, true) => title,
        (true, false) => detail.clone(),
        (false, false) => format!("{title}: {detail}"),
    };
    let mut kind = super::kind_of_status(status, headers);
    if let ProviderErrorKind::RateLimited { retry_after: None } = kind {
        kind = ProviderErrorKind::RateLimited {
            retry_after: throttle_hint(&detail),
        };
    } else if super::sounds_like_policy(&said) && status.is_client_error() {
        kind = ProviderErrorKind::ContentPolicy;
    } else if super::sounds_like_billing(&said) {
        kind = ProviderErrorKind::Billing;
    }
    Some(ProviderError::new(
        kind,
        format!("replicate answered {status}: {said}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_reads_the_hint() {
        let body =
            br#"{"detail":"Request was throttled. Expected available in 3 seconds.","status":429}"#;
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), body)
                .unwrap()
                .kind,
            ProviderErrorKind::RateLimited {
                retry_after: Some(Duration::from_secs(3))
            }
        );
        let credit = br#"{"title":"Insufficient credit","detail":"You have insufficient credit to run this model.","status":402}"#;
        assert_eq!(
            classify(StatusCode::PAYMENT_REQUIRED, &HeaderMap::new(), credit)
                .unwrap()
                .kind,
            ProviderErrorKind::Billing
        );
    }
}
