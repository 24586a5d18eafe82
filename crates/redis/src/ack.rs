//! [`AckLayer`]: the backend's middleware. It records each run's outcome in Redis:
//! success with its result; a failure classified ([`genq_core::FailureClass`]) and
//! decided by the job type's [`RetryPolicy`]: rescheduled at a due time, or
//! dead-lettered; a cancellation as cancelled.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use apalis_core::{error::BoxDynError, task::Task};
use futures::{FutureExt, future::BoxFuture};
use genq_core::{FailureClass, JobError, RetryDecision, RetryPolicy};
use serde::Serialize;
use tower_layer::Layer;
use tower_service::Service;
use tracing::{error, warn};

use crate::{consumer::QueueConsumer, queue::Outcome, raw_job::RawJob};

/// Finds a job type's retry policy by name.
pub type PolicySource = Arc<dyn Fn(&str) -> RetryPolicy + Send + Sync>;

#[derive(Clone)]
pub struct AckLayer {
    consumer: QueueConsumer,
    policies: PolicySource,
}

impl AckLayer {
    pub fn new(consumer: QueueConsumer, policies: PolicySource) -> Self {
        Self { consumer, policies }
    }
}

impl<S> Layer<S> for AckLayer {
    type Service = AckService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AckService {
            inner,
            consumer: self.consumer.clone(),
            policies: self.policies.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AckService<S> {
    inner: S,
    consumer: QueueConsumer,
    policies: PolicySource,
}

/// Turns whatever a handler failed with into a classified error: a [`JobError`]
/// keeps its class; anything else (a panic caught by apalis, a plain error) is transient.
pub fn classify(e: &BoxDynError) -> JobError {
    match e.downcast_ref::<JobError>() {
        Some(job_error) => job_error.clone(),
        None => JobError::transient(e.to_string()),
    }
}

/// What to record for a failed run.
pub fn outcome_for_error(error: JobError, attempt: u32, policy: &RetryPolicy) -> Outcome {
    if error.class == FailureClass::Cancelled {
        return Outcome::Cancelled(error);
    }
    if error.deferred {
        let after = error
            .retry_after
            .unwrap_or(std::time::Duration::from_secs(1));
        return Outcome::Deferred { after, error };
    }
    match policy.decide(&error, attempt) {
        RetryDecision::RetryIn(delay) => Outcome::Retry {
            after: delay,
            error,
        },
        RetryDecision::GiveUp => Outcome::Failed(error),
    }
}

/// Hands a job back if its run is dropped before an outcome was recorded (the
/// worker stopped mid-run), so that it does not wait for its lease to expire.
struct InFlightGuard {
    consumer: QueueConsumer,
    id: Option<String>,
}

impl InFlightGuard {
    fn disarm(&mut self) {
        self.id = None;
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        let consumer = self.consumer.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if let Err(e) = consumer.hand_back(std::slice::from_ref(&id)).await {
                        warn!(job_id = %id, error = %e, "could not hand back an interrupted job; its lease will expire");
                    }
                });
            }
            Err(_) => consumer.forget(&id),
        }
    }
}

impl<S> Service<Task<RawJob>> for AckService<S>
where
    S: Service<Task<RawJob>>,
    S::Future: Send + 'static,
    S::Response: Serialize + Send + 'static,
    S::Error: Into<BoxDynError>,
{
    type Response = S::Response;
    type Error = BoxDynError;
    type Future = BoxFuture<'static, Result<S::Response, BoxDynError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, task: Task<RawJob>) -> Self::Future {
        let id = task.args.id.clone();
        let job_type = task.args.job_type.clone();
        let attempt = task.args.attempt;
        let consumer = self.consumer.clone();
        let policies = self.policies.clone();
        let mut guard = InFlightGuard {
            consumer: consumer.clone(),
            id: Some(id.clone()),
        };
        let fut = self.inner.call(task);
        async move {
            let res = fut.await.map_err(Into::into);
            let outcome = match &res {
                Ok(value) => match serde_json::to_string(value) {
                    Ok(json) => Outcome::Succeeded(json),
                    Err(e) => Outcome::Failed(JobError::transient(format!("result could not be encoded: {e}"))),
                },
                Err(e) => outcome_for_error(classify(e), attempt, &policies(&job_type)),
            };
            match consumer.record(&id, attempt, &outcome).await {
                Ok(true) => {}
                Ok(false) => warn!(job_id = %id, attempt, "outcome dropped: this run no longer held the job (lease expired or cancelled)"),
                Err(e) => error!(job_id = %id, attempt, error = %e, "could not record outcome; the job runs again when its lease expires"),
            }
            guard.disarm();
            res
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn classification_and_decisions() {
        let plain: BoxDynError = "boom".into();
        assert_eq!(classify(&plain).class, FailureClass::Transient);
        let typed: BoxDynError = Box::new(JobError::bad_input("not a png"));
        assert_eq!(classify(&typed).class, FailureClass::BadInput);

        let p = RetryPolicy::default();
        assert!(matches!(
            outcome_for_error(JobError::bad_input("x"), 1, &p),
            Outcome::Failed(_)
        ));
        assert!(matches!(
            outcome_for_error(JobError::cancelled("x"), 1, &p),
            Outcome::Cancelled(_)
        ));
        match outcome_for_error(
            JobError::rate_limited("429", Some(Duration::from_secs(5))),
            1,
            &p,
        ) {
            Outcome::Retry { after, .. } => {
                assert!(after >= Duration::from_secs(5) && after < Duration::from_secs(6))
            }
            other => panic!("expected a retry, got {other:?}"),
        }
        // no capacity: deferred whatever the attempt, never given up
        match outcome_for_error(
            JobError::deferred("no slot", Duration::from_millis(700)),
            99,
            &RetryPolicy::never(),
        ) {
            Outcome::Deferred { after, .. } => assert_eq!(after, Duration::from_millis(700)),
            other => panic!("expected a deferral, got {other:?}"),
        }
    }
}
