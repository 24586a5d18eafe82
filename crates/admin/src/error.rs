//! Every error is JSON with a message that names the problem; bad input is a 4xx.

use axum::{
    Json,
    extract::{
        FromRequest, FromRequestParts, Request,
        rejection::{JsonRejection, QueryRejection},
    },
    http::{StatusCode, request::Parts},
    response::{IntoResponse, Response},
};
use serde::{Serialize, de::DeserializeOwned};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// A failure of Redis or PostgreSQL: the service, not the request.
    pub fn unavailable(message: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("backend unavailable: {message}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}

impl From<genq_redis::QueueError> for ApiError {
    fn from(e: genq_redis::QueueError) -> Self {
        use genq_redis::QueueError as Q;
        match e {
            Q::InvalidJob(_) | Q::Queue(_) | Q::Config(_) => Self::bad_request(e.to_string()),
            Q::NotFound { .. } => Self::not_found(e.to_string()),
            Q::Redis(_) | Q::Protocol(_) => Self::unavailable(e),
        }
    }
}

impl From<genq_runtime::ClientError> for ApiError {
    fn from(e: genq_runtime::ClientError) -> Self {
        match e {
            genq_runtime::ClientError::Queue(q) => q.into(),
            other => Self::bad_request(other.to_string()),
        }
    }
}

impl From<genq_store::StoreError> for ApiError {
    fn from(e: genq_store::StoreError) -> Self {
        use genq_store::StoreError as S;
        match e {
            S::Database(_) | S::Migrate(_) | S::Config(_) => Self::unavailable(e),
            S::UnknownTelegramUser(_) => Self::not_found(e.to_string()),
            S::BadAmount { .. } | S::BadReason { .. } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            S::WouldGoNegative { .. } => Self::conflict(e.to_string()),
            other => Self::bad_request(other.to_string()),
        }
    }
}

/// `Json` whose rejections are JSON errors (bad JSON 400/422, too large 413, wrong type 415).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(r) => Err(json_rejection(r)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    ApiError::new(r.status(), format!("request body: {}", r.body_text()))
}

/// `Query` whose rejections are JSON errors.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Self(v)),
            Err(r) => Err(query_rejection(r)),
        }
    }
}

fn query_rejection(r: QueryRejection) -> ApiError {
    ApiError::bad_request(format!("query string: {}", r.body_text()))
}
