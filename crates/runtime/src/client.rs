//! [`JobClient`]: pushes jobs by type, validated against the job type and routed to
//! its configured queue. Bot, admin and CLI push through it.

use std::{sync::Arc, time::Duration};

use genq_core::{Job, JobError, Registry, RegistryError};
use genq_redis::{NewJob, Pushed, QueueError, RedisQueue};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("rejected payload: {0}")]
    Payload(JobError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Optional settings of one push.
#[derive(Debug, Clone, Default)]
pub struct EnqueueOptions {
    pub delay: Option<Duration>,
    pub idempotency_key: Option<String>,
    /// Push to this queue instead of the job type's configured one.
    pub queue: Option<String>,
    /// Use this job id (e.g. the database's); a new ULID otherwise.
    pub id: Option<String>,
}

#[derive(Clone, Debug)]
pub struct JobClient {
    queue: RedisQueue,
    registry: Arc<Registry>,
}

impl JobClient {
    pub fn new(queue: RedisQueue, registry: Arc<Registry>) -> Self {
        Self { queue, registry }
    }

    pub fn queue(&self) -> &RedisQueue {
        &self.queue
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Pushes a typed job.
    pub async fn enqueue<J: Job>(
        &self,
        payload: &J::Payload,
        opts: EnqueueOptions,
    ) -> Result<Pushed, ClientError> {
        let text = serde_json::to_string(payload).map_err(|e| {
            ClientError::Payload(JobError::bad_input(format!(
                "payload could not be encoded: {e}"
            )))
        })?;
        self.enqueue_json(J::NAME, &text, opts).await
    }

    /// Pushes a job given by type name and JSON payload (CLI, admin API).
    pub async fn enqueue_json(
        &self,
        job_type: &str,
        payload: &str,
        opts: EnqueueOptions,
    ) -> Result<Pushed, ClientError> {
        let job = self.new_job(job_type, payload, opts)?;
        Ok(self.queue.push(job).await?)
    }

    /// Pushes many jobs of one type at once.
    pub async fn enqueue_many_json(
        &self,
        job_type: &str,
        payloads: &[String],
        opts: EnqueueOptions,
    ) -> Result<Vec<Pushed>, ClientError> {
        let jobs = payloads
            .iter()
            .map(|p| {
                self.new_job(
                    job_type,
                    p,
                    EnqueueOptions {
                        id: None,
                        ..opts.clone()
                    },
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.queue.push_bulk(jobs).await?)
    }

    fn new_job(
        &self,
        job_type: &str,
        payload: &str,
        opts: EnqueueOptions,
    ) -> Result<NewJob, ClientError> {
        let handler = self.registry.get(job_type)?;
        handler
            .check_payload(payload)
            .map_err(ClientError::Payload)?;
        let queue = match opts.queue {
            Some(q) => q,
            None => self.registry.queue_of(job_type)?.to_owned(),
        };
        let mut job = NewJob::new(queue, handler.name(), payload);
        job.delay = opts.delay;
        job.idempotency_key = opts.idempotency_key;
        job.id = opts.id;
        Ok(job)
    }
}

impl genq_core::JobSpawner for JobClient {
    fn spawn(
        &self,
        job_type: &str,
        payload: String,
        idempotency_key: String,
    ) -> futures::future::BoxFuture<'static, Result<String, JobError>> {
        let client = self.clone();
        let job_type = job_type.to_owned();
        Box::pin(async move {
            let opts = EnqueueOptions {
                idempotency_key: Some(idempotency_key),
                ..EnqueueOptions::default()
            };
            match client.enqueue_json(&job_type, &payload, opts).await {
                Ok(pushed) => Ok(pushed.id),
                Err(ClientError::Payload(e)) => Err(e),
                Err(e) => Err(JobError::transient(format!(
                    "follow-up job could not be pushed: {e}"
                ))),
            }
        })
    }
}
