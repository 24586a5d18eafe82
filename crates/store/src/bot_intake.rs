//! What the Telegram bot keeps durably in PostgreSQL: its inbox of updates (recorded
//! before Telegram is told they arrived, handled under a lease, exactly once) and
//! the one-off side effects of a delivery (a result sent, an exchange stored).
//!
//! Every time compared here is the database's `now()`: one clock for every replica.

use std::time::Duration;

use serde_json::Value;
use sqlx::Row;

use crate::{Store, StoreError};

/// A recorded update whose handling was claimed.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxUpdate {
    pub update_id: i64,
    /// The update as Telegram sent it.
    pub body: Value,
    /// How many times it was claimed (1 for the first handling).
    pub attempts: i32,
}

/// How many times an update is claimed before it is given up as poison (its handler
/// kept killing the process).
pub const MAX_UPDATE_ATTEMPTS: i32 = 5;

fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Records `updates` (update id, body) and claims the new ones for `owner` for
    /// `lease`; the ids that were new (an update seen before is not claimed again
    /// here: its first recorder, or the recovery of its lease, handles it).
    pub async fn record_updates(
        &self,
        updates: &[(i64, Value)],
        owner: &str,
        lease: Duration,
    ) -> Result<Vec<i64>, StoreError> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = updates.iter().map(|(id, _)| *id).collect();
        let bodies: Vec<Value> = updates.iter().map(|(_, b)| b.clone()).collect();
        let mut new: Vec<i64> = sqlx::query_scalar(
            "INSERT INTO bot_updates (update_id, body, claimed_by, lease_until)
             SELECT u.id, u.body, $3, now() + make_interval(secs => $4::double precision / 1000)
             FROM UNNEST($1::bigint[], $2::jsonb[]) AS u(id, body)
             ON CONFLICT (update_id) DO NOTHING
             RETURNING update_id",
        )
        .bind(&ids)
        .bind(&bodies)
        .bind(owner)
        .bind(lease_ms(lease))
        .fetch_all(self.pool())
        .await?;
        new.sort_unstable();
        Ok(new)
    }

    /// Extends `owner`'s leases on the updates it is still handling.
    pub async fn renew_updates(
        &self,
        owner: &str,
        ids: &[i64],
        lease: Duration,
    ) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let done = sqlx::query(
            "UPDATE bot_updates
             SET lease_until = now() + make_interval(secs => $3::double precision / 1000)
             WHERE update_id = ANY($1) AND claimed_by = $2 AND handled_at IS NULL",
        )
        .bind(ids)
        .bind(owner)
        .bind(lease_ms(lease))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// Claims for `owner` up to `limit` unhandled updates whose lease ran out (their
    /// bot died before handling them), oldest first. Safe on several replicas at once:
    /// each update goes to one. An update claimed [`MAX_UPDATE_ATTEMPTS`] times
    /// already is closed as `gave_up` instead.
    pub async fn claim_stale_updates(
        &self,
        owner: &str,
        lease: Duration,
        limit: i64,
    ) -> Result<Vec<InboxUpdate>, StoreError> {
        sqlx::query(
            "UPDATE bot_updates SET handled_at = now(), outcome = 'gave_up'
             WHERE handled_at IS NULL AND lease_until < now() AND attempts >= $1",
        )
        .bind(MAX_UPDATE_ATTEMPTS)
        .execute(self.pool())
        .await?;
        let rows = sqlx::query(
            "UPDATE bot_updates b
             SET claimed_by = $1,
                 lease_until = now() + make_interval(secs => $2::double precision / 1000),
                 attempts = b.attempts + 1
             FROM (SELECT update_id FROM bot_updates
                   WHERE handled_at IS NULL AND lease_until < now()
                   ORDER BY update_id LIMIT $3 FOR UPDATE SKIP LOCKED) s
             WHERE b.update_id = s.update_id
             RETURNING b.update_id, b.body, b.attempts",
        )
        .bind(owner)
        .bind(lease_ms(lease))
        .bind(limit.max(0))
        .fetch_all(self.pool())
        .await?;
        let mut out = rows
            .into_iter()
            .map(|r| {
                Ok(InboxUpdate {
                    update_id: r.try_get("update_id")?,
                    body: r.try_get("body")?,
                    attempts: r.try_get("attempts")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        out.sort_by_key(|u| u.update_id);
        Ok(out)
    }

    /// Marks an update handled (`outcome`: `ok`, `failed`, …): it is never handled
    /// again. True when this call closed it.
    pub async fn finish_update(&self, update_id: i64, outcome: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE bot_updates SET handled_at = now(), outcome = $2
             WHERE update_id = $1 AND handled_at IS NULL",
        )
        .bind(update_id)
        .bind(outcome)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Updates recorded but not handled yet (a gauge for operators).
    pub async fn open_updates(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM bot_updates WHERE handled_at IS NULL")
                .fetch_one(self.pool())
                .await?,
        )
    }

    /// Forgets handled updates older than `age`; how many.
    pub async fn purge_handled_updates(&self, age: Duration) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM bot_updates
             WHERE handled_at < now() - make_interval(secs => $1::double precision / 1000)",
        )
        .bind(lease_ms(age))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// Records a one-off side effect of job `job_id` (`what`: `sent`, …) as done;
    /// true when this call recorded it.
    pub async fn mark_delivered(&self, job_id: &str, what: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO bot_deliveries (job_id, what) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(job_id)
        .bind(what)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// True when the one-off side effect `what` of job `job_id` was done.
    pub async fn was_delivered(&self, job_id: &str, what: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM bot_deliveries WHERE job_id = $1 AND what = $2)",
        )
        .bind(job_id)
        .bind(what)
        .fetch_one(self.pool())
        .await?)
    }

    /// Stores the user's message and the reply of job `job_id` in the dialog, once:
    /// the marker `stored` and the two messages go in one transaction. True when
    /// this call stored them.
    pub async fn append_exchange_once(
        &self,
        job_id: &str,
        dialog_id: i64,
        user_text: &str,
        reply: &str,
    ) -> Result<bool, StoreError> {
        crate::dialogs::check_message(user_text)?;
        crate::dialogs::check_message(reply)?;
        let mut tx = self.pool().begin().await?;
        let fresh = sqlx::query(
            "INSERT INTO bot_deliveries (job_id, what) VALUES ($1, 'stored') ON CONFLICT DO NOTHING",
        )
        .bind(job_id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !fresh {
            return Ok(false);
        }
        crate::dialogs::insert_exchange(&mut tx, dialog_id, user_text, reply).await?;
        tx.commit().await?;
        Ok(true)
    }
}
