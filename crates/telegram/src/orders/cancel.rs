//! Cancelling a user's job, wherever it is: queued or running in Redis (the worker
//! stops it, the settler refunds it, delivery says so), still in the outbox
//! because the relay has not pushed it yet, or open in PostgreSQL but lost by Redis
//! and not yet put back (in both cases cancelled and refunded in the store at once,
//! and the status message finished here).

use genq_redis::CancelOutcome;
use tracing::{info, warn};

use crate::{BotError, app::BotApp, delivery::deliver::finish_cancelled};

/// Cancels job `job_id` of `queue`; false when it had already ended (or is unknown).
pub(crate) async fn cancel_job(app: &BotApp, queue: &str, job_id: &str) -> Result<bool, BotError> {
    match app.queue.cancel(queue, job_id).await? {
        CancelOutcome::Cancelled | CancelOutcome::Signalled => return Ok(true),
        CancelOutcome::AlreadyFinal(status) => {
            info!(job_id, %status, "already ended: not cancelled");
            return Ok(false);
        }
        CancelOutcome::NotFound => {}
    }
    if let Some(refunded) = app.store.cancel_unpushed(job_id).await? {
        info!(job_id, refunded, "cancelled before the relay pushed it");
        finish(app, job_id).await?;
        return Ok(true);
    }
    // pushed meanwhile: it is in Redis now
    match app.queue.cancel(queue, job_id).await? {
        CancelOutcome::Cancelled | CancelOutcome::Signalled => return Ok(true),
        CancelOutcome::AlreadyFinal(_) => return Ok(false),
        CancelOutcome::NotFound => {}
    }
    // pushed, yet unknown to Redis: Redis lost it and the settler has not put it back
    let Some(refunded) = app.store.cancel_lost(job_id).await? else {
        return Ok(false);
    };
    warn!(job_id, refunded, "cancelled a job Redis had lost");
    // a settler may have put it back just now: it must not run
    app.queue.cancel(queue, job_id).await?;
    finish(app, job_id).await?;
    Ok(true)
}

/// Finishes the status message of a job cancelled in the store (best effort).
async fn finish(app: &BotApp, job_id: &str) -> Result<(), BotError> {
    if let Some(tracked) = app.tracker.get_or_restore(job_id).await?
        && let Err(e) = finish_cancelled(app, &tracked).await
    {
        warn!(job_id, error = %e.message, "status message of a cancelled job not finished");
    }
    Ok(())
}
