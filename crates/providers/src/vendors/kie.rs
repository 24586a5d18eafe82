//! KIE's market task API (<https://docs.kie.ai/market/common/get-task-detail>,
//! Sora 2: <https://docs.kie.ai/market/sora2/sora-2-image-to-video>): `POST
//! {base}/api/v1/jobs/createTask` `{"model", "input": {...}}` answers `{"code":
//! 200, "msg", "data": {"taskId"}}`; `GET {base}/api/v1/jobs/recordInfo?taskId=`
//! answers `data.state` `waiting` / `queuing` / `generating` / `success` / `fail`,
//! `resultJson` (a JSON string `{"resultUrls": [...]}`), `failCode`, `failMsg`.
//! Failures come as the body's `code` (often with HTTP 200): 401 unauthorized,
//! 402 insufficient credits, 404, 422 validation, 429 rate limited, 455 service
//! unavailable, 500 server error, 501 generation failed, 505 feature disabled.
//! Images must be URLs: genq uploads them first with KIE's file upload API
//! (`POST {upload}/api/file-base64-upload`). KIE has no cancel endpoint and no
//! idempotency key. Base URL `https://api.kie.ai`.

use reqwest::{StatusCode, header::HeaderMap};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Ctx, checked_id, data_uri, field, merge, number, snippet};
use crate::{
    error::{ProviderError, ProviderErrorKind},
    keys::ApiKey,
    task_types::{ProviderTask, TaskKind, TaskStatus},
};

/// KIE's file upload service.
pub(crate) const DEFAULT_UPLOAD_URL: &str = "https://kieai.redpandaai.co";

#[derive(Deserialize)]
struct Envelope<T> {
    code: i64,
    #[serde(default)]
    msg: Option<String>,
    #[serde(default)]
    message: Option<String>,
    data: Option<T>,
}

impl<T> Envelope<T> {
    fn data(self, what: &str) -> Result<T, ProviderError> {
        let said = self.msg.or(self.message).unwrap_or_default();
        self.data.ok_or_else(|| {
            ProviderError::transient(format!(
                "kie {what}: answer without data (code {}): {said}",
                self.code
            ))
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Created {
    task_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Uploaded {
    download_url: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    state: String,
    #[serde(default)]
    result_json: Option<String>,
    #[serde(default)]
    fail_code: Option<Value>,
    #[serde(default)]
    fail_msg: Option<String>,
    #[serde(default)]
    progress: Option<f64>,
}

/// Uploads a base64 image with KIE's file upload API; its download URL.
async fn upload(ctx: &Ctx<'_>, b64: &str, name: &str) -> Result<(ApiKey, String), ProviderError> {
    let base = ctx
        .options
        .upload_url
        .clone()
        .unwrap_or_else(|| DEFAULT_UPLOAD_URL.to_owned());
    let url = format!("{}/api/file-base64-upload", base.trim_end_matches('/'));
    let body = json!({ "base64Data": data_uri(b64), "uploadPath": "genq", "fileName": name });
    let (key, up): (ApiKey, Envelope<Uploaded>) = ctx.post_json("upload", &url, &body).await?;
    Ok((key, up.data("upload")?.download_url))
}

pub(crate) async fn submit(
    ctx: &Ctx<'_>,
    model: &str,
    kind: TaskKind,
    input: &Value,
) -> Result<(ApiKey, String), ProviderError> {
    let mut model_input = Map::new();
    if let Some(p) = field(input, "prompt") {
        model_input.insert("prompt".into(), p.into());
    }
    let images: Vec<(&str, &str)> = match kind {
        TaskKind::Video | TaskKind::Upscale => field(input, "image_b64")
            .map(|i| vec![("image.png", i)])
            .unwrap_or_default(),
        TaskKind::FaceSwap => [("target.png", "target_b64"), ("source.png", "source_b64")]
            .into_iter()
            .filter_map(|(n, f)| field(input, f).map(|i| (n, i)))
            .collect(),
        TaskKind::Image => Vec::new(),
    };
    let mut urls = Vec::new();
    for (name, b64) in images {
        urls.push(Value::String(upload(ctx, b64, name).await?.1));
    }
    if !urls.is_empty() {
        model_input.insert("image_urls".into(), Value::Array(urls));
    }
    if kind == TaskKind::Video {
        // Sora 2: n_frames "10" or "15" (seconds), aspect_ratio landscape/portrait
        let secs = number(input, "seconds").unwrap_or(10);
        model_input.insert(
            "n_frames".into(),
            if secs > 10 { "15" } else { "10" }.into(),
        );
        model_input.insert("aspect_ratio".into(), "landscape".into());
    }
    if let Some(f) = number(input, "factor") {
        model_input.insert("upscale_factor".into(), f.to_string().into());
    }
    merge(&mut model_input, &ctx.options.params);
    let mut body = json!({ "model": model, "input": model_input });
    if let Some(hook) = &ctx.options.webhook {
        // KIE posts the finished task here (signed when a webhook HMAC key is set)
        body["callBackUrl"] = hook.url.clone().into();
    }
    let url = ctx.caller.url("/api/v1/jobs/createTask");
    let (key, created): (ApiKey, Envelope<Created>) = ctx.post_json("submit", &url, &body).await?;
    Ok((
        key,
        checked_id("kie", &created.data("createTask")?.task_id)?,
    ))
}

pub(crate) async fn status(
    ctx: &Ctx<'_>,
    key: &ApiKey,
    task: &ProviderTask,
) -> Result<TaskStatus, ProviderError> {
    let id = checked_id("kie", &task.id)?;
    let url = ctx.caller.url(&format!(
        "/api/v1/jobs/recordInfo?taskId={}",
        super::encode(&id)
    ));
    let record: Envelope<Record> = ctx.get_json("poll", key, &url).await?;
    let r = record.data("recordInfo")?;
    Ok(match r.state.as_str() {
        "waiting" | "queuing" | "generating" => TaskStatus::Pending {
            progress: r
                .progress
                .filter(|p| p.is_finite())
                .map(|p| p.clamp(0.0, 100.0) as u8),
        },
        "success" => {
            let urls = r
                .result_json
                .as_deref()
                .and_then(|j| serde_json::from_str::<Value>(j).ok())
                .and_then(|v| v.get("resultUrls").and_then(super::first_url));
            super::delivered(urls, || {
                format!("kie task {id} succeeded without resultUrls")
            })
        }
        "fail" => {
            let code = match &r.fail_code {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => String::new(),
            };
            let msg = r.fail_msg.unwrap_or_default();
            let kind = if super::sounds_like_policy(&msg) {
                ProviderErrorKind::ContentPolicy
            } else if code == "422" || code == "400" {
                ProviderErrorKind::BadInput
            } else {
                ProviderErrorKind::Transient
            };
            TaskStatus::Failed(ProviderError::new(
                kind,
                format!("kie task {id} failed ({code}): {msg}"),
            ))
        }
        other => TaskStatus::Failed(ProviderError::transient(format!(
            "kie task {id} has unknown state '{other}'"
        ))),
    })
}

/// KIE offers no way to stop a task: nothing is sent.
pub(crate) async fn cancel(
    _ctx: &Ctx<'_>,
    _key: &ApiKey,
    task: &ProviderTask,
) -> Result<(), ProviderError> {
    tracing::info!(task = %task.id, "kie has no cancel endpoint: the task runs to its end");
    Ok(())
}

/// A KIE body `code` (or HTTP status) → a failure kind.
fn kind_of_code(code: i64, headers: &HeaderMap) -> ProviderErrorKind {
    match code {
        401 | 402 => ProviderErrorKind::Billing,
        429 => ProviderErrorKind::RateLimited {
            retry_after: super::retry_after(headers),
        },
        400 | 404 | 413 | 422 | 505 => ProviderErrorKind::BadInput,
        _ => ProviderErrorKind::Transient,
    }
}

/// KIE answers failures in the body's `code` (HTTP 200 or the same status).
pub(crate) fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<ProviderError> {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let code = parsed
        .as_ref()
        .and_then(|v| v.get("code"))
        .and_then(Value::as_i64);
    let said = parsed
        .as_ref()
        .and_then(|v| v.get("msg").or_else(|| v.get("message")))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| snippet(body));
    match (status.is_success(), code) {
        (true, None | Some(200)) => None,
        (true, Some(code)) => {
            let mut kind = kind_of_code(code, headers);
            if code == 400 && super::sounds_like_policy(&said) {
                kind = ProviderErrorKind::ContentPolicy;
            }
            Some(ProviderError::new(
                kind,
                format!("kie answered code {code}: {said}"),
            ))
        }
        (false, _) => {
            let kind = kind_of_code(i64::from(status.as_u16()), headers);
            Some(ProviderError::new(
                kind,
                format!("kie answered {status}: {said}"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_codes_map_to_classes() {
        let h = HeaderMap::new();
        let credits = br#"{"code":402,"msg":"Credits insufficient"}"#;
        assert_eq!(
            classify(StatusCode::OK, &h, credits).unwrap().kind,
            ProviderErrorKind::Billing
        );
        let ok = br#"{"code":200,"msg":"success","data":{"taskId":"t"}}"#;
        assert_eq!(classify(StatusCode::OK, &h, ok), None);
        assert_eq!(
            classify(StatusCode::OK, &h, br#"{"code":455,"msg":"maintenance"}"#)
                .unwrap()
                .kind,
            ProviderErrorKind::Transient
        );
    }
}
