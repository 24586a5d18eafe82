//! Sending one request to a provider: key choice and rotation, classification, metrics.

use std::time::Instant;

use genq_metrics::ProviderMetrics;
use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;

use crate::{
    ProviderConfig,
    classify::{classify_response, transport_error},
    error::{ProviderError, ProviderErrorKind},
    keys::{ApiKey, CoolReason, KeyPool},
};

/// How a provider's API key travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth {
    /// `Authorization: Bearer <key>` (OpenAI, genq-task, Replicate, Runway, KIE).
    Bearer,
    /// `Authorization: Key <key>` (fal).
    Key,
}

/// Classifies an answer: `Some(error)` when it is a failure. The default reads
/// non-success statuses with [`classify_response`]; a vendor whose failures come
/// with HTTP 200 (KIE's `{"code": 402}`) reads the body too.
pub(crate) type Classifier =
    fn(reqwest::StatusCode, &reqwest::header::HeaderMap, &[u8]) -> Option<ProviderError>;

fn default_classifier(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
) -> Option<ProviderError> {
    (!status.is_success()).then(|| classify_response(status, headers, body))
}

/// Largest response body accepted (a video file).
const MAX_BODY_BYTES: usize = 512 * 1024 * 1024;

pub(crate) struct Caller {
    pub(crate) name: String,
    pub(crate) base_url: String,
    pub(crate) http: reqwest::Client,
    pub(crate) keys: KeyPool,
    pub(crate) metrics: ProviderMetrics,
    pub(crate) auth: Auth,
    pub(crate) classify: Classifier,
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
            auth: Auth::Bearer,
            classify: default_classifier,
        })
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Sends with the next healthy key; a key that is rate limited or hits a billing
    /// error cools down (for every host, as long as the signal says) and the next
    /// healthy key is tried, at most one try per key. Returns the key that succeeded
    /// and the body. With limits configured, capacity is taken first (see
    /// [`crate::limits`]).
    pub(crate) async fn send<F>(
        &self,
        operation: &str,
        build: F,
    ) -> Result<(ApiKey, Vec<u8>), ProviderError>
    where
        F: Fn(&reqwest::Client, &ApiKey) -> reqwest::RequestBuilder,
    {
        self.send_metered(operation, 0, build).await
    }

    /// [`send`](Self::send) charging `tokens` (an estimate) to the key's
    /// tokens-per-minute bucket.
    pub(crate) async fn send_metered<F>(
        &self,
        operation: &str,
        tokens: u64,
        build: F,
    ) -> Result<(ApiKey, Vec<u8>), ProviderError>
    where
        F: Fn(&reqwest::Client, &ApiKey) -> reqwest::RequestBuilder,
    {
        if self.keys.limited() {
            return self.send_limited(operation, tokens, build).await;
        }
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
                    let (reason, hint) = match e.kind {
                        ProviderErrorKind::RateLimited { retry_after } => {
                            (CoolReason::RateLimited, retry_after)
                        }
                        ProviderErrorKind::Billing => (CoolReason::Billing, None),
                        _ => return Err(e),
                    };
                    self.keys.cool_down_for(&key, reason, hint).await?;
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            ProviderError::transient(format!("provider '{}' has no keys", self.name))
        }))
    }

    /// Sends under the provider's limits: takes a slot (and bucket capacity) on a
    /// key first — none anywhere is [`ProviderErrorKind::NoCapacity`], nothing sent.
    /// Inside [`crate::holding`] the slot is held as that holder and kept after a
    /// success (a task's whole life); otherwise it is given back with the answer.
    /// A 429 tells the adaptive limit; in adaptive mode a 429 that leaves no key to
    /// try is a deferral (the limit was being probed), not a failed attempt.
    async fn send_limited<F>(
        &self,
        operation: &str,
        tokens: u64,
        build: F,
    ) -> Result<(ApiKey, Vec<u8>), ProviderError>
    where
        F: Fn(&reqwest::Client, &ApiKey) -> reqwest::RequestBuilder,
    {
        let limits = self.keys.limits().clone();
        let held_as = crate::limits::current_holder();
        let holder = held_as
            .clone()
            .unwrap_or_else(|| format!("call-{:016x}", rand::random::<u64>()));
        let mut last = None;
        for _ in 0..self.keys.len() {
            let (key, slot) = match self.keys.acquire(&holder, tokens, limits.slot_lease).await {
                Ok(granted) => granted,
                Err(no_capacity) => return Err(last.unwrap_or(no_capacity)),
            };
            match self.send_with(operation, &key, &build).await {
                Ok(body) => {
                    self.keys.feedback(&key, false).await;
                    if limits.tokens_per_minute.is_some() {
                        let used = crate::limits::used_tokens(&body);
                        self.keys.adjust(&key, tokens, used).await;
                    }
                    match held_as {
                        Some(_) => slot.keep(),
                        None => slot.release().await,
                    }
                    return Ok((key, body));
                }
                Err(e) => {
                    slot.release().await;
                    let (reason, hint) = match e.kind {
                        ProviderErrorKind::RateLimited { retry_after } => {
                            (CoolReason::RateLimited, retry_after)
                        }
                        ProviderErrorKind::Billing => (CoolReason::Billing, None),
                        _ => return Err(e),
                    };
                    if reason == CoolReason::RateLimited {
                        self.keys.feedback(&key, true).await;
                    }
                    // adaptive, a 429 without a hint: the lowered limit is the back-off
                    if reason == CoolReason::Billing || limits.adaptive.is_none() || hint.is_some()
                    {
                        self.keys.cool_down_for(&key, reason, hint).await?;
                    }
                    last = Some(e);
                }
            }
        }
        let last = last.unwrap_or_else(|| {
            ProviderError::transient(format!("provider '{}' has no keys", self.name))
        });
        match last.kind {
            ProviderErrorKind::RateLimited { retry_after } if limits.adaptive.is_some() => {
                self.keys.note_deferred("vendor_429");
                let wait = retry_after.unwrap_or(limits.defer);
                Err(ProviderError::new(
                    ProviderErrorKind::NoCapacity { retry_after: wait },
                    format!(
                        "{} (adaptive limit lowered; trying again in {} ms)",
                        last.message,
                        wait.as_millis()
                    ),
                ))
            }
            _ => Err(last),
        }
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
        let request = build(&self.http, key);
        let request = match self.auth {
            Auth::Bearer => request.bearer_auth(key.secret()),
            Auth::Key => {
                match reqwest::header::HeaderValue::from_str(&format!("Key {}", key.secret())) {
                    Ok(mut value) => {
                        value.set_sensitive(true);
                        request.header(reqwest::header::AUTHORIZATION, value)
                    }
                    // a key that cannot be a header value: the vendor answers 401
                    Err(_) => request,
                }
            }
        };
        let (headers, body) = self
            .observe(operation, self.exchange(operation, request))
            .await?;
        // the vendor says this key's budget is spent: rest it until the reset
        // rather than learn it from a 429
        if let Some(rest) = crate::hints::exhausted_for(&headers) {
            self.keys.rest_spent_key(key, rest).await;
        }
        Ok(body)
    }

    /// Sends without a key: a result file on a vendor's CDN (a signed or public
    /// URL that must not see the API key).
    pub(crate) async fn send_public(
        &self,
        operation: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, ProviderError> {
        self.observe(operation, self.exchange(operation, request))
            .await
            .map(|(_, body)| body)
    }

    /// Counts a call's outcome and latency.
    async fn observe(
        &self,
        operation: &str,
        call: impl std::future::Future<Output = Result<(HeaderMap, Vec<u8>), ProviderError>>,
    ) -> Result<(HeaderMap, Vec<u8>), ProviderError> {
        let started = Instant::now();
        let result = call.await;
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
    ) -> Result<(HeaderMap, Vec<u8>), ProviderError> {
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
        match (self.classify)(status, &headers, &body) {
            Some(e) => Err(e),
            None => Ok((headers, body.to_vec())),
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
