//! A provider's API keys: round-robin over the healthy ones, cool-downs shared by
//! every worker host through Redis.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use genq_metrics::ProviderMetrics;
use genq_redis::RedisConn;
use redis::AsyncCommands;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{ProviderError, ProviderErrorKind};

/// An API key. Shows only its fingerprint when printed.
#[derive(Clone)]
pub struct ApiKey {
    secret: Arc<str>,
    fingerprint: String,
}

impl ApiKey {
    pub fn new(secret: &str) -> Self {
        let digest = Sha256::digest(secret.as_bytes());
        let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        Self {
            secret: secret.into(),
            fingerprint: format!("key-{hex}"),
        }
    }

    /// A stable, non-secret name for the key (`key-` + 12 hex digits of its SHA-256).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub(crate) fn secret(&self) -> &str {
        &self.secret
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.fingerprint)
    }
}

/// Why a key cools down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CoolReason {
    RateLimited,
    Billing,
}

impl CoolReason {
    fn as_str(self) -> &'static str {
        match self {
            CoolReason::RateLimited => "rate_limited",
            CoolReason::Billing => "billing",
        }
    }
}

/// A key cooling down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cooling {
    pub fingerprint: String,
    pub reason: CoolReason,
    pub remaining_secs: u64,
}

struct Inner {
    provider: String,
    keys: Vec<ApiKey>,
    next: AtomicUsize,
    redis: RedisConn,
    prefix: String,
    rate_limit_cool: Duration,
    billing_cool: Duration,
    metrics: ProviderMetrics,
}

/// See the module docs. Cheap to clone.
#[derive(Clone)]
pub struct KeyPool {
    inner: Arc<Inner>,
}

impl fmt::Debug for KeyPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPool")
            .field("provider", &self.inner.provider)
            .field("keys", &self.inner.keys)
            .finish()
    }
}

impl KeyPool {
    /// `prefix` is genq's Redis key prefix; cool-downs live under
    /// `<prefix>:provider:{<provider>}:cool:<fingerprint>`.
    pub fn new(
        provider: &str,
        keys: &[String],
        redis: RedisConn,
        prefix: &str,
        metrics: ProviderMetrics,
    ) -> Result<Self, ProviderError> {
        if keys.is_empty() || keys.iter().any(|k| k.trim().is_empty()) {
            return Err(ProviderError::new(
                ProviderErrorKind::Billing,
                format!(
                    "provider '{provider}' has no API keys configured (empty keys are not allowed)"
                ),
            ));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                provider: provider.to_owned(),
                keys: keys.iter().map(|k| ApiKey::new(k.trim())).collect(),
                next: AtomicUsize::new(0),
                redis,
                prefix: prefix.to_owned(),
                rate_limit_cool: Duration::from_secs(3600),
                billing_cool: Duration::from_secs(24 * 3600),
                metrics,
            }),
        })
    }

    /// Changes the cool-down lengths (defaults: 60 min after rate limiting, 24 h after billing).
    pub fn with_cool_downs(self, rate_limited: Duration, billing: Duration) -> Self {
        let inner = Inner {
            provider: self.inner.provider.clone(),
            keys: self.inner.keys.clone(),
            next: AtomicUsize::new(0),
            redis: self.inner.redis.clone(),
            prefix: self.inner.prefix.clone(),
            rate_limit_cool: rate_limited,
            billing_cool: billing,
            metrics: self.inner.metrics.clone(),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    pub fn provider(&self) -> &str {
        &self.inner.provider
    }

    pub fn len(&self) -> usize {
        self.inner.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.keys.is_empty()
    }

    fn cool_key(&self, fingerprint: &str) -> String {
        format!(
            "{}:provider:{{{}}}:cool:{fingerprint}",
            self.inner.prefix, self.inner.provider
        )
    }

    /// The key with this fingerprint (to poll a task with the key that submitted it).
    pub fn by_fingerprint(&self, fingerprint: &str) -> Option<ApiKey> {
        self.inner
            .keys
            .iter()
            .find(|k| k.fingerprint == fingerprint)
            .cloned()
    }

    /// The next healthy key, round-robin. When every key cools down: a billing error
    /// if all of them are blocked for billing, else rate limited until the first
    /// one comes back.
    pub async fn pick(&self) -> Result<ApiKey, ProviderError> {
        let keys = &self.inner.keys;
        let cool_keys: Vec<String> = keys.iter().map(|k| self.cool_key(&k.fingerprint)).collect();
        let mut con = self.inner.redis.clone();
        let states: Vec<Option<String>> = con
            .mget(&cool_keys)
            .await
            .map_err(|e| ProviderError::transient(format!("key cool-downs unreadable: {e}")))?;
        let cooling = states.iter().filter(|s| s.is_some()).count();
        self.inner
            .metrics
            .keys_cooling
            .with_label_values(&[&self.inner.provider])
            .set(cooling as i64);
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..keys.len() {
            let idx = (start + i) % keys.len();
            if states.get(idx).is_some_and(Option::is_none) {
                return Ok(keys[idx].clone());
            }
        }
        self.all_cooling().await
    }

    async fn all_cooling(&self) -> Result<ApiKey, ProviderError> {
        let cooling = self.cooling().await?;
        let provider = &self.inner.provider;
        let n = self.inner.keys.len();
        let soonest_rate_limited = cooling
            .iter()
            .filter(|c| c.reason == CoolReason::RateLimited)
            .map(|c| c.remaining_secs)
            .min();
        Err(match soonest_rate_limited {
            Some(secs) => ProviderError::new(
                ProviderErrorKind::RateLimited {
                    retry_after: Some(Duration::from_secs(secs.max(1))),
                },
                format!(
                    "all {n} keys of provider '{provider}' are cooling down; the first is back in {secs} s"
                ),
            ),
            None => ProviderError::new(
                ProviderErrorKind::Billing,
                format!("all {n} keys of provider '{provider}' are blocked after billing errors"),
            ),
        })
    }

    /// Cools `key` down for every host. A billing cool-down replaces a rate-limit one;
    /// a rate-limit one never shortens a billing one.
    pub async fn cool_down(&self, key: &ApiKey, reason: CoolReason) -> Result<(), ProviderError> {
        let cool_key = self.cool_key(&key.fingerprint);
        let mut cmd = redis::cmd("SET");
        cmd.arg(&cool_key).arg(reason.as_str());
        match reason {
            CoolReason::Billing => cmd
                .arg("PX")
                .arg(self.inner.billing_cool.as_millis() as u64),
            CoolReason::RateLimited => cmd
                .arg("PX")
                .arg(self.inner.rate_limit_cool.as_millis() as u64)
                .arg("NX"),
        };
        let mut con = self.inner.redis.clone();
        let _: Option<String> = cmd
            .query_async(&mut con)
            .await
            .map_err(|e| ProviderError::transient(format!("key cool-down not stored: {e}")))?;
        tracing::warn!(provider = %self.inner.provider, key = %key.fingerprint, reason = reason.as_str(), "API key cooling down");
        Ok(())
    }

    /// The keys cooling down now (fingerprints only).
    pub async fn cooling(&self) -> Result<Vec<Cooling>, ProviderError> {
        let mut con = self.inner.redis.clone();
        let mut out = Vec::new();
        for key in &self.inner.keys {
            let cool_key = self.cool_key(&key.fingerprint);
            let (reason, ttl_ms): (Option<String>, i64) = redis::pipe()
                .get(&cool_key)
                .pttl(&cool_key)
                .query_async(&mut con)
                .await
                .map_err(|e| ProviderError::transient(format!("key cool-downs unreadable: {e}")))?;
            let reason = match reason.as_deref() {
                Some("billing") => CoolReason::Billing,
                Some(_) => CoolReason::RateLimited,
                None => continue,
            };
            out.push(Cooling {
                fingerprint: key.fingerprint.clone(),
                reason,
                remaining_secs: (ttl_ms.max(0) as u64).div_ceil(1000),
            });
        }
        Ok(out)
    }
}
