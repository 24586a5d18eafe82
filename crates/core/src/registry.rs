//! The registry of job types a process knows, and which queue each goes to.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use futures::{FutureExt, future::BoxFuture};

use crate::{
    error::JobError,
    job::{Job, JobContext},
    retry::RetryPolicy,
};

/// A registered job type, with its payload and output erased to JSON text.
pub trait ErasedJob: Send + Sync {
    fn name(&self) -> &'static str;
    fn default_queue(&self) -> &'static str;
    fn timeout(&self) -> Duration;
    fn retry_policy(&self) -> RetryPolicy;
    /// Decodes and validates a payload without running it.
    fn check_payload(&self, payload: &str) -> Result<(), JobError>;
    /// Decodes, validates and runs a payload; the output comes back as JSON.
    fn run(
        &self,
        payload: &str,
        ctx: JobContext,
    ) -> BoxFuture<'static, Result<serde_json::Value, JobError>>;
}

struct Erased<J>(Arc<J>);

fn decode<J: Job>(job: &J, payload: &str) -> Result<J::Payload, JobError> {
    let decoded: J::Payload = serde_json::from_str(payload).map_err(|e| {
        JobError::bad_input(format!(
            "payload for job type '{}' is not valid: {e}",
            J::NAME
        ))
    })?;
    job.validate(&decoded)?;
    Ok(decoded)
}

impl<J: Job> ErasedJob for Erased<J> {
    fn name(&self) -> &'static str {
        J::NAME
    }

    fn default_queue(&self) -> &'static str {
        J::DEFAULT_QUEUE
    }

    fn timeout(&self) -> Duration {
        self.0.timeout()
    }

    fn retry_policy(&self) -> RetryPolicy {
        self.0.retry_policy()
    }

    fn check_payload(&self, payload: &str) -> Result<(), JobError> {
        decode(&*self.0, payload).map(|_| ())
    }

    fn run(
        &self,
        payload: &str,
        ctx: JobContext,
    ) -> BoxFuture<'static, Result<serde_json::Value, JobError>> {
        let job = Arc::clone(&self.0);
        let decoded = decode(&*job, payload);
        async move {
            let output = job.run(decoded?, ctx).await?;
            serde_json::to_value(output).map_err(|e| {
                JobError::transient(format!(
                    "output of job type '{}' could not be encoded: {e}",
                    J::NAME
                ))
            })
        }
        .boxed()
    }
}

/// Registry errors name the offending job type or queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("job type '{0}' is registered twice")]
    Duplicate(&'static str),
    #[error("unknown job type '{name}' (known: {known})")]
    UnknownType { name: String, known: String },
    #[error("invalid queue name '{name}': {reason}")]
    InvalidQueue { name: String, reason: &'static str },
    #[error("invalid route '{0}': expected JOB_TYPE=QUEUE")]
    InvalidRoute(String),
}

/// Checks a queue name: 1-64 characters of `a-z`, `0-9`, `_` and `-` (they become
/// part of Redis keys and hash tags).
pub fn validate_queue_name(name: &str) -> Result<(), RegistryError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 64 {
        Some("it is longer than 64 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        Some("only a-z, 0-9, '_' and '-' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(RegistryError::InvalidQueue {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// The job types a process knows and the queue each one goes to.
#[derive(Clone, Default)]
pub struct Registry {
    jobs: BTreeMap<&'static str, Arc<dyn ErasedJob>>,
    routes: BTreeMap<&'static str, String>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("routes", &self.routes)
            .finish()
    }
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a job type on its default queue.
    pub fn register<J: Job>(&mut self, job: J) -> Result<&mut Self, RegistryError> {
        if self.jobs.contains_key(J::NAME) {
            return Err(RegistryError::Duplicate(J::NAME));
        }
        validate_queue_name(J::DEFAULT_QUEUE)?;
        self.jobs.insert(J::NAME, Arc::new(Erased(Arc::new(job))));
        self.routes.insert(J::NAME, J::DEFAULT_QUEUE.to_owned());
        Ok(self)
    }

    /// Sends a job type to another queue (configuration, not code).
    pub fn route(&mut self, job_type: &str, queue: &str) -> Result<&mut Self, RegistryError> {
        validate_queue_name(queue)?;
        let name = self.get(job_type)?.name();
        self.routes.insert(name, queue.to_owned());
        Ok(self)
    }

    /// Applies routes written as `type=queue,type=queue` (e.g. from `GENQ_ROUTES`).
    pub fn apply_routes(&mut self, spec: &str) -> Result<&mut Self, RegistryError> {
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (job_type, queue) = part
                .split_once('=')
                .ok_or_else(|| RegistryError::InvalidRoute(part.to_owned()))?;
            self.route(job_type.trim(), queue.trim())?;
        }
        Ok(self)
    }

    /// The job type of that name.
    pub fn get(&self, job_type: &str) -> Result<Arc<dyn ErasedJob>, RegistryError> {
        self.jobs
            .get(job_type)
            .cloned()
            .ok_or_else(|| RegistryError::UnknownType {
                name: job_type.to_owned(),
                known: self.jobs.keys().copied().collect::<Vec<_>>().join(", "),
            })
    }

    /// The queue a job type goes to.
    pub fn queue_of(&self, job_type: &str) -> Result<&str, RegistryError> {
        let name = self.get(job_type)?.name();
        Ok(self
            .routes
            .get(name)
            .map(String::as_str)
            .unwrap_or_default())
    }

    /// Every queue some registered job type goes to.
    pub fn queues(&self) -> BTreeSet<String> {
        self.routes.values().cloned().collect()
    }

    /// The job types routed to `queue`.
    pub fn types_for_queue(&self, queue: &str) -> Vec<&'static str> {
        self.routes
            .iter()
            .filter(|(_, q)| q.as_str() == queue)
            .map(|(t, _)| *t)
            .collect()
    }

    pub fn job_types(&self) -> Vec<&'static str> {
        self.jobs.keys().copied().collect()
    }

    /// The retry policy of a job type; the default policy for an unknown type.
    pub fn retry_policy(&self, job_type: &str) -> RetryPolicy {
        self.jobs
            .get(job_type)
            .map(|j| j.retry_policy())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};
    use tokio_util::sync::CancellationToken;

    struct Double;

    #[derive(Serialize, Deserialize)]
    struct N {
        n: i64,
    }

    impl Job for Double {
        type Payload = N;
        type Output = i64;
        const NAME: &'static str = "double";
        const DEFAULT_QUEUE: &'static str = "math";

        fn validate(&self, p: &N) -> Result<(), JobError> {
            if p.n < 0 {
                return Err(JobError::bad_input("n must not be negative"));
            }
            Ok(())
        }

        async fn run(&self, p: N, _ctx: JobContext) -> Result<i64, JobError> {
            Ok(p.n * 2)
        }
    }

    fn ctx() -> JobContext {
        JobContext::new("id", "math", "double", 1, CancellationToken::new())
    }

    #[tokio::test]
    async fn runs_decodes_and_rejects_bad_payloads() {
        let mut r = Registry::new();
        r.register(Double).unwrap();
        let job = r.get("double").unwrap();
        assert_eq!(
            job.run(r#"{"n":21}"#, ctx()).await.unwrap(),
            serde_json::json!(42)
        );
        let err = job.run("not json", ctx()).await.unwrap_err();
        assert_eq!(err.class, crate::FailureClass::BadInput);
        assert!(
            err.message
                .contains("payload for job type 'double' is not valid"),
            "{err}"
        );
        let err = job.check_payload(r#"{"n":-1}"#).unwrap_err();
        assert_eq!(err.message, "n must not be negative");
    }

    #[test]
    fn routes_are_configuration() {
        let mut r = Registry::new();
        r.register(Double).unwrap();
        assert_eq!(r.queue_of("double").unwrap(), "math");
        r.apply_routes("double=img").unwrap();
        assert_eq!(r.queue_of("double").unwrap(), "img");
        assert_eq!(r.types_for_queue("img"), vec!["double"]);
        assert!(matches!(
            r.register(Double),
            Err(RegistryError::Duplicate("double"))
        ));
        let err = r.apply_routes("triple=img").unwrap_err().to_string();
        assert_eq!(err, "unknown job type 'triple' (known: double)");
        assert!(r.apply_routes("double=Bad Queue").is_err());
        assert!(r.apply_routes("double").is_err());
    }
}
