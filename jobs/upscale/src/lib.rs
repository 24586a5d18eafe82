//! Upscale: an image made 2x or 4x larger through a queue-style provider, or, when
//! none is configured, locally with a Lanczos3 resampler off the async runtime.
//! Input and output size limits are enforced with a clear error.

use std::time::Duration;

use genq_core::{Job, JobContext, JobError, RetryPolicy};
use genq_jobkit::{
    ImageOutput, MediaDeps, RunSettings, base64, load_input, media_error, run_task, store_image,
};
use genq_providers::{TaskClient, TaskKind};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpscaleRequest {
    /// Artifact key of the image.
    pub image: String,
    /// 2 or 4.
    pub factor: u32,
}

/// Who upscales.
pub enum Upscaler {
    Provider {
        client: TaskClient,
        model: String,
        poll_interval: Duration,
    },
    Local,
}

pub struct Upscale {
    upscaler: Upscaler,
    media: MediaDeps,
    run: RunSettings,
}

impl Upscale {
    pub fn new(upscaler: Upscaler, media: MediaDeps, run: RunSettings) -> Self {
        Self {
            upscaler,
            media,
            run,
        }
    }
}

impl Job for Upscale {
    type Payload = UpscaleRequest;
    type Output = ImageOutput;
    const NAME: &'static str = "upscale";
    const DEFAULT_QUEUE: &'static str = "img";

    fn timeout(&self) -> Duration {
        self.run.timeout
    }

    fn retry_policy(&self) -> RetryPolicy {
        self.run.policy.clone()
    }

    fn validate(&self, p: &UpscaleRequest) -> Result<(), JobError> {
        if p.factor != 2 && p.factor != 4 {
            return Err(JobError::bad_input(format!(
                "factor must be 2 or 4, got {}",
                p.factor
            )));
        }
        Ok(())
    }

    async fn run(&self, p: UpscaleRequest, ctx: JobContext) -> Result<ImageOutput, JobError> {
        let input = load_input(&self.media, &p.image).await?;
        let (w, h) = genq_media::dimensions(&input).map_err(media_error)?;
        let limits = self.media.limits;
        let (out_w, out_h) = (
            u64::from(w) * u64::from(p.factor),
            u64::from(h) * u64::from(p.factor),
        );
        if out_w.max(out_h) > u64::from(limits.max_side) || out_w * out_h > limits.max_pixels {
            return Err(JobError::bad_input(format!(
                "a {w}x{h} image upscaled {}x would be {out_w}x{out_h}, over the {} px side / {} pixel limit",
                p.factor, limits.max_side, limits.max_pixels
            )));
        }
        let bytes = match &self.upscaler {
            Upscaler::Provider {
                client,
                model,
                poll_interval,
            } => {
                let body = serde_json::json!({ "image_b64": base64(&input), "factor": p.factor });
                run_task(&ctx, client, model, TaskKind::Upscale, body, *poll_interval).await?
            }
            Upscaler::Local => {
                genq_media::upscale(input, p.factor, limits)
                    .await
                    .map_err(media_error)?
                    .bytes
            }
        };
        store_image(&self.media, bytes).await
    }
}
