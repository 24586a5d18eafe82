//! Pipelines: durable multi-step work over genq jobs.
//!
//! A [`Pipeline`] is declared in code as stages over existing job types: a step
//! (one job), a fan-out (N jobs built from what came before, at most `parallelism`
//! at once; the next stage gets all outputs in order: the join), and a gate (the
//! pipeline parks until a named signal arrives or its timeout fires). It is
//! registered in one line ([`PipelineRegistry::register`]).
//!
//! A pipeline is a job of the reserved queue [`PIPELINES_QUEUE`]: it is started by
//! a push (directly, or charged and relayed from PostgreSQL like any paid job), it
//! ends with one completion event on that queue's event stream (which the settler
//! settles and refunds), and its position lives in its Redis hash. Its steps are
//! ordinary jobs on their own queues (leases, retries, timeouts, checkpoints and
//! dead letters apply unchanged) with ids derived from the pipeline's
//! (`<id>.<stage>.<index>`), pushed with that id as idempotency key.
//!
//! Every transition is a Lua script with a compare-and-set on the pipeline's
//! version, so a transition applies once however many [`PipelineDriver`]s race; a
//! step's final outcome is handed to its pipeline in the same script that ends the
//! step (`:pipe_done`), and removed from there only after the pipeline recorded it.
//! A parked pipeline is a hash and a sorted-set entry: no worker slot, no
//! connection. Deadlines are the Redis server's time. See ARCHITECTURE.md.

mod client;
mod definition;
mod driver;
mod error;
mod events;
mod keys;
mod metrics;
mod plan;
mod record;
mod registry;
mod view;

pub use client::{
    PipelineCancel, PipelineClient, PipelineCounts, PipelineState, SignalAccepted, SignalRefused,
};
pub use definition::{BuildError, Pipeline, Stage, StageInput, StageKind, StepSpec};
pub use driver::PipelineDriver;
pub use error::PipelineError;
pub use events::{PipelineEvent, PipelineEvents};
pub use metrics::PipelineMetrics;
pub use registry::PipelineRegistry;
pub use view::{GateView, PipelineSummary, PipelineView, StageView, StepView};

/// The reserved queue name pipelines are pushed to (never served by a worker).
pub const PIPELINES_QUEUE: &str = "pipelines";
