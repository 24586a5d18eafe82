//! The conversation state of each chat, in Redis under genq's key prefix (not
//! teloxide's bare chat-id keys), so a restarted or second bot replica continues
//! the conversation where it was.
//!
//! - `<prefix>:bot:chat:<chat_id>`: the chat's state ([`ChatState`]), JSON,
//!   expiring `ttl` after its last write.
//! - `<prefix>:bot:tok:<token>`: small JSON values behind short random tokens, for
//!   inline buttons (whose callback data is at most 64 bytes), expiring after `ttl`:
//!   a photo behind its menu (`PhotoStash`), a video order waiting for its count
//!   (`VideoStash`), a promo video's brief waiting for Start (`BriefStash`).

use std::time::Duration;

use genq_job_generate_video::Template;
use genq_redis::RedisConn;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// The length of the tokens [`ChatStates::stash`] makes.
pub const TOKEN_LEN: usize = 12;

/// The token lengths [`ChatStates::unstash`] accepts.
const TOKEN_LENS: std::ops::RangeInclusive<usize> = 10..=12;

/// How many times [`ChatStates::stash`] draws a new token if one is taken.
const STASH_ATTEMPTS: usize = 4;

/// What the chat is in the middle of (kept in Redis under the genq prefix).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ChatState {
    /// Face swap: the next photo is the face to put on `target`.
    AwaitFace { target: String },
    /// Animate with an own prompt: the next text is the prompt for `image`.
    AwaitVideoPrompt { image: String },
    /// `/promo`: the next text or voice message is the brief.
    AwaitPromoBrief,
}

/// A photo the user sent, behind a menu's buttons.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PhotoStash {
    pub(crate) image: String,
    pub(crate) owner: i64,
}

/// A video order waiting for its count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct VideoStash {
    pub(crate) image: String,
    pub(crate) template: Template,
    pub(crate) prompt: String,
    pub(crate) owner: i64,
}

/// Errors of [`ChatStates`].
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Redis could not be reached or refused the command.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The value could not be encoded as JSON.
    #[error("cannot encode the state as JSON: {0}")]
    Encode(#[from] serde_json::Error),
    /// Every token drawn was already in use (practically impossible).
    #[error("no free stash token after {0} attempts")]
    TokenCollision(usize),
}

/// Chat states and stashed button values, shared by every bot replica.
#[derive(Clone)]
pub struct ChatStates {
    conn: RedisConn,
    prefix: String,
    ttl: Duration,
}

impl ChatStates {
    /// States on the Redis behind `conn`, with keys under `prefix` (genq's key
    /// prefix, e.g. `genq`); every write expires `ttl` later (at least 1 ms).
    pub fn new(conn: RedisConn, prefix: &str, ttl: Duration) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
            ttl: ttl.max(Duration::from_millis(1)),
        }
    }

    /// How long a state or stashed value lives after its last write.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The Redis key of `chat_id`'s state.
    pub fn chat_key(&self, chat_id: i64) -> String {
        format!("{}:bot:chat:{chat_id}", self.prefix)
    }

    /// The Redis key of a stash token.
    pub fn token_key(&self, token: &str) -> String {
        format!("{}:bot:tok:{token}", self.prefix)
    }

    /// The state of `chat_id`, if it has one. A value that does not decode as `S`
    /// (e.g. written by an older version) is logged, deleted and taken as none.
    pub async fn get<S: DeserializeOwned>(&self, chat_id: i64) -> Result<Option<S>, StateError> {
        self.read(&self.chat_key(chat_id), true).await
    }

    /// Stores the state of `chat_id` (SET with a TTL of `ttl`).
    pub async fn set<S: Serialize + ?Sized>(
        &self,
        chat_id: i64,
        state: &S,
    ) -> Result<(), StateError> {
        let json = serde_json::to_string(state)?;
        let mut c = self.conn.clone();
        let _: () = redis::cmd("SET")
            .arg(self.chat_key(chat_id))
            .arg(json)
            .arg("PX")
            .arg(self.ttl_ms())
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    /// Forgets the state of `chat_id`.
    pub async fn clear(&self, chat_id: i64) -> Result<(), StateError> {
        let mut c = self.conn.clone();
        let _: i64 = redis::cmd("DEL")
            .arg(self.chat_key(chat_id))
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    /// Stores a small JSON value under a new random token (12 characters of
    /// `[0-9A-Z]`: the random part of a ULID) and returns the token; the value
    /// expires after `ttl`. For inline buttons, whose callback data is at most
    /// 64 bytes: put the token in the callback data, the value here.
    pub async fn stash<S: Serialize + ?Sized>(&self, value: &S) -> Result<String, StateError> {
        let json = serde_json::to_string(value)?;
        let mut c = self.conn.clone();
        for _ in 0..STASH_ATTEMPTS {
            let token = new_token();
            let set: Option<String> = redis::cmd("SET")
                .arg(self.token_key(&token))
                .arg(&json)
                .arg("PX")
                .arg(self.ttl_ms())
                .arg("NX")
                .query_async(&mut c)
                .await?;
            if set.is_some() {
                return Ok(token);
            }
        }
        Err(StateError::TokenCollision(STASH_ATTEMPTS))
    }

    /// The value stashed under `token`, if it is still there (it stays: a button
    /// may be pressed twice). A malformed token (not 10-12 characters of
    /// `[0-9A-Za-z]`) is `None` without asking Redis; a value that does not decode
    /// as `S` is logged and taken as none.
    pub async fn unstash<S: DeserializeOwned>(&self, token: &str) -> Result<Option<S>, StateError> {
        if !is_valid_token(token) {
            return Ok(None);
        }
        self.read(&self.token_key(token), false).await
    }

    /// Takes the value behind `token` (GETDEL): whoever takes it has it alone.
    pub async fn take<S: DeserializeOwned>(&self, token: &str) -> Result<Option<S>, StateError> {
        if !is_valid_token(token) {
            return Ok(None);
        }
        let mut c = self.conn.clone();
        let raw: Option<String> = redis::cmd("GETDEL")
            .arg(self.token_key(token))
            .query_async(&mut c)
            .await?;
        Ok(raw.and_then(|raw| serde_json::from_str(&raw).ok()))
    }

    async fn read<S: DeserializeOwned>(
        &self,
        key: &str,
        delete_undecodable: bool,
    ) -> Result<Option<S>, StateError> {
        let mut c = self.conn.clone();
        let raw: Option<String> = redis::cmd("GET").arg(key).query_async(&mut c).await?;
        let Some(raw) = raw else {
            return Ok(None);
        };
        match serde_json::from_str(&raw) {
            Ok(value) => Ok(Some(value)),
            Err(e) => {
                tracing::warn!(key, error = %e, "undecodable bot state; ignoring it");
                if delete_undecodable {
                    let _: i64 = redis::cmd("DEL").arg(key).query_async(&mut c).await?;
                }
                Ok(None)
            }
        }
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

/// A new stash token: the last [`TOKEN_LEN`] characters of a new ULID (its
/// random part: 60 random bits).
fn new_token() -> String {
    let ulid = ulid::Ulid::new().to_string();
    ulid[ulid.len().saturating_sub(TOKEN_LEN)..].to_owned()
}

/// Whether `token` looks like one [`ChatStates::stash`] makes (10-12 characters of
/// `[0-9A-Za-z]`).
pub fn is_valid_token(token: &str) -> bool {
    TOKEN_LENS.contains(&token.len()) && token.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_tokens_are_valid_and_distinct() {
        let a = new_token();
        let b = new_token();
        assert_eq!(a.len(), TOKEN_LEN);
        assert!(is_valid_token(&a), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn token_validation() {
        for good in ["abcdefghij", "ABCDEFGHIJK", "0123456789AZ"] {
            assert!(is_valid_token(good), "{good}");
        }
        for bad in [
            "",
            "short",
            "abcdefghi",
            "0123456789ABC",
            "abc:defghij",
            "abcdefghi*",
            "абвгдежзий",
            "abcde fghij",
        ] {
            assert!(!is_valid_token(bad), "{bad}");
        }
    }
}
