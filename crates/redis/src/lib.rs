//! genq's Redis backend for apalis.
//!
//! - [`RedisQueue`]: push (one, bulk, delayed, idempotent), job state by id, cancel,
//!   pause/resume, O(1) stats, dead letters and their retry, completion events.
//! - [`QueueConsumer`]: one per worker process and queue; holds the leases of the
//!   jobs it runs, renews them on a heartbeat, recovers jobs of dead workers, and
//!   hears cancellations and new work over pub/sub.
//! - [`RedisBackend`]: the apalis `Backend` a `WorkerBuilder` runs on; its middleware
//!   ([`AckLayer`]) records each run's outcome, applying the job type's retry policy
//!   as a reschedule in Redis (no slot is held while a job waits).
//! - [`RedisConn`]: the connection every genq part shares, to one server, a
//!   Sentinel-managed primary ([`SentinelManager`] follows failovers) or a Redis
//!   Cluster ([`RedisTarget`] parses `redis+sentinel://` and `redis+cluster://`).
//!
//! Key layout, the scripts and the invariants are described in ARCHITECTURE.md.

mod ack;
mod backend;
mod config;
mod conn;
mod consumer;
mod error;
mod events;
mod queue;
mod raw_job;
mod scripts;
mod server;
mod target;

pub use ack::{AckLayer, AckService, PolicySource};
pub use backend::{RawJob, RedisBackend};
pub use config::RedisConfig;
pub use conn::{Connector, PubSubMessage, RedisConn, SentinelManager};
pub use consumer::{ConsumerOptions, QueueConsumer};
pub use error::QueueError;
pub use events::{EventFollower, EventStart};
pub use queue::{
    CancelOutcome, DeleteOutcome, JobList, NewJob, Outcome, Pushed, QueueStats, RedisQueue,
    WorkerInfo, now_ms,
};
/// The pipeline Lua scripts, for `genq-pipeline`.
pub use scripts::pipeline as pipeline_scripts;
/// The provider-limit Lua scripts (shared in-flight slots, request/token buckets,
/// adaptive limits, cool-downs), for `genq-providers`.
pub use scripts::provider as provider_scripts;
pub use server::ServerSettings;
pub use target::{Credentials, RedisTarget, redact};
