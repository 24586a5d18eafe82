//! Error responses: the OpenAI-style error body, the failures a test can script,
//! and the error codes a failed queue task reports.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

/// A way a call to the fake provider fails, scripted with
/// [`FakeProvider::fail_next`](super::FakeProvider::fail_next) or
/// [`FakeProvider::fail_key`](super::FakeProvider::fail_key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeFailure {
    /// 429, code `rate_limit_exceeded`, with `Retry-After: <secs>` when given.
    RateLimited { retry_after_secs: Option<u64> },
    /// 400, code `content_policy_violation`.
    ContentPolicy,
    /// 400, code `invalid_request`.
    BadRequest,
    /// 402, code `insufficient_quota`.
    Billing,
    /// 429 with code `insufficient_quota` (how OpenAI answers an exhausted quota):
    /// billing, not a rate limit.
    QuotaExhausted,
    /// 401, code `invalid_api_key`.
    Unauthorized,
    /// 500, code `server_error`.
    ServerError,
    /// 200 with a body that is not JSON.
    MalformedJson,
}

/// The body [`FakeFailure::MalformedJson`] answers with.
pub const MALFORMED_BODY: &str = "{\"choices\": [ this is not JSON";

impl FakeFailure {
    /// The HTTP response this failure produces.
    pub(crate) fn response(&self) -> Response {
        match self {
            Self::RateLimited { retry_after_secs } => {
                let mut resp = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "requests",
                    "rate_limit_exceeded",
                    "Rate limit reached (scripted by the fake provider)",
                )
                .into_response();
                if let Some(secs) = retry_after_secs {
                    resp.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(*secs));
                }
                resp
            }
            Self::ContentPolicy => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "content_policy_violation",
                "Your request was rejected by the safety system (scripted by the fake provider)",
            )
            .into_response(),
            Self::BadRequest => {
                ApiError::bad_request("Invalid request (scripted by the fake provider)")
                    .into_response()
            }
            Self::Billing => ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "insufficient_quota",
                "insufficient_quota",
                "You exceeded your current quota (scripted by the fake provider)",
            )
            .into_response(),
            Self::QuotaExhausted => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "insufficient_quota",
                "insufficient_quota",
                "You exceeded your current quota, please check your plan and billing details (scripted by the fake provider)",
            )
            .into_response(),
            Self::Unauthorized => {
                ApiError::unauthorized("Incorrect API key provided (scripted by the fake provider)")
                    .into_response()
            }
            Self::ServerError => ApiError::internal(
                "The server had an error processing your request (scripted by the fake provider)",
            )
            .into_response(),
            Self::MalformedJson => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                MALFORMED_BODY,
            )
                .into_response(),
        }
    }
}

/// The `error.code` of a failed queue task, scripted with
/// [`FakeProvider::fail_next_task`](super::FakeProvider::fail_next_task).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskErrorCode {
    /// `content_policy` (genq: user_violation).
    ContentPolicy,
    /// `internal` (genq: transient).
    Internal,
    /// `bad_input` (genq: bad_input).
    BadInput,
}

impl TaskErrorCode {
    /// The code as it appears in a task's `error.code`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ContentPolicy => "content_policy",
            Self::Internal => "internal",
            Self::BadInput => "bad_input",
        }
    }
}

/// An error answered as `{"error": {"message", "type", "code"}}` with a status.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    status: StatusCode,
    kind: &'static str,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            code,
            message: message.into(),
        }
    }

    /// 400, code `invalid_request`: the request itself is wrong.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_request",
            message,
        )
    }

    /// 401, code `invalid_api_key`.
    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            message,
        )
    }

    /// 404, code `not_found`.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "not_found",
            message,
        )
    }

    /// 500, code `server_error`.
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "server_error",
            message,
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": { "message": self.message, "type": self.kind, "code": self.code }
        });
        (self.status, Json(body)).into_response()
    }
}
