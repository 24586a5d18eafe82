//! Operators' credit moves and reading the ledger.
//!
//! `grant_credits` / `deduct_credits` move credits by hand (a tester's credits, a
//! goodwill gesture, a correction), audited in the ledger: who (`actor`), when, why
//! (`reason`). Each is one transaction under the user's row lock, so the balance
//! equals the sum of the user's entries at every commit and never goes below zero.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use crate::{Store, StoreError};

/// The largest grant or deduction accepted at once.
pub const MAX_CREDIT_MOVE: i64 = 1_000_000;
/// The longest reason accepted, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// The longest actor name accepted, in characters.
pub const MAX_ACTOR_CHARS: usize = 100;
/// The most ledger entries one read returns.
pub const MAX_LEDGER_PAGE: i64 = 500;

/// Credits an operator moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Moved {
    pub user_id: i64,
    pub telegram_id: i64,
    /// The ledger entry's amount: positive for a grant, negative for a deduction.
    pub amount: i64,
    /// The user's balance after the move.
    pub balance_after: i64,
    /// The ledger entry written.
    pub ledger_id: i64,
}

/// What a ledger entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerKind {
    /// Welcome credits or an operator's grant.
    Grant,
    /// A job's price.
    Charge,
    /// A failed or cancelled job's price given back.
    Refund,
    /// Credits bought with Telegram Stars.
    Purchase,
    /// Credits an operator took away.
    Deduct,
    /// A refunded purchase's credits taken back.
    PurchaseRefund,
}

impl LedgerKind {
    pub const ALL: [LedgerKind; 6] = [
        LedgerKind::Grant,
        LedgerKind::Charge,
        LedgerKind::Refund,
        LedgerKind::Purchase,
        LedgerKind::Deduct,
        LedgerKind::PurchaseRefund,
    ];

    /// The name in `credit_ledger.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::Grant => "grant",
            LedgerKind::Charge => "charge",
            LedgerKind::Refund => "refund",
            LedgerKind::Purchase => "purchase",
            LedgerKind::Deduct => "deduct",
            LedgerKind::PurchaseRefund => "purchase_refund",
        }
    }

    pub fn parse(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == kind)
    }
}

impl std::fmt::Display for LedgerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of a user's credit ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerEntry {
    pub id: i64,
    pub kind: LedgerKind,
    /// Credits: negative for a charge, deduction or purchase refund.
    pub amount: i64,
    pub reason: Option<String>,
    /// Who moved the credits (`bot`, `operator:<name>`, `telegram`); absent on entries
    /// older than the column.
    pub actor: Option<String>,
    /// The job of a charge or refund.
    pub job_id: Option<String>,
    /// The payment of a purchase or purchase refund.
    pub payment_id: Option<i64>,
    pub created_at: DateTime<Utc>,
}

fn entry_from_row(row: &sqlx::postgres::PgRow) -> Result<LedgerEntry, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    let kind = LedgerKind::parse(&kind).ok_or_else(|| sqlx::Error::ColumnDecode {
        index: "kind".to_owned(),
        source: format!("unknown ledger kind '{kind}'").into(),
    })?;
    Ok(LedgerEntry {
        id: row.try_get("id")?,
        kind,
        amount: row.try_get("amount")?,
        reason: row.try_get("reason")?,
        actor: row.try_get("actor")?,
        job_id: row.try_get("job_id")?,
        payment_id: row.try_get("payment_id")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Checks an operator's move: amount, reason and actor.
fn validate_move(amount: i64, reason: &str, actor: &str) -> Result<(), StoreError> {
    if !(1..=MAX_CREDIT_MOVE).contains(&amount) {
        return Err(StoreError::BadAmount {
            amount,
            max: MAX_CREDIT_MOVE,
        });
    }
    let chars = reason.trim().chars().count();
    if chars == 0 || chars > MAX_REASON_CHARS {
        return Err(StoreError::BadReason {
            chars,
            max: MAX_REASON_CHARS,
        });
    }
    let actor_chars = actor.trim().chars().count();
    if actor_chars == 0 || actor_chars > MAX_ACTOR_CHARS {
        return Err(StoreError::Invalid(format!(
            "the actor must be 1 to {MAX_ACTOR_CHARS} characters, got {actor_chars}"
        )));
    }
    Ok(())
}

impl Store {
    /// An operator gives a user `amount` credits: a `grant` entry with `reason` and
    /// `actor`, and the balance, in one transaction under the user's row lock.
    pub async fn grant_credits(
        &self,
        telegram_id: i64,
        amount: i64,
        reason: &str,
        actor: &str,
    ) -> Result<Moved, StoreError> {
        self.move_credits(telegram_id, amount, reason, actor, LedgerKind::Grant)
            .await
    }

    /// An operator takes `amount` credits away: a `deduct` entry of `-amount` with
    /// `reason` and `actor`, and the balance, in one transaction under the user's row
    /// lock. Refused, writing nothing, when the balance is smaller than `amount`.
    pub async fn deduct_credits(
        &self,
        telegram_id: i64,
        amount: i64,
        reason: &str,
        actor: &str,
    ) -> Result<Moved, StoreError> {
        self.move_credits(telegram_id, amount, reason, actor, LedgerKind::Deduct)
            .await
    }

    async fn move_credits(
        &self,
        telegram_id: i64,
        amount: i64,
        reason: &str,
        actor: &str,
        kind: LedgerKind,
    ) -> Result<Moved, StoreError> {
        validate_move(amount, reason, actor)?;
        let (reason, actor) = (reason.trim(), actor.trim());
        let signed = match kind {
            LedgerKind::Grant => amount,
            LedgerKind::Deduct => -amount,
            other => {
                return Err(StoreError::Invalid(format!(
                    "an operator cannot write a '{other}' entry"
                )));
            }
        };
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query("SELECT id, credits FROM users WHERE telegram_id = $1 FOR UPDATE")
            .bind(telegram_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::UnknownTelegramUser(telegram_id))?;
        let user_id: i64 = row.try_get("id")?;
        let balance: i64 = row.try_get("credits")?;
        if balance + signed < 0 {
            return Err(StoreError::WouldGoNegative {
                telegram_id,
                balance,
                amount,
            });
        }
        let ledger_id: i64 = sqlx::query_scalar(
            "INSERT INTO credit_ledger (user_id, kind, amount, reason, actor)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(user_id)
        .bind(kind.as_str())
        .bind(signed)
        .bind(reason)
        .bind(actor)
        .fetch_one(&mut *tx)
        .await?;
        let balance_after: i64 = sqlx::query_scalar(
            "UPDATE users SET credits = credits + $2 WHERE id = $1 RETURNING credits",
        )
        .bind(user_id)
        .bind(signed)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(
            telegram_id,
            user_id,
            amount = signed,
            balance_after,
            actor,
            reason,
            "operator moved credits"
        );
        Ok(Moved {
            user_id,
            telegram_id,
            amount: signed,
            balance_after,
            ledger_id,
        })
    }

    /// The user's last `limit` (1-500) ledger entries, newest first.
    pub async fn ledger_of(
        &self,
        user_id: i64,
        limit: i64,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        if !(1..=MAX_LEDGER_PAGE).contains(&limit) {
            return Err(StoreError::Invalid(format!(
                "limit must be 1 to {MAX_LEDGER_PAGE}, got {limit}"
            )));
        }
        let rows = sqlx::query(
            "SELECT id, kind, amount, reason, actor, job_id, payment_id, created_at
             FROM credit_ledger WHERE user_id = $1
             ORDER BY created_at DESC, id DESC LIMIT $2",
        )
        .bind(user_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(entry_from_row).collect::<Result<_, _>>()?)
    }
}
