//! Reconciliation: PostgreSQL is the record, Redis the fast path. Every
//! `reconcile_every` the settler pages through the jobs the record has as open and
//! pushed, and reads their state in Redis:
//!
//! - final in Redis (its completion event was missed): settled now;
//! - open in Redis: fine (an earlier "missing" note is cleared);
//! - unknown to Redis: noted as missing; one that is still missing a whole interval
//!   later was lost (a restart without persistence, a failover that dropped writes,
//!   a FLUSHALL; an event on its way would have been settled meanwhile). It is
//!   claimed under a row lock (`SKIP LOCKED`: several settlers may run this) and
//!   put back on its queue from the stored payload with the same id, so it still
//!   runs once and its outcome settles as usual. A job whose type or queue is no
//!   longer served is failed and refunded once instead.
//!
//! A lost job is back in Redis within about two intervals (default 30 s each).
//! Each one is logged as an error and counted in the record (`jobs.requeued`,
//! exported by the admin as `genq_admin_jobs_lost_by_redis`).

use chrono::{DateTime, Utc};

use genq_core::CompletionEvent;
use genq_redis::NewJob;
use genq_store::{LOST_ERROR_PREFIX, LostJob, PushedJob};
use tracing::{error, info};

use crate::{RelayError, Settler};

/// Jobs compared with Redis per page.
const PAGE: i64 = 500;
/// Pages per round at most (a backlog larger than this is covered over several rounds).
const MAX_PAGES: usize = 400;

/// What one reconcile round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reconciled {
    /// Open jobs compared with Redis.
    pub checked: usize,
    /// Jobs final in Redis whose events were missed, settled now.
    pub settled: usize,
    /// Jobs Redis had lost, put back on their queues.
    pub requeued: usize,
    /// Jobs Redis had lost that cannot run again, failed and refunded.
    pub failed: usize,
}

impl Settler {
    /// One round of reconciliation (see the module docs).
    pub async fn reconcile(&self) -> Result<Reconciled, RelayError> {
        let mut done = Reconciled::default();
        let mut after: Option<(DateTime<Utc>, String)> = None;
        for _ in 0..MAX_PAGES {
            let page = self
                .store()
                .pushed_open_jobs(self.reconcile_every, after, PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some((last.pushed_at, last.id.clone()));
            let full = page.len() as i64 == PAGE;
            self.reconcile_page(&page, &mut done).await?;
            if !full {
                break;
            }
        }
        if done.requeued + done.failed > 0 {
            error!(
                requeued = done.requeued,
                failed = done.failed,
                "Redis had lost paid jobs PostgreSQL holds: they were put back from PostgreSQL (check Redis persistence and failover)"
            );
        }
        if done.settled > 0 {
            info!(
                settled = done.settled,
                "settled jobs whose completion events were missed"
            );
        }
        Ok(done)
    }

    async fn reconcile_page(
        &self,
        page: &[PushedJob],
        done: &mut Reconciled,
    ) -> Result<(), RelayError> {
        let keys: Vec<(String, String)> = page
            .iter()
            .map(|j| (j.queue.clone(), j.id.clone()))
            .collect();
        let states = self.queue().jobs(&keys).await?;
        let mut present = Vec::new();
        let mut missing = Vec::new();
        for (job, state) in page.iter().zip(states) {
            done.checked += 1;
            match state {
                None => missing.push(job.id.clone()),
                Some(s) if s.status.is_final() => {
                    let event = CompletionEvent {
                        event_id: String::new(),
                        job_id: job.id.clone(),
                        queue: job.queue.clone(),
                        job_type: s.job_type,
                        status: s.status,
                        attempts: s.attempts,
                        error_class: s.error_class,
                        error: s.error,
                    };
                    if matches!(
                        self.store().settle(&event).await?,
                        genq_store::Settled::Recorded { .. }
                    ) {
                        done.settled += 1;
                    }
                }
                Some(_) => present.push(job.id.clone()),
            }
        }
        self.store().clear_missing(&present).await?;
        let lost = self
            .store()
            .note_missing(&missing, self.reconcile_every)
            .await?;
        for id in lost {
            let Some(claim) = self.store().claim_lost(&id, self.reconcile_every).await? else {
                continue;
            };
            if self.queue().job(&claim.queue, &id).await?.is_some() {
                // back meanwhile (pushed by another settler, or Redis came back)
                drop(claim);
                self.store()
                    .clear_missing(std::slice::from_ref(&id))
                    .await?;
                continue;
            }
            self.put_back(claim, done).await?;
        }
        Ok(())
    }

    /// Requeues a lost job from its stored payload with the same id, or fails and
    /// refunds it when it cannot run again.
    async fn put_back(&self, claim: LostJob, done: &mut Reconciled) -> Result<(), RelayError> {
        if let Err(why) = self.can_requeue(&claim.job_type, &claim.queue) {
            let reason = format!("{LOST_ERROR_PREFIX} and cannot run again: {why}");
            error!(job_id = %claim.id, queue = %claim.queue, reason = %reason, "Redis lost a job; failing and refunding it");
            claim.fail(&reason).await?;
            done.failed += 1;
            return Ok(());
        }
        let job =
            NewJob::new(&claim.queue, &claim.job_type, claim.payload.to_string()).id(&claim.id);
        self.queue().push_bulk(vec![job]).await?;
        error!(job_id = %claim.id, queue = %claim.queue, job_type = %claim.job_type,
            "Redis lost a job PostgreSQL has as open; put back on its queue with the same id");
        claim.requeued().await?;
        done.requeued += 1;
        Ok(())
    }
}
