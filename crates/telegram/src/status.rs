//! Never silent: one status message per job, edited (not re-sent) as the job moves
//! queued → running → progress, at most once per `status_edit_secs` and never with
//! the same text; a reply shows "typing…" while it is worked on. One replica runs
//! this loop at a time (a lease in Redis). A job found finished gets its delivery
//! pushed (in case its completion event was missed).

use std::{sync::Arc, time::Duration};

use genq_core::{JobState, JobStatus};
use genq_redis::now_ms;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::{
    BotError,
    app::BotApp,
    events::push_delivery,
    i18n::{Lang, t},
    orders::cancel_button,
    send::{edit, typing},
    tracking::{Kind, Tracked},
};

/// How often the loop looks at due jobs.
const TICK: Duration = Duration::from_secs(1);
/// How often a watched job is looked at.
const RECHECK: Duration = Duration::from_secs(1);
/// Telegram shows a chat action for about 5 s.
const TYPING_EVERY: Duration = Duration::from_secs(4);
/// Jobs looked at per tick.
const BATCH: usize = 200;
/// Status edits (and typing actions) per tick, all chats together: edits are not
/// throttled by teloxide, and Telegram allows about 30 messages a second overall.
const MAX_EDITS_PER_TICK: usize = 20;

/// Runs until `stop`.
pub async fn run_status_loop(app: Arc<BotApp>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match app.tracker.status_lease(&app.instance, TICK * 5).await {
            Ok(true) => {
                if let Err(e) = update_due(&app).await {
                    warn!(error = %e, "status update round failed");
                }
            }
            Ok(false) => {}
            Err(e) => warn!(error = %e, "status lease unavailable"),
        }
    }
}

async fn update_due(app: &BotApp) -> Result<(), BotError> {
    let mut edits = 0;
    for id in app.tracker.due(BATCH).await? {
        let Some(tracked) = app.tracker.get(&id).await? else {
            app.tracker.unwatch(&id).await?;
            continue;
        };
        match update_one(app, &tracked, edits < MAX_EDITS_PER_TICK).await {
            Ok(true) => edits += 1,
            Ok(false) => {}
            Err(e) => debug!(job_id = %id, error = %e, "status not updated"),
        }
        app.tracker.recheck(&id, RECHECK).await?;
    }
    app.metrics
        .watched_jobs
        .set(app.tracker.watched().await? as i64);
    Ok(())
}

/// Looks at one job; true when something was sent to Telegram (at most when
/// `may_send`).
async fn update_one(app: &BotApp, tracked: &Tracked, may_send: bool) -> Result<bool, BotError> {
    let state = app.queue.job(&tracked.queue, &tracked.job_id).await?;
    if let Some(s) = &state
        && s.status.is_final()
    {
        push_delivery(app, &tracked.job_id, &tracked.queue).await?;
        app.tracker.unwatch(&tracked.job_id).await?;
        return Ok(false);
    }
    if !may_send {
        return Ok(false);
    }
    if tracked.kind == Kind::Reply {
        let (_, at) = app.tracker.shown(&tracked.job_id).await?;
        if now_ms().saturating_sub(at) < TYPING_EVERY.as_millis() as u64 {
            return Ok(false);
        }
        typing(&app.bot, tracked.chat_id).await;
        app.tracker.set_shown(&tracked.job_id, "typing").await?;
        return Ok(true);
    }
    let Some(msg) = tracked.status_msg else {
        return Ok(false);
    };
    let ahead = match &state {
        Some(s) if s.status == JobStatus::Queued => {
            app.queue
                .jobs_ahead(&tracked.queue, &tracked.job_id)
                .await?
        }
        _ => None,
    };
    let text = status_text(tracked.lang, state.as_ref(), ahead);
    let (shown, at) = app.tracker.shown(&tracked.job_id).await?;
    let min_gap = app.cfg.status_edit_secs * 1000;
    if shown.as_deref() == Some(text.as_str()) || now_ms().saturating_sub(at) < min_gap {
        return Ok(false);
    }
    let sent = edit(
        &app.bot,
        tracked.chat_id,
        msg,
        &text,
        Some(cancel_button(tracked.lang, &tracked.job_id)),
    )
    .await;
    // a failed edit (a 429) is tried again after the gap, not at once
    let shown = if sent.is_ok() { text.as_str() } else { "" };
    app.tracker.set_shown(&tracked.job_id, shown).await?;
    sent?;
    Ok(true)
}

/// The status line for a job's state (`None`: not in Redis yet, still on its way).
pub fn status_text(lang: Lang, state: Option<&JobState>, ahead: Option<u64>) -> String {
    let Some(state) = state else {
        return t(lang, "status.queued", &[]);
    };
    match state.status {
        JobStatus::Queued => match ahead {
            Some(n) if n > 0 => t(lang, "status.queued_position", &[("ahead", &n)]),
            _ => t(lang, "status.queued", &[]),
        },
        JobStatus::Scheduled if state.attempts > 0 => t(lang, "status.retrying", &[]),
        JobStatus::Scheduled => t(lang, "status.queued", &[]),
        JobStatus::Running if state.cancel_requested => t(lang, "status.cancelling", &[]),
        JobStatus::Running => match &state.progress {
            Some(p) if p.percent > 0 => t(lang, "status.progress", &[("percent", &p.percent)]),
            _ => t(lang, "status.running", &[]),
        },
        JobStatus::AwaitingApproval => t(lang, "status.running", &[]),
        JobStatus::Succeeded => t(lang, "status.done", &[]),
        JobStatus::Failed | JobStatus::Cancelled => t(lang, "status.cancelling", &[]),
    }
}
