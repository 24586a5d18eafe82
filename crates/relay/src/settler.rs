use std::time::Duration;

use chrono::Utc;
use genq_core::CompletionEvent;
use genq_redis::{EventFollower, EventStart, RedisQueue};
use genq_store::{Settled, Store};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::RelayError;

/// Records final outcomes in the database (refunding failures once).
#[derive(Clone, Debug)]
pub struct Settler {
    store: Store,
    queue: RedisQueue,
    queues: Vec<String>,
    /// Open jobs pushed longer ago than this are checked against Redis directly.
    pub sweep_after: Duration,
}

impl Settler {
    pub fn new(store: Store, queue: RedisQueue, queues: Vec<String>) -> Self {
        Self {
            store,
            queue,
            queues,
            sweep_after: Duration::from_secs(600),
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

    /// Settles open jobs whose outcome is in Redis but whose event was missed
    /// (e.g. the settler was down longer than the capped stream keeps events).
    pub async fn sweep(&self) -> Result<usize, RelayError> {
        let before = Utc::now() - chrono::Duration::from_std(self.sweep_after).unwrap_or_default();
        let mut settled = 0;
        for (id, queue) in self.store.open_jobs_pushed_before(before, 500).await? {
            let Some(state) = self.queue.job(&queue, &id).await? else {
                continue;
            };
            if !state.status.is_final() {
                continue;
            }
            let event = CompletionEvent {
                event_id: String::new(),
                job_id: id,
                queue,
                job_type: state.job_type,
                status: state.status,
                attempts: state.attempts,
                error_class: state.error_class,
                error: state.error,
            };
            if matches!(self.store.settle(&event).await?, Settled::Recorded { .. }) {
                settled += 1;
            }
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
        let mut sweep = tokio::time::interval(Duration::from_secs(60));
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
                    match self.sweep().await {
                        Ok(0) => {}
                        Ok(n) => info!(settled = n, "sweep settled jobs whose events were missed"),
                        Err(e) => warn!(error = %e, "settlement sweep failed"),
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
