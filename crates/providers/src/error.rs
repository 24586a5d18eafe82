use std::time::Duration;

use genq_core::{FailureClass, JobError};

/// The kind of a provider failure: what genq's failure class it maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderErrorKind {
    /// 429: retried after `retry_after`, the key cools down.
    RateLimited { retry_after: Option<Duration> },
    /// genq's own limit (shared by every host) left no capacity on any key: nothing
    /// was sent. The job is deferred by `retry_after`, not counted as an attempt.
    NoCapacity { retry_after: Duration },
    /// The provider refused on content policy.
    ContentPolicy,
    /// 401/402/403, quota: the key cools down 24 h.
    Billing,
    /// The request was wrong (bad image, unsupported size).
    BadInput,
    /// 5xx, connection, timeout, malformed response, provider-side task failure.
    Transient,
    /// A structured (JSON-schema) chat reply whose content is not JSON: the call
    /// itself worked, so a job can ask again with the parse error fed back. As a
    /// failure class it is transient (asking again may help).
    MalformedOutput,
}

/// A classified provider failure. `message` is for operators (the provider's own
/// words); it never contains an API key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    pub kind: ProviderErrorKind,
    pub message: String,
}

impl ProviderError {
    pub fn new(kind: ProviderErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(ProviderErrorKind::Transient, message)
    }

    pub fn class(&self) -> FailureClass {
        match self.kind {
            ProviderErrorKind::RateLimited { .. } | ProviderErrorKind::NoCapacity { .. } => {
                FailureClass::RateLimited
            }
            ProviderErrorKind::ContentPolicy => FailureClass::UserViolation,
            ProviderErrorKind::Billing => FailureClass::Billing,
            ProviderErrorKind::BadInput => FailureClass::BadInput,
            ProviderErrorKind::Transient | ProviderErrorKind::MalformedOutput => {
                FailureClass::Transient
            }
        }
    }
}

impl From<ProviderError> for JobError {
    fn from(e: ProviderError) -> Self {
        if let ProviderErrorKind::NoCapacity { retry_after } = e.kind {
            return JobError::deferred(e.message, retry_after);
        }
        let mut job = JobError::new(e.class(), e.message);
        if let ProviderErrorKind::RateLimited { retry_after } = e.kind {
            job.retry_after = retry_after;
        }
        job
    }
}
