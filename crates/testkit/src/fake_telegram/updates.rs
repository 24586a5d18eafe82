//! Updates: what users do (scripted by tests) queued for the bot, and
//! `getUpdates` handing them out with long polling.

use axum::body::Bytes;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{
    LONG_POLL_CAP, Shared, files,
    objects::{self, FileMeta},
    params::Params,
    reply::TgError,
};

/// The longest side of the thumbnail that comes first in a user's photo.
const THUMB_SIDE: u32 = 90;

impl Shared {
    /// Queues the update `body` (e.g. `{"message": …}`) under a new id; its id.
    pub(crate) fn push_update(&self, mut body: Value) -> u32 {
        let id = {
            let mut state = self.state();
            state.last_update_id += 1;
            let id = state.last_update_id;
            body["update_id"] = json!(id);
            state.updates.push_back((id, body));
            id
        };
        self.new_update.notify_waiters();
        id
    }

    /// Queues a message of user `user_id` in `chat_id`, with `content` (`text`,
    /// `photo`, …) added to its id, sender, chat and date; the update's id.
    /// User `user_id` as updates show them (`language_code` "en" unless set).
    pub(crate) fn user_object(&self, user_id: i64) -> Value {
        let language = self
            .state()
            .languages
            .get(&user_id)
            .cloned()
            .unwrap_or_else(|| "en".to_owned());
        objects::user(user_id, &language)
    }

    pub(crate) fn user_message(&self, chat_id: i64, user_id: i64, content: Value) -> u32 {
        let message_id = {
            let mut state = self.state();
            let chat = state.chat(chat_id);
            let id = chat.next_message_id();
            chat.user_messages.insert(id);
            id
        };
        let mut message = objects::message(chat_id, message_id, self.user_object(user_id));
        if let Value::Object(content) = content {
            message.extend(content);
        }
        self.push_update(json!({ "message": message }))
    }

    pub(crate) fn user_sends_text(
        &self,
        chat_id: i64,
        user_id: i64,
        text: &str,
        command: bool,
    ) -> u32 {
        let mut content = json!({ "text": text });
        if command {
            let name = text.split_whitespace().next().unwrap_or(text);
            content["entities"] = json!([{
                "type": "bot_command",
                "offset": 0,
                "length": name.encode_utf16().count(),
            }]);
        }
        self.user_message(chat_id, user_id, content)
    }

    pub(crate) fn user_sends_photo(
        &self,
        chat_id: i64,
        user_id: i64,
        bytes: Bytes,
        width: u32,
        height: u32,
    ) -> u32 {
        let thumb = (width.max(height) > THUMB_SIDE).then(|| {
            files::thumbnail(&bytes, THUMB_SIDE).unwrap_or_else(|| {
                let (w, h) = objects::fit(width, height, THUMB_SIDE);
                (bytes.clone(), w, h)
            })
        });
        let mut sizes = Vec::new();
        {
            let mut state = self.state();
            if let Some((thumb, w, h)) = thumb {
                sizes.push(state.store_file("photos", "jpg", thumb).photo_size(w, h));
            }
            sizes.push(
                state
                    .store_file("photos", "jpg", bytes)
                    .photo_size(width, height),
            );
        }
        self.user_message(chat_id, user_id, json!({ "photo": sizes }))
    }

    pub(crate) fn user_sends_voice(
        &self,
        chat_id: i64,
        user_id: i64,
        bytes: Bytes,
        duration_secs: u32,
    ) -> u32 {
        let meta: FileMeta = self.state().store_file("voice", "oga", bytes);
        let voice = meta.object(json!({ "duration": duration_secs, "mime_type": "audio/ogg" }));
        self.user_message(chat_id, user_id, json!({ "voice": voice }))
    }

    pub(crate) fn user_presses_button(
        &self,
        chat_id: i64,
        user_id: i64,
        message_id: i32,
        data: &str,
    ) -> String {
        let (id, message) = {
            let mut state = self.state();
            state.last_callback += 1;
            let id = format!("{}", 4_000_000_000_000_000_u64 + state.last_callback);
            state
                .callback_queries
                .insert(id.clone(), std::time::Instant::now());
            let message = state
                .chat(chat_id)
                .bot_message(message_id)
                .map(|e| e.object.clone())
                .unwrap_or_else(|| objects::inaccessible_message(chat_id, message_id));
            (id, message)
        };
        self.push_update(json!({
            "callback_query": {
                "id": id,
                "from": self.user_object(user_id),
                "message": message,
                "chat_instance": format!("fake-{chat_id}"),
                "data": data,
            }
        }));
        id
    }

    /// Forgets updates below `offset`; up to `limit` of the rest.
    fn take_updates(&self, offset: i64, limit: usize) -> Vec<Value> {
        let mut state = self.state();
        if offset > 0 {
            state.updates.retain(|(id, _)| i64::from(*id) >= offset);
        } else if offset < 0 {
            let keep = usize::try_from(offset.unsigned_abs()).unwrap_or(usize::MAX);
            let drop = state.updates.len().saturating_sub(keep);
            state.updates.drain(..drop);
        }
        state
            .updates
            .iter()
            .take(limit)
            .map(|(_, u)| u.clone())
            .collect()
    }

    /// Drops every queued update (`deleteWebhook` with `drop_pending_updates`).
    pub(crate) fn drop_pending_updates(&self) {
        self.state().updates.clear();
    }
}

/// `getUpdates`: acknowledges updates below `offset`, returns up to `limit` (1-100,
/// default 100) of the rest, waiting up to `timeout` seconds (at most
/// [`LONG_POLL_CAP`]) for one when there are none.
pub(crate) async fn get_updates(shared: &Shared, params: &Params) -> Result<Value, TgError> {
    let offset = params.i64("offset").unwrap_or(0);
    let limit = params.i64("limit").unwrap_or(100).clamp(1, 100);
    let limit = usize::try_from(limit).unwrap_or(100);
    let timeout = u64::try_from(params.i64("timeout").unwrap_or(0)).unwrap_or(0);
    let deadline = Instant::now() + std::time::Duration::from_secs(timeout).min(LONG_POLL_CAP);
    loop {
        // registered before looking, so an update queued in between wakes it
        let notified = shared.new_update.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let updates = shared.take_updates(offset, limit);
        if !updates.is_empty() || Instant::now() >= deadline {
            return Ok(Value::Array(updates));
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    }
}
