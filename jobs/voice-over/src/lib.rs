//! VoiceOver: text becomes speech through an OpenAI-compatible speech API, fitted to
//! a target length with ffmpeg (tempo within 0.85-1.25×, else silence after short
//! speech or faster speech cut under a fade; see `genq_media::fit_audio`) and
//! stored as an AAC (`.m4a`) artifact. Temporary files live in the artifact
//! store's scratch directory and are deleted when the run ends.

use std::time::Duration;

use genq_artifacts::ArtifactRef;
use genq_core::{Job, JobContext, JobError, RetryPolicy};
use genq_jobkit::{MediaDeps, RunSettings, ScratchFiles, artifact_error};
use genq_media::MediaError;
use genq_providers::OpenAiClient;
use serde::{Deserialize, Serialize};
use tracing::info;

/// The longest text one speech request takes (OpenAI's limit).
pub const MAX_TEXT_CHARS: usize = 4096;
/// The longest target length.
pub const MAX_TARGET_SECS: f64 = 600.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoiceRequest {
    pub text: String,
    pub voice: String,
    /// The speech model; the configured one when absent.
    #[serde(default)]
    pub model: Option<String>,
    /// The length the voice-over must have.
    pub target_secs: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoiceOutput {
    /// The fitted voice-over (`audio/mp4`, AAC).
    pub artifact: ArtifactRef,
    pub duration_secs: f64,
    /// How it was fitted, in words (e.g. `tempo x0.960`).
    pub plan: String,
}

pub struct VoiceOver {
    client: OpenAiClient,
    model: String,
    media: MediaDeps,
    run: RunSettings,
}

impl VoiceOver {
    pub fn new(
        client: OpenAiClient,
        model: impl Into<String>,
        media: MediaDeps,
        run: RunSettings,
    ) -> Self {
        Self {
            client,
            model: model.into(),
            media,
            run,
        }
    }
}

/// The provider's audio could not be used: its fault, so retrying may help.
fn unusable_speech(e: MediaError) -> JobError {
    JobError::transient(format!("the provider's speech could not be fitted: {e}"))
}

impl Job for VoiceOver {
    type Payload = VoiceRequest;
    type Output = VoiceOutput;
    const NAME: &'static str = "voice_over";
    const DEFAULT_QUEUE: &'static str = "text";

    fn timeout(&self) -> Duration {
        self.run.timeout
    }

    fn retry_policy(&self) -> RetryPolicy {
        self.run.policy.clone()
    }

    fn validate(&self, p: &VoiceRequest) -> Result<(), JobError> {
        let chars = p.text.trim().chars().count();
        if chars == 0 || chars > MAX_TEXT_CHARS {
            return Err(JobError::bad_input(format!(
                "the text must be 1-{MAX_TEXT_CHARS} characters, got {chars}"
            )));
        }
        if p.voice.trim().is_empty() || p.voice.len() > 64 {
            return Err(JobError::bad_input("voice must be 1-64 characters"));
        }
        if p.model.as_deref().is_some_and(|m| m.trim().is_empty()) {
            return Err(JobError::bad_input("model must not be empty"));
        }
        if !(p.target_secs.is_finite() && p.target_secs > 0.0 && p.target_secs <= MAX_TARGET_SECS) {
            return Err(JobError::bad_input(format!(
                "target_secs must be above 0 and at most {MAX_TARGET_SECS}, got {}",
                p.target_secs
            )));
        }
        Ok(())
    }

    async fn run(&self, p: VoiceRequest, ctx: JobContext) -> Result<VoiceOutput, JobError> {
        let model = p.model.as_deref().unwrap_or(&self.model);
        let speech = self.client.speech(model, p.text.trim(), &p.voice).await?;
        let store = self.media.artifacts.as_ref();
        let mut scratch = ScratchFiles::new();
        let input = scratch.path(store, "speech").await?;
        tokio::fs::write(&input, &speech)
            .await
            .map_err(|e| JobError::transient(format!("writing {}: {e}", input.display())))?;
        let out = scratch.path(store, "m4a").await?;
        let fitted = genq_media::fit_audio(&input, p.target_secs, &out)
            .await
            .map_err(unusable_speech)?;
        let artifact = self
            .media
            .artifacts
            .put_file(out, "m4a", "audio/mp4")
            .await
            .map_err(artifact_error)?;
        info!(
            job = ctx.id(),
            speech = fitted.speech_secs,
            target = p.target_secs,
            plan = %fitted.plan,
            "voice-over made"
        );
        Ok(VoiceOutput {
            artifact,
            duration_secs: fitted.duration_secs,
            plan: fitted.plan.to_string(),
        })
    }
}
