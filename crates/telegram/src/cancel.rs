//! Cancelling a user's job, wherever it is: queued or running in Redis (the worker
//! stops it, the settler refunds it, delivery says so), or still in the outbox
//! because the relay has not pushed it yet (cancelled and refunded in the store at
//! once, and the status message finished here).

use genq_redis::CancelOutcome;
use tracing::{info, warn};

use crate::{BotError, app::BotApp, delivery::finish_cancelled};

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
        if let Some(tracked) = app.tracker.get(job_id).await?
            && let Err(e) = finish_cancelled(app, &tracked).await
        {
            warn!(job_id, error = %e.message, "status message of a cancelled job not finished");
        }
        return Ok(true);
    }
    // pushed meanwhile: it is in Redis now
    Ok(matches!(
        app.queue.cancel(queue, job_id).await?,
        CancelOutcome::Cancelled | CancelOutcome::Signalled
    ))
}
