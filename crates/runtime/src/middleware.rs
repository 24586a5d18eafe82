//! The middleware every genq worker runs, innermost last:
//! tracing span → metrics → catch-panic → cancellation → per-type timeout → dispatcher.
//! (The backend's ack layer sits outside all of them and records the outcome.)
//!
//! Each layer is a [`Wrap`]: a function from a job and the inner run's future to a
//! new future, lifted into a tower layer by [`WrapLayer`].

use std::{
    panic::AssertUnwindSafe,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use apalis_core::{error::BoxDynError, task::Task};
use futures::{FutureExt, future::BoxFuture};
use genq_core::{FailureClass, JobError, JobSpawner, ProgressSink, Registry, RetryDecision};
use genq_metrics::WorkerMetrics;
use genq_redis::RawJob;
use tokio_util::sync::CancellationToken;
use tower_layer::Layer;
use tower_service::Service;
use tracing::{Instrument, debug, info_span, warn};

pub type JobResult = Result<serde_json::Value, JobError>;
pub type JobFuture = BoxFuture<'static, JobResult>;

/// What a middleware sees of a job (taken before the job moves into the inner service).
#[derive(Debug, Clone)]
pub struct JobView {
    pub id: String,
    pub queue: String,
    pub job_type: String,
    pub attempt: u32,
    pub cancel: CancellationToken,
}

impl From<&RawJob> for JobView {
    fn from(job: &RawJob) -> Self {
        Self {
            id: job.id.clone(),
            queue: job.queue.clone(),
            job_type: job.job_type.clone(),
            attempt: job.attempt,
            cancel: job.cancel.clone(),
        }
    }
}

/// One middleware: wraps the inner run of `job`.
pub trait Wrap: Clone + Send + Sync + 'static {
    fn wrap(&self, job: JobView, inner: JobFuture) -> JobFuture;
}

/// Lifts a [`Wrap`] into a tower layer.
#[derive(Clone)]
pub struct WrapLayer<W>(pub W);

impl<S, W: Clone> Layer<S> for WrapLayer<W> {
    type Service = WrapService<S, W>;
    fn layer(&self, inner: S) -> Self::Service {
        WrapService {
            inner,
            wrap: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct WrapService<S, W> {
    inner: S,
    wrap: W,
}

/// Recovers the [`JobError`] from a boxed error (apalis's lifecycle layer boxes
/// errors); anything else is a transient failure.
pub fn to_job_error(e: BoxDynError) -> JobError {
    match e.downcast::<JobError>() {
        Ok(job_error) => *job_error,
        Err(other) => JobError::transient(other.to_string()),
    }
}

impl<S, W> Service<Task<RawJob>> for WrapService<S, W>
where
    S: Service<Task<RawJob>, Response = serde_json::Value>,
    S::Error: Into<BoxDynError>,
    S::Future: Send + 'static,
    W: Wrap,
{
    type Response = serde_json::Value;
    type Error = JobError;
    type Future = JobFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), JobError>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| to_job_error(e.into()))
    }

    fn call(&mut self, task: Task<RawJob>) -> JobFuture {
        let view = JobView::from(&task.args);
        let inner = self
            .inner
            .call(task)
            .map(|res| res.map_err(|e| to_job_error(e.into())))
            .boxed();
        self.wrap.wrap(view, inner)
    }
}

/// The dispatcher: finds the job type in the registry, decodes and runs the payload.
#[derive(Clone)]
pub struct JobService {
    registry: Arc<Registry>,
    progress: Arc<dyn ProgressSink>,
    spawner: Arc<dyn JobSpawner>,
}

impl JobService {
    pub fn new(
        registry: Arc<Registry>,
        progress: Arc<dyn ProgressSink>,
        spawner: Arc<dyn JobSpawner>,
    ) -> Self {
        Self {
            registry,
            progress,
            spawner,
        }
    }
}

impl Service<Task<RawJob>> for JobService {
    type Response = serde_json::Value;
    type Error = JobError;
    type Future = JobFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), JobError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, task: Task<RawJob>) -> JobFuture {
        let job = task.args;
        match self.registry.get(&job.job_type) {
            Ok(handler) => handler.run(
                &job.payload,
                job.context(self.progress.clone())
                    .with_spawner(self.spawner.clone()),
            ),
            Err(e) => futures::future::ready(Err(JobError::bad_input(format!(
                "this worker cannot run the job: {e}"
            ))))
            .boxed(),
        }
    }
}

/// Fails a run that takes longer than its job type's timeout.
#[derive(Clone)]
pub struct Timeout(pub Arc<Registry>);

impl Wrap for Timeout {
    fn wrap(&self, job: JobView, inner: JobFuture) -> JobFuture {
        let Ok(handler) = self.0.get(&job.job_type) else {
            return inner;
        };
        let limit = handler.timeout();
        async move {
            match tokio::time::timeout(limit, inner).await {
                Ok(res) => res,
                Err(_) => Err(JobError::timeout(format!("ran past its {limit:?} timeout"))),
            }
        }
        .boxed()
    }
}

/// Stops a run when its job is cancelled (or its lease is lost).
#[derive(Clone)]
pub struct Cancel;

impl Wrap for Cancel {
    fn wrap(&self, job: JobView, inner: JobFuture) -> JobFuture {
        async move {
            tokio::select! {
                biased;
                res = inner => res,
                _ = job.cancel.cancelled() => Err(JobError::cancelled("cancelled while running")),
            }
        }
        .boxed()
    }
}

/// Turns a panic in a handler into a transient failure; the worker lives on.
#[derive(Clone)]
pub struct CatchPanic;

impl Wrap for CatchPanic {
    fn wrap(&self, _job: JobView, inner: JobFuture) -> JobFuture {
        AssertUnwindSafe(inner)
            .catch_unwind()
            .map(|res| match res {
                Ok(res) => res,
                Err(panic) => {
                    let msg = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "non-string panic payload".to_owned());
                    Err(JobError::transient(format!("handler panicked: {msg}")))
                }
            })
            .boxed()
    }
}

/// Records `genq_*` job metrics: in-flight, duration, outcome, retries and failures by class.
#[derive(Clone)]
pub struct Metrics {
    pub metrics: WorkerMetrics,
    pub registry: Arc<Registry>,
}

impl Wrap for Metrics {
    fn wrap(&self, job: JobView, inner: JobFuture) -> JobFuture {
        let m = self.metrics.clone();
        let registry = self.registry.clone();
        async move {
            let in_flight = m
                .jobs_in_flight
                .with_label_values(&[&job.job_type, &job.queue]);
            in_flight.inc();
            let started = Instant::now();
            let res = inner.await;
            in_flight.dec();
            let outcome = match &res {
                Ok(_) => "succeeded",
                // waiting on a vendor's task, or no provider capacity: not a
                // failure, not an attempt
                Err(e) if e.parked => "parked",
                Err(e) if e.deferred => "deferred",
                Err(e) => {
                    let class = e.class.as_str();
                    m.job_failures_total
                        .with_label_values(&[&job.job_type, &job.queue, class])
                        .inc();
                    match (
                        e.class,
                        registry.retry_policy(&job.job_type).decide(e, job.attempt),
                    ) {
                        (FailureClass::Cancelled, _) => "cancelled",
                        (_, RetryDecision::RetryIn(_)) => {
                            m.job_retries_total
                                .with_label_values(&[&job.job_type, &job.queue, class])
                                .inc();
                            "retried"
                        }
                        (_, RetryDecision::GiveUp) => "failed",
                    }
                }
            };
            let labels = [job.job_type.as_str(), job.queue.as_str(), outcome];
            m.jobs_total.with_label_values(&labels).inc();
            m.job_duration_seconds
                .with_label_values(&labels)
                .observe(started.elapsed().as_secs_f64());
            res
        }
        .boxed()
    }
}

/// Runs the job inside a span carrying its id, type, queue and attempt.
#[derive(Clone)]
pub struct Trace;

impl Wrap for Trace {
    fn wrap(&self, job: JobView, inner: JobFuture) -> JobFuture {
        let span = info_span!("job", job_id = %job.id, job_type = %job.job_type, queue = %job.queue, attempt = job.attempt);
        async move {
            debug!("job started");
            let res = inner.await;
            match &res {
                Ok(_) => debug!("job succeeded"),
                Err(e) if e.parked => debug!(error = %e.message, "job parked"),
                Err(e) if e.deferred => debug!(error = %e.message, "job deferred"),
                Err(e) => warn!(class = %e.class, error = %e.message, "job run failed"),
            }
            res
        }
        .instrument(span)
        .boxed()
    }
}
