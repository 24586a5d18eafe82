//! GenerateReply: a persona's reply in a dialog. The persona's system prompt and
//! the dialog's recent messages (from the database, in the payload) go to an
//! OpenAI-compatible chat API; the reply comes back trimmed to a Telegram message.

use std::time::Duration;

use genq_core::{Job, JobContext, JobError, RetryPolicy};
use genq_jobkit::RunSettings;
use genq_providers::{ChatMessage, OpenAiClient};
use serde::{Deserialize, Serialize};

/// Telegram's message length limit.
pub const TELEGRAM_TEXT_LIMIT: usize = 4096;
const MAX_INPUT_CHARS: usize = 64_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyRequest {
    pub persona_prompt: String,
    /// Oldest first; the last one is the user's.
    pub messages: Vec<ChatMessage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub text: String,
}

pub struct GenerateReply {
    client: OpenAiClient,
    model: String,
    run: RunSettings,
}

impl GenerateReply {
    pub fn new(client: OpenAiClient, model: impl Into<String>, run: RunSettings) -> Self {
        Self {
            client,
            model: model.into(),
            run,
        }
    }
}

impl Job for GenerateReply {
    type Payload = ReplyRequest;
    type Output = Reply;
    const NAME: &'static str = "generate_reply";
    const DEFAULT_QUEUE: &'static str = "text";

    fn timeout(&self) -> Duration {
        self.run.timeout
    }

    fn retry_policy(&self) -> RetryPolicy {
        self.run.policy.clone()
    }

    fn validate(&self, p: &ReplyRequest) -> Result<(), JobError> {
        if p.persona_prompt.trim().is_empty() {
            return Err(JobError::bad_input("persona_prompt is empty"));
        }
        match p.messages.last() {
            None => {
                return Err(JobError::bad_input(
                    "messages is empty: there is nothing to reply to",
                ));
            }
            Some(m) if m.role != "user" => {
                return Err(JobError::bad_input(format!(
                    "the last message is the {}'s, not the user's",
                    m.role
                )));
            }
            Some(_) => {}
        }
        if let Some(m) = p
            .messages
            .iter()
            .find(|m| !["user", "assistant", "system"].contains(&m.role.as_str()))
        {
            return Err(JobError::bad_input(format!(
                "unknown message role '{}'",
                m.role
            )));
        }
        let chars: usize = p
            .messages
            .iter()
            .map(|m| m.content.chars().count())
            .sum::<usize>()
            + p.persona_prompt.chars().count();
        if chars > MAX_INPUT_CHARS {
            return Err(JobError::bad_input(format!(
                "the dialog is {chars} characters, over the {MAX_INPUT_CHARS} limit"
            )));
        }
        Ok(())
    }

    async fn run(&self, p: ReplyRequest, _ctx: JobContext) -> Result<Reply, JobError> {
        let mut messages = Vec::with_capacity(p.messages.len() + 1);
        messages.push(ChatMessage::new("system", p.persona_prompt));
        messages.extend(p.messages);
        let text = self.client.chat(&self.model, &messages, Some(1000)).await?;
        let text = genq_jobkit::truncate_chars(text.trim(), TELEGRAM_TEXT_LIMIT);
        if text.is_empty() {
            return Err(JobError::transient("the provider returned an empty reply"));
        }
        Ok(Reply { text })
    }
}
