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

/// Where a handler's progress reports and checkpoints go (the backend stores them on
/// the job, so a re-run after a crash can read the checkpoint back).
pub trait ProgressSink: Send + Sync {
    fn report(&self, job_id: &str, progress: Progress) -> BoxFuture<'static, Result<(), String>>;

    /// Stores a checkpoint (JSON) on the running job, replacing the previous one.
    fn save_checkpoint(
        &self,
        job_id: &str,
        checkpoint: String,
    ) -> BoxFuture<'static, Result<(), String>>;

    /// The job's last checkpoint, if a run stored one.
    fn load_checkpoint(&self, job_id: &str) -> BoxFuture<'static, Result<Option<String>, String>>;

    /// Whether someone asked to cancel the job (an operator or the bot), as opposed
    /// to this run being stopped because its lease was lost or the worker is
    /// stopping (a re-run resumes it then).
    fn cancel_requested(&self, _job_id: &str) -> BoxFuture<'static, Result<bool, String>> {
        Box::pin(async { Ok(false) })
    }
}

/// Lets a running job push another job (e.g. GenerateImagePrompt hands over to
/// GenerateImage). The runtime provides it; its push is validated and routed like
/// any other.
pub trait JobSpawner: Send + Sync {
    /// Pushes `payload` (JSON) as a job of `job_type`, deduped on `idempotency_key`;
    /// the new (or existing) job's id.
    fn spawn(
        &self,
        job_type: &str,
        payload: String,
        idempotency_key: String,
    ) -> BoxFuture<'static, Result<String, JobError>>;
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
    spawner: Option<Arc<dyn JobSpawner>>,
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
            spawner: None,
        }
    }

    pub fn with_spawner(mut self, spawner: Arc<dyn JobSpawner>) -> Self {
        self.spawner = Some(spawner);
        self
    }

    /// Pushes a follow-up job. Its idempotency key is this job's id plus `step`, so a
    /// re-run of this job does not push it twice.
    pub async fn enqueue<T: serde::Serialize>(
        &self,
        job_type: &str,
        payload: &T,
        step: &str,
    ) -> Result<String, JobError> {
        let Some(spawner) = &self.spawner else {
            return Err(JobError::transient(
                "this worker cannot push follow-up jobs",
            ));
        };
        let json = serde_json::to_string(payload).map_err(|e| {
            JobError::transient(format!("follow-up payload could not be encoded: {e}"))
        })?;
        spawner
            .spawn(job_type, json, format!("{}:{step}", self.id))
            .await
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

    /// A check (run it after the cancellation token fired) of whether the job itself
    /// was cancelled, not just this run stopped (lease lost, worker stopping). It
    /// owns what it needs, so it can outlive this context.
    pub fn cancel_requested(&self) -> BoxFuture<'static, bool> {
        match &self.progress {
            Some(sink) => {
                let check = sink.cancel_requested(&self.id);
                Box::pin(async move { check.await.unwrap_or(false) })
            }
            None => Box::pin(async { false }),
        }
    }

    /// Stores a checkpoint on the job before a step that must not be repeated (e.g.
    /// the provider's task id before waiting on it, so a re-run resumes that task
    /// instead of paying for a new one). An error means it was not stored: a handler
    /// that must not repeat the step should fail transiently rather than go on.
    pub async fn save_checkpoint<T: serde::Serialize>(
        &self,
        checkpoint: &T,
    ) -> Result<(), JobError> {
        let Some(sink) = &self.progress else {
            return Ok(());
        };
        let json = serde_json::to_string(checkpoint)
            .map_err(|e| JobError::transient(format!("checkpoint could not be encoded: {e}")))?;
        sink.save_checkpoint(&self.id, json)
            .await
            .map_err(|e| JobError::transient(format!("checkpoint could not be stored: {e}")))
    }

    /// The checkpoint an earlier run stored, if any (undecodable ones are ignored).
    pub async fn checkpoint<T: serde::de::DeserializeOwned>(&self) -> Result<Option<T>, JobError> {
        let Some(sink) = &self.progress else {
            return Ok(None);
        };
        let raw = sink
            .load_checkpoint(&self.id)
            .await
            .map_err(|e| JobError::transient(format!("checkpoint could not be read: {e}")))?;
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
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
