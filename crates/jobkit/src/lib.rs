//! What genq's job types share. Job crates depend on this and on genq-core; the
//! framework never depends on a job crate.

use std::{sync::Arc, time::Duration};

use base64::Engine;
use genq_artifacts::{ArtifactError, ArtifactRef, ArtifactStore};
use genq_core::{ClassRule, FailureClass, JobContext, JobError, RetryPolicy};
use genq_media::{ImageFormat, ImageLimits, MediaError, TELEGRAM_PHOTO_LIMIT};
use genq_providers::{ProviderTask, TaskClient, TaskKind, TaskStatus};
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
pub async fn run_task(
    ctx: &JobContext,
    client: &TaskClient,
    model: &str,
    kind: TaskKind,
    input: serde_json::Value,
    poll_interval: Duration,
) -> Result<Vec<u8>, JobError> {
    let task = match ctx.checkpoint::<ProviderTask>().await? {
        Some(t) if t.provider == client.name() => t,
        _ => {
            let key = genq_providers::idempotency_key(ctx.id());
            let t = client.submit(model, kind, input, &key).await?;
            ctx.save_checkpoint(&t).await?;
            t
        }
    };
    loop {
        match client.status(&task).await? {
            TaskStatus::Pending { progress } => {
                if let Some(p) = progress {
                    let _ = ctx.progress(p, Some("provider is generating")).await;
                }
                tokio::time::sleep(poll_interval).await;
            }
            TaskStatus::Succeeded { url, .. } => return Ok(client.download(&task, &url).await?),
            TaskStatus::Failed(e) => return Err(e.into()),
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
