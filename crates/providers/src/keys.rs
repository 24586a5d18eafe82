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

use crate::{
    error::{ProviderError, ProviderErrorKind},
    limit_settings::KeyLimits,
};

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
    /// A successful answer said the key's budget is spent
    /// (`x-ratelimit-remaining-*: 0`): it rests until the vendor's reset, and a
    /// job finding every key resting is deferred, not failed.
    Spent,
}

impl CoolReason {
    fn as_str(self) -> &'static str {
        match self {
            CoolReason::RateLimited => "rate_limited",
            CoolReason::Billing => "billing",
            CoolReason::Spent => "spent",
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

pub(crate) struct Inner {
    pub(crate) provider: String,
    pub(crate) keys: Vec<ApiKey>,
    pub(crate) next: AtomicUsize,
    pub(crate) redis: RedisConn,
    prefix: String,
    pub(crate) cool: CoolDowns,
    pub(crate) limits: KeyLimits,
    pub(crate) metrics: ProviderMetrics,
}

/// How long a key cools down, by the signal (configurable per provider).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoolDowns {
    /// A 429 without a wait hint (`Retry-After`, `retry-after-ms`, OpenAI's
    /// `x-ratelimit-reset-*`); default 60 s.
    pub rate_limited: Duration,
    /// A 429 with a hint waits what it says, at most this long; default 1 h.
    pub max_hinted: Duration,
    /// Billing / quota exhausted (401/402/403, `insufficient_quota`); default 24 h.
    pub billing: Duration,
}

impl Default for CoolDowns {
    fn default() -> Self {
        Self {
            rate_limited: Duration::from_secs(60),
            max_hinted: Duration::from_secs(3600),
            billing: Duration::from_secs(24 * 3600),
        }
    }
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
                cool: CoolDowns::default(),
                limits: KeyLimits::default(),
                metrics,
            }),
        })
    }

    fn rebuilt(self, change: impl FnOnce(&mut CoolDowns, &mut KeyLimits)) -> Self {
        let mut cool = self.inner.cool;
        let mut limits = self.inner.limits.clone();
        change(&mut cool, &mut limits);
        let inner = Inner {
            provider: self.inner.provider.clone(),
            keys: self.inner.keys.clone(),
            next: AtomicUsize::new(0),
            redis: self.inner.redis.clone(),
            prefix: self.inner.prefix.clone(),
            cool,
            limits,
            metrics: self.inner.metrics.clone(),
        };
        let pool = Self {
            inner: Arc::new(inner),
        };
        pool.publish_static_limits();
        pool
    }

    /// Changes the cool-down lengths after a 429 without a wait hint and after a
    /// billing error (defaults: 60 s and 24 h).
    pub fn with_cool_downs(self, rate_limited: Duration, billing: Duration) -> Self {
        self.rebuilt(|cool, _| {
            cool.rate_limited = rate_limited;
            cool.billing = billing;
        })
    }

    /// Changes every cool-down setting.
    pub fn with_cool_down_settings(self, settings: CoolDowns) -> Self {
        self.rebuilt(|cool, _| *cool = settings)
    }

    /// Limits every key to `limits`, for every host at once (see [`KeyLimits`]).
    pub fn with_limits(self, limits: KeyLimits) -> Self {
        self.rebuilt(|_, l| *l = limits)
    }

    /// The limits each key runs under.
    pub fn limits(&self) -> &KeyLimits {
        &self.inner.limits
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// `<prefix>:provider:{<provider>}`: every key of the provider's state starts
    /// with it (one Redis Cluster slot).
    pub(crate) fn base_key(&self) -> String {
        format!("{}:provider:{{{}}}", self.inner.prefix, self.inner.provider)
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
        format!("{}:cool:{fingerprint}", self.base_key())
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
        self.all_cooling(start).await
    }

    async fn all_cooling(&self, start: usize) -> Result<ApiKey, ProviderError> {
        let cooling = self.cooling().await?;
        let keys = &self.inner.keys;
        if let Some(back) = keys
            .iter()
            .cycle()
            .skip(start % keys.len().max(1))
            .take(keys.len())
            .find(|k| !cooling.iter().any(|c| c.fingerprint == k.fingerprint))
        {
            // its cool-down ended between the two reads: it is healthy again
            return Ok(back.clone());
        }
        let provider = &self.inner.provider;
        let n = self.inner.keys.len();
        let soonest_rate_limited = cooling
            .iter()
            .filter(|c| c.reason == CoolReason::RateLimited)
            .map(|c| c.remaining_secs)
            .min();
        let soonest_spent = cooling
            .iter()
            .filter(|c| c.reason == CoolReason::Spent)
            .map(|c| c.remaining_secs)
            .min();
        if let Some(secs) = soonest_spent
            && soonest_rate_limited.is_none_or(|r| secs <= r)
        {
            // no call was refused: the budget the vendor announced comes back then
            self.note_deferred("budget_spent");
            return Err(ProviderError::new(
                ProviderErrorKind::NoCapacity {
                    retry_after: Duration::from_secs(secs.max(1)),
                },
                format!(
                    "every key of provider '{provider}' has spent its budget (x-ratelimit-remaining: 0); the first is back in {secs} s"
                ),
            ));
        }
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

    /// Cools `key` down for every host, for the configured period of `reason`. A
    /// billing cool-down replaces a rate-limit one; a rate-limit one never
    /// shortens a billing one.
    pub async fn cool_down(&self, key: &ApiKey, reason: CoolReason) -> Result<(), ProviderError> {
        self.cool_down_for(key, reason, None).await.map(|_| ())
    }

    /// Cools `key` down for every host as the signal says: a rate limit for the
    /// vendor's `hint` (capped at [`CoolDowns::max_hinted`]) or, without one, for
    /// [`CoolDowns::rate_limited`]; billing for [`CoolDowns::billing`]. A newer
    /// rate-limit cool-down replaces an older one but never a billing one. Returns
    /// how long the key cools.
    pub async fn cool_down_for(
        &self,
        key: &ApiKey,
        reason: CoolReason,
        hint: Option<Duration>,
    ) -> Result<Duration, ProviderError> {
        let cool = &self.inner.cool;
        let period = match reason {
            CoolReason::Billing => cool.billing,
            CoolReason::RateLimited | CoolReason::Spent => hint
                .map(|h| h.min(cool.max_hinted))
                .unwrap_or(cool.rate_limited),
        };
        let ms = (period.as_millis() as u64).max(1);
        let mut con = self.inner.redis.clone();
        let _: i64 = genq_redis::provider_scripts::COOL
            .key(self.base_key())
            .arg(&key.fingerprint)
            .arg(reason.as_str())
            .arg(ms)
            .invoke_async(&mut con)
            .await
            .map_err(|e| ProviderError::transient(format!("key cool-down not stored: {e}")))?;
        tracing::warn!(provider = %self.inner.provider, key = %key.fingerprint, reason = reason.as_str(), cool_ms = ms, "API key cooling down");
        Ok(period)
    }

    /// Rests `key` for every host for `rest`, after a successful answer said its
    /// budget is spent; never replaces a longer cool-down (best effort: a failure
    /// is logged, and the vendor's 429 would say the same later).
    pub(crate) async fn rest_spent_key(&self, key: &ApiKey, rest: Duration) {
        let ms = (rest.min(self.inner.cool.max_hinted).as_millis() as u64).max(1);
        let mut con = self.inner.redis.clone();
        let set: Result<i64, _> = genq_redis::provider_scripts::COOL
            .key(self.base_key())
            .arg(&key.fingerprint)
            .arg(CoolReason::Spent.as_str())
            .arg(ms)
            .invoke_async(&mut con)
            .await;
        match set {
            Ok(1) => {
                tracing::info!(provider = %self.inner.provider, key = %key.fingerprint, rest_ms = ms, "API key's budget spent: resting until the vendor's reset")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(provider = %self.inner.provider, key = %key.fingerprint, error = %e, "API key rest not stored")
            }
        }
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
                Some("spent") => CoolReason::Spent,
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
