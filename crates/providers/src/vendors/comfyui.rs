//! A self-hosted ComfyUI server (routes: <https://docs.comfy.org/development/comfyui-server/comms_routes>):
//! images go up with `POST /upload/image` (multipart `image`), the workflow (API
//! format, from the provider's `workflow` file, its `"{{prompt}}"`-style
//! placeholders filled) is queued with `POST /prompt` `{"prompt", "client_id",
//! "prompt_id"}` (answers `{"prompt_id", "number", "node_errors"}`, or 400 with
//! `error` and `node_errors`), `GET /history/{prompt_id}` has its outputs and
//! `status` once it ran, `GET /queue` lists `queue_running` / `queue_pending`,
//! `GET /view?filename=&subfolder=&type=` serves a file; `POST /queue {"delete"}`
//! and `POST /interrupt` stop it.
//!
//! Submits are deduplicated: genq chooses the prompt id (a UUID derived from the
//! job's idempotency key) and looks it up in the history and the queue before
//! queueing, so a re-run that lost its checkpoint finds its prompt.

use base64::Engine;
use reqwest::{StatusCode, header::HeaderMap};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{Ctx, checked_id, content_type_of, field, number, snippet};
use crate::{
    call::decode,
    error::{ProviderError, ProviderErrorKind},
    keys::ApiKey,
    task_types::{ProviderTask, TaskKind, TaskStatus},
};

/// The prompt id of a job's task: a UUID made from its idempotency key.
pub(crate) fn prompt_id(idempotency_key: &str) -> String {
    let d = Sha256::digest(idempotency_key.as_bytes());
    let h: String = d.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Fills the workflow's placeholders: a string that is exactly `"{{name}}"` becomes
/// the value (numbers stay numbers); `{{prompt}}` inside a longer string is replaced.
fn fill(node: &mut Value, values: &serde_json::Map<String, Value>) {
    match node {
        Value::String(s) => {
            let trimmed = s.trim();
            if let Some(name) = trimmed
                .strip_prefix("{{")
                .and_then(|r| r.strip_suffix("}}"))
                && let Some(v) = values.get(name.trim())
            {
                *node = v.clone();
                return;
            }
            if s.contains("{{") {
                let mut out = s.clone();
                for (k, v) in values {
                    if let Value::String(text) = v {
                        out = out.replace(&format!("{{{{{k}}}}}"), text);
                    }
                }
                *s = out;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| fill(i, values)),
        Value::Object(map) => map.values_mut().for_each(|v| fill(v, values)),
        _ => {}
    }
}

/// Uploads one base64 image; the name ComfyUI stored it under.
async fn upload(ctx: &Ctx<'_>, b64: &str, name: &str) -> Result<String, ProviderError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| {
            ProviderError::new(
                ProviderErrorKind::BadInput,
                format!("comfyui: an input image is not base64: {e}"),
            )
        })?;
    let url = ctx.caller.url("/upload/image");
    let name = name.to_owned();
    let (_, raw) = ctx
        .caller
        .send("upload", |http, _| {
            let part = reqwest::multipart::Part::bytes(bytes.clone()).file_name(name.clone());
            let form = reqwest::multipart::Form::new()
                .part("image", part)
                .text("overwrite", "true");
            http.post(&url).multipart(form)
        })
        .await?;
    let up: Value = decode(&ctx.caller.name, "upload", &raw)?;
    let stored = up.get("name").and_then(Value::as_str).ok_or_else(|| {
        ProviderError::transient(format!(
            "comfyui upload answered without a name: {}",
            snippet(&raw)
        ))
    })?;
    Ok(
        match up
            .get("subfolder")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            Some(sub) => format!("{sub}/{stored}"),
            None => stored.to_owned(),
        },
    )
}

/// Whether ComfyUI knows prompt `id` (ran, running or waiting).
async fn known(ctx: &Ctx<'_>, key: &ApiKey, id: &str) -> Result<bool, ProviderError> {
    if history(ctx, key, id).await?.is_some() {
        return Ok(true);
    }
    queued(ctx, key, id).await
}

async fn history(ctx: &Ctx<'_>, key: &ApiKey, id: &str) -> Result<Option<Value>, ProviderError> {
    let url = ctx.caller.url(&format!("/history/{id}"));
    let all: Value = ctx.get_json("poll", key, &url).await?;
    Ok(all.get(id).cloned())
}

async fn queued(ctx: &Ctx<'_>, key: &ApiKey, id: &str) -> Result<bool, ProviderError> {
    let url = ctx.caller.url("/queue");
    let q: Value = ctx.get_json("queue", key, &url).await?;
    Ok(["queue_running", "queue_pending"].iter().any(|k| {
        q.get(*k).and_then(Value::as_array).is_some_and(|items| {
            items
                .iter()
                .any(|i| i.get(1).and_then(Value::as_str) == Some(id))
        })
    }))
}

pub(crate) async fn submit(
    ctx: &Ctx<'_>,
    model: &str,
    kind: TaskKind,
    input: &Value,
    idempotency_key: &str,
) -> Result<(ApiKey, String), ProviderError> {
    let id = prompt_id(idempotency_key);
    let key = ctx.caller.keys.pick().await?;
    if known(ctx, &key, &id).await? {
        tracing::info!(prompt_id = %id, "comfyui already has this job's prompt: not queued again");
        return Ok((key, id));
    }
    let mut values = serde_json::Map::new();
    values.insert("model".into(), model.into());
    values.insert(
        "prompt".into(),
        field(input, "prompt").unwrap_or_default().into(),
    );
    for (name, f) in [
        ("seconds", "seconds"),
        ("width", "width"),
        ("height", "height"),
        ("factor", "factor"),
    ] {
        if let Some(n) = number(input, f) {
            values.insert(name.into(), n.into());
        }
    }
    let seed = u32::from_str_radix(&id[..8], 16).unwrap_or(0);
    values.insert("seed".into(), seed.into());
    let images: &[(&str, &str)] = match kind {
        TaskKind::FaceSwap => &[
            ("target_image", "target_b64"),
            ("source_image", "source_b64"),
        ],
        _ => &[("image", "image_b64")],
    };
    for (placeholder, f) in images {
        if let Some(b64) = field(input, f) {
            let stored = upload(ctx, b64, &format!("genq-{}-{placeholder}.png", &id[..8])).await?;
            values.insert((*placeholder).into(), stored.clone().into());
            if *placeholder == "target_image" {
                values.insert("image".into(), stored.into());
            }
        }
    }
    super::merge(&mut values, &ctx.options.params);
    let mut graph = ctx.options.workflow.clone().unwrap_or(Value::Null);
    fill(&mut graph, &values);
    let body = json!({ "prompt": graph, "client_id": "genq", "prompt_id": id });
    let url = ctx.caller.url("/prompt");
    let raw = ctx
        .caller
        .send_with("submit", &key, |http, _| http.post(&url).json(&body))
        .await?;
    let queued: Value = decode(&ctx.caller.name, "submit", &raw)?;
    let got = queued
        .get("prompt_id")
        .and_then(Value::as_str)
        .unwrap_or(&id)
        .to_owned();
    Ok((key, checked_id("comfyui", &got)?))
}

pub(crate) async fn status(
    ctx: &Ctx<'_>,
    key: &ApiKey,
    task: &ProviderTask,
) -> Result<TaskStatus, ProviderError> {
    let id = checked_id("comfyui", &task.id)?;
    let Some(entry) = history(ctx, key, &id).await? else {
        return Ok(if queued(ctx, key, &id).await? {
            TaskStatus::Pending { progress: None }
        } else {
            TaskStatus::Failed(ProviderError::transient(format!(
                "comfyui prompt {id} is neither queued nor in the history (the server restarted?)"
            )))
        });
    };
    let status = entry.get("status");
    let status_str = status
        .and_then(|s| s.get("status_str"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if status_str == "error" {
        let message = status
            .and_then(|s| s.get("messages"))
            .and_then(Value::as_array)
            .and_then(|m| {
                m.iter().find_map(|msg| {
                    (msg.get(0).and_then(Value::as_str) == Some("execution_error"))
                        .then(|| {
                            msg.get(1)?
                                .get("exception_message")?
                                .as_str()
                                .map(str::to_owned)
                        })
                        .flatten()
                })
            })
            .unwrap_or_else(|| "execution error".to_owned());
        return Ok(TaskStatus::Failed(ProviderError::transient(format!(
            "comfyui prompt {id} failed: {message}"
        ))));
    }
    let files = entry
        .get("outputs")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|o| o.values())
        .filter_map(Value::as_object)
        .flat_map(|node| node.values())
        .filter_map(Value::as_array)
        .flatten()
        .filter(|f| f.get("filename").is_some())
        .collect::<Vec<_>>();
    let file = files
        .iter()
        .find(|f| f.get("type").and_then(Value::as_str) == Some("output"))
        .or_else(|| files.first());
    match file {
        Some(f) => {
            let s = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or_default();
            let url = ctx.caller.url(&format!(
                "/view?filename={}&subfolder={}&type={}",
                super::encode(s("filename")),
                super::encode(s("subfolder")),
                super::encode(if s("type").is_empty() {
                    "output"
                } else {
                    s("type")
                })
            ));
            Ok(TaskStatus::Succeeded {
                content_type: content_type_of(s("filename")),
                url,
            })
        }
        None if status
            .and_then(|s| s.get("completed"))
            .and_then(Value::as_bool)
            == Some(true) =>
        {
            Ok(TaskStatus::Failed(ProviderError::transient(format!(
                "comfyui prompt {id} completed without an output file (does the workflow save one?)"
            ))))
        }
        None => Ok(TaskStatus::Pending { progress: None }),
    }
}

pub(crate) async fn cancel(
    ctx: &Ctx<'_>,
    key: &ApiKey,
    task: &ProviderTask,
) -> Result<(), ProviderError> {
    let id = checked_id("comfyui", &task.id)?;
    let url = ctx.caller.url("/queue");
    let body = json!({ "delete": [id] });
    ctx.caller
        .send_with("cancel", key, |http, _| http.post(&url).json(&body))
        .await?;
    let url = ctx.caller.url("/interrupt");
    let body = json!({ "prompt_id": id });
    ctx.caller
        .send_with("cancel", key, |http, _| http.post(&url).json(&body))
        .await
        .map(|_| ())
}

/// ComfyUI's `/prompt` refusal `{"error": {"type", "message"}, "node_errors"}` →
/// bad input; 401/403 (an auth proxy in front) → billing; 5xx → transient.
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
        .and_then(|v| {
            let e = v.get("error")?;
            Some(match e.get("message").and_then(Value::as_str) {
                Some(m) => m.to_owned(),
                None => e.to_string(),
            })
        })
        .unwrap_or_else(|| snippet(body));
    Some(ProviderError::new(
        super::kind_of_status(status, headers),
        format!("comfyui answered {status}: {said}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_with_typed_values() {
        let mut g = json!({"3": {"inputs": {"text": "{{prompt}}", "seed": "{{seed}}", "label": "a {{prompt}}!"}}});
        let mut v = serde_json::Map::new();
        v.insert("prompt".into(), "cat".into());
        v.insert("seed".into(), 7.into());
        fill(&mut g, &v);
        assert_eq!(g["3"]["inputs"]["text"], "cat");
        assert_eq!(g["3"]["inputs"]["seed"], 7);
        assert_eq!(g["3"]["inputs"]["label"], "a cat!");
        assert_eq!(prompt_id("genq-1"), prompt_id("genq-1"));
        assert_eq!(prompt_id("genq-1").len(), 36);
    }
}
