//! GenerateVideo: an image and/or a prompt, with a template, becomes an MP4 through
//! a queue-style provider (submit, poll, download; typically 1-10 minutes). The
//! provider task is recorded on the job before waiting, so a re-run after a crash
//! resumes it instead of paying again. The file is checked with ffprobe and
//! re-encoded under Telegram's 50 MB limit when needed. N videos are N jobs.

use std::time::Duration;

use genq_artifacts::ArtifactRef;
use genq_core::{Job, JobContext, JobError, RetryPolicy};
use genq_jobkit::{
    MediaDeps, RunSettings, artifact_error, base64, load_input, media_error, run_task,
};
use genq_media::TELEGRAM_FILE_LIMIT;
use genq_providers::{TaskClient, TaskKind};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Template {
    Ugc,
    Ad,
    Custom,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoRequest {
    pub prompt: String,
    pub template: Template,
    /// Artifact key of a starting image (image-to-video); text-to-video without.
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default = "default_seconds")]
    pub seconds: u32,
}

fn default_seconds() -> u32 {
    5
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoOutput {
    pub artifact: ArtifactRef,
    pub duration_secs: f64,
    pub width: u32,
    pub height: u32,
    /// True when the provider's file was re-encoded to fit the limit.
    pub reencoded: bool,
}

pub struct GenerateVideo {
    client: TaskClient,
    model: String,
    media: MediaDeps,
    poll_interval: Duration,
    run: RunSettings,
}

impl GenerateVideo {
    pub fn new(
        client: TaskClient,
        model: impl Into<String>,
        media: MediaDeps,
        poll_interval: Duration,
        run: RunSettings,
    ) -> Self {
        Self {
            client,
            model: model.into(),
            media,
            poll_interval,
            run,
        }
    }

    async fn request_body(&self, p: &VideoRequest) -> Result<serde_json::Value, JobError> {
        let mut input =
            serde_json::json!({ "prompt": p.prompt, "template": p.template, "seconds": p.seconds });
        if let Some(key) = &p.image {
            let image = load_input(&self.media, key).await?;
            genq_media::dimensions(&image)
                .map_err(|e| JobError::bad_input(format!("starting image: {e}")))?;
            input["image_b64"] = serde_json::Value::String(base64(&image));
        }
        Ok(input)
    }
}

impl Job for GenerateVideo {
    type Payload = VideoRequest;
    type Output = VideoOutput;
    const NAME: &'static str = "generate_video";
    const DEFAULT_QUEUE: &'static str = "video";

    fn timeout(&self) -> Duration {
        self.run.timeout
    }

    fn retry_policy(&self) -> RetryPolicy {
        self.run.policy.clone()
    }

    fn validate(&self, p: &VideoRequest) -> Result<(), JobError> {
        let chars = p.prompt.trim().chars().count();
        if chars == 0 && p.template == Template::Custom {
            return Err(JobError::bad_input("a custom template needs a prompt"));
        }
        if chars > 2000 {
            return Err(JobError::bad_input(format!(
                "the prompt is {chars} characters, over 2000"
            )));
        }
        if !(1..=30).contains(&p.seconds) {
            return Err(JobError::bad_input(format!(
                "seconds must be 1-30, got {}",
                p.seconds
            )));
        }
        Ok(())
    }

    async fn run(&self, p: VideoRequest, ctx: JobContext) -> Result<VideoOutput, JobError> {
        let body = self.request_body(&p).await?;
        let bytes = run_task(
            &ctx,
            &self.client,
            &self.model,
            TaskKind::Video,
            body,
            self.poll_interval,
        )
        .await?;
        let stored = self
            .media
            .artifacts
            .put(bytes, "mp4", "video/mp4")
            .await
            .map_err(artifact_error)?;
        let path = self
            .media
            .artifacts
            .local_path(&stored.key)
            .await
            .map_err(artifact_error)?;
        let info = genq_media::probe_video(&path).await.map_err(|e| {
            JobError::transient(format!("the provider's video is not playable: {e}"))
        })?;
        if stored.bytes <= TELEGRAM_FILE_LIMIT as u64 {
            return Ok(VideoOutput {
                artifact: stored,
                duration_secs: info.duration_secs,
                width: info.width,
                height: info.height,
                reencoded: false,
            });
        }
        let fitted = genq_media::fit_video(&path, TELEGRAM_FILE_LIMIT as u64)
            .await
            .map_err(media_error)?;
        let artifact = self
            .media
            .artifacts
            .put_file(fitted, "mp4", "video/mp4")
            .await
            .map_err(artifact_error)?;
        Ok(VideoOutput {
            artifact,
            duration_secs: info.duration_secs,
            width: info.width,
            height: info.height,
            reencoded: true,
        })
    }
}
