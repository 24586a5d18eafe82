//! GenerateImagePrompt: the dialog and the persona's fixed look become one image
//! prompt (OpenAI-compatible chat), then a GenerateImage job is pushed with it.
//! A re-run pushes the same GenerateImage job (its idempotency key is this job's id).

use std::time::Duration;

use genq_core::{Job, JobContext, JobError, RetryPolicy};
use genq_jobkit::RunSettings;
use genq_providers::{ChatMessage, OpenAiClient};
use serde::{Deserialize, Serialize};

const MAX_PROMPT_CHARS: usize = 1000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagePromptRequest {
    /// The persona's fixed look and clothing.
    pub persona_look: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default = "default_side")]
    pub width: u32,
    #[serde(default = "default_side")]
    pub height: u32,
}

fn default_side() -> u32 {
    1024
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagePrompt {
    pub prompt: String,
    /// The GenerateImage job that draws it.
    pub image_job_id: String,
}

pub struct GenerateImagePrompt {
    client: OpenAiClient,
    model: String,
    run: RunSettings,
}

impl GenerateImagePrompt {
    pub fn new(client: OpenAiClient, model: impl Into<String>, run: RunSettings) -> Self {
        Self {
            client,
            model: model.into(),
            run,
        }
    }
}

fn instructions(look: &str) -> String {
    format!(
        "Write one prompt for an image generator showing the current scene of this conversation. \
         Describe the scene, setting, light and mood in at most 60 words; no dialogue. \
         The character always looks like this: {look}"
    )
}

impl Job for GenerateImagePrompt {
    type Payload = ImagePromptRequest;
    type Output = ImagePrompt;
    const NAME: &'static str = "generate_image_prompt";
    const DEFAULT_QUEUE: &'static str = "text";

    fn timeout(&self) -> Duration {
        self.run.timeout
    }

    fn retry_policy(&self) -> RetryPolicy {
        self.run.policy.clone()
    }

    fn validate(&self, p: &ImagePromptRequest) -> Result<(), JobError> {
        if p.messages.is_empty() {
            return Err(JobError::bad_input(
                "messages is empty: there is no scene to draw",
            ));
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

    async fn run(&self, p: ImagePromptRequest, ctx: JobContext) -> Result<ImagePrompt, JobError> {
        let mut messages = vec![ChatMessage::new("system", instructions(&p.persona_look))];
        messages.extend(p.messages);
        let reply = self.client.chat(&self.model, &messages, Some(300)).await?;
        let prompt = genq_jobkit::truncate_chars(reply.trim(), MAX_PROMPT_CHARS);
        if prompt.is_empty() {
            return Err(JobError::transient("the provider returned an empty prompt"));
        }
        let payload = serde_json::json!({ "prompt": prompt, "width": p.width, "height": p.height });
        let image_job_id = ctx.enqueue("generate_image", &payload, "image").await?;
        Ok(ImagePrompt {
            prompt,
            image_job_id,
        })
    }
}
