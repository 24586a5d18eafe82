//! Vendor adapters behind [`TaskClient`](crate::TaskClient): each speaks one
//! vendor's own documented HTTP API (docs/PROVIDER-PROTOCOLS.md, section 3) and maps
//! its states and errors onto genq's ([`TaskStatus`], [`ProviderErrorKind`]).
//!
//! The adapters take genq's task input (`docs/PROVIDER-PROTOCOLS.md` section 2: a
//! prompt, base64 images, seconds, sizes) and build the vendor's request from it;
//! `params` from the provider's configuration are merged into the model input.

pub(crate) mod comfyui;
pub(crate) mod fal;
pub(crate) mod kie;
pub(crate) mod replicate;
pub(crate) mod runway;

use std::time::Duration;

use reqwest::{StatusCode, header::HeaderMap};
use serde_json::{Map, Value};

use serde::de::DeserializeOwned;

use crate::{
    call::{Auth, Caller, decode},
    error::{ProviderError, ProviderErrorKind},
    keys::ApiKey,
    task_types::{TaskKind, TaskStatus, Vendor, VendorOptions},
};

/// What an adapter works with.
pub(crate) struct Ctx<'a> {
    pub caller: &'a Caller,
    pub options: &'a VendorOptions,
}

impl Ctx<'_> {
    /// POSTs `body` as JSON with the next key under the provider's limits (a paid
    /// call: submit, upload); the key and the answer decoded.
    pub(crate) async fn post_json<T: DeserializeOwned>(
        &self,
        operation: &str,
        url: &str,
        body: &Value,
    ) -> Result<(ApiKey, T), ProviderError> {
        let (key, raw) = self
            .caller
            .send(operation, |http, _| http.post(url).json(body))
            .await?;
        Ok((key, decode(&self.caller.name, operation, &raw)?))
    }

    /// GETs `url` with `key` (the key that submitted the task); the answer decoded.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        operation: &str,
        key: &ApiKey,
        url: &str,
    ) -> Result<T, ProviderError> {
        let raw = self
            .caller
            .send_with(operation, key, |http, _| http.get(url))
            .await?;
        decode(&self.caller.name, operation, &raw)
    }
}

/// A finished task: its result file, or (no URL in its output) a transient failure
/// saying `missing`.
pub(crate) fn delivered(url: Option<String>, missing: impl FnOnce() -> String) -> TaskStatus {
    match url {
        Some(url) => TaskStatus::Succeeded {
            content_type: content_type_of(&url),
            url,
        },
        None => TaskStatus::Failed(ProviderError::transient(missing())),
    }
}

/// A task the vendor reports in a way genq does not expect (an unknown state, or
/// cancelled by someone else): a transient failure.
pub(crate) fn broken(message: String) -> TaskStatus {
    TaskStatus::Failed(ProviderError::transient(message))
}

/// A cancel's answer: a task that already ended or is gone (the vendor's 4xx, bad
/// input) leaves nothing to stop.
pub(crate) fn cancel_answer(answer: Result<Vec<u8>, ProviderError>) -> Result<(), ProviderError> {
    match answer {
        Ok(_) => Ok(()),
        Err(e) if e.kind == ProviderErrorKind::BadInput => Ok(()),
        Err(e) => Err(e),
    }
}

/// Sets the caller's auth scheme and error reading for `options.vendor`.
pub(crate) fn configure(caller: &mut Caller, options: &VendorOptions) -> Result<(), ProviderError> {
    match options.vendor {
        Vendor::GenqTask => {}
        Vendor::Fal => {
            caller.auth = Auth::Key;
            caller.classify = fal::classify;
        }
        Vendor::Replicate => caller.classify = replicate::classify,
        Vendor::Runway => caller.classify = runway::classify,
        Vendor::Kie => caller.classify = kie::classify,
        Vendor::ComfyUi => {
            caller.classify = comfyui::classify;
            if options.workflow.as_ref().is_none_or(|w| !w.is_object()) {
                return Err(ProviderError::new(
                    ProviderErrorKind::BadInput,
                    format!(
                        "provider '{}': a comfyui provider needs a workflow (API format, a JSON object)",
                        caller.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `Retry-After` in seconds, if the answer carries one.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// A body's text for a message (at most 300 bytes).
pub(crate) fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned()
}

/// The kind an HTTP failure status has when the body says nothing more specific:
/// 429 rate limited (with `Retry-After`), 401/402/403 billing, 400/404/409/413/415/422
/// bad input, anything else (5xx) transient.
pub(crate) fn kind_of_status(status: StatusCode, headers: &HeaderMap) -> ProviderErrorKind {
    match status.as_u16() {
        429 => ProviderErrorKind::RateLimited {
            retry_after: retry_after(headers),
        },
        401..=403 => ProviderErrorKind::Billing,
        400 | 404 | 409 | 413 | 415 | 422 => ProviderErrorKind::BadInput,
        _ => ProviderErrorKind::Transient,
    }
}

/// Whether a vendor's words describe a content-policy refusal.
pub(crate) fn sounds_like_policy(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "content_policy",
        "content policy",
        "nsfw",
        "safety",
        "moderation",
        "flagged as sensitive",
        "violat",
    ]
    .iter()
    .any(|w| t.contains(w))
}

/// Whether a vendor's words describe exhausted credits or balance.
pub(crate) fn sounds_like_billing(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "insufficient credit",
        "enough credits",
        "credits insufficient",
        "exhausted balance",
        "insufficient balance",
        "billing",
        "payment required",
    ]
    .iter()
    .any(|w| t.contains(w))
}

/// A MIME type for base64 image data, by its first bytes.
fn mime_of_base64(b64: &str) -> &'static str {
    if b64.starts_with("/9j/") {
        "image/jpeg"
    } else if b64.starts_with("UklGR") {
        "image/webp"
    } else {
        "image/png"
    }
}

/// `data:<mime>;base64,<data>`.
pub(crate) fn data_uri(b64: &str) -> String {
    format!("data:{};base64,{b64}", mime_of_base64(b64))
}

/// A string field of genq's task input.
pub(crate) fn field<'a>(input: &'a Value, name: &str) -> Option<&'a str> {
    input
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// A number field of genq's task input.
pub(crate) fn number(input: &Value, name: &str) -> Option<u64> {
    input.get(name).and_then(Value::as_u64)
}

/// The model input most vendors' image and video models take, built from genq's
/// task input (field names as fal's, Replicate's and KIE's models commonly use),
/// with the provider's `params` merged in.
pub(crate) fn common_input(
    options: &VendorOptions,
    kind: TaskKind,
    input: &Value,
    image: impl Fn(&str) -> String,
) -> Map<String, Value> {
    let mut out = Map::new();
    match kind {
        TaskKind::Video => {
            if let Some(p) = field(input, "prompt") {
                out.insert("prompt".into(), p.into());
            }
            if let Some(img) = field(input, "image_b64") {
                out.insert("image_url".into(), image(img).into());
            }
            if let Some(s) = number(input, "seconds") {
                out.insert("duration".into(), s.into());
            }
        }
        TaskKind::Image => {
            if let Some(p) = field(input, "prompt") {
                out.insert("prompt".into(), p.into());
            }
            if let (Some(w), Some(h)) = (number(input, "width"), number(input, "height")) {
                out.insert("width".into(), w.into());
                out.insert("height".into(), h.into());
            }
        }
        TaskKind::Upscale => {
            if let Some(img) = field(input, "image_b64") {
                out.insert("image_url".into(), image(img).into());
            }
            if let Some(f) = number(input, "factor") {
                out.insert("scale".into(), f.into());
            }
        }
        TaskKind::FaceSwap => {
            if let Some(img) = field(input, "target_b64") {
                out.insert("base_image_url".into(), image(img).into());
            }
            if let Some(img) = field(input, "source_b64") {
                out.insert("swap_image_url".into(), image(img).into());
            }
        }
    }
    merge(&mut out, &options.params);
    out
}

/// Puts every entry of `params` into `out` (the operator's settings win).
pub(crate) fn merge(out: &mut Map<String, Value>, params: &Map<String, Value>) {
    for (k, v) in params {
        out.insert(k.clone(), v.clone());
    }
}

/// The first media URL in a vendor's output: a string URL, the `url` of an
/// object, or the first of an array — searched depth first, `video`/`image`/
/// `images` keys before others.
pub(crate) fn first_url(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if s.starts_with("http://") || s.starts_with("https://") => {
            Some(s.clone())
        }
        Value::Array(items) => items.iter().find_map(first_url),
        Value::Object(map) => {
            for key in [
                "url", "video", "image", "images", "videos", "output", "outputs",
            ] {
                if let Some(found) = map.get(key).and_then(first_url) {
                    return Some(found);
                }
            }
            map.values().find_map(first_url)
        }
        _ => None,
    }
}

/// A content type guessed from a result URL's extension.
pub(crate) fn content_type_of(url: &str) -> Option<String> {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    let ext = path.rsplit('.').next()?;
    let ct = match ext {
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        _ => return None,
    };
    Some(ct.to_owned())
}

/// Percent-encodes a URL path segment or query value (RFC 3986 unreserved kept).
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A task id from the vendor must be a safe path segment.
pub(crate) fn checked_id(vendor: &str, id: &str) -> Result<String, ProviderError> {
    if id.is_empty()
        || id.len() > 200
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        return Err(ProviderError::transient(format!(
            "{vendor}: the task id {id:?} is not a valid id"
        )));
    }
    Ok(id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn first_url_prefers_media_fields() {
        let fal = json!({"video": {"url": "https://v3.fal.media/a.mp4", "content_type": "video/mp4"}, "seed": 1});
        assert_eq!(
            first_url(&fal).as_deref(),
            Some("https://v3.fal.media/a.mp4")
        );
        let replicate = json!(["https://replicate.delivery/x.png"]);
        assert_eq!(
            first_url(&replicate).as_deref(),
            Some("https://replicate.delivery/x.png")
        );
        assert_eq!(first_url(&json!({"seed": 3})), None);
        assert_eq!(
            content_type_of("https://x/y.MP4?sig=1").as_deref(),
            Some("video/mp4")
        );
    }

    #[test]
    fn words_and_ids() {
        assert!(sounds_like_policy("NSFW content detected"));
        assert!(sounds_like_billing(
            "User is locked. Reason: Exhausted balance."
        ));
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
        assert!(checked_id("fal", "../etc").is_err());
        assert!(checked_id("fal", "80e732af-660e-45cd").is_ok());
    }
}
