//! Sending one request to a provider: key choice and rotation, classification, metrics.

use std::time::Instant;

use genq_metrics::ProviderMetrics;
use serde::de::DeserializeOwned;

use crate::{
    ProviderConfig,
    classify::{classify_response, transport_error},
    error::{ProviderError, ProviderErrorKind},
    keys::{ApiKey, CoolReason, KeyPool},
};

/// Largest response body accepted (a video file).
const MAX_BODY_BYTES: usize = 512 * 1024 * 1024;

pub(crate) struct Caller {
    pub(crate) name: String,
    pub(crate) base_url: String,
    pub(crate) http: reqwest::Client,
    pub(crate) keys: KeyPool,
    metrics: ProviderMetrics,
}

impl Caller {
    pub(crate) fn new(
        cfg: &ProviderConfig,
        keys: KeyPool,
        metrics: ProviderMetrics,
    ) -> Result<Self, ProviderError> {
        let base_url = cfg.base_url.trim_end_matches('/').to_owned();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(ProviderError::new(
                ProviderErrorKind::BadInput,
                format!(
                    "provider '{}': base URL '{}' must start with http:// or https://",
                    cfg.name, cfg.base_url
                ),
            ));
        }
        Ok(Self {
            name: cfg.name.clone(),
            base_url,
            http: crate::http_client(cfg.timeout)?,
            keys,
            metrics,
        })
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Sends with the next healthy key; a key that is rate limited or hits a billing
    /// error cools down (for every host) and the next healthy key is tried, at most
    /// one try per key. Returns the key that succeeded and the body.
    pub(crate) async fn send<F>(
        &self,
        operation: &str,
        build: F,
    ) -> Result<(ApiKey, Vec<u8>), ProviderError>
    where
        F: Fn(&reqwest::Client, &ApiKey) -> reqwest::RequestBuilder,
    {
        let mut last = None;
        for _ in 0..self.keys.len() {
            let key = match self.keys.pick().await {
                Ok(k) => k,
                // every key cooling: the last real answer says more than "all cooling"
                Err(all_cooling) => return Err(last.unwrap_or(all_cooling)),
            };
            match self.send_with(operation, &key, &build).await {
                Ok(body) => return Ok((key, body)),
                Err(e) => {
                    let reason = match e.kind {
                        ProviderErrorKind::RateLimited { .. } => CoolReason::RateLimited,
                        ProviderErrorKind::Billing => CoolReason::Billing,
                        _ => return Err(e),
                    };
                    self.keys.cool_down(&key, reason).await?;
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            ProviderError::transient(format!("provider '{}' has no keys", self.name))
        }))
    }

    /// Sends with a given key (e.g. polling a task with the key that submitted it).
    pub(crate) async fn send_with<F>(
        &self,
        operation: &str,
        key: &ApiKey,
        build: F,
    ) -> Result<Vec<u8>, ProviderError>
    where
        F: Fn(&reqwest::Client, &ApiKey) -> reqwest::RequestBuilder,
    {
        let started = Instant::now();
        let result = self
            .exchange(operation, build(&self.http, key).bearer_auth(key.secret()))
            .await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.class().as_str(),
        };
        self.metrics
            .calls_total
            .with_label_values(&[&self.name, operation, outcome])
            .inc();
        self.metrics
            .call_duration_seconds
            .with_label_values(&[&self.name, operation])
            .observe(started.elapsed().as_secs_f64());
        result
    }

    async fn exchange(
        &self,
        operation: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, ProviderError> {
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(operation, e))?;
        let status = response.status();
        let headers = response.headers().clone();
        if response
            .content_length()
            .is_some_and(|n| n as usize > MAX_BODY_BYTES)
        {
            return Err(ProviderError::transient(format!(
                "{operation}: response of {} bytes is over the {MAX_BODY_BYTES}-byte limit",
                response.content_length().unwrap_or(0)
            )));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error(operation, e))?;
        if status.is_success() {
            Ok(body.to_vec())
        } else {
            Err(classify_response(status, &headers, &body))
        }
    }
}

/// Decodes a success body; a body that is not what the protocol says is transient.
pub(crate) fn decode<T: DeserializeOwned>(
    provider: &str,
    operation: &str,
    body: &[u8],
) -> Result<T, ProviderError> {
    serde_json::from_slice(body).map_err(|e| {
        ProviderError::transient(format!(
            "provider '{provider}' {operation}: malformed response ({e}): {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ))
    })
}
