//! Completion events trigger delivery: the router follows the event streams of the
//! queues the bot's jobs run on and, for each job the bot tracks, pushes a `deliver`
//! job (idempotency key `deliver:<job id>`, so replicas and re-reads push it once).
//! Each queue's position is checkpointed in Redis after the push, so a restarted bot
//! resumes where the last one stopped: no delivery is lost.

use std::sync::Arc;

use genq_core::CompletionEvent;
use genq_redis::{EventFollower, EventStart};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{BotError, app::BotApp, delivery::deliver::push_delivery};

/// Follows `queues`' completion events until `stop`.
pub async fn route_events(
    app: Arc<BotApp>,
    queues: Vec<String>,
    stop: CancellationToken,
) -> Result<(), BotError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<CompletionEvent>(1024);
    let mut followers = Vec::new();
    for q in &queues {
        let start = match app.tracker.checkpoint(q).await? {
            Some(id) => EventStart::After(id),
            None => EventStart::Beginning,
        };
        let mut follower = EventFollower::start(&app.queue, std::slice::from_ref(q), start).await?;
        let tx = tx.clone();
        followers.push(tokio::spawn(async move {
            while let Some(ev) = follower.next().await {
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
        }));
    }
    drop(tx);
    info!(queues = %queues.join(","), "delivery router started");
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            ev = rx.recv() => match ev {
                Some(ev) => handle_with_retry(&app, &ev, &stop).await,
                None => break,
            },
        }
    }
    for f in followers {
        f.abort();
    }
    Ok(())
}

async fn handle(app: &BotApp, ev: &CompletionEvent) -> Result<(), BotError> {
    if app.tracker.get(&ev.job_id).await?.is_some() {
        push_delivery(app, &ev.job_id, &ev.queue).await?;
    }
    app.tracker.save_checkpoint(&ev.queue, &ev.event_id).await
}

/// A failure (Redis away) is retried with back-off; the checkpoint does not move
/// past an event until its delivery is pushed.
async fn handle_with_retry(app: &BotApp, ev: &CompletionEvent, stop: &CancellationToken) {
    let mut delay = std::time::Duration::from_millis(200);
    loop {
        match handle(app, ev).await {
            Ok(()) => return,
            Err(e) => {
                warn!(job_id = %ev.job_id, error = %e, retry_in = ?delay, "could not route a completion event");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
        }
    }
}
