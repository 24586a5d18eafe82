//! Operators' credit tools: grant or deduct credits with a reason (audited in the
//! ledger as `operator:admin-api`), a user's ledger and payments by Telegram id, and
//! refunds of purchases.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, State},
};
use genq_store::{LedgerEntry, MAX_LEDGER_PAGE, MAX_REASON_CHARS, Moved, Payment, Store, User};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    AdminState,
    error::{ApiError, ApiJson, ApiQuery, ErrorBody},
};

/// Who the ledger says moved credits through this API.
pub const ADMIN_ACTOR: &str = "operator:admin-api";

type S = State<Arc<AdminState>>;
type ApiResult<T> = Result<Json<T>, ApiError>;

/// The credit endpoints, added to the API's router.
pub(crate) fn routes(router: OpenApiRouter<Arc<AdminState>>) -> OpenApiRouter<Arc<AdminState>> {
    router
        .routes(routes!(move_credits))
        .routes(routes!(user_ledger))
        .routes(routes!(user_payments))
        .routes(routes!(refund_payment))
}

/// The store, or 503 when the admin runs without a database.
pub(crate) fn store(state: &AdminState) -> Result<&Store, ApiError> {
    state.store.as_ref().ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "this admin runs without a database",
        )
    })
}

/// A Telegram id from the path (a JSON 400 when it is not a number).
pub(crate) fn telegram_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::bad_request(format!("'{raw}' is not a Telegram user id (a number)")))
}

/// The user with this Telegram id, or 404.
pub(crate) async fn user_by_telegram_id(store: &Store, telegram_id: i64) -> Result<User, ApiError> {
    store
        .user_by_telegram_id(telegram_id)
        .await?
        .ok_or_else(|| genq_store::StoreError::UnknownTelegramUser(telegram_id).into())
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CreditAction {
    Grant,
    Deduct,
}

/// Credits to give or take away, and why.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditMove {
    action: CreditAction,
    /// Credits, 1 to 1,000,000.
    amount: i64,
    /// Why (1-500 characters); kept in the ledger.
    reason: String,
}

/// A move done.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreditsMoved {
    telegram_id: i64,
    user_id: i64,
    /// The ledger entry's amount: negative for a deduction.
    amount: i64,
    /// The user's balance now.
    balance: i64,
    ledger_id: i64,
    actor: &'static str,
    message: String,
}

/// Grants or deducts credits (audited in the ledger: who, when, why). A deduction
/// larger than the balance is refused (409): the balance never goes negative.
#[utoipa::path(post, path = "/api/users/{telegram_id}/credits", tag = "credits",
    params(("telegram_id" = i64, Path, description = "The user's Telegram id")),
    request_body = CreditMove,
    responses((status = 200, body = CreditsMoved), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn move_credits(
    State(state): S,
    Path(raw): Path<String>,
    ApiJson(req): ApiJson<CreditMove>,
) -> ApiResult<CreditsMoved> {
    let telegram_id = telegram_id(&raw)?;
    let store = store(&state)?;
    let moved: Moved = match req.action {
        CreditAction::Grant => {
            store
                .grant_credits(telegram_id, req.amount, &req.reason, ADMIN_ACTOR)
                .await?
        }
        CreditAction::Deduct => {
            store
                .deduct_credits(telegram_id, req.amount, &req.reason, ADMIN_ACTOR)
                .await?
        }
    };
    let verb = match req.action {
        CreditAction::Grant => "granted",
        CreditAction::Deduct => "deducted",
    };
    Ok(Json(CreditsMoved {
        message: format!(
            "{verb} {} credits to user {telegram_id}; balance {}",
            moved.amount.abs(),
            moved.balance_after
        ),
        telegram_id,
        user_id: moved.user_id,
        amount: moved.amount,
        balance: moved.balance_after,
        ledger_id: moved.ledger_id,
        actor: ADMIN_ACTOR,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LedgerQuery {
    /// Entries to return, newest first (1-500, default 50).
    limit: Option<i64>,
}

/// The page size a ledger or payments listing asked for (default 50).
fn page_limit(q: &LedgerQuery) -> Result<i64, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_LEDGER_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be 1-{MAX_LEDGER_PAGE}, got {limit}"
        )));
    }
    Ok(limit)
}

/// A user's balance and ledger.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserLedger {
    telegram_id: i64,
    user_id: i64,
    balance: i64,
    /// Newest first: `kind` (grant, charge, refund, purchase, deduct, purchase_refund),
    /// `amount`, `reason`, `actor`, `job_id`, `payment_id`, `created_at`.
    #[schema(value_type = Vec<Object>)]
    entries: Vec<LedgerEntry>,
}

/// A user's balance and last ledger entries (charges, refunds, grants, deductions, purchases), newest first.
#[utoipa::path(get, path = "/api/users/{telegram_id}/ledger", tag = "credits",
    params(("telegram_id" = i64, Path, description = "The user's Telegram id"), LedgerQuery),
    responses((status = 200, body = UserLedger), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn user_ledger(
    State(state): S,
    Path(raw): Path<String>,
    ApiQuery(q): ApiQuery<LedgerQuery>,
) -> ApiResult<UserLedger> {
    let telegram_id = telegram_id(&raw)?;
    let limit = page_limit(&q)?;
    let store = store(&state)?;
    let user = user_by_telegram_id(store, telegram_id).await?;
    let entries = store.ledger_of(user.id, limit).await?;
    Ok(Json(UserLedger {
        telegram_id,
        user_id: user.id,
        balance: user.credits,
        entries,
    }))
}

/// A user's payments.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserPayments {
    telegram_id: i64,
    user_id: i64,
    /// Newest first: `id`, `telegram_payment_charge_id`, `package`, `currency`,
    /// `stars`, `credits`, `created_at`, `refund_status` (requested, done, failed),
    /// `refund_actor`, `refund_reason`, `refund_error`, `refunded_at`,
    /// `telegram_refunded_at`.
    #[schema(value_type = Vec<Object>)]
    payments: Vec<Payment>,
}

/// A user's payments (Telegram Stars purchases) and their refunds, newest first.
#[utoipa::path(get, path = "/api/users/{telegram_id}/payments", tag = "credits",
    params(("telegram_id" = i64, Path, description = "The user's Telegram id"), LedgerQuery),
    responses((status = 200, body = UserPayments), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn user_payments(
    State(state): S,
    Path(raw): Path<String>,
    ApiQuery(q): ApiQuery<LedgerQuery>,
) -> ApiResult<UserPayments> {
    let telegram_id = telegram_id(&raw)?;
    let limit = page_limit(&q)?;
    let store = store(&state)?;
    let user = user_by_telegram_id(store, telegram_id).await?;
    Ok(Json(UserPayments {
        telegram_id,
        user_id: user.id,
        payments: store.payments_of(user.id, limit).await?,
    }))
}

/// Why a purchase is refunded.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// 1-500 characters; kept in the ledger and on the payment.
    reason: String,
}

/// A refund requested.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefundRequested {
    payment_id: i64,
    telegram_id: i64,
    /// Credits taken back from the user.
    credits: i64,
    /// The user's balance now.
    balance: i64,
    /// `requested`: the bot calls Telegram's refundStarPayment next.
    refund_status: String,
    message: String,
}

/// Refunds a purchase: its credits are taken back now (refused, 409, when the user
/// has spent them or it was refunded before) and the bot returns the Stars through
/// Telegram's refundStarPayment.
#[utoipa::path(post, path = "/api/payments/{id}/refund", tag = "credits",
    params(("id" = i64, Path, description = "The payment's id")),
    request_body = RefundRequest,
    responses((status = 200, body = RefundRequested), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn refund_payment(
    State(state): S,
    Path(raw): Path<String>,
    ApiJson(req): ApiJson<RefundRequest>,
) -> ApiResult<RefundRequested> {
    let payment_id: i64 = raw
        .parse()
        .map_err(|_| ApiError::bad_request(format!("'{raw}' is not a payment id (a number)")))?;
    let chars = req.reason.trim().chars().count();
    if chars == 0 || chars > MAX_REASON_CHARS {
        return Err(genq_store::StoreError::BadReason {
            chars,
            max: MAX_REASON_CHARS,
        }
        .into());
    }
    let store = store(&state)?;
    if store.payment(payment_id).await?.is_none() {
        return Err(ApiError::not_found(format!("no payment {payment_id}")));
    }
    // The payment exists and the input is valid: what the store still refuses
    // (refunded before, credits already spent) conflicts with the payment's state.
    let refund = store
        .request_payment_refund(payment_id, ADMIN_ACTOR, req.reason.trim())
        .await
        .map_err(|e| match e {
            genq_store::StoreError::Invalid(m) => ApiError::conflict(m),
            other => other.into(),
        })?;
    let p = &refund.payment;
    Ok(Json(RefundRequested {
        message: format!(
            "refund of payment {payment_id} requested: {} credits taken back from user {} (balance {}); the bot returns the {} Stars",
            p.credits, p.telegram_id, refund.balance, p.stars
        ),
        payment_id,
        telegram_id: p.telegram_id,
        credits: p.credits,
        balance: refund.balance,
        refund_status: p
            .refund_status
            .clone()
            .unwrap_or_else(|| "requested".to_owned()),
    }))
}
