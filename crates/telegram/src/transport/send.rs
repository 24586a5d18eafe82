//! Talking to Telegram: the bot type, keyboards, sends that wait out a short
//! flood-control pause (for answers in handlers), the chats Telegram asked to slow
//! down for, and what a Telegram error means for a delivery job.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use genq_core::JobError;
use teloxide::{
    ApiError, RequestError,
    payloads::{EditMessageTextSetters, SendMessageSetters},
    prelude::*,
    types::{ChatAction, InlineKeyboardMarkup, MessageId},
};

/// The bot every part uses. Nothing queues inside it: a 429 comes back to the
/// caller at once, and only that caller waits. Handlers wait a short one out
/// ([`with_retry`]: that chat's next update waits, no other), status edits skip a
/// chat that is cooling ([`ChatCooling`]) and are sent later with the latest text,
/// delivery jobs are rescheduled (no slot held).
pub type TgBot = Bot;

/// The chats Telegram answered 429 for, and until when: status edits and
/// deliveries leave them alone meanwhile, acknowledgements still go first.
#[derive(Default)]
pub struct ChatCooling {
    until: Mutex<HashMap<i64, Instant>>,
}

impl ChatCooling {
    /// Telegram asked to wait `after` before sending to `chat` again.
    pub fn note(&self, chat: i64, after: Duration) {
        let mut map = self.until.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        map.retain(|_, t| *t > now);
        let until = now + after;
        let entry = map.entry(chat).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// How long `chat` is still cooling, if it is.
    pub fn remaining(&self, chat: i64) -> Option<Duration> {
        let map = self.until.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&chat)
            .and_then(|t| t.checked_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
    }

    /// Notes a 429 in `result` for `chat`; true when it was one.
    pub fn note_error(&self, chat: i64, e: &RequestError) -> bool {
        if let RequestError::RetryAfter(after) = e {
            self.note(chat, after.duration());
            return true;
        }
        false
    }
}

/// Telegram's message text limit (characters).
pub const TEXT_LIMIT: usize = 4096;
/// Telegram's caption limit (characters).
pub const CAPTION_LIMIT: usize = 1024;

/// The longest flood-control pause a handler waits out before giving up.
const HANDLER_MAX_WAIT: Duration = Duration::from_secs(10);

/// `text` cut to `max` characters (with an ellipsis when cut).
pub fn trim_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Runs a request again after Telegram's `retry_after` when that is short (a
/// handler's answer should still arrive); other errors come back at once.
pub async fn with_retry<T, F, Fut>(mut call: F) -> Result<T, RequestError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RequestError>>,
{
    let mut waited = Duration::ZERO;
    loop {
        match call().await {
            Err(RequestError::RetryAfter(after))
                if waited + after.duration() <= HANDLER_MAX_WAIT =>
            {
                tracing::info!(retry_after = ?after.duration(), "Telegram flood control; waiting");
                tokio::time::sleep(after.duration()).await;
                waited += after.duration();
            }
            other => return other,
        }
    }
}

/// Sends a text message (retrying a short 429); its message id.
pub async fn say(
    bot: &TgBot,
    chat_id: i64,
    text: &str,
    markup: Option<InlineKeyboardMarkup>,
) -> Result<MessageId, RequestError> {
    let text = trim_chars(text, TEXT_LIMIT);
    let msg = with_retry(|| {
        let mut req = bot.send_message(ChatId(chat_id), text.clone());
        if let Some(m) = &markup {
            req = req.reply_markup(m.clone());
        }
        async move { req.await }
    })
    .await?;
    Ok(msg.id)
}

/// Replaces a message's text (and its buttons: `None` removes them). Editing to the
/// same text is not an error.
pub async fn edit(
    bot: &TgBot,
    chat_id: i64,
    message_id: i32,
    text: &str,
    markup: Option<InlineKeyboardMarkup>,
) -> Result<(), RequestError> {
    let text = trim_chars(text, TEXT_LIMIT);
    let mut req = bot.edit_message_text(ChatId(chat_id), MessageId(message_id), text);
    req =
        req.reply_markup(markup.unwrap_or_else(|| InlineKeyboardMarkup::new(Vec::<Vec<_>>::new())));
    match req.await {
        Ok(_) | Err(RequestError::Api(ApiError::MessageNotModified)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Shows "typing…" (best effort: a failure is only logged).
pub async fn typing(bot: &TgBot, chat_id: i64) {
    if let Err(e) = bot
        .send_chat_action(ChatId(chat_id), ChatAction::Typing)
        .await
    {
        tracing::debug!(chat_id, error = %e, "typing action not sent");
    }
}

/// What a Telegram error means for a delivery job: a 429 is rate limiting (the job
/// is rescheduled after `retry_after`), network trouble is transient, a chat that is
/// gone or blocked us is bad input (nothing to retry).
pub fn job_error(e: RequestError) -> JobError {
    match e {
        RequestError::RetryAfter(after) => JobError::rate_limited(
            format!("Telegram flood control: retry after {:?}", after.duration()),
            Some(after.duration()),
        ),
        RequestError::Network(e) => JobError::transient(format!("Telegram unreachable: {e}")),
        RequestError::Io(e) => JobError::transient(format!("Telegram upload I/O: {e}")),
        RequestError::InvalidJson { source, .. } => {
            JobError::transient(format!("Telegram answered something unreadable: {source}"))
        }
        RequestError::Api(
            api @ (ApiError::BotBlocked
            | ApiError::ChatNotFound
            | ApiError::UserDeactivated
            | ApiError::BotKicked
            | ApiError::BotKickedFromSupergroup),
        ) => JobError::bad_input(format!("the chat cannot be reached: {api}")),
        RequestError::Api(api) => JobError::transient(format!("Telegram refused: {api}")),
        RequestError::MigrateToChatId(id) => JobError::bad_input(format!("the chat moved to {id}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimming_counts_characters_and_marks_the_cut() {
        assert_eq!(trim_chars("short", 10), "short");
        assert_eq!(trim_chars("exactly10!", 10), "exactly10!");
        let cut = trim_chars(&"я".repeat(2000), CAPTION_LIMIT);
        assert_eq!(cut.chars().count(), CAPTION_LIMIT);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn a_cooling_chat_is_remembered_until_its_wait_is_over() {
        let cooling = ChatCooling::default();
        assert_eq!(cooling.remaining(1), None);
        cooling.note(1, Duration::from_secs(30));
        cooling.note(1, Duration::from_secs(1));
        assert!(
            cooling
                .remaining(1)
                .is_some_and(|d| d > Duration::from_secs(25))
        );
        assert_eq!(cooling.remaining(2), None);
        cooling.note(3, Duration::ZERO);
        assert_eq!(cooling.remaining(3), None);
    }

    #[test]
    fn a_429_is_rate_limiting_with_telegrams_wait() {
        let e = job_error(RequestError::RetryAfter(
            teloxide::types::Seconds::from_seconds(7),
        ));
        assert_eq!(e.class, genq_core::FailureClass::RateLimited);
        assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
        let blocked = job_error(RequestError::Api(ApiError::BotBlocked));
        assert_eq!(blocked.class, genq_core::FailureClass::BadInput);
        let other = job_error(RequestError::Api(ApiError::MessageToEditNotFound));
        assert_eq!(other.class, genq_core::FailureClass::Transient);
    }
}
