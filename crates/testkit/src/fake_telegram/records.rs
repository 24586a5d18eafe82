//! What the fake records for tests to inspect: the bot's messages and chat actions,
//! and its answers to callback queries.

use serde_json::Value;

/// What a [`SentMessage`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SentKind {
    /// `sendMessage`.
    Text,
    /// `sendPhoto`.
    Photo,
    /// `sendVideo`.
    Video,
    /// `sendDocument`.
    Document,
    /// `sendVoice`.
    Voice,
    /// `sendChatAction`: no message; `text` holds the action (`typing`, `upload_photo`, …).
    Action,
    /// `sendInvoice`: `text` holds the invoice's title.
    Invoice,
}

impl SentKind {
    /// The request parameter and Message field carrying this kind's file.
    pub(crate) fn file_field(self) -> &'static str {
        match self {
            Self::Photo => "photo",
            Self::Video => "video",
            Self::Document => "document",
            Self::Voice => "voice",
            Self::Text | Self::Action | Self::Invoice => "",
        }
    }
}

/// Something the bot sent to a chat, in the order it was sent.
#[derive(Debug, Clone, PartialEq)]
pub struct SentMessage {
    pub kind: SentKind,
    /// The message's id in its chat (ids grow per chat, shared with the user's
    /// messages, as in Telegram); 0 for a [`SentKind::Action`].
    pub message_id: i32,
    /// The current text (a text message) or caption (a file); the action of a
    /// [`SentKind::Action`]. As sent: markup of `parse_mode` is not parsed.
    pub text: Option<String>,
    /// `parse_mode` as sent (`HTML`, `MarkdownV2`, …).
    pub parse_mode: Option<String>,
    /// The current `reply_markup` as sent (any kind of keyboard), if any.
    pub reply_markup: Option<Value>,
    /// The sent file's id (usable with [`FakeTelegram::file`](super::FakeTelegram::file)).
    pub file_id: Option<String>,
    /// The sent file's size in bytes; `None` for a file sent by URL (not fetched).
    pub file_len: Option<usize>,
    /// The text this message had before each `editMessageText`, oldest first (so
    /// `edits[0]` is the original text); empty if it was never edited.
    pub edits: Vec<String>,
    /// Deleted by `deleteMessage`.
    pub deleted: bool,
}

/// An `answerCallbackQuery` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackAnswer {
    pub callback_query_id: String,
    pub text: Option<String>,
    pub show_alert: bool,
    pub url: Option<String>,
    /// How long after the button was pressed the answer came.
    pub after: std::time::Duration,
}

/// An `answerPreCheckoutQuery` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreCheckoutAnswer {
    pub pre_checkout_query_id: String,
    pub ok: bool,
    pub error_message: Option<String>,
    /// How long after the query was sent to the bot the answer came (Telegram
    /// cancels the purchase after 10 s).
    pub after: std::time::Duration,
}

/// An invoice the bot sent, as the user's Telegram shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    pub chat_id: i64,
    pub message_id: i32,
    pub title: String,
    pub description: String,
    pub payload: String,
    pub currency: String,
    /// The sum of the prices (Stars, for `XTR`).
    pub total_amount: i64,
}

/// A `refundStarPayment` Telegram carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StarRefund {
    pub user_id: i64,
    pub telegram_payment_charge_id: String,
}
