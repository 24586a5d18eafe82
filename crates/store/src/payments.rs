//! Credits bought with Telegram Stars, and refunds of those purchases.
//!
//! - A purchase is granted **once per `telegram_payment_charge_id`** (unique in
//!   `payments`, and one `purchase` ledger entry per payment): a re-delivered
//!   `successful_payment` or a second bot replica grants nothing more.
//! - An operator's refund is *requested* in one transaction that takes the credits
//!   back (a `purchase_refund` entry, one per payment; refused when the user has
//!   spent them, so the balance never goes negative); the bot then calls Telegram's
//!   `refundStarPayment` and marks it *done*, or *failed* and gives the credits back
//!   (a `grant` saying why).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, Row};

use crate::{Store, StoreError};

/// A purchase as Telegram reported it (`successful_payment`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPurchase {
    pub telegram_id: i64,
    pub telegram_payment_charge_id: String,
    pub provider_payment_charge_id: Option<String>,
    /// The package's id from the configuration.
    pub package: String,
    pub currency: String,
    pub stars: i64,
    pub credits: i64,
}

/// What recording a purchase did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Purchased {
    pub payment_id: i64,
    /// False when this charge id was recorded before: nothing was granted now.
    pub granted: bool,
    /// The user's balance after it.
    pub balance: i64,
}

/// One recorded payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow)]
pub struct Payment {
    pub id: i64,
    pub user_id: i64,
    pub telegram_id: i64,
    pub telegram_payment_charge_id: String,
    pub package: String,
    pub currency: String,
    pub stars: i64,
    pub credits: i64,
    pub created_at: DateTime<Utc>,
    /// `requested`, `done` or `failed`; none when never refunded.
    pub refund_status: Option<String>,
    pub refund_actor: Option<String>,
    pub refund_reason: Option<String>,
    pub refund_error: Option<String>,
    pub refunded_at: Option<DateTime<Utc>>,
    pub telegram_refunded_at: Option<DateTime<Utc>>,
}

/// A refund just requested: the credits are taken back; Telegram is asked next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentRefund {
    pub payment: Payment,
    /// The user's balance after the credits were taken back.
    pub balance: i64,
}

fn check_text(what: &str, text: &str, max: usize) -> Result<(), StoreError> {
    let n = text.chars().count();
    if text.trim().is_empty() || n > max {
        return Err(StoreError::Invalid(format!(
            "{what} must be 1-{max} characters, got {n}"
        )));
    }
    Ok(())
}

impl NewPurchase {
    fn validate(&self) -> Result<(), StoreError> {
        check_text(
            "telegram_payment_charge_id",
            &self.telegram_payment_charge_id,
            200,
        )?;
        check_text("package", &self.package, 64)?;
        check_text("currency", &self.currency, 8)?;
        if self.stars <= 0 || self.credits <= 0 {
            return Err(StoreError::Invalid(format!(
                "a purchase needs positive stars and credits, got {} stars for {} credits",
                self.stars, self.credits
            )));
        }
        Ok(())
    }
}

impl Store {
    /// Records a purchase and grants its credits, once per Telegram charge id.
    pub async fn record_purchase(&self, p: &NewPurchase) -> Result<Purchased, StoreError> {
        p.validate()?;
        let mut tx = self.pool().begin().await?;
        let user: Option<(i64, i64)> =
            sqlx::query_as("SELECT id, credits FROM users WHERE telegram_id = $1 FOR UPDATE")
                .bind(p.telegram_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((user_id, credits)) = user else {
            return Err(StoreError::Invalid(format!(
                "no user with Telegram id {}",
                p.telegram_id
            )));
        };
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO payments (user_id, telegram_payment_charge_id, provider_payment_charge_id,
                                   package, currency, stars, credits)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (telegram_payment_charge_id) DO NOTHING
             RETURNING id",
        )
        .bind(user_id)
        .bind(&p.telegram_payment_charge_id)
        .bind(&p.provider_payment_charge_id)
        .bind(&p.package)
        .bind(&p.currency)
        .bind(p.stars)
        .bind(p.credits)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(payment_id) = inserted else {
            let payment_id: i64 =
                sqlx::query_scalar("SELECT id FROM payments WHERE telegram_payment_charge_id = $1")
                    .bind(&p.telegram_payment_charge_id)
                    .fetch_one(&mut *tx)
                    .await?;
            return Ok(Purchased {
                payment_id,
                granted: false,
                balance: credits,
            });
        };
        sqlx::query(
            "INSERT INTO credit_ledger (user_id, kind, amount, reason, actor, payment_id)
             VALUES ($1, 'purchase', $2, $3, 'telegram', $4)",
        )
        .bind(user_id)
        .bind(p.credits)
        .bind(format!(
            "package {} for {} {}",
            p.package, p.stars, p.currency
        ))
        .bind(payment_id)
        .execute(&mut *tx)
        .await?;
        let balance: i64 = sqlx::query_scalar(
            "UPDATE users SET credits = credits + $2 WHERE id = $1 RETURNING credits",
        )
        .bind(user_id)
        .bind(p.credits)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Purchased {
            payment_id,
            granted: true,
            balance,
        })
    }

    /// One payment by its id.
    pub async fn payment(&self, payment_id: i64) -> Result<Option<Payment>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM payment_view WHERE id = $1")
            .bind(payment_id)
            .fetch_optional(self.pool())
            .await?)
    }

    /// A user's payments, newest first.
    pub async fn payments_of(&self, user_id: i64, limit: i64) -> Result<Vec<Payment>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM payment_view WHERE user_id = $1
             ORDER BY created_at DESC, id DESC LIMIT $2",
        )
        .bind(user_id)
        .bind(limit.clamp(1, 1000))
        .fetch_all(self.pool())
        .await?)
    }

    /// Requests the refund of a purchase: its credits are taken back now (refused
    /// when the user has spent them: the balance never goes negative), and the bot
    /// asks Telegram to return the Stars. Refused for an unknown payment or one
    /// already refunded (or being refunded).
    pub async fn request_payment_refund(
        &self,
        payment_id: i64,
        actor: &str,
        reason: &str,
    ) -> Result<PaymentRefund, StoreError> {
        check_text("actor", actor, 100)?;
        check_text("reason", reason, 500)?;
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(
            "SELECT p.user_id, p.credits, p.refund_status, u.credits AS balance
             FROM payments p JOIN users u ON u.id = p.user_id
             WHERE p.id = $1 FOR UPDATE OF p, u",
        )
        .bind(payment_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::Invalid(format!("no payment {payment_id}")))?;
        let user_id: i64 = row.try_get("user_id")?;
        let credits: i64 = row.try_get("credits")?;
        let balance: i64 = row.try_get("balance")?;
        if let Some(status) = row.try_get::<Option<String>, _>("refund_status")? {
            return Err(StoreError::Invalid(format!(
                "payment {payment_id} was refunded before (refund {status})"
            )));
        }
        if balance < credits {
            return Err(StoreError::Invalid(format!(
                "payment {payment_id} granted {credits} credits but the user has {balance} left: \
                 taking them back would make the balance negative; grant or deduct by hand instead"
            )));
        }
        sqlx::query(
            "INSERT INTO credit_ledger (user_id, kind, amount, reason, actor, payment_id)
             VALUES ($1, 'purchase_refund', $2, $3, $4, $5)",
        )
        .bind(user_id)
        .bind(-credits)
        .bind(reason)
        .bind(actor)
        .bind(payment_id)
        .execute(&mut *tx)
        .await?;
        let balance: i64 = sqlx::query_scalar(
            "UPDATE users SET credits = credits - $2 WHERE id = $1 RETURNING credits",
        )
        .bind(user_id)
        .bind(credits)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE payments SET refund_status = 'requested', refund_requested_at = now(),
                                 refund_actor = $2, refund_reason = $3
             WHERE id = $1",
        )
        .bind(payment_id)
        .bind(actor)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let payment = self
            .payment(payment_id)
            .await?
            .ok_or_else(|| StoreError::Invalid(format!("no payment {payment_id}")))?;
        Ok(PaymentRefund { payment, balance })
    }

    /// Refunds requested and not yet carried out (for the bot to ask Telegram),
    /// oldest first.
    pub async fn requested_refunds(&self, limit: i64) -> Result<Vec<Payment>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM payment_view WHERE refund_status = 'requested'
             ORDER BY refund_requested_at LIMIT $1",
        )
        .bind(limit.clamp(1, 1000))
        .fetch_all(self.pool())
        .await?)
    }

    /// Telegram returned the Stars: the refund is done (once; true when this call
    /// marked it).
    pub async fn complete_payment_refund(&self, payment_id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE payments SET refund_status = 'done', refunded_at = now()
             WHERE id = $1 AND refund_status = 'requested'",
        )
        .bind(payment_id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Telegram refused the refund for good: the credits taken back are given back
    /// (a `grant` saying why), once; true when this call did it.
    pub async fn fail_payment_refund(
        &self,
        payment_id: i64,
        error: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let row: Option<(i64, i64)> = sqlx::query_as(
            "UPDATE payments SET refund_status = 'failed', refund_error = $2
             WHERE id = $1 AND refund_status = 'requested'
             RETURNING user_id, credits",
        )
        .bind(payment_id)
        .bind(error.chars().take(500).collect::<String>())
        .fetch_optional(&mut *tx)
        .await?;
        let Some((user_id, credits)) = row else {
            return Ok(false);
        };
        sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO credit_ledger (user_id, kind, amount, reason, actor, payment_id)
             VALUES ($1, 'grant', $2, $3, 'bot', $4)",
        )
        .bind(user_id)
        .bind(credits)
        .bind(format!(
            "refund of payment {payment_id} failed, credits given back"
        ))
        .bind(payment_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE users SET credits = credits + $2 WHERE id = $1")
            .bind(user_id)
            .bind(credits)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Telegram's `refunded_payment` for a charge id: recorded once (true when this
    /// call recorded it; false when seen before or the payment is unknown).
    pub async fn record_telegram_refund(&self, charge_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE payments SET telegram_refunded_at = now()
             WHERE telegram_payment_charge_id = $1 AND telegram_refunded_at IS NULL",
        )
        .bind(charge_id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether a Telegram user is blocked from buying (unknown users are not).
    pub async fn is_blocked(&self, telegram_id: i64) -> Result<bool, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT blocked FROM users WHERE telegram_id = $1")
                .bind(telegram_id)
                .fetch_optional(self.pool())
                .await?
                .unwrap_or(false),
        )
    }

    /// Blocks or unblocks a Telegram user; false when unknown.
    pub async fn set_blocked(&self, telegram_id: i64, blocked: bool) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE users SET blocked = $2 WHERE telegram_id = $1")
            .bind(telegram_id)
            .bind(blocked)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
