//! Provider limits shared by every host: per API key, at most `max_in_flight`
//! calls or tasks at once (leases in a Redis ZSET, reclaimed when a holder dies),
//! `requests_per_minute` and `tokens_per_minute` (buckets refilled by the Redis
//! server's clock), and an adaptive (AIMD) in-flight limit that shrinks on a 429 and
//! grows back as calls succeed. The scripts are `crates/redis/src/lua/provider/`;
//! the keys live under `<prefix>:provider:{<name>}` (see ARCHITECTURE.md).
//!
//! Who holds a slot: a plain call (chat, image, speech) from just before its
//! request until its answer; a queue-style task from just before its submit until
//! the run sees it end (succeeded or failed), is cancelled, or stops (the slot is
//! given back when the run's future is dropped). A run that ends with an error
//! while its task may still be running leaves the slot to its lease, which the
//! re-run takes over ([`KeyPool::hold`]); a crashed worker's slots expire after
//! the lease (`slot_lease`).

use std::{
    future::Future,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use serde::Serialize;

pub use crate::limit_settings::{Adaptive, KeyLimits};
use crate::{
    error::{ProviderError, ProviderErrorKind},
    keys::{ApiKey, KeyPool},
};

/// One key's limits now (for the admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyLimitView {
    pub fingerprint: String,
    /// Slots held now (calls and tasks in flight, every host).
    pub in_flight: u64,
    /// The in-flight limit in force (the adaptive one when adaptive); none: unlimited.
    pub in_flight_limit: Option<u64>,
    pub adaptive: bool,
    pub max_in_flight: Option<u32>,
    pub requests_per_minute: Option<u32>,
    /// Requests left in the bucket now.
    pub requests_left: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub tokens_left: Option<u64>,
}

tokio::task_local! {
    static HOLDER: String;
}

/// Runs `fut` with its provider calls holding their slots as `holder` and keeping
/// them when they succeed: a task submit inside it keeps its slot until the task
/// ends ([`KeyPool::hold`] takes it over, [`Slot::release`] gives it back). Jobs
/// pass the submit's idempotency key, so a re-run finds its own slot.
pub async fn holding<F: Future>(holder: &str, fut: F) -> F::Output {
    HOLDER.scope(holder.to_owned(), fut).await
}

/// The holder set by [`holding`], if any.
pub(crate) fn current_holder() -> Option<String> {
    HOLDER.try_with(Clone::clone).ok()
}

/// A slot held on a key. Dropped without [`release`](Self::release) or
/// [`keep`](Self::keep) (a run cancelled or stopped), it is given back in the
/// background.
pub struct Slot {
    held: Option<Held>,
}

struct Held {
    pool: KeyPool,
    fingerprint: String,
    holder: String,
    renewed: Instant,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.held {
            Some(h) => write!(f, "Slot({} on {})", h.holder, h.fingerprint),
            None => f.write_str("Slot(none)"),
        }
    }
}

impl Slot {
    /// No slot (the provider has no limits).
    pub fn none() -> Self {
        Self { held: None }
    }

    /// The key's fingerprint, when a slot is held.
    pub fn fingerprint(&self) -> Option<&str> {
        self.held.as_ref().map(|h| h.fingerprint.as_str())
    }

    /// Extends the lease (a task still running keeps its slot); at most once per a
    /// quarter of the lease, so calling it on every poll is cheap.
    pub async fn renew(&mut self) -> Result<(), ProviderError> {
        let Some(h) = &mut self.held else {
            return Ok(());
        };
        let lease = h.pool.limits().slot_lease;
        if h.renewed.elapsed() < lease / 4 {
            return Ok(());
        }
        let mut con = h.pool.inner().redis.clone();
        let _: i64 = genq_redis::provider_scripts::RENEW
            .key(h.pool.base_key())
            .arg(&h.fingerprint)
            .arg(&h.holder)
            .arg(lease.as_millis() as u64)
            .invoke_async(&mut con)
            .await
            .map_err(|e| ProviderError::transient(format!("provider slot not renewed: {e}")))?;
        h.renewed = Instant::now();
        Ok(())
    }

    /// Gives the slot back now (the call answered, the task ended).
    pub async fn release(mut self) {
        if let Some(h) = self.held.take() {
            release(&h.pool, &h.fingerprint, &h.holder).await;
        }
    }

    /// Keeps the slot held until its lease runs out (or its holder takes it over
    /// with [`KeyPool::hold`]): a task that may still run at the vendor.
    pub fn keep(mut self) {
        self.held = None;
    }

    /// Keeps the slot (like [`keep`](Self::keep)) with its lease renewed to
    /// `lease` from now: a parked job's run comes back within it, however long the
    /// queue it waits in (best effort: a failure is logged, the old lease stands).
    pub async fn keep_for(mut self, lease: Duration) {
        let Some(h) = self.held.take() else { return };
        let mut con = h.pool.inner().redis.clone();
        let renewed: Result<i64, _> = genq_redis::provider_scripts::RENEW
            .key(h.pool.base_key())
            .arg(&h.fingerprint)
            .arg(&h.holder)
            .arg(ms(lease))
            .invoke_async(&mut con)
            .await;
        if let Err(e) = renewed {
            tracing::warn!(provider = %h.pool.provider(), key = %h.fingerprint, error = %e, "provider slot lease not extended; the old lease stands");
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(h) = self.held.take() else { return };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { release(&h.pool, &h.fingerprint, &h.holder).await });
        }
    }
}

async fn release(pool: &KeyPool, fingerprint: &str, holder: &str) {
    let mut con = pool.inner().redis.clone();
    let res: Result<i64, _> = genq_redis::provider_scripts::RELEASE
        .key(pool.base_key())
        .arg(fingerprint)
        .arg(holder)
        .invoke_async(&mut con)
        .await;
    if let Err(e) = res {
        tracing::warn!(provider = %pool.provider(), key = fingerprint, error = %e, "provider slot not given back; its lease will expire");
    }
}

/// A lease time in ms, at least 1 s.
fn ms(d: Duration) -> u64 {
    (d.as_millis() as u64).max(1000)
}

/// `d` spread uniformly over ±50 %.
fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::random_range(0.5..1.5))
}

impl KeyPool {
    /// True when any limit is set.
    pub(crate) fn limited(&self) -> bool {
        !self.inner().limits.is_off()
    }

    fn set_gauge(&self, fingerprint: &str, limit: &str, value: i64) {
        self.inner()
            .metrics
            .effective_limit
            .with_label_values(&[self.provider(), fingerprint, limit])
            .set(value);
    }

    /// Exposes the configured limits as `genq_provider_effective_limit`.
    pub(crate) fn publish_static_limits(&self) {
        let limits = &self.inner().limits;
        for key in &self.inner().keys {
            let fp = key.fingerprint();
            let in_flight = limits
                .adaptive
                .as_ref()
                .map(|a| a.start)
                .or(limits.max_in_flight);
            if let Some(n) = in_flight {
                self.set_gauge(fp, "in_flight", i64::from(n));
            }
            if let Some(n) = limits.requests_per_minute {
                self.set_gauge(fp, "rpm", i64::from(n));
            }
            if let Some(n) = limits.tokens_per_minute {
                self.set_gauge(fp, "tpm", n as i64);
            }
        }
    }

    pub(crate) fn note_deferred(&self, reason: &str) {
        self.inner()
            .metrics
            .deferred_total
            .with_label_values(&[self.provider(), reason])
            .inc();
    }

    /// Takes capacity on the next key that has some (round-robin), as `holder`,
    /// charging `tokens` to its tokens bucket. No capacity anywhere: a
    /// [`ProviderErrorKind::NoCapacity`] error with the wait (nothing was sent),
    /// or billing when every key is blocked for billing.
    pub(crate) async fn acquire(
        &self,
        holder: &str,
        tokens: u64,
        lease: Duration,
    ) -> Result<(ApiKey, Slot), ProviderError> {
        let inner = self.inner();
        let keys = &inner.keys;
        let start = inner.next.fetch_add(1, Ordering::Relaxed);
        let (max, rpm, tpm, adaptive, adaptive_start) = inner.limits.script_args();
        let mut script = genq_redis::provider_scripts::ACQUIRE.key(self.base_key());
        script
            .arg(holder)
            .arg(ms(lease))
            .arg(max)
            .arg(rpm)
            .arg(tpm)
            .arg(tokens)
            .arg(adaptive)
            .arg(adaptive_start)
            .arg(0);
        for i in 0..keys.len() {
            script.arg(keys[(start + i) % keys.len()].fingerprint());
        }
        let mut con = inner.redis.clone();
        let reply: Vec<String> = script
            .invoke_async(&mut con)
            .await
            .map_err(|e| ProviderError::transient(format!("provider limits unreadable: {e}")))?;
        let first = reply.first().map(String::as_str).unwrap_or("");
        if !first.is_empty() {
            let key = self.by_fingerprint(first).ok_or_else(|| {
                ProviderError::transient(format!("provider limits named an unknown key {first}"))
            })?;
            if let Some(limit) = reply.get(1).and_then(|v| v.parse::<i64>().ok())
                && adaptive == 1
            {
                self.set_gauge(first, "in_flight", limit);
            }
            let slot = Slot {
                held: Some(Held {
                    pool: self.clone(),
                    fingerprint: first.to_owned(),
                    holder: holder.to_owned(),
                    renewed: Instant::now(),
                }),
            };
            return Ok((key, slot));
        }
        let wait_ms = reply
            .get(1)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0);
        let why = reply.get(2).map(String::as_str).unwrap_or("in_flight");
        let provider = self.provider();
        let n = keys.len();
        if why == "billing" {
            return Err(ProviderError::new(
                ProviderErrorKind::Billing,
                format!("all {n} keys of provider '{provider}' are blocked after billing errors"),
            ));
        }
        self.note_deferred(why);
        let wait = match why {
            // a slot frees when some call or task ends: try again about `defer` later
            "in_flight" if wait_ms <= 0 => jittered(inner.limits.defer),
            _ => {
                Duration::from_millis(wait_ms.max(10) as u64) + jittered(Duration::from_millis(50))
            }
        };
        let what = match why {
            "cooling" => "every key is cooling down",
            "rpm" => "every key used its requests for this minute",
            "tpm" => "every key used its tokens for this minute",
            _ => "every key has all its slots in flight",
        };
        Err(ProviderError::new(
            ProviderErrorKind::NoCapacity { retry_after: wait },
            format!(
                "provider '{provider}': no capacity ({what}); trying again in {} ms",
                wait.as_millis()
            ),
        ))
    }

    /// Takes (or takes over) `holder`'s slot on the key `fingerprint` whatever the
    /// limits say: the task it submitted exists at the vendor and counts. A
    /// re-run resuming a task calls it with the same holder.
    pub async fn hold(&self, fingerprint: &str, holder: &str) -> Result<Slot, ProviderError> {
        if !self.limited() || self.by_fingerprint(fingerprint).is_none() {
            return Ok(Slot::none());
        }
        let inner = self.inner();
        let (max, rpm, tpm, adaptive, adaptive_start) = inner.limits.script_args();
        let mut con = inner.redis.clone();
        let _: Vec<String> = genq_redis::provider_scripts::ACQUIRE
            .key(self.base_key())
            .arg(holder)
            .arg(ms(inner.limits.slot_lease))
            .arg(max)
            .arg(rpm)
            .arg(tpm)
            .arg(0)
            .arg(adaptive)
            .arg(adaptive_start)
            .arg(1)
            .arg(fingerprint)
            .invoke_async(&mut con)
            .await
            .map_err(|e| ProviderError::transient(format!("provider slot not held: {e}")))?;
        Ok(Slot {
            held: Some(Held {
                pool: self.clone(),
                fingerprint: fingerprint.to_owned(),
                holder: holder.to_owned(),
                renewed: Instant::now(),
            }),
        })
    }

    /// Tells the adaptive limit how a call on `key` went (`limited`: a 429).
    pub(crate) async fn feedback(&self, key: &ApiKey, limited: bool) {
        let Some(a) = &self.inner().limits.adaptive else {
            return;
        };
        let mut con = self.inner().redis.clone();
        let res: Result<i64, _> = genq_redis::provider_scripts::FEEDBACK
            .key(self.base_key())
            .arg(key.fingerprint())
            .arg(if limited { "limited" } else { "ok" })
            .arg(a.ceiling)
            .arg(a.start)
            .arg(a.increase_after.max(1))
            .arg(a.decrease.to_string())
            .arg(a.decrease_guard.as_millis() as u64)
            .invoke_async(&mut con)
            .await;
        match res {
            Ok(limit) => {
                if limited {
                    tracing::info!(provider = %self.provider(), key = key.fingerprint(), limit, "adaptive limit lowered after a 429");
                }
                self.set_gauge(key.fingerprint(), "in_flight", limit);
            }
            Err(e) => {
                tracing::warn!(provider = %self.provider(), error = %e, "adaptive limit not updated")
            }
        }
    }

    /// Corrects `key`'s tokens bucket from an answer: the tokens it really used
    /// (`usage.total_tokens`) against the estimate charged before the call.
    pub(crate) async fn adjust(&self, key: &ApiKey, estimated: u64, used: Option<u64>) {
        let Some(tpm) = self.inner().limits.tokens_per_minute else {
            return;
        };
        let Some(used) = used else { return };
        let delta = used as i64 - estimated as i64;
        if delta == 0 {
            return;
        }
        let mut con = self.inner().redis.clone();
        let res: Result<i64, _> = genq_redis::provider_scripts::ADJUST
            .key(self.base_key())
            .arg(key.fingerprint())
            .arg(0)
            .arg(tpm)
            .arg(delta)
            .arg(-1)
            .arg(-1)
            .invoke_async(&mut con)
            .await;
        if let Err(e) = res {
            tracing::warn!(provider = %self.provider(), error = %e, "provider tokens bucket not corrected");
        }
    }

    /// Each key's limits and use now (fingerprints only).
    pub async fn limit_views(&self) -> Result<Vec<KeyLimitView>, ProviderError> {
        let inner = self.inner();
        let limits = &inner.limits;
        if limits.is_off() {
            return Ok(Vec::new());
        }
        let (max, rpm, tpm, adaptive, adaptive_start) = limits.script_args();
        let mut script = genq_redis::provider_scripts::VIEW.key(self.base_key());
        script
            .arg(max)
            .arg(rpm)
            .arg(tpm)
            .arg(adaptive)
            .arg(adaptive_start);
        for key in &inner.keys {
            script.arg(key.fingerprint());
        }
        let mut con = inner.redis.clone();
        let reply: Vec<String> = script
            .invoke_async(&mut con)
            .await
            .map_err(|e| ProviderError::transient(format!("provider limits unreadable: {e}")))?;
        let num = |s: Option<&String>| s.and_then(|v| v.parse::<u64>().ok());
        Ok(inner
            .keys
            .iter()
            .zip(reply.chunks(4))
            .map(|(key, f)| {
                let limit = num(f.get(1)).filter(|n| *n > 0);
                if let Some(n) = limit {
                    self.set_gauge(key.fingerprint(), "in_flight", n as i64);
                }
                KeyLimitView {
                    fingerprint: key.fingerprint().to_owned(),
                    in_flight: num(f.first()).unwrap_or(0),
                    in_flight_limit: limit,
                    adaptive: limits.adaptive.is_some(),
                    max_in_flight: limits.max_in_flight,
                    requests_per_minute: limits.requests_per_minute,
                    requests_left: num(f.get(2)),
                    tokens_per_minute: limits.tokens_per_minute,
                    tokens_left: num(f.get(3)),
                }
            })
            .collect())
    }
}

/// A chat request's token estimate: about 4 characters a token for the prompt,
/// plus the completion's budget (`max_tokens`, else 512).
pub fn estimate_chat_tokens(prompt_chars: usize, max_tokens: Option<u32>) -> u64 {
    (prompt_chars as u64).div_ceil(4) + u64::from(max_tokens.unwrap_or(512))
}

/// `usage.total_tokens` of an OpenAI-style answer, if it has one.
pub(crate) fn used_tokens(body: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Usage {
        total_tokens: u64,
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        usage: Usage,
    }
    if body.len() > 4 * 1024 * 1024 || body.first() != Some(&b'{') {
        return None;
    }
    serde_json::from_slice::<Answer>(body)
        .ok()
        .map(|a| a.usage.total_tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_and_usage() {
        assert_eq!(estimate_chat_tokens(400, Some(100)), 200);
        assert_eq!(estimate_chat_tokens(1, None), 513);
        assert_eq!(
            used_tokens(br#"{"usage":{"prompt_tokens":3,"total_tokens":9}}"#),
            Some(9)
        );
        assert_eq!(used_tokens(b"\x89PNG"), None);
        assert!(KeyLimits::default().is_off());
        let on = KeyLimits {
            adaptive: Some(Adaptive::default()),
            ..KeyLimits::default()
        };
        assert!(!on.is_off());
    }
}
