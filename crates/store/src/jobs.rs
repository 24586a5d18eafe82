//! Job history, and settling final outcomes (with the refund, at most once).

use chrono::{DateTime, Utc};
use genq_core::{CompletionEvent, JobStatus, validate_queue_name};
use serde::Serialize;
use sqlx::{Postgres, Row, Transaction};

use crate::{Store, StoreError};

/// Refunds a job's charge (its price, to its user) unless it was refunded before or
/// cost nothing; returns the credits given back. The unique index on refunds makes
/// this at most once per job, whoever calls it and however often.
async fn refund_job(
    tx: &mut Transaction<'_, Postgres>,
    job_id: &str,
    reason: &str,
) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO credit_ledger (user_id, job_id, kind, amount, reason)
         SELECT user_id, id, 'refund', price, $2 FROM jobs WHERE id = $1 AND price > 0
         ON CONFLICT (job_id) WHERE kind = 'refund' DO NOTHING
         RETURNING user_id, amount",
    )
    .bind(job_id)
    .bind(reason)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else { return Ok(0) };
    let user_id: i64 = row.try_get("user_id")?;
    let amount: i64 = row.try_get("amount")?;
    sqlx::query("UPDATE users SET credits = credits + $2 WHERE id = $1")
        .bind(user_id)
        .bind(amount)
        .execute(&mut **tx)
        .await?;
    Ok(amount)
}

/// [`Store::settle`] inside a transaction the caller commits.
pub(crate) async fn settle_in(
    tx: &mut Transaction<'_, Postgres>,
    event: &CompletionEvent,
) -> Result<Settled, StoreError> {
    let row = sqlx::query(
        "UPDATE jobs SET status = $2, attempts = GREATEST(attempts, $3), error_class = $4,
                         error = $5, finished_at = now()
         WHERE id = $1 AND status NOT IN ('succeeded', 'failed', 'cancelled')
         RETURNING parent_id",
    )
    .bind(&event.job_id)
    .bind(event.status.as_str())
    .bind(event.attempts as i32)
    .bind(event.error_class.map(|c| c.as_str()))
    .bind(&event.error)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        let known: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM jobs WHERE id = $1)")
            .bind(&event.job_id)
            .fetch_one(&mut **tx)
            .await?;
        return Ok(if known {
            Settled::AlreadySettled
        } else {
            Settled::NotTracked
        });
    };
    let parent_id: Option<String> = row.try_get("parent_id")?;
    let mut refunded = 0;
    if matches!(event.status, JobStatus::Failed | JobStatus::Cancelled) {
        let reason = format!("job {} {}", event.job_id, event.status);
        refunded += refund_job(tx, &event.job_id, &reason).await?;
        if let Some(parent_id) = parent_id {
            let reason = format!("follow-up job {} {}", event.job_id, event.status);
            refunded += refund_job(tx, &parent_id, &reason).await?;
        }
    }
    Ok(Settled::Recorded { refunded })
}

/// A job as the database remembers it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRecord {
    pub id: String,
    pub user_id: i64,
    pub job_type: String,
    pub queue: String,
    pub payload: serde_json::Value,
    pub status: String,
    pub attempts: i32,
    pub idempotency_key: Option<String>,
    pub price: i64,
    pub provider_task_id: Option<String>,
    pub error_class: Option<String>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub pushed_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// For a follow-up job: the job whose charge paid for it (see [`Store::record_follow_up`]).
    pub parent_id: Option<String>,
}

/// A job still open (queued, running or awaiting approval), e.g. for `/cancel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenJob {
    pub id: String,
    pub queue: String,
    pub job_type: String,
    /// What the job was charged (0 for a free job or a follow-up).
    pub price: i64,
}

/// A recently created job and who it is for (see [`Store::jobs_created_between`]).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RecentJob {
    pub id: String,
    pub queue: String,
    pub job_type: String,
    pub price: i64,
    pub idempotency_key: Option<String>,
    pub status: String,
    pub user_id: i64,
    pub telegram_id: i64,
    pub language: String,
    /// A follow-up's parent (see [`Store::record_follow_up`]).
    pub parent_id: Option<String>,
}

/// What settling an outcome did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Settled {
    /// The job is not one the store tracks (pushed without a charge).
    NotTracked,
    /// An earlier settle already recorded its final status: nothing changed.
    AlreadySettled,
    /// The final status was recorded; `refunded` credits went back to the user.
    Recorded { refunded: i64 },
}

impl Store {
    pub async fn job(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(JobRecord {
            id: r.try_get("id")?,
            user_id: r.try_get("user_id")?,
            job_type: r.try_get("job_type")?,
            queue: r.try_get("queue")?,
            payload: r.try_get("payload")?,
            status: r.try_get("status")?,
            attempts: r.try_get("attempts")?,
            idempotency_key: r.try_get("idempotency_key")?,
            price: r.try_get("price")?,
            provider_task_id: r.try_get("provider_task_id")?,
            error_class: r.try_get("error_class")?,
            error: r.try_get("error")?,
            created_at: r.try_get("created_at")?,
            pushed_at: r.try_get("pushed_at")?,
            finished_at: r.try_get("finished_at")?,
            parent_id: r.try_get("parent_id")?,
        }))
    }

    /// Records the provider's task id on a job before the job starts waiting on it,
    /// so that a re-run resumes that task instead of paying for a new one.
    pub async fn set_provider_task(&self, job_id: &str, task_id: &str) -> Result<bool, StoreError> {
        let n = sqlx::query("UPDATE jobs SET provider_task_id = $2 WHERE id = $1")
            .bind(job_id)
            .bind(task_id)
            .execute(self.pool())
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// Records a job's final outcome. A failed or cancelled paid job is refunded in
    /// the same transaction, at most once: the first settle moves the job to its final
    /// status (later ones find it final and change nothing), and a unique index allows
    /// one refund per job whatever else happens.
    ///
    /// A failed or cancelled follow-up job (one with a parent, see
    /// [`Store::record_follow_up`]) also refunds its parent's charge, under the same
    /// rules: once, and not at all if the parent was refunded already.
    /// `Settled::Recorded { refunded }` counts both refunds.
    pub async fn settle(&self, event: &CompletionEvent) -> Result<Settled, StoreError> {
        if !event.status.is_final() {
            return Err(StoreError::Invalid(format!(
                "job {} is {}, not final",
                event.job_id, event.status
            )));
        }
        let mut tx = self.pool().begin().await?;
        let settled = settle_in(&mut tx, event).await?;
        tx.commit().await?;
        Ok(settled)
    }

    /// Cancels a job the relay has not pushed yet: in one transaction its outbox entry
    /// is deleted (a relay holding it locked is waited for; then it is in Redis and
    /// this finds nothing), the job is recorded as cancelled and refunded once.
    /// Returns the credits refunded, or `None` when the job was not waiting in the
    /// outbox (cancel it in Redis instead).
    pub async fn cancel_unpushed(&self, job_id: &str) -> Result<Option<i64>, StoreError> {
        let mut tx = self.pool().begin().await?;
        let deleted = sqlx::query("DELETE FROM outbox WHERE job_id = $1")
            .bind(job_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Ok(None);
        }
        sqlx::query(
            "UPDATE jobs SET status = 'cancelled', error_class = 'cancelled',
                             error = 'cancelled before it was queued', finished_at = now()
             WHERE id = $1 AND status NOT IN ('succeeded', 'failed', 'cancelled')",
        )
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
        let refunded = refund_job(&mut tx, job_id, &format!("job {job_id} cancelled")).await?;
        tx.commit().await?;
        Ok(Some(refunded))
    }

    /// Jobs created between `from` and `to` (follow-ups too, with their parent),
    /// with their user's Telegram id and language, oldest first (at most `limit`):
    /// the bot takes up the ones it does not track (charged by a bot that died
    /// before tracking them, or whose tracking Redis lost).
    pub async fn jobs_created_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<RecentJob>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT j.id, j.queue, j.job_type, j.price, j.idempotency_key, j.status,
                    u.id AS user_id, u.telegram_id, u.language, j.parent_id
             FROM jobs j JOIN users u ON u.id = j.user_id
             WHERE j.created_at BETWEEN $1 AND $2
             ORDER BY j.created_at LIMIT $3",
        )
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// Records a follow-up job that a running job (`parent_id`) pushed to Redis
    /// itself, e.g. GenerateImage after GenerateImagePrompt: the child belongs to the
    /// parent's user, costs nothing (its credit was charged on the parent), is
    /// `queued` and already pushed (`pushed_at` is now, so the settler's sweep covers
    /// it). Returns `true` when the row was inserted, `false` when a job with
    /// `child_id` was already recorded. A parent the store does not know is
    /// [`StoreError::UnknownJob`].
    pub async fn record_follow_up(
        &self,
        parent_id: &str,
        child_id: &str,
        job_type: &str,
        queue: &str,
        payload: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        if child_id.is_empty() || child_id == parent_id {
            return Err(StoreError::Invalid(format!(
                "follow-up job id '{child_id}' must be non-empty and differ from its parent's"
            )));
        }
        if job_type.is_empty() || job_type.len() > 64 {
            return Err(StoreError::Invalid(format!(
                "job type '{job_type}' must be 1-64 characters"
            )));
        }
        validate_queue_name(queue).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let mut tx = self.pool().begin().await?;
        let parent_user: Option<i64> = sqlx::query_scalar("SELECT user_id FROM jobs WHERE id = $1")
            .bind(parent_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(user_id) = parent_user else {
            return Err(StoreError::UnknownJob(parent_id.to_owned()));
        };
        let inserted = sqlx::query(
            "INSERT INTO jobs (id, user_id, job_type, queue, payload, status, price, parent_id, pushed_at)
             VALUES ($1, $2, $3, $4, $5, 'queued', 0, $6, now())
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(child_id)
        .bind(user_id)
        .bind(job_type)
        .bind(queue)
        .bind(payload)
        .bind(parent_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(inserted == 1)
    }

    /// A user's open jobs (queued, running or awaiting approval), oldest first.
    pub async fn open_jobs_of_user(&self, user_id: i64) -> Result<Vec<OpenJob>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, queue, job_type, price FROM jobs
             WHERE user_id = $1 AND status IN ('queued', 'running', 'awaiting_approval')
             ORDER BY created_at, id",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OpenJob {
                    id: r.try_get("id")?,
                    queue: r.try_get("queue")?,
                    job_type: r.try_get("job_type")?,
                    price: r.try_get("price")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Where the settler stopped reading a queue's event stream.
    pub async fn event_checkpoint(&self, queue: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT last_event_id FROM event_checkpoints WHERE queue = $1")
                .bind(queue)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    pub async fn save_event_checkpoint(
        &self,
        queue: &str,
        event_id: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO event_checkpoints (queue, last_event_id) VALUES ($1, $2)
             ON CONFLICT (queue) DO UPDATE SET last_event_id = EXCLUDED.last_event_id",
        )
        .bind(queue)
        .bind(event_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
