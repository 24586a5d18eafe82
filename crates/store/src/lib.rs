//! genq's PostgreSQL store (sqlx): users, credits that are never lost, job history,
//! the outbox that feeds the Redis queue, dialog memory, and statistics.
//!
//! The money rule: a job's charge is written in the same transaction as the job row
//! and its outbox entry, under the user's row lock and keyed by an idempotency key;
//! a failed or cancelled job is refunded at most once (a unique index says so). A
//! follow-up job rides on its parent's charge: when it fails, the parent is refunded
//! (still at most once).
//! See ARCHITECTURE.md, "Credits".

mod args;
mod bot_intake;
mod bot_tracked;
mod credits;
mod dialogs;
mod error;
mod jobs;
mod ledger;
mod outbox;
mod payments;
mod reconcile;
mod stats;
mod users;

use std::{str::FromStr, time::Duration};

use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

pub use args::DatabaseArgs;
pub use bot_intake::{InboxUpdate, MAX_UPDATE_ATTEMPTS};
pub use credits::{Charged, PaidJob};
pub use dialogs::{
    Dialog, DialogSummary, MAX_DIALOG_PAGE, Message, Persona, Role, SUMMARY_FIRST_MESSAGE_CHARS,
};
pub use error::StoreError;
pub use jobs::{JobRecord, OpenJob, RecentJob, Settled};
pub use ledger::{
    LedgerEntry, LedgerKind, MAX_CREDIT_MOVE, MAX_LEDGER_PAGE, MAX_REASON_CHARS, Moved,
};
pub use outbox::{OutboxBatch, OutboxJob};
pub use payments::{NewPurchase, Payment, PaymentRefund, Purchased};
pub use reconcile::{LOST_ERROR_PREFIX, LostJob, PushedJob};
pub use stats::{DailyJobs, NewUsers, RetentionCohort, UserStats};
pub use users::User;

/// The migrations in `migrations/`, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// How to reach PostgreSQL.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `postgres://user@host:port/db`.
    pub url: String,
    /// Run in this schema (search_path) instead of the user's default.
    pub schema: Option<String>,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl StoreConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: None,
            max_connections: 20,
            acquire_timeout: Duration::from_secs(10),
        }
    }

    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }
}

/// The store: one connection pool, shared by every query.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Connects (lazily checking the settings) without migrating.
    pub async fn connect(cfg: &StoreConfig) -> Result<Self, StoreError> {
        let mut opts = PgConnectOptions::from_str(&cfg.url).map_err(|e| {
            StoreError::Config(format!("database URL '{}' is not valid: {e}", cfg.url))
        })?;
        if let Some(schema) = &cfg.schema {
            if schema.is_empty()
                || !schema
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                return Err(StoreError::Config(format!(
                    "schema '{schema}' must be letters, digits and '_'"
                )));
            }
            opts = opts.options([("search_path", schema.as_str())]);
        }
        if cfg.max_connections == 0 {
            return Err(StoreError::Config(
                "max_connections must be at least 1".to_owned(),
            ));
        }
        let pool = PgPoolOptions::new()
            .max_connections(cfg.max_connections)
            .acquire_timeout(cfg.acquire_timeout)
            .connect_with(opts)
            .await?;
        Ok(Self { pool })
    }

    /// Connects and brings the schema to the latest migration.
    pub async fn open(cfg: &StoreConfig) -> Result<Self, StoreError> {
        let store = Self::connect(cfg).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Applies pending migrations (a no-op when up to date).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// True when the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}
