//! Cleanup: deletes artifacts older than N hours and reports the files and bytes it
//! freed (result and metrics). Several hosts may run it at once: a file another
//! sweep removed first is skipped. It runs on a schedule (see `genq-runtime`'s
//! scheduler); Redis job data and idempotency keys expire by themselves.

use std::{sync::Arc, time::Duration};

use genq_artifacts::{ArtifactStore, Freed};
use genq_core::{Job, JobContext, JobError, RetryPolicy};
use prometheus::IntCounter;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanupRequest {
    /// Override of the configured age, in hours.
    #[serde(default)]
    pub max_age_hours: Option<u64>,
}

/// Counters of what cleanups freed.
#[derive(Clone)]
pub struct CleanupCounters {
    pub files: IntCounter,
    pub bytes: IntCounter,
}

pub struct Cleanup {
    artifacts: Arc<dyn ArtifactStore>,
    max_age: Duration,
    counters: CleanupCounters,
}

impl Cleanup {
    pub fn new(
        artifacts: Arc<dyn ArtifactStore>,
        max_age: Duration,
        counters: CleanupCounters,
    ) -> Self {
        Self {
            artifacts,
            max_age,
            counters,
        }
    }
}

impl Job for Cleanup {
    type Payload = CleanupRequest;
    type Output = Freed;
    const NAME: &'static str = "cleanup";
    const DEFAULT_QUEUE: &'static str = "maintenance";

    fn timeout(&self) -> Duration {
        Duration::from_secs(600)
    }

    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::default()
    }

    async fn run(&self, p: CleanupRequest, _ctx: JobContext) -> Result<Freed, JobError> {
        let age = p
            .max_age_hours
            .map_or(self.max_age, |h| Duration::from_secs(h * 3600));
        let freed = self
            .artifacts
            .delete_older_than(age)
            .await
            .map_err(|e| JobError::transient(e.to_string()))?;
        self.counters.files.inc_by(freed.files);
        self.counters.bytes.inc_by(freed.bytes);
        Ok(freed)
    }
}
