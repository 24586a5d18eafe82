/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not enough credits: balance {balance}, price {price}")]
    InsufficientCredits { balance: i64, price: i64 },
    #[error("no user {0}")]
    UnknownUser(i64),
    #[error("no persona {0}")]
    UnknownPersona(i64),
    #[error("no dialog {0}")]
    UnknownDialog(i64),
    /// A job id the store has no row for (e.g. the parent of a follow-up).
    #[error("no job {0}")]
    UnknownJob(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    /// An operator named a Telegram id the bot has never seen.
    #[error("no user with Telegram id {0} (they have not written to the bot yet)")]
    UnknownTelegramUser(i64),
    /// An operator's grant or deduction of zero, a negative or an absurd amount.
    #[error("the amount must be 1 to {max} credits, got {amount}")]
    BadAmount { amount: i64, max: i64 },
    /// An operator's grant or deduction without a reason, or with a too long one.
    #[error("a reason of 1 to {max} characters is required, got {chars} characters")]
    BadReason { chars: usize, max: usize },
    /// A deduction larger than the balance (the balance never goes below zero).
    #[error("user {telegram_id} has {balance} credits; deducting {amount} would make it negative")]
    WouldGoNegative {
        telegram_id: i64,
        balance: i64,
        amount: i64,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}
