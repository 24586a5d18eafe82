//! The bot's messages as the fake records them: a send's draft (kind, text,
//! markup, file), given the chat's next message id, kept for tests and returned
//! as Telegram's Message object.

use serde_json::{Value, json};

use super::{
    CALLBACK_DATA_LIMIT, Entry, Shared,
    objects::{self, FileMeta},
    params::Params,
    records::{SentKind, SentMessage},
    reply::TgError,
};

/// `reply_markup`, if any, with its buttons' `callback_data` checked (1-64 bytes).
pub(crate) fn reply_markup(params: &Params) -> Result<Option<Value>, TgError> {
    let Some(markup) = params.json("reply_markup")? else {
        return Ok(None);
    };
    let buttons = markup
        .get("inline_keyboard")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
        .flatten();
    for button in buttons {
        if let Some(data) = button.get("callback_data").and_then(Value::as_str)
            && (data.is_empty() || data.len() > CALLBACK_DATA_LIMIT)
        {
            return Err(TgError::bad_request("BUTTON_DATA_INVALID"));
        }
    }
    Ok(Some(markup))
}

/// The part of `markup` a Message carries: an inline keyboard.
pub(crate) fn inline_markup(markup: Option<&Value>) -> Option<Value> {
    markup
        .filter(|m| m.get("inline_keyboard").is_some())
        .cloned()
}

/// A message the bot is sending, before it has an id.
pub(crate) struct Draft {
    pub(crate) kind: SentKind,
    pub(crate) text: Option<String>,
    pub(crate) parse_mode: Option<String>,
    pub(crate) reply_markup: Option<Value>,
    /// The file and its object in the Message (`photo`, `video`, …).
    pub(crate) file: Option<(FileMeta, Value)>,
    /// `None` for a file sent by URL.
    pub(crate) file_len: Option<usize>,
}

impl Draft {
    pub(crate) fn new(
        kind: SentKind,
        text: Option<String>,
        params: &Params,
    ) -> Result<Self, TgError> {
        Ok(Self {
            kind,
            text,
            parse_mode: params.str("parse_mode"),
            reply_markup: reply_markup(params)?,
            file: None,
            file_len: None,
        })
    }
}

/// Gives `draft` the chat's next message id and records it; the Message object.
pub(crate) fn record_sent(shared: &Shared, chat_id: i64, draft: Draft) -> Value {
    let mut state = shared.state();
    let chat = state.chat(chat_id);
    let message_id = chat.next_message_id();
    let mut object = objects::message(chat_id, message_id, shared.bot.user());
    if let Some(text) = draft
        .text
        .as_ref()
        .filter(|_| draft.kind != SentKind::Invoice)
    {
        let field = if draft.kind == SentKind::Text {
            "text"
        } else {
            "caption"
        };
        object.insert(field.to_owned(), json!(text));
    }
    if let Some((_, media)) = &draft.file {
        object.insert(draft.kind.file_field().to_owned(), media.clone());
    }
    if let Some(markup) = inline_markup(draft.reply_markup.as_ref()) {
        object.insert("reply_markup".to_owned(), markup);
    }
    let object = Value::Object(object);
    let sent = SentMessage {
        kind: draft.kind,
        message_id,
        text: draft.text,
        parse_mode: draft.parse_mode,
        reply_markup: draft.reply_markup,
        file_id: draft.file.map(|(meta, _)| meta.file_id),
        file_len: draft.file_len,
        edits: Vec::new(),
        deleted: false,
    };
    chat.entries.push(Entry {
        sent,
        object: object.clone(),
    });
    object
}
