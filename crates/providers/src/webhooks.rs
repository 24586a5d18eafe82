//! Completion webhooks of the vendors that send them (fal, Replicate, KIE; Runway
//! and ComfyUI have none, genq's own task protocol neither), checked per the
//! vendor's signing scheme (docs/PROVIDER-PROTOCOLS.md, section 3.6):
//!
//! - **fal**: ED25519 over `{request id}\n{user id}\n{timestamp}\n{hex sha256(body)}`
//!   (`X-Fal-Webhook-*` headers), with the public keys of fal's JWKS;
//! - **Replicate**: Standard Webhooks, HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}`
//!   keyed by the base64 after `whsec_`, `webhook-signature: v1,<base64> …`;
//! - **KIE**: HMAC-SHA256 over `{taskId}.{timestamp}` keyed by the account's
//!   webhook HMAC key, `X-Webhook-Signature: <base64>`, `X-Webhook-Timestamp`.
//!
//! A verified webhook only *wakes* the job parked on that task: the job then reads
//! the task from the vendor with its key, as a poll would. Nothing in a webhook's
//! body is trusted for the result (KIE does not even sign its body), so a replayed
//! or reordered webhook can at worst cause one extra poll.
//!
//! Which job waits on a task is recorded when the task is submitted
//! ([`remember_task`]) under `<prefix>:provider:{<name>}:task:<task id>`.

use std::{
    sync::Mutex,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use base64::Engine;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use hmac::{Hmac, KeyInit, Mac};
use redis::AsyncCommands;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use crate::task_types::WebhookOptions;
use crate::{error::ProviderError, keys::KeyPool, task_types::Vendor};

/// fal's public webhook keys.
pub const FAL_JWKS_URL: &str = "https://rest.alpha.fal.ai/.well-known/jwks.json";

/// How far a webhook's timestamp may be from this host's clock.
pub const TIMESTAMP_TOLERANCE: Duration = Duration::from_secs(300);

/// How long the task → job record lives (longer than any task is waited on).
const TASK_RECORD_TTL: Duration = Duration::from_secs(3 * 24 * 3600);

/// Why a webhook was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("provider '{0}' takes no webhooks (no webhook_url configured, or its vendor has none)")]
    NotConfigured(String),
    #[error("the webhook lacks the header {0}")]
    MissingHeader(&'static str),
    #[error("the webhook's signature does not verify")]
    BadSignature,
    #[error("the webhook's timestamp {0} is more than 5 minutes from now")]
    Stale(String),
    #[error("the webhook's body is not what the vendor sends: {0}")]
    Malformed(String),
    #[error("the vendor's webhook keys could not be fetched: {0}")]
    Keys(String),
}

/// A webhook whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The vendor task it is about.
    pub task_id: String,
    /// Names this signed request (a hash of its signature): a replay has the same.
    pub delivery: String,
}

/// Checks one provider's webhooks.
pub struct WebhookVerifier {
    provider: String,
    vendor: Vendor,
    options: WebhookOptions,
    http: reqwest::Client,
    fal_keys: Mutex<Option<(Instant, Vec<VerifyingKey>)>>,
}

impl std::fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookVerifier")
            .field("provider", &self.provider)
            .field("vendor", &self.vendor)
            .finish()
    }
}

/// Whether `vendor` sends completion webhooks genq can check.
pub fn vendor_has_webhooks(vendor: Vendor) -> bool {
    matches!(vendor, Vendor::Fal | Vendor::Replicate | Vendor::Kie)
}

impl WebhookVerifier {
    pub fn new(
        provider: &str,
        vendor: Vendor,
        options: WebhookOptions,
    ) -> Result<Self, ProviderError> {
        Ok(Self {
            provider: provider.to_owned(),
            vendor,
            options,
            http: crate::http_client(Duration::from_secs(10))?,
            fal_keys: Mutex::new(None),
        })
    }

    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// Checks a webhook; the vendor task it is about, and the delivery (for
    /// refusing a replay of the same signed request).
    pub async fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<Verified, WebhookError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let (task_id, signature_header) = match self.vendor {
            Vendor::Fal => (
                self.verify_fal(headers, body, now).await?,
                "x-fal-webhook-signature",
            ),
            Vendor::Replicate => (
                verify_replicate(self.secret()?, headers, body, now)?,
                "webhook-signature",
            ),
            Vendor::Kie => (
                verify_kie(self.secret()?, headers, body, now)?,
                "x-webhook-signature",
            ),
            _ => return Err(WebhookError::NotConfigured(self.provider.clone())),
        };
        let delivery = hex(&Sha256::digest(
            header(headers, signature_header)?.as_bytes(),
        ));
        Ok(Verified { task_id, delivery })
    }

    fn secret(&self) -> Result<&str, WebhookError> {
        self.options
            .secret
            .as_deref()
            .ok_or_else(|| WebhookError::NotConfigured(self.provider.clone()))
    }

    async fn verify_fal(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: u64,
    ) -> Result<String, WebhookError> {
        let signed = fal_signed(headers, body, now)?;
        let keys = self.fal_keys(false).await?;
        if signed.verify(&keys) {
            return Ok(signed.request_id);
        }
        // fal may have rotated its keys: fetch them again once
        let keys = self.fal_keys(true).await?;
        if signed.verify(&keys) {
            Ok(signed.request_id)
        } else {
            Err(WebhookError::BadSignature)
        }
    }

    /// fal's keys, cached for a day (`refresh`: fetched again unless fetched in
    /// the last minute).
    async fn fal_keys(&self, refresh: bool) -> Result<Vec<VerifyingKey>, WebhookError> {
        {
            let cached = self.fal_keys.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, keys)) = cached.as_ref() {
                let age = at.elapsed();
                let fresh = if refresh {
                    age < Duration::from_secs(60)
                } else {
                    age < Duration::from_secs(24 * 3600)
                };
                if fresh {
                    return Ok(keys.clone());
                }
            }
        }
        let url = self.options.jwks_url.as_deref().unwrap_or(FAL_JWKS_URL);
        let answer = self
            .http
            .get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| WebhookError::Keys(format!("{url}: {e}")))?;
        let jwks: Jwks = answer
            .json()
            .await
            .map_err(|e| WebhookError::Keys(format!("{url}: {e}")))?;
        let keys = jwks.ed25519_keys();
        if keys.is_empty() {
            return Err(WebhookError::Keys(format!("{url} holds no Ed25519 key")));
        }
        *self.fal_keys.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), keys.clone()));
        Ok(keys)
    }
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    #[serde(default)]
    kty: String,
    #[serde(default)]
    crv: String,
    #[serde(default)]
    x: String,
}

impl Jwks {
    fn ed25519_keys(&self) -> Vec<VerifyingKey> {
        self.keys
            .iter()
            .filter(|k| k.kty == "OKP" && k.crv == "Ed25519")
            .filter_map(|k| {
                let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(k.x.trim_end_matches('='))
                    .ok()?;
                VerifyingKey::from_bytes(&raw.try_into().ok()?).ok()
            })
            .collect()
    }
}

/// A fal webhook's signed message and signature.
struct FalSigned {
    request_id: String,
    message: Vec<u8>,
    signature: Signature,
}

impl FalSigned {
    fn verify(&self, keys: &[VerifyingKey]) -> bool {
        keys.iter()
            .any(|k| k.verify(&self.message, &self.signature).is_ok())
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, WebhookError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(WebhookError::MissingHeader(name))
}

fn check_timestamp(text: &str, now: u64) -> Result<(), WebhookError> {
    let at: u64 = text
        .parse()
        .map_err(|_| WebhookError::Stale(text.to_owned()))?;
    if at.abs_diff(now) > TIMESTAMP_TOLERANCE.as_secs() {
        return Err(WebhookError::Stale(text.to_owned()));
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// The message fal signs, and the signature the headers carry.
fn fal_signed(headers: &HeaderMap, body: &[u8], now: u64) -> Result<FalSigned, WebhookError> {
    let request_id = header(headers, "x-fal-webhook-request-id")?;
    let user_id = header(headers, "x-fal-webhook-user-id")?;
    let timestamp = header(headers, "x-fal-webhook-timestamp")?;
    let signature = header(headers, "x-fal-webhook-signature")?;
    check_timestamp(timestamp, now)?;
    let signature = unhex(signature)
        .and_then(|raw| <[u8; 64]>::try_from(raw).ok())
        .map(|raw| Signature::from_bytes(&raw))
        .ok_or(WebhookError::BadSignature)?;
    let message = format!(
        "{request_id}\n{user_id}\n{timestamp}\n{}",
        hex(&Sha256::digest(body))
    );
    Ok(FalSigned {
        request_id: request_id.to_owned(),
        message: message.into_bytes(),
        signature,
    })
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return Vec::new();
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// Constant-time equality of two byte strings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Replicate's (Standard Webhooks) check; the prediction id from the body.
fn verify_replicate(
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: u64,
) -> Result<String, WebhookError> {
    let id = header(headers, "webhook-id")?;
    let timestamp = header(headers, "webhook-timestamp")?;
    let signatures = header(headers, "webhook-signature")?;
    check_timestamp(timestamp, now)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|_| WebhookError::BadSignature)?;
    let expected = hmac_sha256(
        &key,
        &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
    );
    let verified = signatures.split_whitespace().any(|s| {
        s.strip_prefix("v1,")
            .and_then(|sig| b64.decode(sig).ok())
            .is_some_and(|sig| same(&sig, &expected))
    });
    if !verified {
        return Err(WebhookError::BadSignature);
    }
    let prediction: Value = serde_json::from_slice(body)
        .map_err(|e| WebhookError::Malformed(format!("not JSON: {e}")))?;
    prediction
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| WebhookError::Malformed("no prediction `id`".to_owned()))
}

/// KIE's check (its signature covers the task id and the timestamp, not the body).
fn verify_kie(
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: u64,
) -> Result<String, WebhookError> {
    let timestamp = header(headers, "x-webhook-timestamp")?;
    let signature = header(headers, "x-webhook-signature")?;
    check_timestamp(timestamp, now)?;
    let callback: Value = serde_json::from_slice(body)
        .map_err(|e| WebhookError::Malformed(format!("not JSON: {e}")))?;
    let data = callback.get("data");
    let task_id = [
        data.and_then(|d| d.get("task_id")),
        data.and_then(|d| d.get("taskId")),
        callback.get("taskId"),
    ]
    .into_iter()
    .flatten()
    .find_map(Value::as_str)
    .ok_or_else(|| WebhookError::Malformed("no task id (data.task_id / data.taskId)".to_owned()))?;
    let expected = hmac_sha256(
        secret.as_bytes(),
        &[task_id.as_bytes(), b".", timestamp.as_bytes()],
    );
    let given = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .map_err(|_| WebhookError::BadSignature)?;
    if !same(&given, &expected) {
        return Err(WebhookError::BadSignature);
    }
    Ok(task_id.to_owned())
}

/// The job waiting on a task: its queue and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingJob {
    pub queue: String,
    pub id: String,
}

fn task_key(keys: &KeyPool, task_id: &str) -> String {
    format!("{}:task:{task_id}", keys.base_key())
}

/// Records which job waits on a vendor task, so that its webhook can wake it.
pub async fn remember_task(
    keys: &KeyPool,
    task_id: &str,
    job: &WaitingJob,
) -> Result<(), ProviderError> {
    let mut c = keys.inner().redis.clone();
    let value = format!("{}\n{}", job.queue, job.id);
    let _: () = c
        .set_ex(task_key(keys, task_id), value, TASK_RECORD_TTL.as_secs())
        .await
        .map_err(|e| ProviderError::transient(format!("task record not stored: {e}")))?;
    Ok(())
}

fn delivery_key(keys: &KeyPool, delivery: &str) -> String {
    format!("{}:hook:{delivery}", keys.base_key())
}

/// How long a handled delivery is remembered (past the timestamp tolerance, so a
/// replay is refused until its timestamp is too old anyway).
const DELIVERY_TTL: Duration = Duration::from_secs(600);

/// Records a verified delivery; false when the same signed request was handled
/// before (a replay or a duplicate: nothing to do).
pub async fn first_delivery(keys: &KeyPool, delivery: &str) -> Result<bool, ProviderError> {
    let mut c = keys.inner().redis.clone();
    let set: Option<String> = redis::cmd("SET")
        .arg(delivery_key(keys, delivery))
        .arg(1)
        .arg("NX")
        .arg("EX")
        .arg(DELIVERY_TTL.as_secs())
        .query_async(&mut c)
        .await
        .map_err(|e| ProviderError::transient(format!("webhook delivery not recorded: {e}")))?;
    Ok(set.is_some())
}

/// Forgets a delivery whose handling failed, so that the vendor's retry is handled.
pub async fn forget_delivery(keys: &KeyPool, delivery: &str) {
    let mut c = keys.inner().redis.clone();
    let _: Result<i64, _> = c.del(delivery_key(keys, delivery)).await;
}

/// The job waiting on a vendor task, if one was recorded.
pub async fn waiting_job(
    keys: &KeyPool,
    task_id: &str,
) -> Result<Option<WaitingJob>, ProviderError> {
    let mut c = keys.inner().redis.clone();
    let value: Option<String> = c
        .get(task_key(keys, task_id))
        .await
        .map_err(|e| ProviderError::transient(format!("task record not read: {e}")))?;
    Ok(value.and_then(|v| {
        let (queue, id) = v.split_once('\n')?;
        Some(WaitingJob {
            queue: queue.to_owned(),
            id: id.to_owned(),
        })
    }))
}

/// Signs webhooks the way the vendors do (for the tests here; the fake vendors in
/// genq-testkit sign on their own, from the vendors' documents, so that they check
/// this module rather than mirror it).
#[cfg(test)]
mod signing {
    use super::*;

    /// Replicate's `webhook-signature` value for a body.
    pub fn replicate(secret: &str, id: &str, timestamp: u64, body: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        let key = b64
            .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
            .unwrap_or_default();
        let ts = timestamp.to_string();
        let mac = hmac_sha256(&key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
        format!("v1,{}", b64.encode(mac))
    }

    /// KIE's `X-Webhook-Signature` value.
    pub fn kie(secret: &str, task_id: &str, timestamp: u64) -> String {
        let ts = timestamp.to_string();
        let mac = hmac_sha256(
            secret.as_bytes(),
            &[task_id.as_bytes(), b".", ts.as_bytes()],
        );
        base64::engine::general_purpose::STANDARD.encode(mac)
    }

    /// The message fal signs (the fake signs it with its own ED25519 key).
    pub fn fal_message(request_id: &str, user_id: &str, timestamp: u64, body: &[u8]) -> String {
        format!(
            "{request_id}\n{user_id}\n{timestamp}\n{}",
            hex(&Sha256::digest(body))
        )
    }

    /// Hex, as fal's signature header carries it.
    pub fn to_hex(bytes: &[u8]) -> String {
        hex(bytes)
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn replicate_signatures_verify_and_forgeries_do_not() {
        let body = br#"{"id":"ufawqhfynnddngldkgtslldrkq","status":"succeeded"}"#;
        let now = 1_700_000_000;
        let good = signing::replicate(SECRET, "msg_1", now, body);
        let h = headers(&[
            ("webhook-id", "msg_1".into()),
            ("webhook-timestamp", now.to_string()),
            ("webhook-signature", format!("v1,bm90IGl0 {good}")),
        ]);
        assert_eq!(
            verify_replicate(SECRET, &h, body, now + 10).unwrap(),
            "ufawqhfynnddngldkgtslldrkq"
        );
        // another body under the same signature
        let forged = br#"{"id":"ufawqhfynnddngldkgtslldrkq","status":"failed"}"#;
        assert_eq!(
            verify_replicate(SECRET, &h, forged, now),
            Err(WebhookError::BadSignature)
        );
        // signed with another secret
        let other = signing::replicate("whsec_b3RoZXJzZWNyZXQ=", "msg_1", now, body);
        let h2 = headers(&[
            ("webhook-id", "msg_1".into()),
            ("webhook-timestamp", now.to_string()),
            ("webhook-signature", other),
        ]);
        assert_eq!(
            verify_replicate(SECRET, &h2, body, now),
            Err(WebhookError::BadSignature)
        );
        // replayed an hour later
        assert!(matches!(
            verify_replicate(SECRET, &h, body, now + 3600),
            Err(WebhookError::Stale(_))
        ));
        assert_eq!(
            verify_replicate(SECRET, &HeaderMap::new(), body, now),
            Err(WebhookError::MissingHeader("webhook-id"))
        );
    }

    #[test]
    fn kie_signatures_cover_the_task_id() {
        let now = 1_700_000_000;
        let body = br#"{"code":200,"msg":"success","data":{"task_id":"t-1","state":"success"}}"#;
        let h = headers(&[
            ("x-webhook-timestamp", now.to_string()),
            ("x-webhook-signature", signing::kie("hmac-key", "t-1", now)),
        ]);
        assert_eq!(verify_kie("hmac-key", &h, body, now).unwrap(), "t-1");
        let other = br#"{"code":200,"data":{"task_id":"t-2"}}"#;
        assert_eq!(
            verify_kie("hmac-key", &h, other, now),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_kie("another", &h, body, now),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn fal_signatures_verify_with_the_jwks_key() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let now = 1_700_000_000;
        let body = br#"{"request_id":"r-1","status":"OK","payload":{}}"#;
        let sig = key.sign(signing::fal_message("r-1", "u-1", now, body).as_bytes());
        let h = headers(&[
            ("x-fal-webhook-request-id", "r-1".into()),
            ("x-fal-webhook-user-id", "u-1".into()),
            ("x-fal-webhook-timestamp", now.to_string()),
            ("x-fal-webhook-signature", signing::to_hex(&sig.to_bytes())),
        ]);
        let keys = [key.verifying_key()];
        let signed = fal_signed(&h, body, now).unwrap();
        assert!(signed.verify(&keys));
        assert_eq!(signed.request_id, "r-1");
        let forged = fal_signed(&h, br#"{"request_id":"r-1","status":"ERROR"}"#, now).unwrap();
        assert!(!forged.verify(&keys));
        let stranger = SigningKey::from_bytes(&[9u8; 32]).verifying_key();
        assert!(!signed.verify(&[stranger]));
        let jwks: Jwks = serde_json::from_value(serde_json::json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519",
            "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes()),
        }]}))
        .unwrap();
        assert_eq!(jwks.ed25519_keys(), keys.to_vec());
    }
}
