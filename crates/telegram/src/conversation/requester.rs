//! Who is asking, and where to answer: the requester of every conversation, the
//! button tap still waiting for its answer, and sending to the requester's chat
//! (the tap answered first).

use teloxide::{
    payloads::AnswerCallbackQuerySetters,
    prelude::Requester as _,
    types::{InlineKeyboardMarkup, MessageId},
};
use tracing::warn;

use crate::{
    app::BotApp,
    i18n::Lang,
    transport::send::{say, trim_chars, with_retry},
};

/// Telegram's limit for an answer to a button (characters).
pub(crate) const CALLBACK_TEXT_LIMIT: usize = 200;

/// Who is asking, and where to answer.
#[derive(Debug, Clone)]
pub struct Requester {
    pub chat_id: i64,
    pub tg_user: i64,
    /// The store's user id.
    pub user_id: i64,
    pub lang: Lang,
    /// The user's message being answered.
    pub reply_to: Option<i32>,
    /// The button tap being answered: its answer (a notice shown at once, outside
    /// Telegram's message limits) is the acknowledgement, before any message.
    pub tap: Option<TapAnswer>,
}

/// A button tap awaiting its answer (`answerCallbackQuery`), answered once.
#[derive(Debug, Clone)]
pub struct TapAnswer {
    pub id: teloxide::types::CallbackQueryId,
    answered: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl TapAnswer {
    pub fn new(id: teloxide::types::CallbackQueryId) -> Self {
        Self {
            id,
            answered: Default::default(),
        }
    }

    /// True the first time only: whoever gets it answers the tap.
    pub fn take(&self) -> bool {
        !self
            .answered
            .swap(true, std::sync::atomic::Ordering::SeqCst)
    }
}

impl BotApp {
    /// Answers a tap (`answerCallbackQuery`, outside the message limits; a short
    /// 429 is waited out). Best effort: logged when it fails.
    pub(crate) async fn send_tap_answer(&self, tap: &TapAnswer, text: Option<String>) {
        let answered = with_retry(|| {
            let mut req = self.bot.answer_callback_query(tap.id.clone());
            if let Some(text) = &text {
                req = req.text(trim_chars(text, CALLBACK_TEXT_LIMIT));
            }
            req.into_future()
        })
        .await;
        if let Err(e) = answered {
            if matches!(e, teloxide::RequestError::RetryAfter(_)) {
                self.metrics.telegram_429.with_label_values(&["tap"]).inc();
            }
            warn!(error = %e, "tap not answered");
        }
    }

    /// Sends `text` to the requester's chat; a tap still waiting for its answer is
    /// answered first (empty), so a slow or rate-limited message never delays it.
    pub(crate) async fn say_to(
        &self,
        who: &Requester,
        text: &str,
        markup: Option<InlineKeyboardMarkup>,
    ) -> Result<MessageId, teloxide::RequestError> {
        if let Some(tap) = who.tap.as_ref().filter(|tap| tap.take()) {
            self.send_tap_answer(tap, None).await;
        }
        let sent = say(&self.bot, who.chat_id, text, markup).await;
        if let Err(e) = &sent
            && self.cooling.note_error(who.chat_id, e)
        {
            self.metrics.telegram_429.with_label_values(&["ack"]).inc();
        }
        sent
    }
}
