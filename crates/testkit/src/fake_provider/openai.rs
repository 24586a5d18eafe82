//! The OpenAI-compatible endpoints under `/v1`.

use std::sync::Arc;

use axum::{
    Json,
    body::Bytes,
    extract::{Multipart, State, multipart::MultipartRejection},
    http::header,
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Shared, failure::ApiError, media, parse_json, script};

#[derive(Deserialize)]
struct ChatRequest {
    #[serde(default)]
    model: String,
    messages: Vec<ChatMessage>,
    #[serde(default)]
    response_format: Option<Value>,
}

impl ChatRequest {
    /// Whether the reply must follow a JSON schema (`response_format.type == "json_schema"`).
    fn wants_json_schema(&self) -> bool {
        self.response_format
            .as_ref()
            .and_then(|f| f.get("type"))
            .and_then(Value::as_str)
            == Some("json_schema")
    }
}

#[derive(Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Value,
}

/// `POST /v1/chat/completions`: replies `"Echo: <last user message>"`; with
/// `response_format.type == "json_schema"`, a promo script (JSON text) following
/// the `Layout:` line of the user messages and quoting their `Brief:` line, or —
/// while [`FakeProvider::set_malformed_scripts`](super::FakeProvider::set_malformed_scripts)
/// has some left — text that is not JSON.
pub(crate) async fn chat(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: ChatRequest = parse_json(&body)?;
    if req.messages.is_empty() {
        return Err(ApiError::bad_request("`messages` must not be empty"));
    }
    let reply = if req.wants_json_schema() {
        structured_reply(&shared, &req)
    } else {
        let last_user = req
            .messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .map(|m| text_of(&m.content))
            .unwrap_or_default();
        format!("Echo: {last_user}")
    };
    let prompt_tokens: usize = req
        .messages
        .iter()
        .map(|m| words(&text_of(&m.content)))
        .sum();
    let completion_tokens = words(&reply);
    Ok(Json(json!({
        "id": format!("chatcmpl-{}", ulid::Ulid::new().to_string().to_lowercase()),
        "object": "chat.completion",
        "created": 0,
        "model": req.model,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": reply },
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens
        }
    })))
}

/// A structured chat's content: a script for the users' `Layout:` line, or
/// malformed JSON when scripted.
fn structured_reply(shared: &Shared, req: &ChatRequest) -> String {
    if shared.take_malformed_script() {
        return script::MALFORMED_SCRIPT.to_owned();
    }
    let users: Vec<String> = req
        .messages
        .iter()
        .filter(|m| m.role == "user")
        .map(|m| text_of(&m.content))
        .collect();
    let layout = users
        .iter()
        .find_map(|t| script::parse_layout(t))
        .unwrap_or_default();
    let brief = users
        .iter()
        .find_map(|t| script::parse_brief(t))
        .unwrap_or_default();
    script::script(layout, &brief).to_string()
}

/// A message's text: a string, or the `text` of an array of content parts.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// A rough token count: whitespace-separated words.
fn words(text: &str) -> usize {
    text.split_whitespace().count()
}

#[derive(Deserialize)]
struct ImageRequest {
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    n: Option<u32>,
}

/// `POST /v1/images/generations`: `n` gradient PNGs of `size` (default 1024x1024),
/// always as `b64_json`.
pub(crate) async fn images(body: Bytes) -> Result<Json<Value>, ApiError> {
    let req: ImageRequest = parse_json(&body)?;
    let (width, height) = parse_size(req.size.as_deref().unwrap_or("1024x1024"))?;
    let n = req.n.unwrap_or(1);
    if !(1..=10).contains(&n) {
        return Err(ApiError::bad_request(format!(
            "`n` must be 1..=10, got {n}"
        )));
    }
    let png = media::png(width, height)
        .await
        .map_err(ApiError::internal)?;
    let b64 = STANDARD.encode(&png);
    let data: Vec<Value> = (0..n).map(|_| json!({ "b64_json": b64 })).collect();
    Ok(Json(json!({ "created": 0, "data": data })))
}

/// Parses `"WxH"` with both sides in 1..=[`media::MAX_SIDE`].
pub(crate) fn parse_size(size: &str) -> Result<(u32, u32), ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "`size` must be \"WIDTHxHEIGHT\" with both in 1..={}, got {size:?}",
            media::MAX_SIDE
        ))
    };
    let (w, h) = size.split_once('x').ok_or_else(bad)?;
    let w: u32 = w.parse().map_err(|_| bad())?;
    let h: u32 = h.parse().map_err(|_| bad())?;
    let range = 1..=media::MAX_SIDE;
    if range.contains(&w) && range.contains(&h) {
        Ok((w, h))
    } else {
        Err(bad())
    }
}

/// `POST /v1/audio/transcriptions`: `{"text": "transcribed <N> bytes"}` for the `file` part.
pub(crate) async fn transcriptions(
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<Value>, ApiError> {
    let mut multipart =
        multipart.map_err(|e| ApiError::bad_request(format!("expected a multipart body: {e}")))?;
    let bad = |e: axum::extract::multipart::MultipartError| {
        ApiError::bad_request(format!("reading the multipart body failed: {e}"))
    };
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        if field.name() == Some("file") {
            let audio = field.bytes().await.map_err(bad)?;
            return Ok(Json(
                json!({ "text": format!("transcribed {} bytes", audio.len()) }),
            ));
        }
    }
    Err(ApiError::bad_request(
        "the multipart body has no `file` part",
    ))
}

#[derive(Deserialize)]
struct SpeechRequest {
    input: String,
}

/// `POST /v1/audio/speech`: a quiet tone as `audio/wav`, as long as the input
/// would take to say at [`media::SPEECH_WORDS_PER_SEC`] (at least half a second).
pub(crate) async fn speech(body: Bytes) -> Result<Response, ApiError> {
    let req: SpeechRequest = parse_json(&body)?;
    if req.input.is_empty() {
        return Err(ApiError::bad_request("`input` must not be empty"));
    }
    let secs = req.input.split_whitespace().count() as f64 / media::SPEECH_WORDS_PER_SEC;
    Ok(([(header::CONTENT_TYPE, "audio/wav")], media::wav(secs)).into_response())
}
