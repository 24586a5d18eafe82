//! Users, their balance, grants, and daily activity.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Executor, Postgres, Row, Transaction};

use crate::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: i64,
    pub telegram_id: i64,
    pub language: String,
    pub credits: i64,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

fn user_from_row(row: &sqlx::postgres::PgRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get("id")?,
        telegram_id: row.try_get("telegram_id")?,
        language: row.try_get("language")?,
        credits: row.try_get("credits")?,
        created_at: row.try_get("created_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
    })
}

/// Counts the user as active today (UTC).
pub(crate) async fn record_activity<'e, E>(exec: E, user_id: i64) -> Result<(), sqlx::Error>
where
    E: Executor<'e, Database = Postgres>,
{
    sqlx::query(
        "INSERT INTO user_activity (user_id, day) VALUES ($1, (now() AT TIME ZONE 'UTC')::date)
         ON CONFLICT (user_id, day) DO UPDATE SET events = user_activity.events + 1",
    )
    .bind(user_id)
    .execute(exec)
    .await?;
    Ok(())
}

fn validate_language(language: &str) -> Result<(), StoreError> {
    if language.is_empty() || language.len() > 16 {
        return Err(StoreError::Invalid(format!(
            "language code '{language}' must be 1-16 characters"
        )));
    }
    Ok(())
}

/// Inserts the user or marks them seen (and updates their language); `true` when
/// this statement inserted the row. Of concurrent first contacts exactly one inserts:
/// the others wait on the unique index and take the update path.
async fn upsert_seen(
    tx: &mut Transaction<'_, Postgres>,
    telegram_id: i64,
    language: &str,
) -> Result<(User, bool), sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO users (telegram_id, language) VALUES ($1, $2)
         ON CONFLICT (telegram_id) DO UPDATE SET last_seen_at = now(), language = EXCLUDED.language
         RETURNING *, (xmax = 0) AS inserted",
    )
    .bind(telegram_id)
    .bind(language)
    .fetch_one(&mut **tx)
    .await?;
    let user = user_from_row(&row)?;
    let inserted: bool = row.try_get("inserted")?;
    record_activity(&mut **tx, user.id).await?;
    Ok((user, inserted))
}

impl Store {
    /// The user with this Telegram id, created on first sight; marks them seen and active today.
    pub async fn upsert_user(&self, telegram_id: i64, language: &str) -> Result<User, StoreError> {
        validate_language(language)?;
        let mut tx = self.pool().begin().await?;
        let (user, _) = upsert_seen(&mut tx, telegram_id, language).await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Like [`Store::upsert_user`], and a user seen for the first time also gets
    /// `welcome_credits` (a `grant` ledger entry with reason `welcome` and the
    /// balance, in the same transaction as the insert). Returns the user with their
    /// current balance and `true` when this call created them. Concurrent first
    /// contacts grant once: only the call whose insert won the unique index grants.
    pub async fn welcome_user(
        &self,
        telegram_id: i64,
        language: &str,
        welcome_credits: i64,
    ) -> Result<(User, bool), StoreError> {
        validate_language(language)?;
        if welcome_credits < 0 {
            return Err(StoreError::Invalid(format!(
                "welcome credits must not be negative, got {welcome_credits}"
            )));
        }
        let mut tx = self.pool().begin().await?;
        let (mut user, inserted) = upsert_seen(&mut tx, telegram_id, language).await?;
        if inserted && welcome_credits > 0 {
            sqlx::query(
                "INSERT INTO credit_ledger (user_id, kind, amount, reason)
                 VALUES ($1, 'grant', $2, 'welcome')",
            )
            .bind(user.id)
            .bind(welcome_credits)
            .execute(&mut *tx)
            .await?;
            user.credits = sqlx::query_scalar(
                "UPDATE users SET credits = credits + $2 WHERE id = $1 RETURNING credits",
            )
            .bind(user.id)
            .bind(welcome_credits)
            .fetch_one(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok((user, inserted))
    }

    pub async fn user(&self, user_id: i64) -> Result<User, StoreError> {
        let row = sqlx::query("SELECT * FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::UnknownUser(user_id))?;
        Ok(user_from_row(&row)?)
    }

    pub async fn user_by_telegram_id(&self, telegram_id: i64) -> Result<Option<User>, StoreError> {
        let row = sqlx::query("SELECT * FROM users WHERE telegram_id = $1")
            .bind(telegram_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    pub async fn balance(&self, user_id: i64) -> Result<i64, StoreError> {
        Ok(self.user(user_id).await?.credits)
    }

    /// Gives a user credits (a ledger entry and the balance, in one transaction).
    /// Returns the new balance.
    pub async fn grant(&self, user_id: i64, amount: i64, reason: &str) -> Result<i64, StoreError> {
        if amount <= 0 {
            return Err(StoreError::Invalid(format!(
                "a grant must be positive, got {amount}"
            )));
        }
        let mut tx = self.pool().begin().await?;
        let balance: Option<i64> = sqlx::query_scalar(
            "UPDATE users SET credits = credits + $2 WHERE id = $1 RETURNING credits",
        )
        .bind(user_id)
        .bind(amount)
        .fetch_optional(&mut *tx)
        .await?;
        let balance = balance.ok_or(StoreError::UnknownUser(user_id))?;
        sqlx::query("INSERT INTO credit_ledger (user_id, kind, amount, reason) VALUES ($1, 'grant', $2, $3)")
            .bind(user_id)
            .bind(amount)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(balance)
    }

    /// How many ledger entries of each kind name job `job_id` (one `charge`, and at
    /// most one `refund`: a check for tests and audits).
    pub async fn ledger_kinds_of_job(
        &self,
        job_id: &str,
    ) -> Result<std::collections::BTreeMap<String, i64>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT kind, count(*) FROM credit_ledger WHERE job_id = $1 GROUP BY kind",
        )
        .bind(job_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// The sum of a user's ledger entries (equals their balance; a check for tests and audits).
    pub async fn ledger_sum(&self, user_id: i64) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COALESCE(sum(amount), 0)::BIGINT FROM credit_ledger WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_one(self.pool())
        .await?)
    }
}
