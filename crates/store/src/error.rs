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
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}
