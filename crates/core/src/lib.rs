//! genq's job contract.
//!
//! A job type is a struct implementing [`Job`]: its payload, name, default queue,
//! timeout, retry policy and handler. Registering it is one line:
//! `registry.register(MyJob::new(deps))`. Failures are typed ([`JobError`] with a
//! [`FailureClass`]) and the [`RetryPolicy`] decides what each class gets.
//!
//! This crate knows nothing about Redis or apalis: the backend (`genq-redis`) and
//! the worker runtime (`genq-runtime`) depend on it, never the other way round.

pub mod error;
pub mod failpoint;
pub mod job;
pub mod registry;
pub mod retry;
pub mod state;

pub use error::{FailureClass, JobError};
pub use failpoint::failpoint;
pub use job::{Job, JobContext, JobSpawner, ProgressSink};
pub use registry::{ErasedJob, Registry, RegistryError, validate_queue_name};
pub use retry::{ClassRule, RetryDecision, RetryPolicy};
pub use state::{CompletionEvent, JobState, JobStatus, Progress, new_job_id};
