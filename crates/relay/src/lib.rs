//! The seam between PostgreSQL (money, history) and Redis (the queue).
//!
//! - [`Relay`]: moves committed outbox entries to their Redis queues. The job id is
//!   the Redis job id and pushing a known id is a no-op, so a relay that dies after
//!   pushing and before deleting the entry pushes nothing twice when it comes back.
//! - [`Settler`]: follows the queues' completion event streams and records each
//!   final outcome in the database, refunding failed and cancelled paid jobs once
//!   (see `Store::settle`). It also reconciles open jobs with Redis
//!   ([`Settler::reconcile`]): missed events are settled, jobs Redis lost are put
//!   back on their queues from PostgreSQL.

mod reconcile;
mod relay;
mod settler;

pub use genq_core::failpoint;
pub use reconcile::Reconciled;
pub use relay::Relay;
pub use settler::{DEFAULT_RECONCILE_EVERY, Settler};

/// What can stop the relay or the settler.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] genq_store::StoreError),
    #[error(transparent)]
    Queue(#[from] genq_redis::QueueError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}
