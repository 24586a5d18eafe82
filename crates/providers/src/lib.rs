//! AI provider clients (see docs/PROVIDER-PROTOCOLS.md).
//!
//! - [`OpenAiClient`]: chat completions (also with a JSON-schema structured reply),
//!   image generation, transcription, speech.
//! - [`TaskClient`]: queue-style generation (submit, poll, fetch) for video, face
//!   swap, upscale and images.
//! - [`KeyPool`]: round-robin over a provider's healthy API keys; a key that is rate
//!   limited cools down as long as the vendor's hint says (`Retry-After`,
//!   `retry-after-ms`, `x-ratelimit-reset-*`; else 60 s), one with a billing or
//!   quota error 24 h; the cool-down lives in Redis so every worker host skips the
//!   same key. Keys never appear in logs or errors: only their fingerprints.
//! - [`KeyLimits`]: per-key limits shared by every host (in-flight slots, requests
//!   and tokens per minute, adaptive AIMD), enforced in Redis with its clock; a run
//!   without capacity is deferred, not failed ([`ProviderErrorKind::NoCapacity`]).
//! - [`ProviderError`]: every failure classified into genq's failure classes,
//!   keeping the provider's message for operators.
//!
//! One pooled `reqwest::Client` per provider client; clone the client, never build
//! one per job.

mod call;
mod classify;
mod error;
mod hints;
mod keys;
mod limit_settings;
mod limits;
mod openai;
mod task_types;
mod tasks;
mod vendors;
pub mod webhooks;

pub use classify::classify_response;
pub use error::{ProviderError, ProviderErrorKind};
pub use hints::{parse_go_duration, parse_retry_after, retry_hint};
pub use keys::{ApiKey, CoolDowns, CoolReason, Cooling, KeyPool};
pub use limits::{Adaptive, KeyLimitView, KeyLimits, Slot, estimate_chat_tokens, holding};
pub use openai::{ChatMessage, OpenAiClient};
pub use tasks::{
    IDEMPOTENCY_HEADER, ProviderTask, TaskClient, TaskKind, TaskStatus, Vendor, VendorOptions,
    idempotency_key,
};

use std::time::Duration;

/// How to reach one provider.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// A name for logs and metrics (e.g. `openai`, `video`).
    pub name: String,
    pub base_url: String,
    pub keys: Vec<String>,
    /// Per-request timeout (a long video poll is many short requests).
    pub timeout: Duration,
}

/// The shared, pooled HTTP client of one provider.
pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client, ProviderError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .tcp_keepalive(Duration::from_secs(30))
        .user_agent(concat!("genq/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| {
            ProviderError::new(
                ProviderErrorKind::Transient,
                format!("HTTP client could not be built: {e}"),
            )
        })
}
