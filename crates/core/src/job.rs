//! The job contract: what a job type declares, and what its handler is given.

use std::{future::Future, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use serde::{Serialize, de::DeserializeOwned};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::{error::JobError, retry::RetryPolicy, state::Progress};

/// A job type. Implement it on a struct that holds the job's dependencies (provider
/// clients, stores), then register an instance: `registry.register(MyJob::new(..))?`.
pub trait Job: Send + Sync + 'static {
    /// The payload pushed onto the queue (JSON on the wire).
    type Payload: Serialize + DeserializeOwned + Send + 'static;
    /// What a successful run returns; stored as the job's result (JSON).
    type Output: Serialize + Send + 'static;

    /// The job type's name on the wire, e.g. `generate_image`. Stable: stored jobs refer to it.
    const NAME: &'static str;
    /// The queue it goes to unless configuration routes it elsewhere.
    const DEFAULT_QUEUE: &'static str;

    /// How long one run may take before it fails with [`crate::FailureClass::Timeout`].
    fn timeout(&self) -> Duration {
        Duration::from_secs(60)
    }

    /// What each failure class gets. Defaults to PRODUCT.md's table.
    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::default()
    }

    /// Checks a decoded payload beyond its type (sizes, ranges). Called before a push
    /// and again before a run; an error is [`crate::FailureClass::BadInput`].
    fn validate(&self, _payload: &Self::Payload) -> Result<(), JobError> {
        Ok(())
    }

    /// Runs the job once.
    fn run(
        &self,
        payload: Self::Payload,
        ctx: JobContext,
    ) -> impl Future<Output = Result<Self::Output, JobError>> + Send;
}

/// Where a handler's progress reports go (the backend stores them on the job).
pub trait ProgressSink: Send + Sync {
    fn report(&self, job_id: &str, progress: Progress) -> BoxFuture<'static, Result<(), String>>;
}

/// What a running handler knows about its run.
#[derive(Clone)]
pub struct JobContext {
    id: String,
    queue: String,
    job_type: String,
    attempt: u32,
    cancel: CancellationToken,
    progress: Option<Arc<dyn ProgressSink>>,
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext")
            .field("id", &self.id)
            .field("queue", &self.queue)
            .field("job_type", &self.job_type)
            .field("attempt", &self.attempt)
            .field("cancelled", &self.cancel.is_cancelled())
            .finish()
    }
}

impl JobContext {
    pub fn new(
        id: impl Into<String>,
        queue: impl Into<String>,
        job_type: impl Into<String>,
        attempt: u32,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            id: id.into(),
            queue: queue.into(),
            job_type: job_type.into(),
            attempt,
            cancel,
            progress: None,
        }
    }

    pub fn with_progress_sink(mut self, sink: Arc<dyn ProgressSink>) -> Self {
        self.progress = Some(sink);
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn queue(&self) -> &str {
        &self.queue
    }

    pub fn job_type(&self) -> &str {
        &self.job_type
    }

    /// 1 on the first run.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// True once the job was cancelled (by a user, an operator, or because its lease was lost).
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Resolves when the job is cancelled: `select!` on it around long waits.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.cancel.cancelled()
    }

    pub fn cancellation_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Records progress on the job (best effort: a failed report does not fail the job).
    pub async fn progress(&self, percent: u8, note: Option<&str>) -> Result<(), String> {
        let Some(sink) = &self.progress else {
            return Ok(());
        };
        let progress = Progress {
            percent: percent.min(100),
            note: note.map(str::to_owned),
        };
        sink.report(&self.id, progress).await
    }
}
