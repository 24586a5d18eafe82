//! The outbox: jobs committed with their charge, waiting to be pushed to Redis.

use sqlx::{Postgres, Row, Transaction};

use crate::{Store, StoreError};

/// One job to push.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxJob {
    pub job_id: String,
    pub job_type: String,
    pub queue: String,
    pub payload: serde_json::Value,
}

/// A batch of outbox entries, locked (other relays skip them) until
/// [`OutboxBatch::mark_pushed`] deletes them or the batch is dropped (they stay).
pub struct OutboxBatch {
    tx: Transaction<'static, Postgres>,
    pub jobs: Vec<OutboxJob>,
}

impl OutboxBatch {
    /// Records that every job of the batch is in Redis.
    pub async fn mark_pushed(mut self) -> Result<(), StoreError> {
        let ids: Vec<&str> = self.jobs.iter().map(|j| j.job_id.as_str()).collect();
        sqlx::query("DELETE FROM outbox WHERE job_id = ANY($1)")
            .bind(&ids)
            .execute(&mut *self.tx)
            .await?;
        sqlx::query("UPDATE jobs SET pushed_at = now() WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *self.tx)
            .await?;
        self.tx.commit().await?;
        Ok(())
    }
}

impl Store {
    /// Locks up to `limit` of the oldest outbox entries (skipping ones another relay holds).
    pub async fn claim_outbox(&self, limit: i64) -> Result<OutboxBatch, StoreError> {
        let mut tx = self.pool().begin().await?;
        let rows = sqlx::query(
            "SELECT o.job_id, j.job_type, j.queue, j.payload
             FROM outbox o JOIN jobs j ON j.id = o.job_id
             ORDER BY o.created_at
             LIMIT $1
             FOR UPDATE OF o SKIP LOCKED",
        )
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let jobs = rows
            .iter()
            .map(|r| {
                Ok(OutboxJob {
                    job_id: r.try_get("job_id")?,
                    job_type: r.try_get("job_type")?,
                    queue: r.try_get("queue")?,
                    payload: r.try_get("payload")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(OutboxBatch { tx, jobs })
    }

    /// Outbox entries not yet pushed.
    pub async fn outbox_len(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(self.pool())
            .await?)
    }
}
