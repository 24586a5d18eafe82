//! Reconciling the record with Redis after Redis lost data. PostgreSQL holds what
//! users paid for; a job it has as open and pushed must be known to Redis. The
//! settler pages through those jobs ([`Store::pushed_open_jobs`]), asks Redis which
//! it knows, notes the missing ones ([`Store::note_missing`]), and once a job has
//! been missing for a whole reconcile interval (so a completion event still on its
//! way has been settled meanwhile) claims it ([`Store::claim_lost`]) and puts it
//! back on its queue with the same id, or fails and refunds it. The claim is a row
//! lock taken with `SKIP LOCKED` and re-checked conditions, so several settlers may
//! run the same sweep: each lost job is requeued (or refunded) once per loss.

use std::time::Duration;

use chrono::{DateTime, Utc};
use genq_core::{CompletionEvent, FailureClass, JobStatus};
use sqlx::{Postgres, Row, Transaction};

use crate::{Settled, Store, StoreError, jobs::settle_in};

/// An open job that was pushed to Redis (one page of [`Store::pushed_open_jobs`]).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PushedJob {
    pub id: String,
    pub queue: String,
    pub job_type: String,
    pub pushed_at: DateTime<Utc>,
}

/// A job Redis lost, locked for this settler until [`LostJob::requeued`] or
/// [`LostJob::fail`] commits (dropped: released, another sweep takes it up).
pub struct LostJob {
    tx: Transaction<'static, Postgres>,
    pub id: String,
    pub job_type: String,
    pub queue: String,
    pub payload: serde_json::Value,
}

impl LostJob {
    /// Records that the job is back in Redis.
    pub async fn requeued(mut self) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE jobs SET redis_missing_since = NULL, pushed_at = now(), requeued = requeued + 1
             WHERE id = $1",
        )
        .bind(&self.id)
        .execute(&mut *self.tx)
        .await?;
        self.tx.commit().await?;
        Ok(())
    }

    /// Fails the job for good (it cannot run again: its type or queue is no longer
    /// served) and refunds it once, as a settle of a failed job would.
    pub async fn fail(mut self, reason: &str) -> Result<Settled, StoreError> {
        let event = CompletionEvent {
            event_id: String::new(),
            job_id: self.id.clone(),
            queue: self.queue.clone(),
            job_type: self.job_type.clone(),
            status: JobStatus::Failed,
            attempts: 0,
            error_class: Some(FailureClass::BadInput),
            error: Some(reason.to_owned()),
        };
        let settled = settle_in(&mut self.tx, &event).await?;
        self.tx.commit().await?;
        Ok(settled)
    }
}

fn millis(d: Duration) -> f64 {
    d.as_millis() as f64
}

impl Store {
    /// Open jobs pushed more than `older_than` ago (by the database's clock), in
    /// `(pushed_at, id)` order after `after` (the last row of the previous page), at
    /// most `limit`.
    pub async fn pushed_open_jobs(
        &self,
        older_than: Duration,
        after: Option<(DateTime<Utc>, String)>,
        limit: i64,
    ) -> Result<Vec<PushedJob>, StoreError> {
        let (after_at, after_id) = match after {
            Some((at, id)) => (Some(at), id),
            None => (None, String::new()),
        };
        Ok(sqlx::query_as(
            "SELECT id, queue, job_type, pushed_at FROM jobs
             WHERE status IN ('queued', 'running') AND pushed_at IS NOT NULL
               AND pushed_at < now() - make_interval(secs => $1::double precision / 1000)
               AND ($2::timestamptz IS NULL OR (pushed_at, id) > ($2, $3))
             ORDER BY pushed_at, id LIMIT $4",
        )
        .bind(millis(older_than))
        .bind(after_at)
        .bind(after_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// Notes that Redis does not know `ids` (from now, unless noted before); returns
    /// those noted at least `confirm` ago (missing for a whole interval: lost).
    pub async fn note_missing(
        &self,
        ids: &[String],
        confirm: Duration,
    ) -> Result<Vec<String>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "UPDATE jobs SET redis_missing_since = COALESCE(redis_missing_since, now())
             WHERE id = ANY($1) AND status IN ('queued', 'running')
             RETURNING id,
                 redis_missing_since <= now() - make_interval(secs => $2::double precision / 1000)
                 AS confirmed",
        )
        .bind(ids)
        .bind(millis(confirm))
        .fetch_all(self.pool())
        .await?;
        let mut lost = Vec::new();
        for r in rows {
            if r.try_get::<bool, _>("confirmed")? {
                lost.push(r.try_get("id")?);
            }
        }
        Ok(lost)
    }

    /// Forgets an earlier "missing" note of `ids` (Redis knows them after all).
    pub async fn clear_missing(&self, ids: &[String]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE jobs SET redis_missing_since = NULL
             WHERE id = ANY($1) AND redis_missing_since IS NOT NULL",
        )
        .bind(ids)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Locks job `id` for requeueing if it is still open and has been missing from
    /// Redis for at least `confirm`; `None` when another settler holds it, or it
    /// ended or was requeued meanwhile.
    pub async fn claim_lost(
        &self,
        id: &str,
        confirm: Duration,
    ) -> Result<Option<LostJob>, StoreError> {
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(
            "SELECT id, job_type, queue, payload FROM jobs
             WHERE id = $1 AND status IN ('queued', 'running')
               AND redis_missing_since <= now() - make_interval(secs => $2::double precision / 1000)
             FOR UPDATE SKIP LOCKED",
        )
        .bind(id)
        .bind(millis(confirm))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(LostJob {
            id: r.try_get("id")?,
            job_type: r.try_get("job_type")?,
            queue: r.try_get("queue")?,
            payload: r.try_get("payload")?,
            tx,
        }))
    }

    /// How often job `id` was put back on its queue after Redis lost it.
    pub async fn requeue_count(&self, id: &str) -> Result<i32, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT requeued FROM jobs WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await?
                .unwrap_or(0),
        )
    }
}

impl Store {
    /// Cancels job `id` that is open in the record but unknown to Redis (lost):
    /// recorded as cancelled and refunded once, waiting for a settler that is
    /// requeueing it right now. The credits refunded, or `None` when the job was not
    /// open (it ended meanwhile).
    pub async fn cancel_lost(&self, id: &str) -> Result<Option<i64>, StoreError> {
        let mut tx = self.pool().begin().await?;
        let open: Option<String> = sqlx::query_scalar(
            "SELECT queue FROM jobs WHERE id = $1 AND status IN ('queued', 'running') FOR UPDATE",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(queue) = open else { return Ok(None) };
        let event = CompletionEvent {
            event_id: String::new(),
            job_id: id.to_owned(),
            queue,
            job_type: String::new(),
            status: JobStatus::Cancelled,
            attempts: 0,
            error_class: Some(FailureClass::Cancelled),
            error: Some("cancelled while Redis had lost it".to_owned()),
        };
        let settled = settle_in(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(match settled {
            Settled::Recorded { refunded } => Some(refunded),
            _ => None,
        })
    }
}

/// Prefix of the error of a job failed because Redis lost it and it cannot run again.
pub const LOST_ERROR_PREFIX: &str = "lost from Redis";

impl Store {
    /// Jobs Redis lost since the record began: put back on their queues (counting
    /// each loss), and failed and refunded because they could not run again.
    pub async fn lost_job_counts(&self) -> Result<(i64, i64), StoreError> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(requeued), 0)::bigint AS requeued,
                    COUNT(*) FILTER (WHERE status = 'failed' AND error LIKE $1)::bigint AS failed
             FROM jobs WHERE requeued > 0 OR status = 'failed'",
        )
        .bind(format!("{LOST_ERROR_PREFIX}%"))
        .fetch_one(self.pool())
        .await?;
        Ok((row.try_get("requeued")?, row.try_get("failed")?))
    }
}
