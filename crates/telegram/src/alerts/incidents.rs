//! Incidents in Redis, shared by every replica: an incident starts once (and
//! alerts), is put off while its condition is seen again, and ends when its key
//! expires; at most so many alerts an hour (see [`crate::alerts`]).

use std::time::Duration;

use genq_redis::RedisConn;
use redis::AsyncCommands;

use crate::BotError;

/// What [`Incidents::start`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// A new incident, and this caller sends its alert.
    New,
    /// Known already (another round or replica alerted); its end was put off.
    Ongoing,
    /// New, but over the hourly budget: not recorded, so that it alerts later.
    Deferred,
}

/// Incidents in Redis, shared by every replica (keys under `<p>:bot:alert:`).
#[derive(Clone)]
pub struct Incidents {
    conn: RedisConn,
    prefix: String,
    per_hour: u64,
}

impl Incidents {
    pub fn new(conn: RedisConn, prefix: &str, per_hour: u64) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
            per_hour,
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}:bot:alert:{name}", self.prefix)
    }

    /// The condition `name` (`billing:upscale`, `keys:media`, …) is seen now; the
    /// incident ends `clear_after` after it was last seen.
    pub async fn start(&self, name: &str, clear_after: Duration) -> Result<Start, BotError> {
        let key = self.key(name);
        let ttl = clear_after.as_millis().max(1) as u64;
        let mut c = self.conn.clone();
        let created: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl)
            .query_async(&mut c)
            .await?;
        if created.is_none() {
            let _: bool = c.pexpire(&key, ttl as i64).await?;
            return Ok(Start::Ongoing);
        }
        let budget = self.key("budget");
        // the hour starts with its first alert (INCR keeps the TTL)
        let (spent,): (u64,) = redis::pipe()
            .cmd("SET")
            .arg(&budget)
            .arg(0)
            .arg("NX")
            .arg("PX")
            .arg(3_600_000)
            .ignore()
            .incr(&budget, 1)
            .query_async(&mut c)
            .await?;
        if spent > self.per_hour {
            let _: () = redis::pipe()
                .del(&key)
                .ignore()
                .decr(&budget, 1)
                .ignore()
                .query_async(&mut c)
                .await?;
            return Ok(Start::Deferred);
        }
        Ok(Start::New)
    }

    /// Lets go of an incident whose alert could not be sent: the next round
    /// starts (and alerts) it again.
    pub async fn abandon(&self, name: &str) -> Result<(), BotError> {
        let mut c = self.conn.clone();
        let _: () = redis::pipe()
            .del(self.key(name))
            .ignore()
            .decr(self.key("budget"), 1)
            .ignore()
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    /// Dead-letter growth: `count` (a queue's monotonic dead-letter counter) minus
    /// the count when the current window of `window` started (a window starts now
    /// when there is none).
    pub async fn growth(&self, queue: &str, count: u64, window: Duration) -> Result<u64, BotError> {
        let key = self.key(&format!("deadbase:{queue}"));
        let mut c = self.conn.clone();
        let (base,): (Option<u64>,) = redis::pipe()
            .cmd("SET")
            .arg(&key)
            .arg(count)
            .arg("NX")
            .arg("PX")
            .arg(window.as_millis().max(1) as u64)
            .ignore()
            .get(&key)
            .query_async(&mut c)
            .await?;
        Ok(count.saturating_sub(base.unwrap_or(count)))
    }
}
