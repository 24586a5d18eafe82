//! What genq's job types share. Job crates depend on this and on genq-core; the
//! framework never depends on a job crate.

use std::{sync::Arc, time::Duration};

use base64::Engine;
use genq_artifacts::{ArtifactError, ArtifactRef, ArtifactStore};
use genq_core::{ClassRule, FailureClass, JobContext, JobError, RetryPolicy};
use genq_media::{ImageFormat, ImageLimits, MediaError, TELEGRAM_PHOTO_LIMIT};
use genq_providers::{ProviderTask, TaskClient, TaskKind, TaskStatus, webhooks::WaitingJob};
use serde::{Deserialize, Serialize};

/// Where inputs and results go, and what inputs may be.
#[derive(Clone)]
pub struct MediaDeps {
    pub artifacts: Arc<dyn ArtifactStore>,
    pub limits: ImageLimits,
}

/// A media failure: the input's fault is bad input (never retried), the rest transient.
pub fn media_error(e: MediaError) -> JobError {
    if e.is_bad_input() {
        JobError::bad_input(e.to_string())
    } else {
        JobError::transient(e.to_string())
    }
}

/// An artifact failure: a bad or missing key is bad input, I/O is transient.
pub fn artifact_error(e: ArtifactError) -> JobError {
    match e {
        ArtifactError::Io { .. } => JobError::transient(e.to_string()),
        _ => JobError::bad_input(e.to_string()),
    }
}

/// The result of an image job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageOutput {
    pub artifact: ArtifactRef,
    pub width: u32,
    pub height: u32,
    pub format: ImageFormat,
}

/// Reads an input artifact within the input size limit.
pub async fn load_input(deps: &MediaDeps, key: &str) -> Result<Vec<u8>, JobError> {
    deps.artifacts
        .get(key, deps.limits.max_input_bytes as u64)
        .await
        .map_err(artifact_error)
}

/// Normalises an image (PNG/JPEG, under Telegram's photo limit) and stores it.
pub async fn store_image(deps: &MediaDeps, bytes: Vec<u8>) -> Result<ImageOutput, JobError> {
    let limits = ImageLimits {
        max_input_bytes: usize::MAX / 2,
        ..deps.limits
    };
    let image = genq_media::normalize_for_telegram(bytes, TELEGRAM_PHOTO_LIMIT, limits)
        .await
        .map_err(|e| match e.is_bad_input() {
            // the provider's output, not the user's input, was unusable
            true => JobError::transient(format!("provider returned an unusable image: {e}")),
            false => media_error(e),
        })?;
    let artifact = deps
        .artifacts
        .put(
            image.bytes,
            image.format.extension(),
            image.format.mime_type(),
        )
        .await
        .map_err(artifact_error)?;
    Ok(ImageOutput {
        artifact,
        width: image.width,
        height: image.height,
        format: image.format,
    })
}

pub fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Runs a queue-style provider task to its result, paying once: a task submitted by
/// an earlier run of this job (recorded as a checkpoint before waiting) is resumed,
/// not submitted again; the submit carries `Idempotency-Key: genq-<job id>`, so a
/// re-run that lost its checkpoint gets the same task back. Progress goes to the job.
///
/// For a vendor without idempotency keys a marker checkpoint (no task id) is saved
/// before the submit: a re-run that finds it submits again and counts it in
/// `genq_provider_resubmits_total`. When the job is cancelled (not when the run is
/// stopped because its lease was lost or the worker stops: a re-run resumes the
/// task then) the vendor is asked to cancel the task, best effort.
///
/// **Parking.** A run polls its task while holding its worker slot for at most the
/// provider's `wait_in_slot`; then it *parks* the job ([`JobError::parked`]): no
/// worker slot is held while the vendor works, the job runs again after the poll
/// interval (with a webhook configured, after the webhook's fallback interval,
/// unless the vendor's webhook wakes it first) and resumes the task from its
/// checkpoint. A task waited on longer than `max_task_wait` (measured by the Redis
/// server's clock from its submit) is cancelled at the vendor and the job times out.
pub async fn run_task(
    ctx: &JobContext,
    client: &TaskClient,
    model: &str,
    kind: TaskKind,
    input: serde_json::Value,
    poll_interval: Duration,
) -> Result<Vec<u8>, JobError> {
    // the holder of the task's slot under the provider's limits (same on every run)
    let holder = genq_providers::idempotency_key(ctx.id());
    let task = match ctx.checkpoint::<ProviderTask>().await? {
        Some(t) if t.provider == client.name() && !t.id.is_empty() => {
            // cancelled while parked: the cancel ran this job to stop the task
            if ctx.cancel_requested().await {
                return Err(cancel_parked(client, &t, &holder).await);
            }
            let t = with_submit_time(ctx, client, t).await;
            // waited on too long (a retry after that timeout): no slot, no poll
            if let Some(expired) = past_max_wait(client, &t).await {
                if let Ok(slot) = client.keys().hold(&t.key, &holder).await {
                    slot.release().await;
                }
                return Err(expired);
            }
            t
        }
        earlier => submit_task(ctx, client, model, kind, input, &holder, earlier).await?,
    };
    let waiting = WaitingJob {
        queue: ctx.queue().to_owned(),
        id: ctx.id().to_owned(),
    };
    if let Err(e) = client.remember_waiting_job(&task, &waiting).await {
        // the webhook cannot find the job: it is still polled
        tracing::warn!(job_id = ctx.id(), error = %e, "task not recorded for its webhook");
    }
    // the task's slot is held from submit until it ends; a crashed or parked run's
    // is taken over here; dropped (cancelled, timed out) it is given back
    let slot = client.keys().hold(&task.key, &holder).await?;
    let watcher = CancelWatcher::start(ctx, client, &task);
    let outcome = poll_to_end(ctx, client, &task, poll_interval, slot).await;
    watcher.finish();
    outcome
}

/// Submits the task (paying for it) and checkpoints it before anything waits on it.
async fn submit_task(
    ctx: &JobContext,
    client: &TaskClient,
    model: &str,
    kind: TaskKind,
    input: serde_json::Value,
    holder: &str,
    earlier: Option<ProviderTask>,
) -> Result<ProviderTask, JobError> {
    let dedupes = client.vendor().dedupes_submits();
    if !dedupes {
        let in_flight = earlier
            .as_ref()
            .is_some_and(|t| t.provider == client.name() && t.key == SUBMITTING);
        if in_flight {
            client.count_resubmit();
            tracing::warn!(
                job_id = ctx.id(),
                provider = client.name(),
                "an earlier run's submit may have reached the vendor, which has no idempotency key: submitting again"
            );
        }
        ctx.save_checkpoint(&submit_marker(client, SUBMITTING))
            .await?;
    }
    // no capacity under the provider's limits: a deferral, nothing submitted
    let submit = client.submit(model, kind, input, holder);
    let t = match genq_providers::holding(holder, submit).await {
        Ok(t) => t,
        Err(e) => {
            // refused outright: nothing was created, a re-run is no resubmit
            if !dedupes && e.class() != FailureClass::Transient {
                let _ = ctx.save_checkpoint(&submit_marker(client, "")).await;
            }
            return Err(e.into());
        }
    };
    ctx.save_checkpoint(&t).await?;
    Ok(t)
}

/// A parked job was cancelled: asks the vendor to stop its task and gives its slot
/// back. Done on a task of its own, so that it finishes even if this run is dropped
/// as the cancel reaches its worker.
async fn cancel_parked(client: &TaskClient, task: &ProviderTask, holder: &str) -> JobError {
    let (client, task, holder) = (client.clone(), task.clone(), holder.to_owned());
    let stop = tokio::spawn(async move {
        if let Err(e) = client.cancel(&task).await {
            tracing::warn!(provider = client.name(), task = %task.id, error = %e, "vendor task could not be cancelled");
        } else {
            tracing::info!(provider = client.name(), task = %task.id, "vendor task cancelled");
        }
        if let Ok(slot) = client.keys().hold(&task.key, &holder).await {
            slot.release().await;
        }
    });
    let _ = stop.await;
    JobError::cancelled("cancelled while waiting on the provider's task")
}

/// The `key` of a marker checkpoint saved while a submit is in flight.
const SUBMITTING: &str = "submitting";

fn submit_marker(client: &TaskClient, key: &str) -> ProviderTask {
    ProviderTask {
        provider: client.name().to_owned(),
        id: String::new(),
        key: key.to_owned(),
        model: None,
        submitted_at_ms: None,
    }
}

async fn poll_to_end(
    ctx: &JobContext,
    client: &TaskClient,
    task: &ProviderTask,
    poll_interval: Duration,
    mut slot: genq_providers::Slot,
) -> Result<Vec<u8>, JobError> {
    let started = tokio::time::Instant::now();
    let options = client.options();
    loop {
        let status = match client.status(task).await {
            Ok(status) => status,
            Err(e) => {
                // the task may still run at the vendor: its slot stays to its lease
                slot.keep();
                return Err(e.into());
            }
        };
        match status {
            TaskStatus::Pending { progress } => {
                if let Some(p) = progress {
                    let _ = ctx.progress(p, Some("provider is generating")).await;
                }
                if started.elapsed() >= options.wait_in_slot {
                    return Err(park(client, task, poll_interval, slot).await);
                }
                if let Err(e) = slot.renew().await {
                    tracing::warn!(job_id = ctx.id(), error = %e, "provider slot not renewed");
                }
                tokio::time::sleep(poll_interval).await;
            }
            TaskStatus::Succeeded { url, .. } => {
                slot.release().await;
                return Ok(client.download(task, &url).await?);
            }
            TaskStatus::Failed(e) => {
                slot.release().await;
                return Err(e.into());
            }
        }
    }
}

/// Parks the job until its task is looked at again (the slot stays held, its lease
/// renewed to cover the wait and a queue to wait in), or times it out when the
/// task has been waited on too long.
async fn park(
    client: &TaskClient,
    task: &ProviderTask,
    poll_interval: Duration,
    slot: genq_providers::Slot,
) -> JobError {
    if let Some(expired) = past_max_wait(client, task).await {
        slot.release().await;
        return expired;
    }
    let options = client.options();
    let after = options
        .webhook
        .as_ref()
        .map_or(poll_interval, |w| w.fallback_poll);
    slot.keep_for(after + client.keys().limits().slot_lease)
        .await;
    JobError::parked(
        format!("waiting on {} task {}", client.name(), task.id),
        after,
    )
}

/// When `task` has been waited on longer than the provider's `max_task_wait`
/// (by the Redis server's clock, from its submit): asks the vendor to cancel it
/// and answers the job's timeout.
async fn past_max_wait(client: &TaskClient, task: &ProviderTask) -> Option<JobError> {
    let at = task.submitted_at_ms?;
    let now = client.server_time_ms().await?;
    let max = client.options().max_task_wait;
    if Duration::from_millis(now.saturating_sub(at)) <= max {
        return None;
    }
    if let Err(e) = client.cancel(task).await {
        tracing::warn!(provider = client.name(), task = %task.id, error = %e, "vendor task could not be cancelled");
    }
    Some(JobError::timeout(format!(
        "{} task {} did not end within {} s",
        client.name(),
        task.id,
        max.as_secs()
    )))
}

/// A task checkpointed without its submit time (by an older genq) is stamped now
/// and checkpointed again, so that `max_task_wait` applies from here.
async fn with_submit_time(
    ctx: &JobContext,
    client: &TaskClient,
    task: ProviderTask,
) -> ProviderTask {
    if task.submitted_at_ms.is_some() {
        return task;
    }
    let Some(now) = client.server_time_ms().await else {
        return task;
    };
    let stamped = ProviderTask {
        submitted_at_ms: Some(now),
        ..task
    };
    if let Err(e) = ctx.save_checkpoint(&stamped).await {
        tracing::warn!(job_id = ctx.id(), error = %e, "task's submit time not stored");
    }
    stamped
}

/// Cancels the vendor task when the job is cancelled. The handler is dropped at
/// once when its token fires, so the watcher runs on its own task; it is stopped
/// when the run ends normally, or is dropped without its token having fired (a
/// timeout).
struct CancelWatcher {
    handle: Option<tokio::task::JoinHandle<()>>,
    token: tokio_util::sync::CancellationToken,
}

impl CancelWatcher {
    fn start(ctx: &JobContext, client: &TaskClient, task: &ProviderTask) -> Self {
        let token = ctx.cancellation_token().clone();
        let requested = ctx.cancel_requested();
        let (client, task) = (client.clone(), task.clone());
        let fired = token.clone();
        let handle = tokio::spawn(async move {
            fired.cancelled().await;
            if !requested.await {
                return;
            }
            match client.cancel(&task).await {
                Ok(()) => {
                    tracing::info!(provider = client.name(), task = %task.id, "vendor task cancelled")
                }
                Err(e) => {
                    tracing::warn!(provider = client.name(), task = %task.id, error = %e, "vendor task could not be cancelled")
                }
            }
        });
        Self {
            handle: Some(handle),
            token,
        }
    }

    fn finish(mut self) {
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

impl Drop for CancelWatcher {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take()
            && !self.token.is_cancelled()
        {
            h.abort();
        }
    }
}

/// The default retry policy, with the number of runs and the first delay for
/// transient failures and timeouts taken from configuration when given.
pub fn retry_policy(max_attempts: Option<u32>, backoff_base: Option<Duration>) -> RetryPolicy {
    let policy = RetryPolicy::default();
    match (max_attempts, backoff_base) {
        (None, None) => policy,
        (n, base) => {
            let base = base.unwrap_or(Duration::from_secs(10));
            let backoff = ClassRule::Backoff {
                max_attempts: n.unwrap_or(3),
                base,
                max: base * 4,
                jitter: 0.2,
            };
            policy
                .with(FailureClass::Transient, backoff.clone())
                .with(FailureClass::Timeout, backoff)
        }
    }
}

/// How long one run may take and what each failure class gets (from configuration).
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub timeout: Duration,
    pub policy: RetryPolicy,
}

impl RunSettings {
    pub fn new(timeout: Duration, policy: RetryPolicy) -> Self {
        Self { timeout, policy }
    }
}

/// Temporary files of one run, under the artifact store's scratch directory: each
/// is deleted when this is dropped (the run ended, failed, or was cancelled);
/// whatever a crash leaves behind is removed by Cleanup's age sweep.
#[derive(Default)]
pub struct ScratchFiles {
    paths: Vec<std::path::PathBuf>,
}

impl ScratchFiles {
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh scratch path ending in `.{ext}`, deleted with this.
    pub async fn path(
        &mut self,
        store: &dyn ArtifactStore,
        ext: &str,
    ) -> Result<std::path::PathBuf, JobError> {
        let path = store.scratch_path(ext).await.map_err(artifact_error)?;
        self.paths.push(path.clone());
        Ok(path)
    }

    /// Deletes `path` too when this is dropped (a file a tool wrote beside a scratch file).
    pub fn track(&mut self, path: std::path::PathBuf) {
        self.paths.push(path);
    }
}

impl Drop for ScratchFiles {
    fn drop(&mut self) {
        for path in &self.paths {
            // a file moved into the store (put_file) is already gone
            if let Err(e) = std::fs::remove_file(path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a scratch file");
            }
        }
    }
}

/// Cuts `text` to at most `max` characters (on a character boundary).
pub fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => text[..i].to_owned(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate_chars("привет", 3), "при");
        assert_eq!(truncate_chars("hi", 10), "hi");
    }

    #[test]
    fn configured_attempts_change_transient_only() {
        let p = retry_policy(Some(5), None);
        assert_eq!(p.max_attempts(), 5);
        assert_eq!(p.rule(FailureClass::BadInput), &ClassRule::Never);
    }
}
