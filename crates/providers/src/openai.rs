//! The OpenAI-compatible protocol: chat, images, transcription, speech.

use std::sync::Arc;

use base64::Engine;
use genq_metrics::ProviderMetrics;
use serde::{Deserialize, Serialize};

use crate::{
    ProviderConfig,
    call::{Caller, decode},
    error::{ProviderError, ProviderErrorKind},
    keys::KeyPool,
    limits::estimate_chat_tokens,
};

/// How much of a reply that is not JSON goes into the error message.
const MALFORMED_EXCERPT_CHARS: usize = 200;

/// A structured reply's JSON, or the refusal / parse failure as a classified error.
fn structured_content(
    provider: &str,
    message: StructuredMessage,
) -> Result<serde_json::Value, ProviderError> {
    if let Some(refusal) = message.refusal.filter(|r| !r.trim().is_empty()) {
        return Err(ProviderError::new(
            ProviderErrorKind::ContentPolicy,
            format!("provider '{provider}' refused: {refusal}"),
        ));
    }
    let content = message.content.unwrap_or_default();
    serde_json::from_str(&content).map_err(|e| {
        let excerpt: String = content.chars().take(MALFORMED_EXCERPT_CHARS).collect();
        ProviderError::new(
            ProviderErrorKind::MalformedOutput,
            format!("the reply is not valid JSON ({e}): {excerpt}"),
        )
    })
}

/// The characters of a chat's messages (for the tokens-per-minute estimate).
fn prompt_chars(messages: &[ChatMessage]) -> usize {
    messages.iter().map(|m| m.content.len()).sum()
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.to_owned(),
            content: content.into(),
        }
    }
}

#[derive(Deserialize)]
struct ChatResponse {
    choices: Vec<ChatChoice>,
}

#[derive(Deserialize)]
struct ChatChoice {
    message: ChatMessage,
}

#[derive(Deserialize)]
struct StructuredResponse {
    choices: Vec<StructuredChoice>,
}

#[derive(Deserialize)]
struct StructuredChoice {
    message: StructuredMessage,
}

/// A structured reply's message: JSON text in `content`, or a `refusal`.
#[derive(Deserialize)]
struct StructuredMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Deserialize)]
struct ImageResponse {
    data: Vec<ImageDatum>,
}

#[derive(Deserialize)]
struct ImageDatum {
    b64_json: String,
}

#[derive(Deserialize)]
struct Transcription {
    text: String,
}

/// A client of one OpenAI-compatible provider. Cheap to clone (one pooled HTTP client).
#[derive(Clone)]
pub struct OpenAiClient {
    caller: Arc<Caller>,
}

impl std::fmt::Debug for OpenAiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiClient")
            .field("provider", &self.caller.name)
            .finish()
    }
}

impl OpenAiClient {
    pub fn new(
        cfg: &ProviderConfig,
        keys: KeyPool,
        metrics: ProviderMetrics,
    ) -> Result<Self, ProviderError> {
        Ok(Self {
            caller: Arc::new(Caller::new(cfg, keys, metrics)?),
        })
    }

    pub fn name(&self) -> &str {
        &self.caller.name
    }

    pub fn keys(&self) -> &KeyPool {
        &self.caller.keys
    }

    /// A chat completion; the assistant's reply.
    pub async fn chat(
        &self,
        model: &str,
        messages: &[ChatMessage],
        max_tokens: Option<u32>,
    ) -> Result<String, ProviderError> {
        let url = self.caller.url("/chat/completions");
        let body =
            serde_json::json!({ "model": model, "messages": messages, "max_tokens": max_tokens });
        let tokens = estimate_chat_tokens(prompt_chars(messages), max_tokens);
        let (_, raw) = self
            .caller
            .send_metered("chat", tokens, |http, _| http.post(&url).json(&body))
            .await?;
        let reply: ChatResponse = decode(&self.caller.name, "chat", &raw)?;
        reply
            .choices
            .into_iter()
            .next()
            .map(|c| c.message.content)
            .ok_or_else(|| {
                ProviderError::transient(format!(
                    "provider '{}' chat: no choices in the response",
                    self.caller.name
                ))
            })
    }

    /// A chat completion whose reply must follow a JSON schema (`response_format:
    /// {type: "json_schema", json_schema: {name, strict: true, schema}}`); the
    /// reply's content parsed as JSON (not checked against the schema here).
    ///
    /// A refusal (`message.refusal`) is [`ProviderErrorKind::ContentPolicy`]; content
    /// that is not JSON is [`ProviderErrorKind::MalformedOutput`] with the parse
    /// error in the message, so the caller can ask again with it fed back.
    pub async fn chat_structured(
        &self,
        model: &str,
        messages: &[ChatMessage],
        schema_name: &str,
        schema: serde_json::Value,
    ) -> Result<serde_json::Value, ProviderError> {
        let url = self.caller.url("/chat/completions");
        let body = serde_json::json!({
            "model": model,
            "messages": messages,
            "response_format": {
                "type": "json_schema",
                "json_schema": { "name": schema_name, "strict": true, "schema": schema },
            },
        });
        let tokens = estimate_chat_tokens(prompt_chars(messages), None);
        let (_, raw) = self
            .caller
            .send_metered("chat", tokens, |http, _| http.post(&url).json(&body))
            .await?;
        let reply: StructuredResponse = decode(&self.caller.name, "chat", &raw)?;
        let message = reply
            .choices
            .into_iter()
            .next()
            .map(|c| c.message)
            .ok_or_else(|| {
                ProviderError::transient(format!(
                    "provider '{}' chat: no choices in the response",
                    self.caller.name
                ))
            })?;
        structured_content(&self.caller.name, message)
    }

    /// Generates one image; its encoded bytes (PNG from the protocol).
    pub async fn image(
        &self,
        model: &str,
        prompt: &str,
        width: u32,
        height: u32,
    ) -> Result<Vec<u8>, ProviderError> {
        let url = self.caller.url("/images/generations");
        let body = serde_json::json!({
            "model": model, "prompt": prompt, "size": format!("{width}x{height}"),
            "n": 1, "response_format": "b64_json",
        });
        let (_, raw) = self
            .caller
            .send("images", |http, _| http.post(&url).json(&body))
            .await?;
        let reply: ImageResponse = decode(&self.caller.name, "images", &raw)?;
        let b64 = reply
            .data
            .into_iter()
            .next()
            .map(|d| d.b64_json)
            .ok_or_else(|| {
                ProviderError::transient(format!(
                    "provider '{}' images: no image in the response",
                    self.caller.name
                ))
            })?;
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .map_err(|e| {
                ProviderError::transient(format!(
                    "provider '{}' images: image is not base64: {e}",
                    self.caller.name
                ))
            })
    }

    /// Transcribes speech to text.
    pub async fn transcribe(
        &self,
        model: &str,
        audio: Vec<u8>,
        filename: &str,
    ) -> Result<String, ProviderError> {
        let url = self.caller.url("/audio/transcriptions");
        let (_, raw) = self
            .caller
            .send("transcriptions", |http, _| {
                let form = reqwest::multipart::Form::new()
                    .text("model", model.to_owned())
                    .part(
                        "file",
                        reqwest::multipart::Part::bytes(audio.clone())
                            .file_name(filename.to_owned()),
                    );
                http.post(&url).multipart(form)
            })
            .await?;
        let reply: Transcription = decode(&self.caller.name, "transcriptions", &raw)?;
        Ok(reply.text)
    }

    /// Speaks `text`; the audio bytes.
    pub async fn speech(
        &self,
        model: &str,
        text: &str,
        voice: &str,
    ) -> Result<Vec<u8>, ProviderError> {
        let url = self.caller.url("/audio/speech");
        let body = serde_json::json!({ "model": model, "input": text, "voice": voice });
        let (_, raw) = self
            .caller
            .send("speech", |http, _| http.post(&url).json(&body))
            .await?;
        Ok(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(content: Option<&str>, refusal: Option<&str>) -> StructuredMessage {
        StructuredMessage {
            content: content.map(str::to_owned),
            refusal: refusal.map(str::to_owned),
        }
    }

    #[test]
    fn structured_replies_are_json_refusals_or_malformed() {
        let ok = structured_content("p", message(Some(r#"{"a":1}"#), None)).unwrap();
        assert_eq!(ok, serde_json::json!({"a": 1}));
        let refused = structured_content("p", message(None, Some("no"))).unwrap_err();
        assert_eq!(refused.kind, ProviderErrorKind::ContentPolicy);
        assert_eq!(refused.class(), genq_core::FailureClass::UserViolation);
        let bad = structured_content("p", message(Some("{\"a\": ["), None)).unwrap_err();
        assert_eq!(bad.kind, ProviderErrorKind::MalformedOutput);
        assert!(
            bad.message.starts_with("the reply is not valid JSON"),
            "{bad}"
        );
    }
}
