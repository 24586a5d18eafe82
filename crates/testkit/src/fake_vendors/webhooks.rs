//! Completion webhooks as the vendors send them, signed by their schemes (written
//! from the vendors' documents, independently of genq's checks):
//!
//! - fal: `POST <fal_webhook>` with `{request_id, gateway_request_id, status: "OK",
//!   payload}`, ED25519 over `{request id}\n{user id}\n{timestamp}\n{hex
//!   sha256(body)}` in `X-Fal-Webhook-*`; the public key is served as a JWKS at
//!   `/.well-known/jwks.json`;
//! - Replicate: `POST <webhook>` with the prediction, Standard Webhooks headers
//!   (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC>`);
//! - KIE: `POST <callBackUrl>` with `{code, msg, data: {task_id, state, …}}`,
//!   `X-Webhook-Timestamp` and `X-Webhook-Signature` (base64 HMAC-SHA256 of
//!   `{task_id}.{timestamp}` keyed by the webhook HMAC key).
//!
//! A delivery answered with anything but 2xx is retried (3 tries in all), as the
//! vendors do; every try's HTTP status is recorded (0: no answer).

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{FakeVendorKind, Phase, VShared};
use crate::fake_provider::lock;

/// The `whsec_…` secret the fake Replicate signs webhooks with.
pub const REPLICATE_WEBHOOK_SECRET: &str = "whsec_ZmFrZS1yZXBsaWNhdGUtc2lnbmluZy1zZWNyZXQ=";
/// The webhook HMAC key the fake KIE signs callbacks with.
pub const KIE_WEBHOOK_KEY: &str = "fake-kie-webhook-hmac-key";
/// The seed of the fake fal's ED25519 key.
const FAL_SEED: [u8; 32] = [42; 32];

/// What the fake does when a task with a callback URL ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookMode {
    /// Sends it, signed as the vendor does.
    Send,
    /// Sends it signed with a key that is not the vendor's (a forgery).
    Forge,
    /// Sends nothing (the webhook never comes: genq must poll).
    Off,
    /// Sends it, then the very same signed request again (a replay).
    Replay,
}

/// fal's JWKS, with the fake's public key.
pub(crate) fn fal_jwks() -> Value {
    let public = SigningKey::from_bytes(&FAL_SEED).verifying_key();
    json!({"keys": [{
        "kty": "OKP",
        "crv": "Ed25519",
        "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public.to_bytes()),
        "kid": "fake-fal-1",
    }]})
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// A signed request: body and headers.
struct Signed {
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
}

fn sign(shared: &VShared, id: &str, forge: bool) -> Signed {
    let ts = now_secs();
    let b64 = base64::engine::general_purpose::STANDARD;
    match shared.kind {
        FakeVendorKind::Fal => {
            let body = serde_json::to_vec(&json!({
                "request_id": id,
                "gateway_request_id": id,
                "status": "OK",
                "payload": {"video": {"url": shared.file_url(id)}},
            }))
            .unwrap_or_default();
            let hash: String = Sha256::digest(&body)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let message = format!("{id}\nfake-user\n{ts}\n{hash}");
            let key = SigningKey::from_bytes(if forge { &[7; 32] } else { &FAL_SEED });
            let signature: String = key
                .sign(message.as_bytes())
                .to_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            Signed {
                body,
                headers: vec![
                    ("x-fal-webhook-request-id", id.to_owned()),
                    ("x-fal-webhook-user-id", "fake-user".to_owned()),
                    ("x-fal-webhook-timestamp", ts.to_string()),
                    ("x-fal-webhook-signature", signature),
                ],
            }
        }
        FakeVendorKind::Replicate => {
            let body =
                serde_json::to_vec(&super::replicate::prediction(shared, id)).unwrap_or_default();
            let msg_id = format!("msg_{id}");
            let secret = if forge {
                "whsec_bm90LXRoZS1zZWNyZXQ="
            } else {
                REPLICATE_WEBHOOK_SECRET
            };
            let key = b64
                .decode(secret.trim_start_matches("whsec_"))
                .unwrap_or_default();
            let mut content = format!("{msg_id}.{ts}.").into_bytes();
            content.extend_from_slice(&body);
            let signature = format!("v1,{}", b64.encode(hmac_sha256(&key, &content)));
            Signed {
                body,
                headers: vec![
                    ("webhook-id", msg_id),
                    ("webhook-timestamp", ts.to_string()),
                    ("webhook-signature", signature),
                ],
            }
        }
        _ => {
            let state = match shared.phase(id) {
                Some(Phase::Done) => "success",
                _ => "fail",
            };
            let body = serde_json::to_vec(&json!({
                "code": 200,
                "msg": "success",
                "data": {"task_id": id, "taskId": id, "callbackType": "task_completed", "state": state},
            }))
            .unwrap_or_default();
            let key = if forge {
                "not-the-key"
            } else {
                KIE_WEBHOOK_KEY
            };
            let signature =
                b64.encode(hmac_sha256(key.as_bytes(), format!("{id}.{ts}").as_bytes()));
            Signed {
                body,
                headers: vec![
                    ("x-webhook-timestamp", ts.to_string()),
                    ("x-webhook-signature", signature),
                ],
            }
        }
    }
}

impl VShared {
    /// Sends the task's completion webhook to `url` once it ends (per the mode set
    /// now), retrying a non-2xx answer.
    pub(crate) fn schedule_webhook(self: &Arc<Self>, id: String, url: String) {
        let shared = self.clone();
        tokio::spawn(async move {
            loop {
                match shared.phase(&id) {
                    None => return,
                    Some(Phase::Queued | Phase::Running(_)) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Some(_) => break,
                }
            }
            let mode = *lock(&shared.webhook_mode);
            if mode == WebhookMode::Off {
                return;
            }
            let http = reqwest::Client::new();
            if mode == WebhookMode::Replay {
                let signed = sign(&shared, &id, false);
                for _ in 0..2 {
                    let status = deliver(&http, &url, &signed).await;
                    lock(&shared.webhook_deliveries).push(status);
                }
                return;
            }
            for _ in 0..3 {
                let signed = sign(&shared, &id, mode == WebhookMode::Forge);
                let status = deliver(&http, &url, &signed).await;
                lock(&shared.webhook_deliveries).push(status);
                // a forgery is sent once; a refused real one is retried
                if (200..300).contains(&status) || mode == WebhookMode::Forge {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
    }
}

/// Posts a signed webhook; genq's HTTP status (0: no answer).
async fn deliver(http: &reqwest::Client, url: &str, signed: &Signed) -> u16 {
    let mut request = http
        .post(url)
        .header("content-type", "application/json")
        .timeout(Duration::from_secs(15));
    for (k, v) in &signed.headers {
        request = request.header(*k, v);
    }
    match request.body(signed.body.clone()).send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}
