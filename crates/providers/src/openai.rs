//! The OpenAI-compatible protocol: chat, images, transcription, speech.

use std::sync::Arc;

use base64::Engine;
use genq_metrics::ProviderMetrics;
use serde::{Deserialize, Serialize};

use crate::{
    ProviderConfig,
    call::{Caller, decode},
    error::ProviderError,
    keys::KeyPool,
};

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
        let (_, raw) = self
            .caller
            .send("chat", |http, _| http.post(&url).json(&body))
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
