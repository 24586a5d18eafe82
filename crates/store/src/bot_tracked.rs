//! The bot's durable copy of what it tracks for a job (see migration
//! `0005_reconcile.sql`): Redis holds the working copy; this one lets tracking
//! survive Redis losing data.

use std::{collections::HashSet, time::Duration};

use sqlx::Row;

use crate::{Store, StoreError};

impl Store {
    /// Records (or replaces) the bot's record of job `job_id`; a known status
    /// message is kept when `status_msg` is `None`.
    pub async fn save_tracked(
        &self,
        job_id: &str,
        record: &serde_json::Value,
        status_msg: Option<i32>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO bot_tracked (job_id, record, status_msg) VALUES ($1, $2, $3)
             ON CONFLICT (job_id) DO UPDATE
             SET record = EXCLUDED.record,
                 status_msg = COALESCE(EXCLUDED.status_msg, bot_tracked.status_msg)",
        )
        .bind(job_id)
        .bind(record)
        .bind(status_msg)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records the status message of tracked job `job_id` (no record: nothing).
    pub async fn save_tracked_status(
        &self,
        job_id: &str,
        status_msg: i32,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE bot_tracked SET status_msg = $2 WHERE job_id = $1")
            .bind(job_id)
            .bind(status_msg)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The bot's record of job `job_id` and its status message, if it has one.
    pub async fn tracked(
        &self,
        job_id: &str,
    ) -> Result<Option<(serde_json::Value, Option<i32>)>, StoreError> {
        let row = sqlx::query("SELECT record, status_msg FROM bot_tracked WHERE job_id = $1")
            .bind(job_id)
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| Ok((r.try_get("record")?, r.try_get("status_msg")?)))
            .transpose()
    }

    /// Which of `ids` have the one-off side effect `what` recorded (`sent`: their
    /// result or failure message reached the chat).
    pub async fn delivered_among(
        &self,
        ids: &[String],
        what: &str,
    ) -> Result<HashSet<String>, StoreError> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT job_id FROM bot_deliveries WHERE job_id = ANY($1) AND what = $2",
        )
        .bind(ids)
        .bind(what)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// Forgets records of jobs tracked longer ago than `age`; how many.
    pub async fn purge_tracked(&self, age: Duration) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM bot_tracked
             WHERE created_at < now() - make_interval(secs => $1::double precision / 1000)",
        )
        .bind(age.as_millis() as f64)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }
}
