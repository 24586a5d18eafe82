//! [`RedisBackend`]: the apalis `Backend` over a [`QueueConsumer`].

use std::{
    collections::VecDeque,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use apalis_core::{
    backend::{Backend, BackendConfig, finalize::Ephemeral},
    task::{Task, builder::TaskBuilder, task_id::TaskId},
    worker::context::WorkerContext,
};
use futures::{FutureExt, future::BoxFuture};
use genq_core::RetryPolicy;
use tracing::warn;

pub use crate::raw_job::RawJob;
use crate::{
    ack::{AckLayer, PolicySource},
    config::RedisConfig,
    consumer::QueueConsumer,
    error::QueueError,
};

impl QueueConsumer {
    /// A new apalis backend over this consumer (one per apalis worker run).
    pub fn backend(&self) -> RedisBackend {
        RedisBackend::new(self.clone())
    }
}

/// See the module docs. Build one per apalis worker with [`QueueConsumer::backend`].
pub struct RedisBackend {
    consumer: QueueConsumer,
    policies: PolicySource,
    start_delay: Duration,
    buffer: VecDeque<Task<RawJob>>,
    fetching: Option<BoxFuture<'static, Vec<RawJob>>>,
    closing: Option<BoxFuture<'static, Result<u64, QueueError>>>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("consumer", &self.consumer)
            .field("buffered", &self.buffer.len())
            .finish()
    }
}

impl RedisBackend {
    pub(crate) fn new(consumer: QueueConsumer) -> Self {
        Self {
            consumer,
            policies: Arc::new(|_: &str| RetryPolicy::default()),
            start_delay: Duration::ZERO,
            buffer: VecDeque::new(),
            fetching: None,
            closing: None,
        }
    }

    /// Where the ack layer finds each job type's retry policy (default: PRODUCT.md's table).
    pub fn with_policies(mut self, policies: PolicySource) -> Self {
        self.policies = policies;
        self
    }

    /// Waits this long before the first fetch (a restarted worker backs off).
    pub fn with_start_delay(mut self, delay: Duration) -> Self {
        self.start_delay = delay;
        self
    }

    pub fn consumer(&self) -> &QueueConsumer {
        &self.consumer
    }

    fn to_task(job: RawJob) -> Task<RawJob> {
        let id = TaskId::from_string(job.id.clone());
        // apalis counts the run itself when it starts it (its lifecycle layer
        // increments the attempt), so it is handed the runs before this one.
        let previous_runs = job.attempt.saturating_sub(1) as usize;
        TaskBuilder::new(job)
            .task_id(id)
            .attempt(previous_runs)
            .build()
    }
}

impl Backend for RedisBackend {
    type Task = Task<RawJob>;
    type Error = QueueError;

    fn poll_ready(
        &mut self,
        _cx: &mut Context<'_>,
        _w: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        _w: &WorkerContext,
    ) -> Poll<Option<Result<Self::Task, Self::Error>>> {
        loop {
            if let Some(task) = self.buffer.pop_front() {
                return Poll::Ready(Some(Ok(task)));
            }
            let fut = self.fetching.get_or_insert_with(|| {
                let delay = std::mem::take(&mut self.start_delay);
                self.consumer.clone().fetch_or_wait(delay).boxed()
            });
            match fut.poll_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(jobs) => {
                    self.fetching = None;
                    self.buffer.extend(jobs.into_iter().map(Self::to_task));
                }
            }
        }
    }

    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        _w: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        // A fetch in progress may already hold leases: its jobs are handed back too
        // once it resolves; dropping it before then leaves nothing leased.
        self.fetching = None;
        if self.closing.is_none() {
            if self.buffer.is_empty() {
                return Poll::Ready(Ok(()));
            }
            let ids: Vec<String> = self.buffer.drain(..).map(|t| t.args.id).collect();
            let consumer = self.consumer.clone();
            self.closing = Some(async move { consumer.hand_back(&ids).await }.boxed());
        }
        let Some(fut) = self.closing.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        match fut.poll_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(res) => {
                self.closing = None;
                if let Err(e) = &res {
                    warn!(error = %e, "could not hand back buffered jobs; their leases will expire");
                }
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl BackendConfig for RedisBackend {
    type Args = RawJob;
    type Id = String;
    type Kind = Ephemeral;
    type Config = RedisConfig;
    type Layer = AckLayer;

    fn config(&self) -> &Self::Config {
        self.consumer.queue().config()
    }

    fn middleware(&mut self, _worker: &mut WorkerContext) -> Self::Layer {
        AckLayer::new(self.consumer.clone(), self.policies.clone())
    }
}
