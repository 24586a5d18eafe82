//! Failure classes: what went wrong, and therefore what the job gets.

use std::{fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};

/// The class of a job failure. It decides retry, refund and what the user is told
/// (see PRODUCT.md, "Failure classes and what each gets").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The provider refused on content policy. Never retried.
    UserViolation,
    /// 401/402/403, quota exhausted. Never retried on that key.
    Billing,
    /// 429. Retried, honouring Retry-After.
    RateLimited,
    /// 5xx, connection reset, provider-side task failure, a panic. Retried with backoff.
    Transient,
    /// The job ran past its timeout. Retried like a transient failure.
    Timeout,
    /// Undecodable payload, unsupported or oversized input. Never retried.
    BadInput,
    /// Cancelled by a user or an operator. Never retried.
    Cancelled,
}

impl FailureClass {
    pub const ALL: [FailureClass; 7] = [
        FailureClass::UserViolation,
        FailureClass::Billing,
        FailureClass::RateLimited,
        FailureClass::Transient,
        FailureClass::Timeout,
        FailureClass::BadInput,
        FailureClass::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::UserViolation => "user_violation",
            FailureClass::Billing => "billing",
            FailureClass::RateLimited => "rate_limited",
            FailureClass::Transient => "transient",
            FailureClass::Timeout => "timeout",
            FailureClass::BadInput => "bad_input",
            FailureClass::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name given is not one of the failure classes.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "unknown failure class '{0}' (expected one of user_violation, billing, rate_limited, transient, timeout, bad_input, cancelled)"
)]
pub struct UnknownFailureClass(pub String);

impl FromStr for FailureClass {
    type Err = UnknownFailureClass;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FailureClass::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownFailureClass(s.to_owned()))
    }
}

/// A job's failure: its class, a message for operators, and for rate limiting the
/// delay the provider asked for.
///
/// A *deferred* error ([`JobError::deferred`]) is not a failure: the run found no
/// provider capacity before doing anything paid, so the job is rescheduled after
/// `retry_after` without the run counting as an attempt (no retry policy applies).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class}: {message}")]
pub struct JobError {
    pub class: FailureClass,
    pub message: String,
    pub retry_after: Option<Duration>,
    /// Rescheduled after `retry_after`, not counted as an attempt.
    pub deferred: bool,
    /// A deferral that waits on work done elsewhere (a vendor's task): the job is
    /// *parked* — it holds no worker slot, a webhook may wake it early, and a cancel
    /// while it is parked runs it once so that it can stop that work.
    pub parked: bool,
}

impl JobError {
    pub fn new(class: FailureClass, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
            retry_after: None,
            deferred: false,
            parked: false,
        }
    }

    /// No capacity now (a provider limit shared by every host is reached): run the
    /// job again after `after`, holding no worker slot meanwhile and without counting
    /// this run as an attempt. Class `rate_limited`, for logs and the job's record.
    pub fn deferred(message: impl Into<String>, after: Duration) -> Self {
        Self {
            retry_after: Some(after),
            deferred: true,
            ..Self::new(FailureClass::RateLimited, message)
        }
    }

    /// Waiting on work done elsewhere (a vendor task it submitted and checkpointed):
    /// run the job again after `after` to look at it, holding no worker slot
    /// meanwhile and without counting this run as an attempt. A webhook may wake it
    /// sooner; a cancel while it waits runs it at once (with the cancel requested).
    pub fn parked(message: impl Into<String>, after: Duration) -> Self {
        Self {
            parked: true,
            ..Self::deferred(message, after)
        }
    }

    pub fn user_violation(message: impl Into<String>) -> Self {
        Self::new(FailureClass::UserViolation, message)
    }

    pub fn billing(message: impl Into<String>) -> Self {
        Self::new(FailureClass::Billing, message)
    }

    pub fn rate_limited(message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        Self {
            retry_after,
            ..Self::new(FailureClass::RateLimited, message)
        }
    }

    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(FailureClass::Transient, message)
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(FailureClass::Timeout, message)
    }

    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(FailureClass::BadInput, message)
    }

    pub fn cancelled(message: impl Into<String>) -> Self {
        Self::new(FailureClass::Cancelled, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_round_trip() {
        for class in FailureClass::ALL {
            assert_eq!(class.as_str().parse::<FailureClass>().unwrap(), class);
        }
        let err = "nope".parse::<FailureClass>().unwrap_err();
        assert!(err.to_string().contains("unknown failure class 'nope'"));
    }

    #[test]
    fn error_display_names_class_and_message() {
        let e = JobError::rate_limited("429 from provider", Some(Duration::from_secs(3)));
        assert_eq!(e.to_string(), "rate_limited: 429 from provider");
        assert_eq!(e.retry_after, Some(Duration::from_secs(3)));
    }
}
