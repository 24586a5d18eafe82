//! AssembleVideo: clips (artifacts, in order) and a voice-over become one MP4: each
//! clip made exactly `segment_secs` long (last frame held, or cut), all scaled to
//! the first clip's size, concatenated, the voice-over as the only audio track;
//! re-encoded under Telegram's 50 MB when needed, then checked with ffprobe
//! (length `clips × segment_secs` ± 1 s, one video and one audio stream, under
//! 50 MB) — a result that is not is bad input. Temporary files live in the
//! artifact store's scratch directory and are deleted when the run ends.

use std::time::Duration;

use genq_artifacts::ArtifactRef;
use genq_core::{Job, JobContext, JobError, RetryPolicy};
use genq_jobkit::{MediaDeps, RunSettings, ScratchFiles, artifact_error, media_error};
use genq_media::{MAX_CLIPS, TELEGRAM_FILE_LIMIT, VideoExpectation};
use serde::{Deserialize, Serialize};
use tracing::info;

/// How far the assembled video's length may be off.
pub const DURATION_TOLERANCE_SECS: f64 = 1.0;
/// The longest video assembled.
pub const MAX_TOTAL_SECS: u32 = 600;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssembleRequest {
    /// Artifact keys of the clips, in order.
    pub clips: Vec<String>,
    /// Artifact key of the voice-over.
    pub audio: String,
    /// Each clip's length in the result.
    pub segment_secs: u32,
    #[serde(default)]
    pub title: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssembleOutput {
    pub artifact: ArtifactRef,
    pub duration_secs: f64,
    pub width: u32,
    pub height: u32,
    /// True when the assembled file was re-encoded to fit the limit.
    pub reencoded: bool,
    pub title: Option<String>,
}

pub struct AssembleVideo {
    media: MediaDeps,
    run: RunSettings,
}

impl AssembleVideo {
    pub fn new(media: MediaDeps, run: RunSettings) -> Self {
        Self { media, run }
    }

    async fn local_paths(&self, keys: &[String]) -> Result<Vec<std::path::PathBuf>, JobError> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(
                self.media
                    .artifacts
                    .local_path(key)
                    .await
                    .map_err(artifact_error)?,
            );
        }
        Ok(out)
    }
}

impl Job for AssembleVideo {
    type Payload = AssembleRequest;
    type Output = AssembleOutput;
    const NAME: &'static str = "assemble_video";
    const DEFAULT_QUEUE: &'static str = "video";

    fn timeout(&self) -> Duration {
        self.run.timeout
    }

    fn retry_policy(&self) -> RetryPolicy {
        self.run.policy.clone()
    }

    fn validate(&self, p: &AssembleRequest) -> Result<(), JobError> {
        if p.clips.is_empty() || p.clips.len() > MAX_CLIPS {
            return Err(JobError::bad_input(format!(
                "{} clips: 1-{MAX_CLIPS} can be assembled",
                p.clips.len()
            )));
        }
        if !(1..=30).contains(&p.segment_secs) {
            return Err(JobError::bad_input(format!(
                "segment_secs must be 1-30, got {}",
                p.segment_secs
            )));
        }
        let total = p.segment_secs as usize * p.clips.len();
        if total > MAX_TOTAL_SECS as usize {
            return Err(JobError::bad_input(format!(
                "the video would be {total} s, over {MAX_TOTAL_SECS} s"
            )));
        }
        if p.title.as_ref().is_some_and(|t| t.chars().count() > 200) {
            return Err(JobError::bad_input("the title is over 200 characters"));
        }
        Ok(())
    }

    async fn run(&self, p: AssembleRequest, ctx: JobContext) -> Result<AssembleOutput, JobError> {
        let clips = self.local_paths(&p.clips).await?;
        let audio = self
            .media
            .artifacts
            .local_path(&p.audio)
            .await
            .map_err(artifact_error)?;
        let mut scratch = ScratchFiles::new();
        let out = scratch.path(self.media.artifacts.as_ref(), "mp4").await?;
        let secs = f64::from(p.segment_secs);
        genq_media::assemble_clips(&clips, &audio, secs, &out)
            .await
            .map_err(media_error)?;
        let fitted = genq_media::fit_video(&out, TELEGRAM_FILE_LIMIT as u64)
            .await
            .map_err(media_error)?;
        let reencoded = fitted != out;
        if reencoded {
            scratch.track(fitted.clone());
        }
        let expected = VideoExpectation {
            duration_secs: secs * clips.len() as f64,
            tolerance_secs: DURATION_TOLERANCE_SECS,
            video_streams: 1,
            audio_streams: 1,
            max_bytes: TELEGRAM_FILE_LIMIT as u64,
        };
        let info = genq_media::check_video(&fitted, &expected)
            .await
            .map_err(|e| JobError::bad_input(format!("the assembled video is wrong: {e}")))?;
        let artifact = self
            .media
            .artifacts
            .put_file(fitted, "mp4", "video/mp4")
            .await
            .map_err(artifact_error)?;
        info!(job = ctx.id(), clips = clips.len(), duration = info.duration_secs, reencoded, key = %artifact.key, "video assembled");
        Ok(AssembleOutput {
            artifact,
            duration_secs: info.duration_secs,
            width: info.width.unwrap_or(0),
            height: info.height.unwrap_or(0),
            reencoded,
            title: p.title,
        })
    }
}
