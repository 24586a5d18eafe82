//! HTTP status + the provider's error body → a classified [`ProviderError`].

use reqwest::{StatusCode, header::HeaderMap};
use serde::Deserialize;

use crate::{
    error::{ProviderError, ProviderErrorKind},
    hints::retry_hint,
};

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// Error codes (or types) that mean the account is out of money or quota: the
/// key is blocked for the long (billing) cool-down, even when the status is 429.
const QUOTA_CODES: [&str; 4] = [
    "insufficient_quota",
    "billing_hard_limit_reached",
    "quota_exceeded",
    "insufficient_credits",
];

/// Classifies a non-success response (see docs/PROVIDER-PROTOCOLS.md's table). A
/// rate-limited answer carries the vendor's wait hint ([`crate::retry_hint`]).
pub fn classify_response(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ProviderError {
    let detail = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .map(|b| b.error);
    let code = detail
        .as_ref()
        .and_then(|d| d.code.clone())
        .unwrap_or_default();
    let kind_name = detail
        .as_ref()
        .and_then(|d| d.kind.clone())
        .unwrap_or_default();
    let said = detail
        .map(|d| d.message)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned());
    let message = format!("provider answered {status}: {said}");
    let quota = QUOTA_CODES.contains(&code.as_str()) || QUOTA_CODES.contains(&kind_name.as_str());
    let kind = match status.as_u16() {
        _ if quota => ProviderErrorKind::Billing,
        429 => ProviderErrorKind::RateLimited {
            retry_after: retry_hint(headers),
        },
        401..=403 => ProviderErrorKind::Billing,
        _ if code == "content_policy_violation" || code == "content_policy" => {
            ProviderErrorKind::ContentPolicy
        }
        400 | 413 | 415 | 422 => ProviderErrorKind::BadInput,
        _ => ProviderErrorKind::Transient,
    };
    ProviderError::new(kind, message)
}

/// A transport failure (connection refused/reset, timeout) is transient.
pub(crate) fn transport_error(operation: &str, e: reqwest::Error) -> ProviderError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    // reqwest's message carries the URL, never the Authorization header
    ProviderError::transient(format!("{operation} {what}: {}", e.without_url()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use std::time::Duration;

    fn classify(status: u16, body: &str, retry: Option<&str>) -> ProviderError {
        let mut headers = HeaderMap::new();
        if let Some(r) = retry {
            headers.insert(
                reqwest::header::RETRY_AFTER,
                HeaderValue::from_str(r).unwrap(),
            );
        }
        classify_response(
            StatusCode::from_u16(status).unwrap(),
            &headers,
            body.as_bytes(),
        )
    }

    #[test]
    fn statuses_and_codes_map_to_classes() {
        let e = classify(
            429,
            r#"{"error":{"message":"slow down","code":"rate_limit_exceeded"}}"#,
            Some("7"),
        );
        assert_eq!(
            e.kind,
            ProviderErrorKind::RateLimited {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert_eq!(
            e.message,
            "provider answered 429 Too Many Requests: slow down"
        );
        let policy = r#"{"error":{"message":"refused","code":"content_policy_violation"}}"#;
        assert_eq!(
            classify(400, policy, None).kind,
            ProviderErrorKind::ContentPolicy
        );
        assert_eq!(classify(402, "{}", None).kind, ProviderErrorKind::Billing);
        assert_eq!(classify(401, "nope", None).kind, ProviderErrorKind::Billing);
        let quota = r#"{"error":{"message":"quota","code":"insufficient_quota"}}"#;
        assert_eq!(classify(400, quota, None).kind, ProviderErrorKind::Billing);
        // quota exhausted answered as a 429 is billing, not a rate limit
        assert_eq!(
            classify(429, quota, Some("2")).kind,
            ProviderErrorKind::Billing
        );
        let typed = r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":null}}"#;
        assert_eq!(classify(429, typed, None).kind, ProviderErrorKind::Billing);
        // a 429 without a hint: no retry_after (the configured fallback applies)
        assert_eq!(
            classify(429, "{}", None).kind,
            ProviderErrorKind::RateLimited { retry_after: None }
        );
        assert_eq!(
            classify(400, r#"{"error":{"message":"bad size"}}"#, None).kind,
            ProviderErrorKind::BadInput
        );
        assert_eq!(
            classify(503, "<html>", None).kind,
            ProviderErrorKind::Transient
        );
        assert!(classify(503, "<html>", None).message.contains("<html>"));
    }
}
