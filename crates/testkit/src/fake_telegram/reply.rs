//! Answers in the Bot API's envelope: `{"ok":true,"result":…}` or
//! `{"ok":false,"error_code":…,"description":…}` with the same HTTP status.

use std::fmt::Display;

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

/// The description of editing a message to its current text and keyboard, word for
/// word as Telegram says it (teloxide maps it to `ApiError::MessageNotModified`).
pub(crate) const NOT_MODIFIED: &str = "message is not modified: specified new message content and \
     reply markup are exactly the same as a current content and reply markup of the message";

/// A successful answer.
pub(crate) fn ok(result: Value) -> Response {
    Json(json!({ "ok": true, "result": result })).into_response()
}

/// A failed call, answered as Telegram does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TgError {
    status: StatusCode,
    description: String,
    retry_after: Option<u32>,
}

impl TgError {
    fn new(status: StatusCode, description: String) -> Self {
        Self {
            status,
            description,
            retry_after: None,
        }
    }

    /// 400 `Bad Request: <what>`.
    pub(crate) fn bad_request(what: impl Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, format!("Bad Request: {what}"))
    }

    /// 401 `Unauthorized`: a wrong token.
    pub(crate) fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized".to_owned())
    }

    /// 404 with `description`.
    pub(crate) fn not_found(description: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, description.to_owned())
    }

    /// 404 `Not Found: method not found`.
    pub(crate) fn method_not_found() -> Self {
        Self::not_found("Not Found: method not found")
    }

    /// 413 `Request Entity Too Large`: what Telegram's front end answers to an
    /// upload over 50 MB (teloxide: `ApiError::RequestEntityTooLarge`).
    pub(crate) fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request Entity Too Large".to_owned(),
        )
    }

    /// 429 `Too Many Requests: retry after N` with `parameters.retry_after`.
    pub(crate) fn retry_after(secs: u32) -> Self {
        Self {
            retry_after: Some(secs),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("Too Many Requests: retry after {secs}"),
            )
        }
    }
}

impl IntoResponse for TgError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "ok": false,
            "error_code": self.status.as_u16(),
            "description": self.description,
        });
        if let Some(secs) = self.retry_after {
            body["parameters"] = json!({ "retry_after": secs });
        }
        (self.status, Json(body)).into_response()
    }
}
