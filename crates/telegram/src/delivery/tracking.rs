//! The jobs the bot watches for a chat: who asked, where the status message is, what
//! to do with the result. Kept in Redis under `<prefix>:bot:` so that any bot
//! replica (or the next one after a restart) can update and deliver them.
//!
//! Keys:
//! - `<p>:bot:job:<job id>`: STRING, JSON [`Tracked`], expires after [`TRACK_TTL`];
//! - `<p>:bot:watch`: ZSET job id → when the status loop next looks at it (ms);
//! - `<p>:bot:shown:<job id>`: HASH `text`, `at` (ms): the status text last shown
//!   and when, so edits are throttled and never repeat the same text;
//! - `<p>:bot:msg:<job id>`: HASH `status` (the status message's id, once the
//!   acknowledgement sent it), `final` (what the status message must end as, once
//!   the job is closed): see [`Final`];
//! - `<p>:bot:once:<job id>:<what>`: a one-off side effect done (`sent`), a copy
//!   written only when PostgreSQL (`bot_deliveries`, the record) could not be.
//!
//! Redis is the working copy. Each record (and its status message) is also written
//! to PostgreSQL (`bot_tracked`), so that when Redis loses data the sweep restores
//! the tracking ([`Tracker::restore`]): the status message still ends, the result
//! still goes to the right dialog.

use std::{sync::LazyLock, time::Duration};

use genq_redis::RedisConn;
use genq_redis::now_ms;
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};

use genq_store::Store;
use tracing::warn;

use crate::{BotError, i18n::Lang};

/// How long the bot remembers a job (stale buttons are recognised meanwhile).
pub const TRACK_TTL: Duration = Duration::from_secs(2 * 24 * 3600);

/// The one-off marker of a job whose result (or failure message) reached the chat.
pub const SENT: &str = "sent";

/// What a tracked job is, for status and delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// GenerateReply: the reply is stored in the dialog and sent with a "Picture" button.
    Reply,
    /// GenerateImagePrompt: hands over to the GenerateImage job it pushes.
    ImagePrompt,
    /// GenerateImage (a picture of the scene): a photo with the prompt as caption.
    Picture,
    /// Upscale or FaceSwap: a photo.
    Photo,
    /// GenerateVideo: a video, "n of total".
    Video,
    /// The promo-video pipeline: approvals on the way, the video at the end.
    Promo,
}

impl Kind {
    /// Replies show a typing action instead of a status message.
    pub fn has_status_message(self) -> bool {
        !matches!(self, Kind::Reply)
    }
}

/// One job the bot watches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tracked {
    pub job_id: String,
    pub queue: String,
    pub kind: Kind,
    pub chat_id: i64,
    /// The Telegram user who asked.
    pub tg_user: i64,
    /// The store's user id.
    pub user_id: i64,
    pub lang: Lang,
    /// Credits charged for it (returned when it fails).
    pub price: i64,
    /// The idempotency key it was charged under (also its concurrency slot).
    pub slot: String,
    /// The status message being edited, once sent (read from `<p>:bot:msg:<id>`,
    /// where the acknowledgement records it; not stored with the record).
    #[serde(default, skip_serializing)]
    pub status_msg: Option<i32>,
    /// The user's message it answers.
    #[serde(default)]
    pub reply_to: Option<i32>,
    /// Reply: the dialog the answer is stored in.
    #[serde(default)]
    pub dialog_id: Option<i64>,
    /// Picture: the caption (the prompt).
    #[serde(default)]
    pub caption: Option<String>,
    /// Video: its number and how many were ordered together.
    #[serde(default)]
    pub video_of: Option<(u32, u32)>,
    /// A picture's prompt: the GenerateImage job that took over (its status message
    /// and Cancel button now stand for that job).
    #[serde(default)]
    pub handed_to: Option<String>,
}

/// What a job's status message must end as. The acknowledgement (which sends the
/// status message) and the delivery (which closes the job) may run in either order,
/// on different replicas: each records its half in one script that also reads the
/// other's ([`Tracker::save_status`], [`Tracker::close`]), so whichever comes second
/// finishes the message. The status loop re-checks after each edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Final {
    /// Edit it to this text, without buttons.
    Edit(String),
    /// Delete it (the result or failure went out as a message of its own).
    Delete,
    /// It now stands for this job (a picture's prompt handed over to its image job).
    Forward(String),
}

impl Final {
    fn encode(&self) -> String {
        match self {
            Final::Edit(text) => format!("e:{text}"),
            Final::Delete => "d".to_owned(),
            Final::Forward(id) => format!("f:{id}"),
        }
    }

    fn decode(raw: &str) -> Option<Self> {
        match raw.split_once(':') {
            Some(("e", text)) => Some(Final::Edit(text.to_owned())),
            Some(("f", id)) => Some(Final::Forward(id.to_owned())),
            _ if raw == "d" => Some(Final::Delete),
            _ => None,
        }
    }
}

/// The acknowledgement's half: records the status message, returns `final` if the
/// job was closed already. KEYS[1] the job's msg hash; ARGV message id, ttl (s).
static SAVE_STATUS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"redis.call('HSET', KEYS[1], 'status', ARGV[1])
          redis.call('EXPIRE', KEYS[1], ARGV[2])
          return redis.call('HGET', KEYS[1], 'final')",
    )
});

/// The delivery's half: closes the job (the first close wins: `final` is set once),
/// with `final` chosen by whether a status message exists yet; returns the status
/// message (or nil) and the `final` in force. KEYS[1] the msg hash; ARGV final when
/// there is a status message, final when there is none, ttl (s).
static CLOSE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local status = redis.call('HGET', KEYS[1], 'status')
          local fin = redis.call('HGET', KEYS[1], 'final')
          if not fin then
            if status then fin = ARGV[1] else fin = ARGV[2] end
            redis.call('HSET', KEYS[1], 'final', fin)
            redis.call('EXPIRE', KEYS[1], ARGV[3])
          end
          return {status or '', fin}",
    )
});

/// A tracked job as PostgreSQL keeps it.
fn record_of(t: &Tracked) -> Result<serde_json::Value, BotError> {
    serde_json::to_value(t).map_err(|e| BotError::Encode(e.to_string()))
}

/// The bot's job records in Redis.
#[derive(Clone)]
pub struct Tracker {
    conn: RedisConn,
    prefix: String,
    store: Store,
}

impl Tracker {
    pub fn new(conn: RedisConn, prefix: &str, store: Store) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
            store,
        }
    }

    fn job_key(&self, id: &str) -> String {
        format!("{}:bot:job:{id}", self.prefix)
    }

    fn watch_key(&self) -> String {
        format!("{}:bot:watch", self.prefix)
    }

    fn shown_key(&self, id: &str) -> String {
        format!("{}:bot:shown:{id}", self.prefix)
    }

    fn msg_key(&self, id: &str) -> String {
        format!("{}:bot:msg:{id}", self.prefix)
    }

    /// Records the status message the acknowledgement sent for a job; what the
    /// message must end as when the job was closed meanwhile.
    pub async fn save_status(&self, id: &str, message_id: i32) -> Result<Option<Final>, BotError> {
        let fin = self.save_status_in_redis(id, message_id).await?;
        if let Err(e) = self.store.save_tracked_status(id, message_id).await {
            // only needed if Redis loses this job's data later
            warn!(job_id = %id, error = %e, "status message not recorded in PostgreSQL");
        }
        Ok(fin)
    }

    async fn save_status_in_redis(
        &self,
        id: &str,
        message_id: i32,
    ) -> Result<Option<Final>, BotError> {
        let mut conn = self.conn.clone();
        let fin: Option<String> = SAVE_STATUS
            .key(self.msg_key(id))
            .arg(message_id)
            .arg(TRACK_TTL.as_secs())
            .invoke_async(&mut conn)
            .await?;
        Ok(fin.as_deref().and_then(Final::decode))
    }

    /// Closes a job's status message: `with_status` is what it ends as if it was
    /// sent already, `without` what it will end as when it comes later. The status
    /// message to finish now (only when the `final` in force is an edit or a
    /// forward of a message that exists), and the `final` in force.
    pub async fn close(
        &self,
        id: &str,
        with_status: &Final,
        without: &Final,
    ) -> Result<(Option<i32>, Final), BotError> {
        let mut conn = self.conn.clone();
        let (status, fin): (String, String) = CLOSE
            .key(self.msg_key(id))
            .arg(with_status.encode())
            .arg(without.encode())
            .arg(TRACK_TTL.as_secs())
            .invoke_async(&mut conn)
            .await?;
        let fin = Final::decode(&fin).unwrap_or(Final::Delete);
        let status = status.parse::<i32>().ok().filter(|_| fin != Final::Delete);
        Ok((status, fin))
    }

    /// What a job's status message must end as, once the job is closed.
    pub async fn final_of(&self, id: &str) -> Result<Option<Final>, BotError> {
        let mut conn = self.conn.clone();
        let fin: Option<String> = conn.hget(self.msg_key(id), "final").await?;
        Ok(fin.as_deref().and_then(Final::decode))
    }

    /// Records (or replaces) a job and puts it on the status loop's watch list.
    pub async fn track(&self, t: &Tracked) -> Result<(), BotError> {
        self.store
            .save_tracked(&t.job_id, &record_of(t)?, t.status_msg)
            .await?;
        self.track_in_redis(t).await
    }

    async fn track_in_redis(&self, t: &Tracked) -> Result<(), BotError> {
        let json = serde_json::to_string(t).map_err(|e| BotError::Encode(e.to_string()))?;
        let mut conn = self.conn.clone();
        redis::pipe()
            .set_ex(self.job_key(&t.job_id), json, TRACK_TTL.as_secs())
            .ignore()
            .zadd(self.watch_key(), &t.job_id, now_ms())
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    /// Updates a job's record without touching the watch list (absent: nothing).
    pub async fn update(&self, t: &Tracked) -> Result<(), BotError> {
        self.store
            .save_tracked(&t.job_id, &record_of(t)?, None)
            .await?;
        let json = serde_json::to_string(t).map_err(|e| BotError::Encode(e.to_string()))?;
        let mut conn = self.conn.clone();
        let _: Option<String> = redis::cmd("SET")
            .arg(self.job_key(&t.job_id))
            .arg(json)
            .arg("XX")
            .arg("KEEPTTL")
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// The record of a job, if the bot tracks it. An undecodable record is `None`.
    pub async fn get(&self, id: &str) -> Result<Option<Tracked>, BotError> {
        let mut conn = self.conn.clone();
        let (raw, status): (Option<String>, Option<i32>) = redis::pipe()
            .get(self.job_key(id))
            .hget(self.msg_key(id), "status")
            .query_async(&mut conn)
            .await?;
        Ok(raw.and_then(|r| match serde_json::from_str::<Tracked>(&r) {
            Ok(mut t) => {
                t.status_msg = status;
                Some(t)
            }
            Err(e) => {
                tracing::warn!(job_id = %id, error = %e, "undecodable tracking record ignored");
                None
            }
        }))
    }

    /// The record of a job: from Redis, or when Redis lost it, from PostgreSQL (and
    /// then restored in Redis, its status message too). `None`: never tracked.
    pub async fn get_or_restore(&self, id: &str) -> Result<Option<Tracked>, BotError> {
        match self.get(id).await? {
            Some(t) => Ok(Some(t)),
            None => self.restore(id).await,
        }
    }

    /// Restores a job's tracking from PostgreSQL into Redis (after Redis lost it);
    /// `None` when PostgreSQL has no record of it.
    pub async fn restore(&self, id: &str) -> Result<Option<Tracked>, BotError> {
        let Some((record, status_msg)) = self.store.tracked(id).await? else {
            return Ok(None);
        };
        let mut t: Tracked = match serde_json::from_value(record) {
            Ok(t) => t,
            Err(e) => {
                warn!(job_id = %id, error = %e, "undecodable tracking record in PostgreSQL ignored");
                return Ok(None);
            }
        };
        self.track_in_redis(&t).await?;
        if let Some(msg) = status_msg {
            self.save_status_in_redis(id, msg).await?;
        }
        t.status_msg = status_msg;
        Ok(Some(t))
    }

    /// Which of `ids` the bot does not track.
    pub async fn untracked(&self, ids: &[String]) -> Result<Vec<String>, BotError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.exists(self.job_key(id));
        }
        let mut conn = self.conn.clone();
        let known: Vec<bool> = pipe.query_async(&mut conn).await?;
        Ok(ids
            .iter()
            .zip(known)
            .filter(|(_, k)| !k)
            .map(|(id, _)| id.clone())
            .collect())
    }

    /// Jobs due for a look by the status loop (at most `limit`).
    pub async fn due(&self, limit: usize) -> Result<Vec<String>, BotError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("ZRANGE")
            .arg(self.watch_key())
            .arg("-inf")
            .arg(now_ms())
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut conn)
            .await?)
    }

    /// Looks at a job again after `after`.
    pub async fn recheck(&self, id: &str, after: Duration) -> Result<(), BotError> {
        let mut conn = self.conn.clone();
        let at = now_ms() + after.as_millis() as u64;
        // XX: a job taken off the list meanwhile stays off
        let _: i64 = redis::cmd("ZADD")
            .arg(self.watch_key())
            .arg("XX")
            .arg(at)
            .arg(id)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Takes a job off the watch list (it ended) and forgets its shown status.
    pub async fn unwatch(&self, id: &str) -> Result<(), BotError> {
        let mut conn = self.conn.clone();
        redis::pipe()
            .zrem(self.watch_key(), id)
            .ignore()
            .del(self.shown_key(id))
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    /// How many jobs are watched (a gauge for operators).
    pub async fn watched(&self) -> Result<u64, BotError> {
        let mut conn = self.conn.clone();
        Ok(conn.zcard(self.watch_key()).await?)
    }

    /// The status text last shown for a job and when (ms).
    pub async fn shown(&self, id: &str) -> Result<(Option<String>, u64), BotError> {
        let mut conn = self.conn.clone();
        let (text, at): (Option<String>, Option<u64>) = redis::cmd("HMGET")
            .arg(self.shown_key(id))
            .arg("text")
            .arg("at")
            .query_async(&mut conn)
            .await?;
        Ok((text, at.unwrap_or(0)))
    }

    /// Records the status text just shown.
    pub async fn set_shown(&self, id: &str, text: &str) -> Result<(), BotError> {
        let mut conn = self.conn.clone();
        let key = self.shown_key(id);
        redis::pipe()
            .hset_multiple(
                &key,
                &[("text", text.to_owned()), ("at", now_ms().to_string())],
            )
            .ignore()
            .expire(&key, TRACK_TTL.as_secs() as i64)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    fn once_key(&self, id: &str, what: &str) -> String {
        format!("{}:bot:once:{id}:{what}", self.prefix)
    }

    /// True when a one-off side effect of a job was done (the result sent, the
    /// exchange stored), so a retried delivery does not do it twice.
    pub async fn done(&self, id: &str, what: &str) -> Result<bool, BotError> {
        let mut conn = self.conn.clone();
        Ok(conn.exists(self.once_key(id, what)).await?)
    }

    /// Records a one-off side effect of a job as done.
    pub async fn mark_done(&self, id: &str, what: &str) -> Result<(), BotError> {
        let mut conn = self.conn.clone();
        let _: () = conn
            .set_ex(self.once_key(id, what), 1, TRACK_TTL.as_secs())
            .await?;
        Ok(())
    }

    /// True while the status loop watches the job (it has not been delivered).
    pub async fn is_watched(&self, id: &str) -> Result<bool, BotError> {
        let mut conn = self.conn.clone();
        let score: Option<f64> = conn.zscore(self.watch_key(), id).await?;
        Ok(score.is_some())
    }

    /// The status loop's lease: true when this replica holds it for `ttl` (taken or
    /// renewed), so one replica edits status messages at a time.
    pub async fn status_lease(&self, owner: &str, ttl: Duration) -> Result<bool, BotError> {
        let mut conn = self.conn.clone();
        let script = redis::Script::new(
            r"local cur = redis.call('GET', KEYS[1])
              if cur == false or cur == ARGV[1] then
                redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
                return 1
              end
              return 0",
        );
        let got: i64 = script
            .key(format!("{}:bot:status-lease", self.prefix))
            .arg(owner)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut conn)
            .await?;
        Ok(got == 1)
    }

    /// The last completion event handled for a queue (the event router's checkpoint).
    pub async fn checkpoint(&self, queue: &str) -> Result<Option<String>, BotError> {
        let mut conn = self.conn.clone();
        Ok(conn
            .get(format!("{}:bot:events:{queue}", self.prefix))
            .await?)
    }

    pub async fn save_checkpoint(&self, queue: &str, event_id: &str) -> Result<(), BotError> {
        let mut conn = self.conn.clone();
        let _: () = conn
            .set(format!("{}:bot:events:{queue}", self.prefix), event_id)
            .await?;
        Ok(())
    }
}
