use std::time::Duration;

use genq_redis::{NewJob, RedisQueue};
use genq_store::Store;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{RelayError, failpoint};

/// Pushes committed jobs from the outbox to Redis. Several relays may run: each
/// locks its batch and skips the others'.
#[derive(Clone, Debug)]
pub struct Relay {
    store: Store,
    queue: RedisQueue,
    batch: i64,
    poll: Duration,
}

impl Relay {
    pub fn new(store: Store, queue: RedisQueue) -> Self {
        Self {
            store,
            queue,
            batch: 500,
            poll: Duration::from_secs(1),
        }
    }

    /// Pushes one batch; returns how many jobs it moved.
    pub async fn run_once(&self) -> Result<usize, RelayError> {
        let batch = self.store.claim_outbox(self.batch).await?;
        if batch.jobs.is_empty() {
            return Ok(0);
        }
        let jobs = batch
            .jobs
            .iter()
            .map(|j| {
                NewJob::new(&j.queue, &j.job_type, j.payload.to_string())
                    .id(&j.job_id)
                    .idempotency_key(format!("db-job:{}", j.job_id))
            })
            .collect();
        failpoint("relay:before_push").await;
        let pushed = self.queue.push_bulk(jobs).await?;
        failpoint("relay:after_push").await;
        let n = batch.jobs.len();
        batch.mark_pushed().await?;
        debug!(
            jobs = n,
            new = pushed.iter().filter(|p| p.created).count(),
            "outbox batch pushed"
        );
        Ok(n)
    }

    /// Runs until `stop`: woken by `NOTIFY genq_outbox` after each charge, and every
    /// second regardless. Errors are logged and retried.
    pub async fn run(self, stop: CancellationToken) {
        let mut listener = self.listen().await;
        info!("outbox relay started");
        while !stop.is_cancelled() {
            match self.run_once().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => warn!(error = %e, "outbox relay: push failed; retrying"),
            }
            let wait = async {
                match listener.as_mut() {
                    Some(l) => {
                        if l.recv().await.is_err() {
                            listener = None;
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(self.poll) => {}
                _ = wait => {}
            }
            if listener.is_none() {
                listener = self.listen().await;
            }
        }
        info!("outbox relay stopped");
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut l = PgListener::connect_with(self.store.pool()).await.ok()?;
        l.listen("genq_outbox").await.ok()?;
        Some(l)
    }
}
