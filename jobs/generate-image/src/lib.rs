//! GenerateImage: a prompt becomes an image through an OpenAI-compatible images API
//! or a queue-style provider; the result is normalised (PNG/JPEG), shrunk under
//! Telegram's 10 MB photo limit and stored as an artifact.

use std::time::Duration;

use genq_core::{Job, JobContext, JobError, RetryPolicy};
use genq_jobkit::{ImageOutput, MediaDeps, RunSettings, run_task, store_image};
use genq_providers::{OpenAiClient, TaskClient, TaskKind};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRequest {
    pub prompt: String,
    #[serde(default = "default_side")]
    pub width: u32,
    #[serde(default = "default_side")]
    pub height: u32,
}

fn default_side() -> u32 {
    1024
}

/// Which protocol draws the image.
pub enum ImageProvider {
    OpenAi(OpenAiClient),
    Queue {
        client: TaskClient,
        poll_interval: Duration,
    },
}

pub struct GenerateImage {
    provider: ImageProvider,
    model: String,
    media: MediaDeps,
    run: RunSettings,
}

impl GenerateImage {
    pub fn new(
        provider: ImageProvider,
        model: impl Into<String>,
        media: MediaDeps,
        run: RunSettings,
    ) -> Self {
        Self {
            provider,
            model: model.into(),
            media,
            run,
        }
    }
}

impl Job for GenerateImage {
    type Payload = ImageRequest;
    type Output = ImageOutput;
    const NAME: &'static str = "generate_image";
    const DEFAULT_QUEUE: &'static str = "img";

    fn timeout(&self) -> Duration {
        self.run.timeout
    }

    fn retry_policy(&self) -> RetryPolicy {
        self.run.policy.clone()
    }

    fn validate(&self, p: &ImageRequest) -> Result<(), JobError> {
        let chars = p.prompt.trim().chars().count();
        if chars == 0 || chars > 4000 {
            return Err(JobError::bad_input(format!(
                "the prompt must be 1-4000 characters, got {chars}"
            )));
        }
        for (name, side) in [("width", p.width), ("height", p.height)] {
            if !(64..=4096).contains(&side) {
                return Err(JobError::bad_input(format!(
                    "{name} {side} must be 64-4096"
                )));
            }
        }
        Ok(())
    }

    async fn run(&self, p: ImageRequest, ctx: JobContext) -> Result<ImageOutput, JobError> {
        let bytes = match &self.provider {
            ImageProvider::OpenAi(client) => {
                client
                    .image(&self.model, &p.prompt, p.width, p.height)
                    .await?
            }
            ImageProvider::Queue {
                client,
                poll_interval,
            } => {
                let input =
                    serde_json::json!({ "prompt": p.prompt, "width": p.width, "height": p.height });
                run_task(
                    &ctx,
                    client,
                    &self.model,
                    TaskKind::Image,
                    input,
                    *poll_interval,
                )
                .await?
            }
        };
        store_image(&self.media, bytes).await
    }
}
