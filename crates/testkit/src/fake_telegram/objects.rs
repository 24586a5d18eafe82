//! The Bot API objects the fake answers with: users, chats, messages, files.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

/// Who the fake bot is (from its token: `<id>:<secret>`).
#[derive(Debug, Clone)]
pub(crate) struct BotIdentity {
    pub id: i64,
    pub first_name: String,
    pub username: String,
}

impl BotIdentity {
    /// The bot of `token`: its id is the token's numeric prefix (else 1).
    pub(crate) fn from_token(token: &str) -> Self {
        let id = token
            .split_once(':')
            .and_then(|(id, _)| id.parse().ok())
            .unwrap_or(1);
        Self {
            id,
            first_name: "Fake Bot".to_owned(),
            username: "fake_genq_bot".to_owned(),
        }
    }

    /// The bot as a `User`.
    pub(crate) fn user(&self) -> Value {
        json!({
            "id": self.id,
            "is_bot": true,
            "first_name": self.first_name,
            "username": self.username,
        })
    }

    /// `getMe`'s result.
    pub(crate) fn me(&self) -> Value {
        let mut me = self.user();
        me["can_join_groups"] = json!(true);
        me["can_read_all_group_messages"] = json!(false);
        me["supports_inline_queries"] = json!(false);
        me["can_connect_to_business"] = json!(false);
        me["has_main_web_app"] = json!(false);
        me
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A human user of id `user_id` whose Telegram is in `language` (an IETF code).
pub(crate) fn user(user_id: i64, language: &str) -> Value {
    json!({
        "id": user_id,
        "is_bot": false,
        "first_name": format!("User {user_id}"),
        "username": format!("user{user_id}"),
        "language_code": language,
    })
}

/// Chat `chat_id`: private for a positive id, a group for a negative one.
pub(crate) fn chat(chat_id: i64) -> Value {
    if chat_id < 0 {
        json!({ "id": chat_id, "type": "group", "title": format!("Group {chat_id}") })
    } else {
        json!({
            "id": chat_id,
            "type": "private",
            "first_name": format!("User {chat_id}"),
            "username": format!("user{chat_id}"),
        })
    }
}

/// A message without content: id, sender, chat, date.
pub(crate) fn message(chat_id: i64, message_id: i32, from: Value) -> Map<String, Value> {
    let mut message = Map::new();
    message.insert("message_id".to_owned(), json!(message_id));
    message.insert("from".to_owned(), from);
    message.insert("chat".to_owned(), chat(chat_id));
    message.insert("date".to_owned(), json!(now()));
    message
}

/// A message the bot cannot see any more (`date` 0: teloxide's
/// `MaybeInaccessibleMessage::Inaccessible`).
pub(crate) fn inaccessible_message(chat_id: i64, message_id: i32) -> Value {
    json!({ "chat": chat(chat_id), "message_id": message_id, "date": 0 })
}

/// A stored file's identity.
#[derive(Debug, Clone)]
pub(crate) struct FileMeta {
    pub file_id: String,
    pub unique_id: String,
    pub size: usize,
}

impl FileMeta {
    /// `file_id`, `file_unique_id`, `file_size` and the `extra` fields.
    pub(crate) fn object(&self, extra: Value) -> Value {
        let mut object = json!({
            "file_id": self.file_id,
            "file_unique_id": self.unique_id,
            "file_size": self.size,
        });
        if let (Some(object), Value::Object(extra)) = (object.as_object_mut(), extra) {
            object.extend(extra);
        }
        object
    }

    /// A `PhotoSize`.
    pub(crate) fn photo_size(&self, width: u32, height: u32) -> Value {
        self.object(json!({ "width": width, "height": height }))
    }
}

/// `(width, height)` scaled down so that neither exceeds `max_side`.
pub(crate) fn fit(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let longest = width.max(height);
    if longest <= max_side {
        return (width, height);
    }
    let scale = |side: u32| {
        let scaled = u64::from(side) * u64::from(max_side) / u64::from(longest);
        u32::try_from(scaled).unwrap_or(max_side).max(1)
    };
    (scale(width), scale(height))
}
