use std::{collections::HashSet, time::Duration};

use genq_core::CompletionEvent;
use genq_redis::{EventFollower, EventStart, RedisQueue};
use genq_store::{Settled, Store};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::RelayError;

/// How often the settler compares open jobs with Redis by default.
pub const DEFAULT_RECONCILE_EVERY: Duration = Duration::from_secs(30);

/// Records final outcomes in the database (refunding failures once).
#[derive(Clone, Debug)]
pub struct Settler {
    store: Store,
    queue: RedisQueue,
    queues: Vec<String>,
    /// Job types this process can run again (`None`: any); a lost job of another
    /// type is failed and refunded instead of requeued.
    job_types: Option<HashSet<String>>,
    /// How often open jobs are compared with Redis (see [`crate::reconcile`]).
    pub reconcile_every: Duration,
}

impl Settler {
    pub fn new(store: Store, queue: RedisQueue, queues: Vec<String>) -> Self {
        Self {
            store,
            queue,
            queues,
            job_types: None,
            reconcile_every: DEFAULT_RECONCILE_EVERY,
        }
    }

    /// Only these job types are requeued when Redis lost them (the ones a worker serves).
    pub fn job_types(mut self, types: impl IntoIterator<Item = String>) -> Self {
        self.job_types = Some(types.into_iter().collect());
        self
    }

    /// How often open jobs are compared with Redis; a lost job is back on its queue
    /// within about twice this.
    pub fn reconcile_every(mut self, every: Duration) -> Self {
        self.reconcile_every = every;
        self
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn queue(&self) -> &RedisQueue {
        &self.queue
    }

    /// Whether a lost job of `job_type` on `queue` can be put back (its type is
    /// served, its queue followed), or why not.
    pub(crate) fn can_requeue(&self, job_type: &str, queue: &str) -> Result<(), String> {
        if !self.queues.iter().any(|q| q == queue) {
            return Err(format!("queue '{queue}' is no longer served"));
        }
        match &self.job_types {
            Some(types) if !types.contains(job_type) => {
                Err(format!("job type '{job_type}' is no longer served"))
            }
            _ => Ok(()),
        }
    }

    /// Settles one event and moves the queue's checkpoint past it.
    pub async fn settle(&self, event: &CompletionEvent) -> Result<Settled, RelayError> {
        let settled = self.store.settle(event).await?;
        self.store
            .save_event_checkpoint(&event.queue, &event.event_id)
            .await?;
        if let Settled::Recorded { refunded } = settled
            && refunded > 0
        {
            info!(job_id = %event.job_id, refunded, status = %event.status, "job refunded");
        }
        Ok(settled)
    }

    /// Follows every queue's event stream from its checkpoint until `stop`.
    pub async fn run(self, stop: CancellationToken) -> Result<(), RelayError> {
        let mut followers = Vec::new();
        for q in &self.queues {
            let start = match self.store.event_checkpoint(q).await? {
                Some(id) => EventStart::After(id),
                None => EventStart::Beginning,
            };
            followers
                .push(EventFollower::start(&self.queue, std::slice::from_ref(q), start).await?);
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<CompletionEvent>(1024);
        for mut f in followers {
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(ev) = f.next().await {
                    if tx.send(ev).await.is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        info!(queues = %self.queues.join(","), "settler started");
        let mut sweep = tokio::time::interval(self.reconcile_every);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                ev = rx.recv() => match ev {
                    Some(ev) => {
                        if let Err(e) = self.settle_with_retry(&ev, &stop).await {
                            warn!(job_id = %ev.job_id, error = %e, "could not settle; the sweep retries it later");
                        }
                    }
                    None => break,
                },
                _ = sweep.tick() => {
                    if let Err(e) = self.reconcile().await {
                        warn!(error = %e, "reconciliation with Redis failed; trying again next round");
                    }
                }
            }
        }
        info!("settler stopped");
        Ok(())
    }

    async fn settle_with_retry(
        &self,
        ev: &CompletionEvent,
        stop: &CancellationToken,
    ) -> Result<Settled, RelayError> {
        let mut delay = Duration::from_millis(200);
        loop {
            match self.settle(ev).await {
                Ok(s) => return Ok(s),
                Err(e) if delay < Duration::from_secs(10) && !stop.is_cancelled() => {
                    warn!(job_id = %ev.job_id, error = %e, retry_in = ?delay, "settle failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => return Err(e),
            }
        }
    }
}
