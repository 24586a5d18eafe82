//! genq's worker runtime: everything between a job type (genq-core) and the Redis
//! backend (genq-redis) that a worker process needs.
//!
//! - [`middleware`]: the layers every worker runs: tracing span, metrics,
//!   catch-panic, cancellation, per-type timeout, and the dispatcher.
//! - [`worker`]: [`WorkerRuntime`] assembles one apalis worker per queue on an
//!   apalis `Monitor`, restarts them with backoff, and shuts down gracefully.
//! - [`client`]: [`JobClient`], typed and validated pushes routed by the registry.
//! - [`http`]: `/metrics` and `/healthz`.
//! - [`config`]: settings shared by the binaries (clap + environment).

pub mod client;
pub mod config;
pub mod http;
pub mod middleware;
pub mod process;
pub mod schedule;
pub mod worker;

pub use client::{ClientError, EnqueueOptions, JobClient};
pub use config::{RedisArgs, init_tracing};
pub use process::{BuildRegistry, ProcessError, WorkerArgs, run_worker, shutdown_signal};
pub use schedule::{Scheduled, run_schedules};
pub use worker::{WorkerError, WorkerRuntime, WorkerSettings};
