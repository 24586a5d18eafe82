//! Per-user guard rails shared by every bot replica, kept in Redis.
//!
//! - [`UserLimiter`]: how many paid requests a user may make per minute and per hour
//!   (a sliding log in a sorted set `<prefix>:bot:rate:<user>`).
//! - [`JobSlots`]: how many jobs a user may have queued or running at once (a sorted
//!   set `<prefix>:bot:open:<user>` of order keys, the idempotency keys jobs were
//!   charged under, scored by when their slot expires, so a job whose release was
//!   lost does not block the user forever).
//!
//! Both decide inside one Lua script each, so concurrent requests of one user on any
//! number of replicas never overshoot. The scripts read the clock with Redis `TIME`:
//! every replica uses the same (the server's) clock, whatever its own says.

use std::{sync::LazyLock, time::Duration};

use genq_redis::RedisConn;
use redis::Script;

/// How long a reserved job slot lasts unless released (see [`JobSlots::with_ttl`]).
pub const DEFAULT_SLOT_TTL: Duration = Duration::from_secs(2 * 60 * 60);

/// The longest slot TTL [`JobSlots::with_ttl`] accepts (30 days).
pub const MAX_SLOT_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// The shortest `retry_after` [`UserLimiter::admit`] reports.
pub const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Errors of [`UserLimiter`] and [`JobSlots`].
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// Redis could not be reached or refused the command.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A script replied something it never replies.
    #[error("unexpected reply from redis: {0}")]
    Protocol(String),
}

/// The request limits of one user. A window whose limit is 0 is not limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Paid requests allowed in any 60 s.
    pub per_minute: u32,
    /// Paid requests allowed in any 3600 s.
    pub per_hour: u32,
}

/// What [`UserLimiter::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The request was recorded: go ahead.
    Allowed,
    /// Nothing was recorded: a window is full.
    TooMany {
        /// When the request would be allowed (the time until enough entries of the
        /// full window leave it; with both full, the later one). At least 1 s.
        retry_after: Duration,
    },
}

/// The admission script.
///
/// KEYS[1]: the user's log. ARGV: per_minute, per_hour (0 = unlimited), a string
/// unique to this call (the member is `<ms>-<it>`, unique even within one ms).
/// Replies `{1, 0}` (recorded) or `{0, retry_after_ms}` (nothing recorded).
static ADMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local minute, hour = 60000, 3600000
local per_minute, per_hour = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - hour)
local full, wait = false, 0
if per_hour > 0 then
  local n = redis.call('ZCARD', KEYS[1])
  if n >= per_hour then
    -- the entry whose leaving brings the count below the limit
    local e = redis.call('ZRANGE', KEYS[1], n - per_hour, n - per_hour, 'WITHSCORES')
    full = true
    wait = math.max(wait, tonumber(e[2]) + hour - now)
  end
end
if per_minute > 0 then
  local since = '(' .. (now - minute)
  local n = redis.call('ZCOUNT', KEYS[1], since, '+inf')
  if n >= per_minute then
    local e = redis.call('ZRANGEBYSCORE', KEYS[1], since, '+inf', 'WITHSCORES',
      'LIMIT', n - per_minute, 1)
    full = true
    wait = math.max(wait, tonumber(e[2]) + minute - now)
  end
end
if full then
  return {0, wait}
end
redis.call('ZADD', KEYS[1], now, now .. '-' .. ARGV[3])
redis.call('PEXPIRE', KEYS[1], hour)
return {1, 0}
"#,
    )
});

/// The slot reservation script.
///
/// KEYS[1]: the user's open jobs. ARGV: cap, slot TTL in ms, then the (distinct) ids.
/// Drops expired members, then adds every id if the ids not yet present fit under
/// the cap. Replies `{1, open_after}` or `{0, open}`.
static RESERVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local open = redis.call('ZCARD', KEYS[1])
local new = 0
for i = 3, #ARGV do
  if not redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    new = new + 1
  end
end
if open + new > tonumber(ARGV[1]) then
  return {0, open}
end
local expires = now + tonumber(ARGV[2])
for i = 3, #ARGV do
  redis.call('ZADD', KEYS[1], expires, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, open + new}
"#,
    )
});

/// The open-slots script: KEYS[1], the user's open jobs. Drops expired members,
/// replies the others' ids.
static OPEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"#,
    )
});

/// Request rate limits per Telegram user, shared by every bot replica.
#[derive(Clone)]
pub struct UserLimiter {
    conn: RedisConn,
    prefix: String,
    limits: RateLimits,
}

impl UserLimiter {
    /// A limiter on the Redis behind `conn`, with keys under `prefix` (genq's key
    /// prefix, e.g. `genq`).
    pub fn new(conn: RedisConn, prefix: &str, limits: RateLimits) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
            limits,
        }
    }

    /// The limits this limiter applies.
    pub fn limits(&self) -> RateLimits {
        self.limits
    }

    /// The Redis key of `user`'s request log.
    pub fn key(&self, user: i64) -> String {
        format!("{}:bot:rate:{user}", self.prefix)
    }

    /// Records one paid request of `user` (a Telegram user id) if both windows allow
    /// it; otherwise records nothing and says when enough entries of the full window
    /// will have left it (at least [`MIN_RETRY_AFTER`]).
    ///
    /// One atomic Lua script on a sliding log in a sorted set `<prefix>:bot:rate:<user>`
    /// (member `<ms>-<ulid>`, score the time in ms): entries older than 1 h are
    /// removed and the key expires 1 h after the last recorded request. The time is
    /// the Redis server's (`TIME` inside the script), so replicas agree.
    pub async fn admit(&self, user: i64) -> Result<Admission, LimitError> {
        let mut c = self.conn.clone();
        let reply: Vec<i64> = ADMIT
            .key(self.key(user))
            .arg(self.limits.per_minute)
            .arg(self.limits.per_hour)
            .arg(ulid::Ulid::new().to_string())
            .invoke_async(&mut c)
            .await?;
        match reply.as_slice() {
            [1, _] => Ok(Admission::Allowed),
            [0, wait_ms] => Ok(Admission::TooMany {
                retry_after: Duration::from_millis(u64::try_from(*wait_ms).unwrap_or(0))
                    .max(MIN_RETRY_AFTER),
            }),
            other => Err(LimitError::Protocol(format!(
                "rate limit script replied {other:?}"
            ))),
        }
    }
}

/// What [`JobSlots::reserve`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotReservation {
    /// Every id now holds a slot.
    Reserved,
    /// Nothing was reserved: the ids do not fit under the cap.
    Full {
        /// The user's open (unexpired) slots.
        open: u32,
    },
}

/// A cap on how many jobs of one user are open (queued or running) at once,
/// shared by every bot replica.
///
/// Each slot is an order key (a job's idempotency key) in the sorted set `<prefix>:bot:open:<user>`, scored by
/// when it expires (reservation time + the slot TTL, 2 h by default). Expired slots
/// are dropped by every script, so a job whose release was lost frees its slot by
/// itself. Times are the Redis server's.
#[derive(Clone)]
pub struct JobSlots {
    conn: RedisConn,
    prefix: String,
    cap: u32,
    ttl: Duration,
}

impl JobSlots {
    /// At most `cap` open jobs per user, with keys under `prefix`; slots last
    /// [`DEFAULT_SLOT_TTL`] unless released.
    pub fn new(conn: RedisConn, prefix: &str, cap: u32) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
            cap,
            ttl: DEFAULT_SLOT_TTL,
        }
    }

    /// The same, with slots lasting `ttl` (1 ms to [`MAX_SLOT_TTL`]) unless released.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.clamp(Duration::from_millis(1), MAX_SLOT_TTL);
        self
    }

    /// The cap.
    pub fn cap(&self) -> u32 {
        self.cap
    }

    /// The Redis key of `user`'s open jobs.
    pub fn key(&self, user: i64) -> String {
        format!("{}:bot:open:{user}", self.prefix)
    }

    /// Atomically reserves a slot for each of `ids` (order keys) for `user` if the
    /// user's open slots plus the ids not yet holding one fit under the cap; else
    /// reserves none and says how many are open. Ids already holding a slot have
    /// it renewed; repeated ids count once; no ids is always `Reserved`.
    pub async fn reserve(&self, user: i64, ids: &[String]) -> Result<SlotReservation, LimitError> {
        let mut distinct: Vec<&str> = Vec::with_capacity(ids.len());
        for id in ids {
            if !distinct.contains(&id.as_str()) {
                distinct.push(id);
            }
        }
        if distinct.is_empty() {
            return Ok(SlotReservation::Reserved);
        }
        let mut inv = RESERVE.key(self.key(user));
        inv.arg(self.cap).arg(self.ttl_ms());
        for id in distinct {
            inv.arg(id);
        }
        let mut c = self.conn.clone();
        let reply: Vec<i64> = inv.invoke_async(&mut c).await?;
        match reply.as_slice() {
            [1, _] => Ok(SlotReservation::Reserved),
            [0, open] => Ok(SlotReservation::Full {
                open: u32::try_from(*open).unwrap_or(u32::MAX),
            }),
            other => Err(LimitError::Protocol(format!(
                "slot reservation script replied {other:?}"
            ))),
        }
    }

    /// Frees `id`'s slot of `user` (nothing if it holds none).
    pub async fn release(&self, user: i64, id: &str) -> Result<(), LimitError> {
        let mut c = self.conn.clone();
        let _: i64 = redis::cmd("ZREM")
            .arg(self.key(user))
            .arg(id)
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    /// The ids of `user`'s open (unexpired) slots, soonest to expire first.
    pub async fn open(&self, user: i64) -> Result<Vec<String>, LimitError> {
        let mut c = self.conn.clone();
        Ok(OPEN.key(self.key(user)).invoke_async(&mut c).await?)
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(1).max(1)
    }
}
