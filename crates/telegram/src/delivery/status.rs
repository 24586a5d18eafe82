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
    delivery::{
        deliver::push_delivery,
        status_message::{apply_final, cancel_button},
        tracking::{Kind, SENT, Tracked},
    },
    i18n::{Lang, t},
    transport::send::{edit, typing},
};

/// How often the loop looks at due jobs.
const TICK: Duration = Duration::from_secs(1);
/// How often a watched job is looked at.
const RECHECK: Duration = Duration::from_secs(1);
/// Telegram shows a chat action for about 5 s.
const TYPING_EVERY: Duration = Duration::from_secs(4);
/// How far back the sweep looks.
const SWEEP_WINDOW: Duration = Duration::from_secs(3600);
/// Jobs looked at per tick.
const BATCH: usize = 200;
/// Status edits (and typing actions) per tick, all chats together: edits are not
/// throttled by teloxide, and Telegram allows about 30 messages a second overall.
const MAX_EDITS_PER_TICK: usize = 20;

/// Runs until `stop`.
pub async fn run_status_loop(app: Arc<BotApp>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let sweep_every = app.cfg.orphan_sweep_secs.max(1);
    let mut round: u64 = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match app.tracker.status_lease(&app.instance, TICK * 5).await {
            Ok(true) => {
                if round.is_multiple_of(sweep_every)
                    && let Err(e) = take_up_untracked(&app).await
                {
                    warn!(error = %e, "sweep for untracked jobs failed");
                }
                round += 1;
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
    let ended = match &state {
        Some(s) => s.status.is_final(),
        // not in Redis: not pushed yet, or its data is gone (the store knows)
        None => ended_in_history(app, &tracked.job_id).await?,
    };
    if ended {
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
    // a promo video's open gate is offered here, once, whatever its status message
    let promo_line = match tracked.kind {
        Kind::Promo => match crate::promo::gates::look(app, tracked).await? {
            Some(line) => Some(line),
            None => return Ok(false),
        },
        _ => None,
    };
    let Some(msg) = tracked.status_msg else {
        return Ok(false);
    };
    if app.cooling.remaining(tracked.chat_id).is_some()
        || app.tracker.final_of(&tracked.job_id).await?.is_some()
    {
        // Telegram asked to wait for this chat (the latest text goes later), or the
        // delivery is finishing the message
        return Ok(false);
    }
    let text = if let Some(line) = promo_line {
        line
    } else {
        let ahead = match &state {
            Some(s) if s.status == JobStatus::Queued => {
                app.queue
                    .jobs_ahead(&tracked.queue, &tracked.job_id)
                    .await?
            }
            _ => None,
        };
        status_text(tracked.lang, state.as_ref(), ahead)
    };
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
    if let Err(e) = &sent
        && app.cooling.note_error(tracked.chat_id, e)
    {
        app.metrics.telegram_429.with_label_values(&["edit"]).inc();
    }
    sent?;
    // the job may have been closed while this edit was on its way (its Cancel button
    // just came back): the close wins
    if let Some(fin) = app.tracker.final_of(&tracked.job_id).await? {
        apply_final(app, tracked.chat_id, msg, &fin).await?;
    }
    Ok(true)
}

/// True when the store has the job as finished (its Redis data expired, or it was
/// cancelled before it was pushed).
async fn ended_in_history(app: &BotApp, job_id: &str) -> Result<bool, BotError> {
    Ok(app
        .store
        .job(job_id)
        .await?
        .is_some_and(|j| matches!(j.status.as_str(), "succeeded" | "failed" | "cancelled")))
}

/// Jobs charged in the last hour (and `bot.orphan_sweep_secs` ago at least: a live
/// handler tracks its jobs at once) that Redis has no tracking for:
///
/// - the result (or failure message) reached the chat (`bot_deliveries` says so):
///   nothing to do, whatever Redis forgot;
/// - PostgreSQL has the bot's record (`bot_tracked`; Redis lost its data): restored,
///   with its status message, and watched again, so it still ends with one message
///   (a prompt that handed over to its image job stays closed: the image job stands
///   for it);
/// - no record (its bot died between the charge and tracking it, and Telegram did
///   not send the update again): tracked now, without a status message: the result
///   (or failure) arrives as a message of its own.
async fn take_up_untracked(app: &BotApp) -> Result<(), BotError> {
    let now = chrono::Utc::now();
    let span = |d: Duration| chrono::Duration::from_std(d).unwrap_or_default();
    let recent = app
        .store
        .jobs_created_between(
            now - span(SWEEP_WINDOW),
            now - span(Duration::from_secs(app.cfg.orphan_sweep_secs)),
            1000,
        )
        .await?;
    let ids: Vec<String> = recent.iter().map(|j| j.id.clone()).collect();
    let untracked = app.tracker.untracked(&ids).await?;
    let delivered = app.store.delivered_among(&untracked, SENT).await?;
    for job in recent
        .into_iter()
        .filter(|j| untracked.contains(&j.id) && !delivered.contains(&j.id))
    {
        if let Some(restored) = app.tracker.restore(&job.id).await? {
            if restored.handed_to.is_some() {
                app.tracker.unwatch(&job.id).await?;
            } else {
                warn!(job_id = %job.id, "tracking restored from PostgreSQL: Redis had lost it");
            }
            continue;
        }
        if job.parent_id.is_some() {
            // a follow-up is tracked by the delivery that pushed it
            continue;
        }
        let Some(kind) = kind_of(&job.job_type) else {
            continue;
        };
        warn!(job_id = %job.id, "taking up a job no bot tracked");
        app.tracker
            .track(&Tracked {
                slot: job
                    .idempotency_key
                    .clone()
                    .unwrap_or_else(|| job.id.clone()),
                job_id: job.id,
                queue: job.queue,
                kind,
                chat_id: job.telegram_id,
                tg_user: job.telegram_id,
                user_id: job.user_id,
                lang: Lang::from_code(Some(&job.language)),
                price: job.price,
                status_msg: None,
                reply_to: None,
                dialog_id: None,
                caption: None,
                video_of: None,
                handed_to: None,
            })
            .await?;
    }
    Ok(())
}

/// What the bot delivers for a job type it offers.
fn kind_of(job_type: &str) -> Option<Kind> {
    Some(match job_type {
        "generate_reply" => Kind::Reply,
        "generate_image_prompt" => Kind::ImagePrompt,
        "generate_image" => Kind::Picture,
        "upscale" | "face_swap" => Kind::Photo,
        "generate_video" => Kind::Video,
        crate::promo::PROMO => Kind::Promo,
        _ => return None,
    })
}

/// The status line for a job's state (`None`: not in Redis yet, still on its way).
pub fn status_text(lang: Lang, state: Option<&JobState>, ahead: Option<u64>) -> String {
    let Some(state) = state else {
        return t(lang, "status.queued", &[]);
    };
    match state.status {
        // a parked job cancelled: its run stops the vendor's task first
        JobStatus::Scheduled | JobStatus::Queued if state.cancel_requested => {
            t(lang, "status.cancelling", &[])
        }
        JobStatus::Queued => match ahead {
            Some(n) if n > 0 => t(lang, "status.queued_position", &[("ahead", &n)]),
            _ => t(lang, "status.queued", &[]),
        },
        // waiting on the vendor's task it submitted: still at work
        JobStatus::Scheduled if state.parked => progress_text(lang, state),
        JobStatus::Scheduled if state.attempts > 0 => t(lang, "status.retrying", &[]),
        JobStatus::Scheduled => t(lang, "status.queued", &[]),
        JobStatus::Running if state.cancel_requested => t(lang, "status.cancelling", &[]),
        JobStatus::Running => progress_text(lang, state),
        // a final job is delivered, not shown here; "working" until the delivery says more
        JobStatus::AwaitingApproval
        | JobStatus::Succeeded
        | JobStatus::Failed
        | JobStatus::Cancelled => t(lang, "status.running", &[]),
    }
}

/// "Working… n%" once the job reported progress, else "working".
fn progress_text(lang: Lang, state: &JobState) -> String {
    match &state.progress {
        Some(p) if p.percent > 0 => t(lang, "status.progress", &[("percent", &p.percent)]),
        _ => t(lang, "status.running", &[]),
    }
}

#[cfg(test)]
mod tests {
    use genq_core::Progress;

    use super::*;

    fn state(status: JobStatus, attempts: u32, progress: Option<u8>) -> JobState {
        JobState {
            id: "j".to_owned(),
            queue: "img".to_owned(),
            job_type: "upscale".to_owned(),
            status,
            attempts,
            payload: "{}".to_owned(),
            progress: progress.map(|percent| Progress {
                percent,
                note: None,
            }),
            result: None,
            error: None,
            error_class: None,
            idempotency_key: None,
            enqueued_at_ms: None,
            started_at_ms: None,
            finished_at_ms: None,
            due_at_ms: None,
            worker: None,
            cancel_requested: false,
            parked: false,
        }
    }

    #[test]
    fn the_status_line_follows_the_job() {
        let l = Lang::En;
        assert_eq!(status_text(l, None, None), t(l, "status.queued", &[]));
        let queued = state(JobStatus::Queued, 0, None);
        assert_eq!(
            status_text(l, Some(&queued), Some(4)),
            t(l, "status.queued_position", &[("ahead", &4)])
        );
        assert_eq!(
            status_text(l, Some(&queued), Some(0)),
            t(l, "status.queued", &[])
        );
        let retry = state(JobStatus::Scheduled, 1, None);
        assert_eq!(
            status_text(l, Some(&retry), None),
            t(l, "status.retrying", &[])
        );
        let mut parked = state(JobStatus::Scheduled, 0, Some(30));
        parked.parked = true;
        assert_eq!(
            status_text(l, Some(&parked), None),
            t(l, "status.progress", &[("percent", &30)])
        );
        parked.cancel_requested = true;
        assert_eq!(
            status_text(l, Some(&parked), None),
            t(l, "status.cancelling", &[])
        );
        let running = state(JobStatus::Running, 1, Some(40));
        assert_eq!(
            status_text(l, Some(&running), None),
            t(l, "status.progress", &[("percent", &40)])
        );
        let mut stopping = state(JobStatus::Running, 1, None);
        stopping.cancel_requested = true;
        assert_eq!(
            status_text(l, Some(&stopping), None),
            t(l, "status.cancelling", &[])
        );
    }

    #[test]
    fn offered_job_types_map_to_what_is_delivered() {
        assert_eq!(kind_of("generate_reply"), Some(Kind::Reply));
        assert_eq!(kind_of("face_swap"), Some(Kind::Photo));
        assert_eq!(kind_of("generate_video"), Some(Kind::Video));
        assert_eq!(kind_of("probe"), None);
    }
}
