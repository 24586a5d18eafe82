//! Charge and enqueue, in one transaction.

use genq_core::{new_job_id, validate_queue_name};
use serde::Serialize;

use crate::{Store, StoreError, users::record_activity};

/// A job a user pays for.
#[derive(Debug, Clone, PartialEq)]
pub struct PaidJob {
    pub user_id: i64,
    pub job_type: String,
    pub queue: String,
    pub payload: serde_json::Value,
    /// Credits; 0 for a free job.
    pub price: i64,
    /// E.g. the Telegram callback id: the same key again returns the same job and charges nothing.
    pub idempotency_key: Option<String>,
}

/// The outcome of a charge-and-enqueue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Charged {
    /// A new job, charged; `balance` is what the user has left.
    Created { job_id: String, balance: i64 },
    /// The idempotency key named an existing job: nothing was charged.
    Existing { job_id: String },
}

impl Charged {
    pub fn job_id(&self) -> &str {
        match self {
            Charged::Created { job_id, .. } | Charged::Existing { job_id } => job_id,
        }
    }
}

impl PaidJob {
    fn validate(&self) -> Result<(), StoreError> {
        let bad = |m: String| Err(StoreError::Invalid(m));
        if self.price < 0 {
            return bad(format!("price must not be negative, got {}", self.price));
        }
        if self.job_type.is_empty() || self.job_type.len() > 64 {
            return bad(format!(
                "job type '{}' must be 1-64 characters",
                self.job_type
            ));
        }
        validate_queue_name(&self.queue).map_err(|e| StoreError::Invalid(e.to_string()))?;
        if let Some(key) = &self.idempotency_key
            && (key.is_empty() || key.len() > 200)
        {
            return bad("idempotency key must be 1-200 characters".to_owned());
        }
        Ok(())
    }
}

impl Store {
    /// The id of the user's job placed under `key`, if any (a double tap finds it).
    pub async fn job_by_idempotency_key(
        &self,
        user_id: i64,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM jobs WHERE user_id = $1 AND idempotency_key = $2")
                .bind(user_id)
                .bind(key)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// Records a paid job and charges for it, atomically: under the user's row lock,
    /// checks the idempotency key (an existing job is returned, nothing charged) and
    /// the balance, then writes the job, the charge and an outbox entry (which the
    /// relay pushes to Redis) in one transaction.
    pub async fn charge_and_enqueue(&self, job: &PaidJob) -> Result<Charged, StoreError> {
        job.validate()?;
        let mut tx = self.pool().begin().await?;
        let balance: i64 = sqlx::query_scalar("SELECT credits FROM users WHERE id = $1 FOR UPDATE")
            .bind(job.user_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::UnknownUser(job.user_id))?;
        if let Some(key) = &job.idempotency_key {
            let existing: Option<String> = sqlx::query_scalar(
                "SELECT id FROM jobs WHERE user_id = $1 AND idempotency_key = $2",
            )
            .bind(job.user_id)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(job_id) = existing {
                tx.rollback().await?;
                return Ok(Charged::Existing { job_id });
            }
        }
        if balance < job.price {
            return Err(StoreError::InsufficientCredits {
                balance,
                price: job.price,
            });
        }
        let job_id = new_job_id();
        sqlx::query(
            "INSERT INTO jobs (id, user_id, job_type, queue, payload, idempotency_key, price)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&job_id)
        .bind(job.user_id)
        .bind(&job.job_type)
        .bind(&job.queue)
        .bind(&job.payload)
        .bind(&job.idempotency_key)
        .bind(job.price)
        .execute(&mut *tx)
        .await?;
        if job.price > 0 {
            sqlx::query("INSERT INTO credit_ledger (user_id, job_id, kind, amount) VALUES ($1, $2, 'charge', $3)")
                .bind(job.user_id)
                .bind(&job_id)
                .bind(-job.price)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE users SET credits = credits - $2 WHERE id = $1")
                .bind(job.user_id)
                .bind(job.price)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("INSERT INTO outbox (job_id) VALUES ($1)")
            .bind(&job_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("SELECT pg_notify('genq_outbox', '')")
            .execute(&mut *tx)
            .await?;
        record_activity(&mut *tx, job.user_id).await?;
        tx.commit().await?;
        Ok(Charged::Created {
            job_id,
            balance: balance - job.price,
        })
    }
}
