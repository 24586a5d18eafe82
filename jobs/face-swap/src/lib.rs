//! FaceSwap: the face from a source photo onto a target image, through a
//! queue-style provider (submitted once, resumed after a crash).

use std::time::Duration;

use genq_core::{Job, JobContext, JobError, RetryPolicy};
use genq_jobkit::{ImageOutput, MediaDeps, RunSettings, base64, load_input, run_task, store_image};
use genq_providers::{TaskClient, TaskKind};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaceSwapRequest {
    /// Artifact key of the photo with the face.
    pub source: String,
    /// Artifact key of the image to put it on.
    pub target: String,
}

pub struct FaceSwap {
    client: TaskClient,
    model: String,
    media: MediaDeps,
    poll_interval: Duration,
    run: RunSettings,
}

impl FaceSwap {
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
}

impl Job for FaceSwap {
    type Payload = FaceSwapRequest;
    type Output = ImageOutput;
    const NAME: &'static str = "face_swap";
    const DEFAULT_QUEUE: &'static str = "img";

    fn timeout(&self) -> Duration {
        self.run.timeout
    }

    fn retry_policy(&self) -> RetryPolicy {
        self.run.policy.clone()
    }

    async fn run(&self, p: FaceSwapRequest, ctx: JobContext) -> Result<ImageOutput, JobError> {
        let source = load_input(&self.media, &p.source).await?;
        let target = load_input(&self.media, &p.target).await?;
        for (name, bytes) in [("source", &source), ("target", &target)] {
            genq_media::dimensions(bytes)
                .map_err(|e| JobError::bad_input(format!("{name} photo: {e}")))?;
        }
        let input =
            serde_json::json!({ "source_b64": base64(&source), "target_b64": base64(&target) });
        let bytes = run_task(
            &ctx,
            &self.client,
            &self.model,
            TaskKind::FaceSwap,
            input,
            self.poll_interval,
        )
        .await?;
        store_image(&self.media, bytes).await
    }
}
