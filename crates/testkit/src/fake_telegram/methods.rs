//! The Bot API methods the fake serves, by lower-case name.

use serde_json::{Value, json};

use super::{
    CALLBACK_TEXT_LIMIT, CAPTION_LIMIT, Entry, Shared, TEXT_LIMIT, UPLOAD_LIMIT, files,
    objects::{self, FileMeta},
    params::{FileRef, Params, Part},
    payments,
    records::{CallbackAnswer, SentKind, SentMessage},
    reply::{NOT_MODIFIED, TgError},
    sent::{Draft, inline_markup, record_sent, reply_markup},
    updates,
};

/// The chat actions Telegram knows.
const CHAT_ACTIONS: &[&str] = &[
    "typing",
    "upload_photo",
    "record_video",
    "upload_video",
    "record_voice",
    "upload_voice",
    "upload_document",
    "choose_sticker",
    "find_location",
    "record_video_note",
    "upload_video_note",
];

/// Serves `method` (lower case) with `params`: its result, or Telegram's error.
pub(crate) async fn call(shared: &Shared, method: &str, params: &Params) -> Result<Value, TgError> {
    if rate_limited(method)
        && let Some(secs) = shared.state().scripted_429(params.i64("chat_id"))
    {
        return Err(TgError::retry_after(secs));
    }
    match method {
        "getme" => Ok(shared.bot.me()),
        "getwebhookinfo" => Ok(json!({
            "url": "",
            "has_custom_certificate": false,
            "pending_update_count": 0,
        })),
        "setwebhook" | "setmycommands" | "deletemycommands" => Ok(json!(true)),
        "getmycommands" => Ok(json!([])),
        "deletewebhook" => {
            if params.flag("drop_pending_updates") {
                shared.drop_pending_updates();
            }
            Ok(json!(true))
        }
        "getupdates" => updates::get_updates(shared, params).await,
        "sendmessage" => send_message(shared, params),
        "editmessagetext" => edit_message_text(shared, params),
        "editmessagereplymarkup" => edit_reply_markup(shared, params),
        "deletemessage" => delete_message(shared, params),
        "sendchataction" => send_chat_action(shared, params),
        "answercallbackquery" => answer_callback_query(shared, params),
        "sendphoto" => send_file(shared, params, SentKind::Photo),
        "sendvideo" => send_file(shared, params, SentKind::Video),
        "senddocument" => send_file(shared, params, SentKind::Document),
        "sendvoice" => send_file(shared, params, SentKind::Voice),
        "sendmediagroup" => send_media_group(shared, params),
        "getfile" => files::get_file(shared, params),
        "sendinvoice" => payments::send_invoice(shared, params),
        "answerprecheckoutquery" => payments::answer_pre_checkout_query(shared, params),
        "refundstarpayment" => payments::refund_star_payment(shared, params),
        _ => Err(TgError::method_not_found()),
    }
}

/// Whether a scripted 429 applies to `method`: the send and edit methods served.
fn rate_limited(method: &str) -> bool {
    matches!(
        method,
        "sendmessage"
            | "editmessagetext"
            | "editmessagereplymarkup"
            | "sendchataction"
            | "sendphoto"
            | "sendvideo"
            | "senddocument"
            | "sendvoice"
            | "sendmediagroup"
            | "sendinvoice"
    )
}

/// A message's text: not blank, at most [`TEXT_LIMIT`] characters (else `too_long`).
fn check_text(text: &str, too_long: &str) -> Result<(), TgError> {
    if text.trim().is_empty() {
        return Err(TgError::bad_request("message text is empty"));
    }
    if text.chars().count() > TEXT_LIMIT {
        return Err(TgError::bad_request(too_long));
    }
    Ok(())
}

/// `sendMessage`.
fn send_message(shared: &Shared, params: &Params) -> Result<Value, TgError> {
    let chat_id = params.chat_id()?;
    let text = params.str("text").unwrap_or_default();
    check_text(&text, "message is too long")?;
    let draft = Draft::new(SentKind::Text, Some(text), params)?;
    Ok(record_sent(shared, chat_id, draft))
}

/// `sendPhoto`, `sendVideo`, `sendDocument`, `sendVoice`: the file as an upload, a
/// file id or a URL (not fetched), with a caption of at most [`CAPTION_LIMIT`].
fn send_file(shared: &Shared, params: &Params, kind: SentKind) -> Result<Value, TgError> {
    let chat_id = params.chat_id()?;
    let caption = params.str("caption");
    if caption
        .as_ref()
        .is_some_and(|c| c.chars().count() > CAPTION_LIMIT)
    {
        return Err(TgError::bad_request("message caption is too long"));
    }
    let field = kind.file_field();
    let file = params
        .file(field)?
        .ok_or_else(|| TgError::bad_request(format!("there is no {field} in the request")))?;
    let mut draft = Draft::new(kind, caption, params)?;
    let file = resolve_file(shared, kind, file)?;
    draft.file_len = file.len;
    let media = media_object(kind, &file, params);
    draft.file = Some((file.meta, media));
    Ok(record_sent(shared, chat_id, draft))
}

/// `sendMediaGroup`: an album of 2-10 photos or videos (`media`, a JSON array of
/// InputMedia whose files are `attach://<part>` uploads, file ids or URLs); each
/// item is recorded as a message of its own, as Telegram does. Answers the array
/// of Messages.
fn send_media_group(shared: &Shared, params: &Params) -> Result<Value, TgError> {
    let chat_id = params.chat_id()?;
    let items = match params.json("media")? {
        Some(Value::Array(items)) => items,
        _ => return Err(TgError::bad_request("media is not an array")),
    };
    if !(2..=10).contains(&items.len()) {
        return Err(TgError::bad_request(
            "wrong number of messages in the media group: it must be 2-10",
        ));
    }
    let mut drafts = Vec::with_capacity(items.len());
    for item in &items {
        let kind = match item["type"].as_str() {
            Some("photo") => SentKind::Photo,
            Some("video") => SentKind::Video,
            Some("document") => SentKind::Document,
            _ => return Err(TgError::bad_request("unsupported media type in the group")),
        };
        let caption = item["caption"].as_str().map(str::to_owned);
        if caption
            .as_ref()
            .is_some_and(|c| c.chars().count() > CAPTION_LIMIT)
        {
            return Err(TgError::bad_request("message caption is too long"));
        }
        let media = item["media"]
            .as_str()
            .ok_or_else(|| TgError::bad_request("there is no media in a group item"))?;
        let file = params.file_ref(media)?;
        let mut draft = Draft::new(kind, caption, params)?;
        draft.reply_markup = None;
        let file = resolve_file(shared, kind, file)?;
        draft.file_len = file.len;
        let object = media_object(kind, &file, params);
        draft.file = Some((file.meta, object));
        drafts.push(draft);
    }
    let sent: Vec<Value> = drafts
        .into_iter()
        .map(|d| record_sent(shared, chat_id, d))
        .collect();
    Ok(Value::Array(sent))
}

/// The file a send refers to, once stored or found.
struct Resolved {
    meta: FileMeta,
    /// `None` when sent by URL.
    len: Option<usize>,
    /// A photo's width and height, when known.
    dimensions: Option<(u32, u32)>,
    file_name: Option<String>,
}

/// Checks and stores an upload, or finds a file by id, or records a URL.
fn resolve_file(shared: &Shared, kind: SentKind, file: FileRef) -> Result<Resolved, TgError> {
    match file {
        FileRef::Upload(part) => store_upload(shared, kind, part),
        FileRef::FileId(id) => {
            let state = shared.state();
            let file = state
                .files
                .get(&id)
                .ok_or_else(|| TgError::bad_request("wrong file identifier/HTTP URL specified"))?;
            Ok(Resolved {
                meta: file.meta.clone(),
                len: Some(file.bytes.len()),
                dimensions: None,
                file_name: None,
            })
        }
        FileRef::Url(url) => {
            let (folder, ext) = folder_and_ext(kind, None);
            let meta = shared
                .state()
                .store_file(folder, &ext, axum::body::Bytes::new());
            let file_name = url.rsplit('/').next().map(str::to_owned);
            Ok(Resolved {
                meta,
                len: None,
                dimensions: None,
                file_name,
            })
        }
    }
}

/// Checks an upload against Telegram's limits and stores it.
fn store_upload(shared: &Shared, kind: SentKind, part: Part) -> Result<Resolved, TgError> {
    let dimensions = if kind == SentKind::Photo {
        Some(files::check_photo(&part.bytes)?)
    } else if part.bytes.len() > UPLOAD_LIMIT {
        return Err(TgError::too_large());
    } else {
        None
    };
    let (folder, ext) = folder_and_ext(kind, part.file_name.as_deref());
    let len = part.bytes.len();
    let meta = shared.state().store_file(folder, &ext, part.bytes);
    Ok(Resolved {
        meta,
        len: Some(len),
        dimensions,
        file_name: part.file_name,
    })
}

/// Where a sent file of `kind` is kept, and its extension.
fn folder_and_ext(kind: SentKind, file_name: Option<&str>) -> (&'static str, String) {
    match kind {
        SentKind::Photo => ("photos", "jpg".to_owned()),
        SentKind::Video => ("videos", "mp4".to_owned()),
        SentKind::Voice => ("voice", "oga".to_owned()),
        SentKind::Document | SentKind::Text | SentKind::Action | SentKind::Invoice => {
            let ext = file_name
                .and_then(|n| n.rsplit_once('.'))
                .map(|(_, ext)| ext)
                .filter(|ext| {
                    (1..=8).contains(&ext.len()) && ext.chars().all(|c| c.is_ascii_alphanumeric())
                })
                .unwrap_or("bin");
            ("documents", ext.to_owned())
        }
    }
}

/// The Message's object for the file: `photo` (an array of sizes), `video`, …
fn media_object(kind: SentKind, file: &Resolved, params: &Params) -> Value {
    let number = |name: &str| params.i64(name).unwrap_or(0).max(0);
    match kind {
        SentKind::Photo => {
            let (width, height) = file.dimensions.unwrap_or_default();
            json!([file.meta.photo_size(width, height)])
        }
        SentKind::Video => file.meta.object(json!({
            "width": number("width"),
            "height": number("height"),
            "duration": number("duration"),
            "mime_type": "video/mp4",
        })),
        SentKind::Voice => file.meta.object(json!({
            "duration": number("duration"),
            "mime_type": "audio/ogg",
        })),
        SentKind::Document | SentKind::Text | SentKind::Action | SentKind::Invoice => {
            file.meta.object(json!({
            "file_name": file.file_name.as_deref().unwrap_or("file"),
            "mime_type": "application/octet-stream",
            }))
        }
    }
}

/// The chat and message an edit names; inline messages are not supported.
fn edit_target(params: &Params) -> Result<(i64, i32), TgError> {
    if params.str("inline_message_id").is_some() {
        return Err(TgError::bad_request(
            "inline messages are not supported by the fake",
        ));
    }
    Ok((params.chat_id()?, params.message_id()?))
}

/// Sets (or removes) the inline keyboard of a message's object and marks it edited.
fn set_object_markup(object: &mut Value, markup: Option<Value>) {
    if let Some(object) = object.as_object_mut() {
        match markup {
            Some(markup) => object.insert("reply_markup".to_owned(), markup),
            None => object.remove("reply_markup"),
        };
        object.insert("edit_date".to_owned(), json!(objects::now()));
    }
}

/// `editMessageText` of one of the bot's text messages (its inline keyboard is
/// replaced by the call's; none removes it, as in Telegram).
fn edit_message_text(shared: &Shared, params: &Params) -> Result<Value, TgError> {
    let (chat_id, message_id) = edit_target(params)?;
    let text = params.str("text").unwrap_or_default();
    check_text(&text, "MESSAGE_TOO_LONG")?;
    let markup = inline_markup(reply_markup(params)?.as_ref());
    let mut state = shared.state();
    let entry = state
        .chat(chat_id)
        .bot_message(message_id)
        .ok_or_else(|| TgError::bad_request("message to edit not found"))?;
    if entry.sent.kind != SentKind::Text {
        return Err(TgError::bad_request(
            "there is no text in the message to edit",
        ));
    }
    let same_markup = inline_markup(entry.sent.reply_markup.as_ref()) == markup;
    if entry.sent.text.as_deref() == Some(text.as_str()) && same_markup {
        return Err(TgError::bad_request(NOT_MODIFIED));
    }
    if let Some(old) = entry.sent.text.replace(text.clone()) {
        entry.sent.edits.push(old);
    }
    entry.sent.parse_mode = params.str("parse_mode");
    entry.sent.reply_markup.clone_from(&markup);
    entry.object["text"] = json!(text);
    set_object_markup(&mut entry.object, markup);
    Ok(entry.object.clone())
}

/// `editMessageReplyMarkup` of any of the bot's messages (no markup removes it).
fn edit_reply_markup(shared: &Shared, params: &Params) -> Result<Value, TgError> {
    let (chat_id, message_id) = edit_target(params)?;
    let markup = inline_markup(reply_markup(params)?.as_ref());
    let mut state = shared.state();
    let entry = state
        .chat(chat_id)
        .bot_message(message_id)
        .ok_or_else(|| TgError::bad_request("message to edit not found"))?;
    if inline_markup(entry.sent.reply_markup.as_ref()) == markup {
        return Err(TgError::bad_request(NOT_MODIFIED));
    }
    entry.sent.reply_markup.clone_from(&markup);
    set_object_markup(&mut entry.object, markup);
    Ok(entry.object.clone())
}

/// `deleteMessage` of a bot's message (kept in [`FakeTelegram::sent`] as deleted)
/// or of a user's message.
///
/// [`FakeTelegram::sent`]: super::FakeTelegram::sent
fn delete_message(shared: &Shared, params: &Params) -> Result<Value, TgError> {
    let chat_id = params.chat_id()?;
    let message_id = params.message_id()?;
    let mut state = shared.state();
    let chat = state.chat(chat_id);
    if let Some(entry) = chat.bot_message(message_id) {
        entry.sent.deleted = true;
    } else if !chat.user_messages.remove(&message_id) {
        return Err(TgError::bad_request("message to delete not found"));
    }
    Ok(json!(true))
}

/// `sendChatAction`, recorded as a [`SentKind::Action`].
fn send_chat_action(shared: &Shared, params: &Params) -> Result<Value, TgError> {
    let chat_id = params.chat_id()?;
    let action = params.str("action").unwrap_or_default();
    if !CHAT_ACTIONS.contains(&action.as_str()) {
        return Err(TgError::bad_request("wrong parameter action in request"));
    }
    let sent = SentMessage {
        kind: SentKind::Action,
        message_id: 0,
        text: Some(action),
        parse_mode: None,
        reply_markup: None,
        file_id: None,
        file_len: None,
        edits: Vec::new(),
        deleted: false,
    };
    shared.state().chat(chat_id).entries.push(Entry {
        sent,
        object: Value::Null,
    });
    Ok(json!(true))
}

/// `answerCallbackQuery` of a query a user made, with a text of at most
/// [`CALLBACK_TEXT_LIMIT`] characters.
fn answer_callback_query(shared: &Shared, params: &Params) -> Result<Value, TgError> {
    let id = params.str("callback_query_id").unwrap_or_default();
    let text = params.str("text");
    if text
        .as_ref()
        .is_some_and(|t| t.chars().count() > CALLBACK_TEXT_LIMIT)
    {
        return Err(TgError::bad_request("MESSAGE_TOO_LONG"));
    }
    let mut state = shared.state();
    // a query is answered once, as in Telegram
    let Some(pressed) = state.callback_queries.remove(&id) else {
        return Err(TgError::bad_request(
            "query is too old and response timeout expired or query id is invalid",
        ));
    };
    state.callback_answers.push(CallbackAnswer {
        callback_query_id: id,
        text,
        show_alert: params.flag("show_alert"),
        url: params.str("url"),
        after: pressed.elapsed(),
    });
    Ok(json!(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_keep_a_plain_extension_only() {
        assert_eq!(
            folder_and_ext(SentKind::Document, Some("report.pdf")),
            ("documents", "pdf".to_owned())
        );
        assert_eq!(
            folder_and_ext(SentKind::Document, Some("../x.a/b")).1,
            "bin"
        );
        assert_eq!(folder_and_ext(SentKind::Document, None).1, "bin");
    }

    #[test]
    fn rate_limits_apply_to_send_and_edit_methods_only() {
        assert!(rate_limited("sendmessage"));
        assert!(rate_limited("editmessagetext"));
        assert!(!rate_limited("getupdates"));
        assert!(!rate_limited("answercallbackquery"));
    }
}
