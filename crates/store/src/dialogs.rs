//! Personas, dialogs and their messages: GenerateReply's memory.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::{Store, StoreError};

/// Longest message stored, in characters.
pub const MAX_MESSAGE_CHARS: usize = 16_000;

/// A message's length is within 1-[`MAX_MESSAGE_CHARS`] characters.
pub(crate) fn check_message(text: &str) -> Result<(), StoreError> {
    let chars = text.chars().count();
    if chars == 0 || chars > MAX_MESSAGE_CHARS {
        return Err(StoreError::Invalid(format!(
            "a message must be 1-{MAX_MESSAGE_CHARS} characters, got {chars}"
        )));
    }
    Ok(())
}

/// Inserts a user's message and its reply into a dialog inside `tx`, in order.
pub(crate) async fn insert_exchange(
    tx: &mut sqlx::PgConnection,
    dialog_id: i64,
    user_text: &str,
    reply: &str,
) -> Result<(), StoreError> {
    let known: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM dialogs WHERE id = $1)")
        .bind(dialog_id)
        .fetch_one(&mut *tx)
        .await?;
    if !known {
        return Err(StoreError::UnknownDialog(dialog_id));
    }
    sqlx::query(
        "INSERT INTO messages (dialog_id, role, content) VALUES ($1, 'user', $2), ($1, 'assistant', $3)",
    )
    .bind(dialog_id)
    .bind(user_text)
    .bind(reply)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persona {
    pub id: i64,
    pub name: String,
    pub system_prompt: String,
    pub greeting: String,
    /// The persona's fixed look and clothing, for image prompts.
    pub fixed_look: String,
    pub avatar_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dialog {
    pub id: i64,
    pub user_id: i64,
    pub persona_id: i64,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "system" => Ok(Role::System),
            "user" => Ok(Role::User),
            "assistant" => Ok(Role::Assistant),
            other => Err(StoreError::Invalid(format!(
                "unknown message role '{other}'"
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub id: i64,
    pub dialog_id: i64,
    pub role: Role,
    pub content: String,
    pub created_at: DateTime<Utc>,
}

fn dialog_from_row(r: &sqlx::postgres::PgRow) -> Result<Dialog, sqlx::Error> {
    Ok(Dialog {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        persona_id: r.try_get("persona_id")?,
        is_active: r.try_get("is_active")?,
        created_at: r.try_get("created_at")?,
    })
}

fn persona_from_row(r: &sqlx::postgres::PgRow) -> Result<Persona, sqlx::Error> {
    Ok(Persona {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        system_prompt: r.try_get("system_prompt")?,
        greeting: r.try_get("greeting")?,
        fixed_look: r.try_get("fixed_look")?,
        avatar_url: r.try_get("avatar_url")?,
    })
}

impl Store {
    /// Creates a persona, or updates the one with that name.
    pub async fn upsert_persona(
        &self,
        name: &str,
        system_prompt: &str,
        greeting: &str,
        fixed_look: &str,
    ) -> Result<Persona, StoreError> {
        if name.is_empty() || system_prompt.is_empty() {
            return Err(StoreError::Invalid(
                "a persona needs a name and a system prompt".to_owned(),
            ));
        }
        let row = sqlx::query(
            "INSERT INTO personas (name, system_prompt, greeting, fixed_look) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET system_prompt = EXCLUDED.system_prompt,
                 greeting = EXCLUDED.greeting, fixed_look = EXCLUDED.fixed_look
             RETURNING *",
        )
        .bind(name)
        .bind(system_prompt)
        .bind(greeting)
        .bind(fixed_look)
        .fetch_one(self.pool())
        .await?;
        Ok(persona_from_row(&row)?)
    }

    pub async fn personas(&self) -> Result<Vec<Persona>, StoreError> {
        let rows = sqlx::query("SELECT * FROM personas ORDER BY id")
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .iter()
            .map(persona_from_row)
            .collect::<Result<_, _>>()?)
    }

    pub async fn persona(&self, id: i64) -> Result<Persona, StoreError> {
        let row = sqlx::query("SELECT * FROM personas WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::UnknownPersona(id))?;
        Ok(persona_from_row(&row)?)
    }

    /// Starts a new dialog with a persona and makes it the user's active one.
    pub async fn new_dialog(&self, user_id: i64, persona_id: i64) -> Result<Dialog, StoreError> {
        let mut tx = self.pool().begin().await?;
        let user_exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1 FOR UPDATE)")
                .bind(user_id)
                .fetch_one(&mut *tx)
                .await?;
        if !user_exists {
            return Err(StoreError::UnknownUser(user_id));
        }
        let persona_exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM personas WHERE id = $1)")
                .bind(persona_id)
                .fetch_one(&mut *tx)
                .await?;
        if !persona_exists {
            return Err(StoreError::UnknownPersona(persona_id));
        }
        sqlx::query("UPDATE dialogs SET is_active = false WHERE user_id = $1 AND is_active")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let row =
            sqlx::query("INSERT INTO dialogs (user_id, persona_id) VALUES ($1, $2) RETURNING *")
                .bind(user_id)
                .bind(persona_id)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(dialog_from_row(&row)?)
    }

    /// The user's active dialog, if any.
    pub async fn active_dialog(&self, user_id: i64) -> Result<Option<Dialog>, StoreError> {
        let row = sqlx::query("SELECT * FROM dialogs WHERE user_id = $1 AND is_active")
            .bind(user_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(dialog_from_row).transpose()?)
    }

    /// Every dialog of a user, newest first.
    pub async fn dialogs(&self, user_id: i64) -> Result<Vec<Dialog>, StoreError> {
        let rows = sqlx::query("SELECT * FROM dialogs WHERE user_id = $1 ORDER BY id DESC")
            .bind(user_id)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(dialog_from_row).collect::<Result<_, _>>()?)
    }

    pub async fn append_message(
        &self,
        dialog_id: i64,
        role: Role,
        content: &str,
    ) -> Result<Message, StoreError> {
        check_message(content)?;
        let row = sqlx::query(
            "INSERT INTO messages (dialog_id, role, content)
             SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM dialogs WHERE id = $1)
             RETURNING id, created_at",
        )
        .bind(dialog_id)
        .bind(role.as_str())
        .bind(content)
        .fetch_optional(self.pool())
        .await?
        .ok_or(StoreError::UnknownDialog(dialog_id))?;
        Ok(Message {
            id: row.try_get("id")?,
            dialog_id,
            role,
            content: content.to_owned(),
            created_at: row.try_get("created_at")?,
        })
    }

    /// Stores a user's message and the reply to it together (one transaction), so
    /// the dialog never holds one without the other, in the order they were said.
    pub async fn append_exchange(
        &self,
        dialog_id: i64,
        user_text: &str,
        reply: &str,
    ) -> Result<(), StoreError> {
        check_message(user_text)?;
        check_message(reply)?;
        let mut tx = self.pool().begin().await?;
        insert_exchange(&mut tx, dialog_id, user_text, reply).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The last `n` messages of a dialog, oldest first (ready for a chat prompt).
    pub async fn last_messages(&self, dialog_id: i64, n: i64) -> Result<Vec<Message>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM (SELECT * FROM messages WHERE dialog_id = $1 ORDER BY id DESC LIMIT $2) m ORDER BY id",
        )
        .bind(dialog_id)
        .bind(n.max(0))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Message {
                    id: r.try_get("id")?,
                    dialog_id: r.try_get("dialog_id")?,
                    role: Role::parse(&r.try_get::<String, _>("role")?)?,
                    content: r.try_get("content")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }
}

/// The most dialogs [`Store::dialog_summaries`] returns at once.
pub const MAX_DIALOG_PAGE: i64 = 100;

/// How many characters of a dialog's first message [`DialogSummary`] carries (enough
/// for a title).
pub const SUMMARY_FIRST_MESSAGE_CHARS: i32 = 200;

/// One of a user's dialogs as their list of dialogs shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DialogSummary {
    pub id: i64,
    pub persona_id: i64,
    pub persona_name: String,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    /// The first [`SUMMARY_FIRST_MESSAGE_CHARS`] characters of the user's first
    /// message in it, if they wrote one.
    pub first_user_message: Option<String>,
    /// Messages stored in it (both sides).
    pub messages: i64,
}

impl Store {
    /// The user's dialogs, newest first, at most `limit` (0 to
    /// [`MAX_DIALOG_PAGE`]), each with its persona's name and first user message.
    pub async fn dialog_summaries(
        &self,
        user_id: i64,
        limit: i64,
    ) -> Result<Vec<DialogSummary>, StoreError> {
        self.summaries(user_id, None, limit.clamp(0, MAX_DIALOG_PAGE))
            .await
    }

    /// One of the user's dialogs as [`Store::dialog_summaries`] shows it; `None` if
    /// it is not theirs.
    pub async fn dialog_summary(
        &self,
        user_id: i64,
        dialog_id: i64,
    ) -> Result<Option<DialogSummary>, StoreError> {
        Ok(self
            .summaries(user_id, Some(dialog_id), 1)
            .await?
            .into_iter()
            .next())
    }

    async fn summaries(
        &self,
        user_id: i64,
        dialog_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<DialogSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.id, d.persona_id, p.name AS persona_name, d.is_active, d.created_at,
                    (SELECT left(m.content, $3) FROM messages m
                      WHERE m.dialog_id = d.id AND m.role = 'user'
                      ORDER BY m.id LIMIT 1) AS first_user_message,
                    (SELECT count(*) FROM messages m WHERE m.dialog_id = d.id) AS messages
               FROM dialogs d JOIN personas p ON p.id = d.persona_id
              WHERE d.user_id = $1 AND ($4::BIGINT IS NULL OR d.id = $4)
              ORDER BY d.id DESC
              LIMIT $2",
        )
        .bind(user_id)
        .bind(limit)
        .bind(SUMMARY_FIRST_MESSAGE_CHARS)
        .bind(dialog_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DialogSummary {
                    id: r.try_get("id")?,
                    persona_id: r.try_get("persona_id")?,
                    persona_name: r.try_get("persona_name")?,
                    is_active: r.try_get("is_active")?,
                    created_at: r.try_get("created_at")?,
                    first_user_message: r.try_get("first_user_message")?,
                    messages: r.try_get("messages")?,
                })
            })
            .collect()
    }

    /// Makes one of the user's earlier dialogs their active one again (the next
    /// message continues it, with its history). A dialog that is not the user's
    /// (another user's, or none at all) is [`StoreError::UnknownDialog`] and changes
    /// nothing; reopening the active dialog is harmless.
    pub async fn reopen_dialog(&self, user_id: i64, dialog_id: i64) -> Result<Dialog, StoreError> {
        let mut tx = self.pool().begin().await?;
        // the user's row serialises this with new_dialog and other reopens
        let user: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE id = $1 FOR UPDATE")
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
        if user.is_none() {
            return Err(StoreError::UnknownUser(user_id));
        }
        let owned: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM dialogs WHERE id = $1 AND user_id = $2)",
        )
        .bind(dialog_id)
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?;
        if !owned {
            return Err(StoreError::UnknownDialog(dialog_id));
        }
        // one active dialog per user (a unique partial index): the old one goes first
        sqlx::query(
            "UPDATE dialogs SET is_active = false WHERE user_id = $1 AND is_active AND id <> $2",
        )
        .bind(user_id)
        .bind(dialog_id)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query("UPDATE dialogs SET is_active = true WHERE id = $1 RETURNING *")
            .bind(dialog_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(dialog_from_row(&row)?)
    }
}
