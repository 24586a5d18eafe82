//! Statistics for the admin side. Days are UTC; every query takes the day range (or
//! "today") as a parameter so that results are reproducible.

use chrono::NaiveDate;
use serde::Serialize;
use sqlx::Row;

use crate::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct UserStats {
    pub total: i64,
    /// Users active on `today`.
    pub active_1d: i64,
    /// Users active in the 7 days ending `today`.
    pub active_7d: i64,
    pub active_30d: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct NewUsers {
    pub day: NaiveDate,
    pub users: i64,
}

/// Of the users who signed up on `cohort_day`, how many were active exactly 1, 7
/// and 30 days later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct RetentionCohort {
    pub cohort_day: NaiveDate,
    pub size: i64,
    pub d1: i64,
    pub d7: i64,
    pub d30: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct DailyJobs {
    pub day: NaiveDate,
    pub job_type: String,
    pub status: String,
    pub jobs: i64,
    pub credits_charged: i64,
    pub credits_refunded: i64,
}

impl Store {
    /// Credits charged and refunded on `day` (UTC), as positive numbers.
    /// Credits moved on `day` (UTC), by ledger kind, as positive sums: (kind, credits)
    /// for `charged`, `refunded`, `granted`, `deducted`, `purchased`,
    /// `purchase_refunded`.
    pub async fn credits_on(&self, day: NaiveDate) -> Result<Vec<(&'static str, i64)>, StoreError> {
        let row = sqlx::query(
            "SELECT COALESCE(-sum(amount) FILTER (WHERE kind = 'charge'), 0)::BIGINT AS charged,
                    COALESCE(sum(amount) FILTER (WHERE kind = 'refund'), 0)::BIGINT AS refunded,
                    COALESCE(sum(amount) FILTER (WHERE kind = 'grant'), 0)::BIGINT AS granted,
                    COALESCE(-sum(amount) FILTER (WHERE kind = 'deduct'), 0)::BIGINT AS deducted,
                    COALESCE(sum(amount) FILTER (WHERE kind = 'purchase'), 0)::BIGINT AS purchased,
                    COALESCE(-sum(amount) FILTER (WHERE kind = 'purchase_refund'), 0)::BIGINT
                        AS purchase_refunded
             FROM credit_ledger WHERE (created_at AT TIME ZONE 'UTC')::date = $1",
        )
        .bind(day)
        .fetch_one(self.pool())
        .await?;
        [
            "charged",
            "refunded",
            "granted",
            "deducted",
            "purchased",
            "purchase_refunded",
        ]
        .into_iter()
        .map(|kind| Ok((kind, row.try_get(kind)?)))
        .collect()
    }

    pub async fn user_stats(&self, today: NaiveDate) -> Result<UserStats, StoreError> {
        Ok(sqlx::query_as(
            "SELECT (SELECT count(*) FROM users) AS total,
                    count(DISTINCT user_id) FILTER (WHERE day = $1) AS active_1d,
                    count(DISTINCT user_id) FILTER (WHERE day > $1 - 7) AS active_7d,
                    count(DISTINCT user_id) AS active_30d
             FROM user_activity WHERE day > $1 - 30 AND day <= $1",
        )
        .bind(today)
        .fetch_one(self.pool())
        .await?)
    }

    pub async fn new_users_per_day(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<NewUsers>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS users FROM users
             WHERE (created_at AT TIME ZONE 'UTC')::date BETWEEN $1 AND $2
             GROUP BY 1 ORDER BY 1",
        )
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn retention(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<RetentionCohort>, StoreError> {
        Ok(sqlx::query_as(
            "WITH cohort AS (
                 SELECT id, (created_at AT TIME ZONE 'UTC')::date AS day FROM users
                 WHERE (created_at AT TIME ZONE 'UTC')::date BETWEEN $1 AND $2)
             SELECT c.day AS cohort_day, count(*) AS size,
                 count(*) FILTER (WHERE EXISTS (SELECT 1 FROM user_activity a WHERE a.user_id = c.id AND a.day = c.day + 1)) AS d1,
                 count(*) FILTER (WHERE EXISTS (SELECT 1 FROM user_activity a WHERE a.user_id = c.id AND a.day = c.day + 7)) AS d7,
                 count(*) FILTER (WHERE EXISTS (SELECT 1 FROM user_activity a WHERE a.user_id = c.id AND a.day = c.day + 30)) AS d30
             FROM cohort c GROUP BY c.day ORDER BY c.day",
        )
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await?)
    }

    /// Jobs, credits charged and refunded per day, job type and status.
    pub async fn jobs_per_day(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DailyJobs>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT (j.created_at AT TIME ZONE 'UTC')::date AS day, j.job_type, j.status,
                    count(*) AS jobs,
                    COALESCE(sum(-l.charged), 0)::BIGINT AS credits_charged,
                    COALESCE(sum(l.refunded), 0)::BIGINT AS credits_refunded
             FROM jobs j
             LEFT JOIN LATERAL (
                 SELECT sum(amount) FILTER (WHERE kind = 'charge') AS charged,
                        sum(amount) FILTER (WHERE kind = 'refund') AS refunded
                 FROM credit_ledger c WHERE c.job_id = j.id) l ON true
             WHERE (j.created_at AT TIME ZONE 'UTC')::date BETWEEN $1 AND $2
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        )
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await?)
    }
}
