//! Operators' credit tools: grant or deduct credits with a reason (audited in the
//! ledger as `operator:admin-api`), and a user's ledger, by Telegram id.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, State},
};
use genq_store::{LedgerEntry, MAX_LEDGER_PAGE, Moved, Store, User};
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
    raw.parse().map_err(|_| {
        ApiError::bad_request(format!("'{raw}' is not a Telegram user id (a number)"))
    })
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
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_LEDGER_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be 1-{MAX_LEDGER_PAGE}, got {limit}"
        )));
    }
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
