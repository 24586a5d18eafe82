//! Delivery is a job too: `deliver` runs on the bot's own queue, in the bot
//! process. It reads a finished job's outcome from Redis and sends it: the reply
//! (stored in the dialog), the photo (as a document when it cannot go as a photo),
//! the video, or a friendly failure message saying the credit was returned.
//! Telegram's 429 is a rate-limited failure: the job is rescheduled after
//! `retry_after`, holding no slot. A bot restart loses nothing: the job is in Redis.

use std::{sync::Arc, time::Duration};

use genq_core::{
    ClassRule, FailureClass, Job, JobContext, JobError, JobState, JobStatus, RetryDecision,
    RetryPolicy,
};
use genq_job_generate_image_prompt::ImagePrompt;
use genq_job_generate_reply::{Reply, ReplyRequest};
use genq_job_generate_video::VideoOutput;
use genq_jobkit::ImageOutput;
use genq_redis::NewJob;
use genq_store::Settled;
use serde::{Deserialize, Serialize};
use teloxide::{
    RequestError,
    payloads::{SendDocumentSetters, SendPhotoSetters, SendVideoSetters},
    prelude::*,
    types::{InlineKeyboardMarkup, InputFile, MessageId, ReplyParameters},
};
use tracing::{error, info, warn};

use crate::{
    BotError,
    app::BotApp,
    conversation::{
        callbacks::Action,
        chat_state::PhotoStash,
        keyboards::{keyboard, row, upscale_row},
    },
    delivery::{
        status_message::apply_final,
        tracking::{Final, Kind, SENT, Tracked},
    },
    i18n::{Lang, t},
    transport::send::{CAPTION_LIMIT, edit, job_error, say, trim_chars},
};

/// Telegram's limit for photos uploaded by a bot.
pub const PHOTO_LIMIT: u64 = 10 * 1024 * 1024;
/// Telegram's limit for other files uploaded by a bot.
pub const FILE_LIMIT: u64 = 50 * 1024 * 1024;

/// Which finished job to deliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverRequest {
    pub job_id: String,
    pub queue: String,
}

/// What was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    pub what: String,
}

/// The `deliver` job type.
pub struct Deliver {
    app: Arc<BotApp>,
}

impl Deliver {
    pub const NAME: &'static str = "deliver";

    pub fn new(app: Arc<BotApp>) -> Self {
        Self { app }
    }
}

impl Job for Deliver {
    type Payload = DeliverRequest;
    type Output = Delivered;
    const NAME: &'static str = Deliver::NAME;
    const DEFAULT_QUEUE: &'static str = "delivery";

    fn timeout(&self) -> Duration {
        Duration::from_secs(180)
    }

    fn retry_policy(&self) -> RetryPolicy {
        // A user waits for this: short back-off for network trouble, and Telegram's
        // 429s (which can come in runs) honoured many times over.
        RetryPolicy::default()
            .with(
                FailureClass::Transient,
                ClassRule::Backoff {
                    max_attempts: 8,
                    base: Duration::from_secs(2),
                    max: Duration::from_secs(60),
                    jitter: 0.2,
                },
            )
            .with(
                FailureClass::RateLimited,
                ClassRule::RetryAfter {
                    max_attempts: 20,
                    fallback: vec![Duration::from_secs(5), Duration::from_secs(15)],
                    cap: Duration::from_secs(600),
                },
            )
    }

    fn validate(&self, p: &DeliverRequest) -> Result<(), JobError> {
        genq_core::validate_queue_name(&p.queue)
            .map_err(|e| JobError::bad_input(format!("queue: {e}")))?;
        if p.job_id.is_empty() || p.job_id.len() > 64 {
            return Err(JobError::bad_input("job_id must be 1-64 characters"));
        }
        Ok(())
    }

    async fn run(&self, p: DeliverRequest, ctx: JobContext) -> Result<Delivered, JobError> {
        let app = &self.app;
        let Some(tracked) = app.tracker.get(&p.job_id).await.map_err(transient)? else {
            return Ok(delivered(app, "skipped"));
        };
        if let Some(wait) = app.cooling.remaining(tracked.chat_id) {
            // Telegram asked to slow down for this chat: come back then, no call now
            return Err(JobError::rate_limited(
                "Telegram flood control for this chat",
                Some(wait),
            ));
        }
        match deliver(app, &tracked, &p).await {
            Ok(what) => Ok(delivered(app, &what)),
            Err(e) => {
                if e.class == FailureClass::RateLimited {
                    app.cooling.note(
                        tracked.chat_id,
                        e.retry_after.unwrap_or(Duration::from_secs(5)),
                    );
                    app.metrics
                        .telegram_429
                        .with_label_values(&["delivery"])
                        .inc();
                }
                if self.retry_policy().decide(&e, ctx.attempt()) == RetryDecision::GiveUp {
                    give_up(app, &tracked, &e).await;
                }
                Err(e)
            }
        }
    }
}

/// Pushes the delivery of a finished job (once, whoever asks).
pub async fn push_delivery(app: &BotApp, job_id: &str, queue: &str) -> Result<(), BotError> {
    let job = NewJob::json(
        app.cfg.delivery_queue.clone(),
        Deliver::NAME,
        &DeliverRequest {
            job_id: job_id.to_owned(),
            queue: queue.to_owned(),
        },
    )?
    .idempotency_key(format!("deliver:{job_id}"));
    app.queue.push(job).await?;
    Ok(())
}

/// Delivers a finished job's outcome; what was sent.
async fn deliver(app: &BotApp, tracked: &Tracked, p: &DeliverRequest) -> Result<String, JobError> {
    let state = app
        .queue
        .job(&p.queue, &p.job_id)
        .await
        .map_err(transient)?;
    let what = match state {
        Some(state) if state.status == JobStatus::Succeeded => {
            deliver_success(app, tracked, &state).await?
        }
        Some(state) if state.status.is_final() => {
            let outcome = Outcome {
                status: state.status,
                class: state.error_class,
                error: state.error.clone(),
            };
            deliver_failure(app, tracked, &outcome).await?
        }
        Some(state) => {
            return Err(JobError::transient(format!(
                "job {} is {}, not finished",
                p.job_id, state.status
            )));
        }
        None => deliver_from_history(app, tracked).await?,
    };
    // a picture's prompt hands over to its image job, which closes it
    if what != HANDED_OVER {
        close(app, tracked).await.map_err(transient)?;
    }
    Ok(what)
}

/// The last attempt failed too: the user hears that the result could not be
/// delivered (unless it was), and the job is closed.
async fn give_up(app: &BotApp, tracked: &Tracked, e: &JobError) {
    warn!(job_id = %tracked.job_id, error = %e.message, "delivery failed for good");
    if !already_sent(app, &tracked.job_id).await.unwrap_or(true) {
        let text = delivery_failed_text(app, tracked.lang);
        if let Err(e) = finish_status(app, tracked, &text).await {
            warn!(job_id = %tracked.job_id, error = %e.message, "could not say the delivery failed");
        }
    }
    if let Err(e) = close(app, tracked).await {
        warn!(job_id = %tracked.job_id, error = %e, "could not close the job");
    }
}

/// A job whose data left Redis before delivery: the store says how it ended.
async fn deliver_from_history(app: &BotApp, tracked: &Tracked) -> Result<String, JobError> {
    let record = app.store.job(&tracked.job_id).await.map_err(transient)?;
    if let Some(r) = record
        && (r.status == "failed" || r.status == "cancelled")
    {
        let outcome = Outcome {
            status: r.status.parse().unwrap_or(JobStatus::Failed),
            class: r.error_class.and_then(|c| c.parse().ok()),
            error: r.error,
        };
        return deliver_failure(app, tracked, &outcome).await;
    }
    let text = delivery_failed_text(app, tracked.lang);
    send_once(app, tracked, || finish_status(app, tracked, &text)).await?;
    Ok("failure".to_owned())
}

/// "Could not deliver", naming the support contact when there is one.
fn delivery_failed_text(app: &BotApp, lang: Lang) -> String {
    with_support(
        lang,
        t(lang, "fail.delivery", &[]),
        app.cfg.support_contact.as_deref(),
    )
}

/// A job cancelled before it reached Redis: its status message says so (with the
/// refund) and the job is closed, as a delivery would.
pub(crate) async fn finish_cancelled(app: &BotApp, tracked: &Tracked) -> Result<(), JobError> {
    let outcome = Outcome {
        status: JobStatus::Cancelled,
        class: Some(FailureClass::Cancelled),
        error: None,
    };
    deliver_failure(app, tracked, &outcome).await?;
    close(app, tracked).await.map_err(transient)
}

/// How a job ended, for the failure message.
struct Outcome {
    status: JobStatus,
    class: Option<FailureClass>,
    error: Option<String>,
}

/// Sends a job's result once: a retried delivery (a 429 on the edit that follows,
/// a crash, a lost acknowledgement) does not send it again. The record that it was
/// sent is written right after Telegram confirmed it, retried until it sticks (see
/// [`record_sent`]); the only window left is a crash between Telegram's answer and
/// that write (ARCHITECTURE.md, "Send once").
async fn send_once<F, Fut>(app: &BotApp, tracked: &Tracked, send: F) -> Result<(), JobError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(), JobError>>,
{
    if already_sent(app, &tracked.job_id).await? {
        return Ok(());
    }
    send().await?;
    record_sent(app, &tracked.job_id).await;
    Ok(())
}

/// True when the job's result (or failure message) reached the chat: PostgreSQL's
/// `bot_deliveries` is the record; a copy in Redis stands in for a write PostgreSQL
/// could not take. Either unreadable: an error (better late than twice).
async fn already_sent(app: &BotApp, job_id: &str) -> Result<bool, JobError> {
    if app.tracker.done(job_id, SENT).await.map_err(transient)? {
        return Ok(true);
    }
    app.store
        .was_delivered(job_id, SENT)
        .await
        .map_err(transient)
}

/// How long [`record_sent`] keeps trying (well inside the delivery's timeout).
const RECORD_SENT_PATIENCE: Duration = Duration::from_secs(120);

/// Records that the job's result went out: in PostgreSQL, or while PostgreSQL
/// cannot be written, in Redis; retried until one sticks. Redis being away does not
/// matter here (PostgreSQL is written first), so a Redis blip after a send never
/// causes a second one.
async fn record_sent(app: &BotApp, job_id: &str) {
    let deadline = tokio::time::Instant::now() + RECORD_SENT_PATIENCE;
    let mut delay = Duration::from_millis(50);
    loop {
        let pg = match app.store.mark_delivered(job_id, SENT).await {
            Ok(_) => return,
            Err(e) => e,
        };
        if app.tracker.mark_done(job_id, SENT).await.is_ok() {
            warn!(job_id, error = %pg, "sent-record kept in Redis only: PostgreSQL refused it");
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            error!(job_id, error = %pg, "could not record that the result was sent; a retry may send it again");
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// What a delivery of a picture's prompt reports: the image job delivers the rest.
const HANDED_OVER: &str = "handed_over";

/// Closes the job's status message for its delivery: `with_status` is what it ends
/// as if the acknowledgement sent it already; if not, the acknowledgement deletes it
/// when it comes. The status message to finish here (if any) and what it ends as.
async fn close_status(
    app: &BotApp,
    tracked: &Tracked,
    with_status: Final,
) -> Result<Option<(i32, Final)>, JobError> {
    let (status, fin) = app
        .tracker
        .close(&tracked.job_id, &with_status, &Final::Delete)
        .await
        .map_err(transient)?;
    Ok(status.map(|id| (id, fin)))
}

fn delivered(app: &BotApp, what: &str) -> Delivered {
    app.metrics.deliveries.with_label_values(&[what]).inc();
    Delivered {
        what: what.to_owned(),
    }
}

fn transient(e: impl std::fmt::Display) -> JobError {
    JobError::transient(e.to_string())
}

/// The job is over for the bot: its concurrency slot is free, the status loop stops.
async fn close(app: &BotApp, tracked: &Tracked) -> Result<(), BotError> {
    app.slots.release(tracked.tg_user, &tracked.slot).await?;
    app.tracker.unwatch(&tracked.job_id).await?;
    Ok(())
}

/// Shows `text` in the job's status message (its buttons removed), or sends it when
/// there is none (or it is being deleted) or it cannot be edited (deleted by the
/// user, too old).
async fn finish_status(app: &BotApp, tracked: &Tracked, text: &str) -> Result<(), JobError> {
    let status = close_status(app, tracked, Final::Edit(text.to_owned())).await?;
    if let Some((id, Final::Edit(_))) = status {
        match edit(&app.bot, tracked.chat_id, id, text, None).await {
            Ok(()) => return Ok(()),
            Err(RequestError::Api(api)) => {
                warn!(job_id = %tracked.job_id, error = %api, "status message not editable; sending the text");
            }
            Err(e) => return Err(job_error(e)),
        }
    }
    say(&app.bot, tracked.chat_id, text, None)
        .await
        .map(|_| ())
        .map_err(job_error)
}

/// After the result went out: the status message ends as closed ("done", or
/// deleted). Best effort, but a 429 is waited out (the delivery is retried; the
/// result is not sent again).
async fn end_status(
    app: &BotApp,
    tracked: &Tracked,
    status: Option<(i32, Final)>,
) -> Result<(), JobError> {
    let Some((id, fin)) = status else {
        return Ok(());
    };
    match apply_final(app, tracked.chat_id, id, &fin).await {
        Err(e @ RequestError::RetryAfter(_)) => Err(job_error(e)),
        Err(e) => {
            warn!(job_id = %tracked.job_id, error = %e, "status message not finished");
            Ok(())
        }
        Ok(()) => Ok(()),
    }
}

fn result<T: serde::de::DeserializeOwned>(state: &JobState) -> Result<T, JobError> {
    let value = state
        .result
        .clone()
        .ok_or_else(|| JobError::bad_input(format!("job {} has no result", state.id)))?;
    serde_json::from_value(value)
        .map_err(|e| JobError::bad_input(format!("job {}'s result is unreadable: {e}", state.id)))
}

async fn deliver_success(
    app: &BotApp,
    tracked: &Tracked,
    state: &JobState,
) -> Result<String, JobError> {
    match tracked.kind {
        Kind::Reply => deliver_reply(app, tracked, state, result(state)?).await,
        Kind::ImagePrompt => hand_over_picture(app, tracked, result(state)?).await,
        Kind::Picture | Kind::Photo => {
            let out: ImageOutput = result(state)?;
            let caption = tracked
                .caption
                .as_deref()
                .map(|c| trim_chars(c, CAPTION_LIMIT));
            let done = Final::Edit(t(tracked.lang, "status.done", &[]));
            let status = close_status(app, tracked, done).await?;
            let mut what = "already_sent".to_owned();
            send_once(app, tracked, || async {
                what = send_image(app, tracked, &out, caption).await?;
                Ok(())
            })
            .await?;
            end_status(app, tracked, status).await?;
            Ok(what)
        }
        Kind::Video | Kind::Promo => {
            let out: VideoOutput = result(state)?;
            let (done, caption) = if tracked.kind == Kind::Promo {
                // the promo video is captioned with its script's title
                let title = state.result.as_ref().and_then(|r| r["title"].as_str());
                let caption = title.map(|t| trim_chars(t, CAPTION_LIMIT));
                (t(tracked.lang, "promo.status.done", &[]), caption)
            } else {
                let caption = tracked.video_of.map(|(n, total)| {
                    t(
                        tracked.lang,
                        "result.video_caption",
                        &[("n", &n), ("total", &total)],
                    )
                });
                (t(tracked.lang, "status.done", &[]), caption)
            };
            let status = close_status(app, tracked, Final::Edit(done)).await?;
            let mut what = "already_sent".to_owned();
            send_once(app, tracked, || async {
                what = send_video(app, tracked, &out, caption).await?;
                Ok(())
            })
            .await?;
            end_status(app, tracked, status).await?;
            if tracked.kind == Kind::Promo {
                crate::promo::finish::remove_files(app, &tracked.job_id).await;
            }
            Ok(what)
        }
    }
}

/// Stores the exchange in the dialog (once, the user's message and the reply
/// together) and sends the reply with a "Picture" button.
async fn deliver_reply(
    app: &BotApp,
    tracked: &Tracked,
    state: &JobState,
    reply: Reply,
) -> Result<String, JobError> {
    if let Some(dialog) = tracked.dialog_id {
        let asked: ReplyRequest = serde_json::from_str(&state.payload)
            .map_err(|e| JobError::bad_input(format!("reply request unreadable: {e}")))?;
        if let Some(question) = asked.messages.last().filter(|m| m.role == "user") {
            // stored once: the marker and the messages share one transaction
            app.store
                .append_exchange_once(&tracked.job_id, dialog, &question.content, &reply.text)
                .await
                .map_err(transient)?;
        }
    }
    // the "you are in the queue" message, if any, has served its purpose
    let status = close_status(app, tracked, Final::Delete).await?;
    let markup = match (&app.offers.picture, tracked.dialog_id) {
        (Some(offer), Some(dialog)) => Some(keyboard(vec![row(vec![(
            t(tracked.lang, "button.picture", &[("price", &offer.price)]),
            Action::Picture(dialog),
        )])])),
        _ => None,
    };
    send_once(app, tracked, || async {
        say(&app.bot, tracked.chat_id, &reply.text, markup)
            .await
            .map(|_| ())
            .map_err(job_error)
    })
    .await?;
    end_status(app, tracked, status).await?;
    Ok("reply".to_owned())
}

/// The prompt is ready and GenerateImage is queued: record the follow-up (its
/// failure refunds the picture), track it in this job's place.
async fn hand_over_picture(
    app: &BotApp,
    tracked: &Tracked,
    prompt: ImagePrompt,
) -> Result<String, JobError> {
    let Some(image_queue) = app.offers.picture_image_queue.clone() else {
        return Err(JobError::bad_input("generate_image is not configured"));
    };
    let child = &prompt.image_job_id;
    app.store
        .record_follow_up(
            &tracked.job_id,
            child,
            "generate_image",
            &image_queue,
            &serde_json::json!({ "prompt": prompt.prompt }),
        )
        .await
        .map_err(transient)?;
    let picture = Tracked {
        job_id: child.clone(),
        queue: image_queue.clone(),
        kind: Kind::Picture,
        caption: Some(prompt.prompt.clone()),
        handed_to: None,
        ..tracked.clone()
    };
    app.tracker.track(&picture).await.map_err(transient)?;
    // the prompt's status message (if sent yet, else when it is) stands for the image
    let forward = Final::Forward(child.clone());
    let (status, _) = app
        .tracker
        .close(&tracked.job_id, &forward, &forward)
        .await
        .map_err(transient)?;
    if let Some(id) = status {
        end_status(app, tracked, Some((id, forward))).await?;
    }
    let prompt_job = Tracked {
        handed_to: Some(child.clone()),
        ..tracked.clone()
    };
    app.tracker.update(&prompt_job).await.map_err(transient)?;
    app.tracker
        .unwatch(&tracked.job_id)
        .await
        .map_err(transient)?;
    // The image may have ended before it was recorded, when the settler could not
    // settle it yet: settle it now (settling twice is harmless), and deliver it.
    if let Some(state) = app
        .queue
        .job(&image_queue, child)
        .await
        .map_err(transient)?
        && state.status.is_final()
    {
        let event = genq_core::CompletionEvent {
            event_id: String::new(),
            job_id: child.clone(),
            queue: image_queue.clone(),
            job_type: state.job_type.clone(),
            status: state.status,
            attempts: state.attempts,
            error_class: state.error_class,
            error: state.error.clone(),
        };
        if let Settled::Recorded { refunded } = app.store.settle(&event).await.map_err(transient)? {
            info!(job_id = %child, refunded, "follow-up settled by the bot");
        }
        push_delivery(app, child, &image_queue)
            .await
            .map_err(transient)?;
    }
    Ok(HANDED_OVER.to_owned())
}

async fn send_image(
    app: &BotApp,
    tracked: &Tracked,
    out: &ImageOutput,
    caption: Option<String>,
) -> Result<String, JobError> {
    let bytes = app
        .artifacts
        .get(&out.artifact.key, FILE_LIMIT)
        .await
        .map_err(|e| JobError::bad_input(format!("result image: {e}")))?;
    let name = out
        .artifact
        .key
        .rsplit('/')
        .next()
        .unwrap_or("image.png")
        .to_owned();
    let chat = ChatId(tracked.chat_id);
    let markup = upscale_buttons(app, tracked, &out.artifact.key).await;
    if bytes.len() as u64 <= PHOTO_LIMIT {
        let mut req = app.bot.send_photo(
            chat,
            InputFile::memory(bytes.clone()).file_name(name.clone()),
        );
        if let Some(c) = &caption {
            req = req.caption(c.clone());
        }
        if let Some(m) = &markup {
            req = req.reply_markup(m.clone());
        }
        if let Some(r) = tracked.reply_to {
            req = req
                .reply_parameters(ReplyParameters::new(MessageId(r)).allow_sending_without_reply());
        }
        match req.await {
            Ok(_) => return Ok("photo".to_owned()),
            Err(RequestError::Api(api)) => {
                warn!(job_id = %tracked.job_id, error = %api, "photo refused; sending it as a document");
            }
            Err(e) => return Err(job_error(e)),
        }
    }
    let mut req = app
        .bot
        .send_document(chat, InputFile::memory(bytes).file_name(name));
    if let Some(c) = caption {
        req = req.caption(c);
    }
    if let Some(m) = markup {
        req = req.reply_markup(m);
    }
    req.await.map_err(job_error)?;
    Ok("document".to_owned())
}

/// Upscale ×2 / ×4 buttons under a generated picture (none for other results, or
/// when upscaling is not offered). The picture is stashed like a photo the user
/// sent, so a tap is the photo menu's upscale order: charged once per picture
/// message and factor (`up<factor>:<chat>:<message id>`). A stash that fails only
/// costs the buttons.
async fn upscale_buttons(
    app: &BotApp,
    tracked: &Tracked,
    image: &str,
) -> Option<InlineKeyboardMarkup> {
    if tracked.kind != Kind::Picture {
        return None;
    }
    let offer = app.offers.upscale.as_ref()?;
    let stash = PhotoStash {
        image: image.to_owned(),
        owner: tracked.tg_user,
    };
    match app.states.stash(&stash).await {
        Ok(token) => Some(keyboard(vec![upscale_row(
            tracked.lang,
            offer.price,
            &token,
        )])),
        Err(e) => {
            warn!(job_id = %tracked.job_id, error = %e, "picture sent without its upscale buttons");
            None
        }
    }
}

async fn send_video(
    app: &BotApp,
    tracked: &Tracked,
    out: &VideoOutput,
    caption: Option<String>,
) -> Result<String, JobError> {
    if out.artifact.bytes > FILE_LIMIT {
        let size_mb = out.artifact.bytes.div_ceil(1024 * 1024);
        let text = t(
            tracked.lang,
            "err.result_too_large",
            &[("size_mb", &size_mb)],
        );
        say(&app.bot, tracked.chat_id, &text, None)
            .await
            .map_err(job_error)?;
        return Ok("failure".to_owned());
    }
    let bytes = app
        .artifacts
        .get(&out.artifact.key, FILE_LIMIT)
        .await
        .map_err(|e| JobError::bad_input(format!("result video: {e}")))?;
    let mut req = app.bot.send_video(
        ChatId(tracked.chat_id),
        InputFile::memory(bytes).file_name("video.mp4"),
    );
    if let Some(caption) = caption {
        req = req.caption(caption);
    }
    req = req
        .width(out.width)
        .height(out.height)
        .duration(out.duration_secs.round() as u32)
        .supports_streaming(true);
    req.await.map_err(job_error)?;
    Ok("video".to_owned())
}

/// A failed or cancelled job: the status message says what happened, in words for
/// its failure class, and that the credit came back (the settler refunds it).
async fn deliver_failure(
    app: &BotApp,
    tracked: &Tracked,
    outcome: &Outcome,
) -> Result<String, JobError> {
    if tracked.kind == Kind::Promo {
        // a promo video ends with words for the stage it stopped at
        let text =
            crate::promo::finish::ending_text(app, tracked, outcome.status, outcome.class).await;
        send_once(app, tracked, || finish_status(app, tracked, &text)).await?;
        crate::promo::finish::remove_files(app, &tracked.job_id).await;
        return Ok("failure".to_owned());
    }
    let text = failure_text(tracked, outcome, app.cfg.support_contact.as_deref());
    send_once(app, tracked, || finish_status(app, tracked, &text)).await?;
    Ok("failure".to_owned())
}

/// `text`, then on a line of its own whom to write to (`bot.support_contact`), if
/// anyone.
fn with_support(lang: Lang, text: String, support: Option<&str>) -> String {
    match support {
        Some(contact) => format!(
            "{}\n{}",
            text.trim(),
            t(lang, "support.contact", &[("contact", &contact)])
        ),
        None => text,
    }
}

/// The words for how a job ended, with the refund when there was a price; a
/// billing or "unavailable" failure names the support contact (if configured).
fn failure_text(tracked: &Tracked, outcome: &Outcome, support: Option<&str>) -> String {
    let lang = tracked.lang;
    let refund = if tracked.price > 0 {
        t(lang, "refund.returned", &[("credits", &tracked.price)])
    } else {
        t(lang, "refund.none", &[])
    };
    let refund: &dyn std::fmt::Display = &refund;
    let text = if outcome.status == JobStatus::Cancelled {
        t(lang, "fail.cancelled", &[("refund", refund)])
    } else {
        match outcome.class {
            Some(FailureClass::UserViolation) => {
                t(lang, "fail.user_violation", &[("refund", refund)])
            }
            Some(FailureClass::Billing) => with_support(
                lang,
                t(lang, "fail.billing", &[("refund", refund)]),
                support,
            ),
            Some(FailureClass::BadInput) => {
                let reason = trim_chars(outcome.error.as_deref().unwrap_or_default(), 300);
                t(
                    lang,
                    "fail.bad_input",
                    &[("reason", &reason), ("refund", refund)],
                )
            }
            Some(FailureClass::Timeout) => t(lang, "fail.timed_out", &[("refund", refund)]),
            Some(FailureClass::Cancelled) => t(lang, "fail.cancelled", &[("refund", refund)]),
            _ => with_support(
                lang,
                t(lang, "fail.unavailable", &[("refund", refund)]),
                support,
            ),
        }
    };
    text.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracked(lang: Lang) -> Tracked {
        Tracked {
            job_id: "01JOB".to_owned(),
            queue: "img".to_owned(),
            kind: Kind::Photo,
            chat_id: 1,
            tg_user: 1,
            user_id: 1,
            lang,
            price: 3,
            slot: "up2:1:2".to_owned(),
            status_msg: None,
            reply_to: None,
            dialog_id: None,
            caption: None,
            video_of: None,
            handed_to: None,
        }
    }

    fn failed(class: FailureClass) -> Outcome {
        Outcome {
            status: JobStatus::Failed,
            class: Some(class),
            error: Some("details".to_owned()),
        }
    }

    #[test]
    fn billing_and_unavailable_failures_name_the_support_contact_when_there_is_one() {
        for lang in Lang::ALL {
            let t = tracked(lang);
            let contact = t_support(lang, "@genq_help");
            let refund = crate::i18n::t(lang, "refund.returned", &[("credits", &3)]);
            for class in [FailureClass::Billing, FailureClass::Transient] {
                let with = failure_text(&t, &failed(class), Some("@genq_help"));
                let without = failure_text(&t, &failed(class), None);
                assert!(with.ends_with(&format!("{refund}\n{contact}")), "{with}");
                assert!(without.ends_with(&refund), "{without}");
                assert!(!without.contains("@genq_help"));
                assert_eq!(with, format!("{without}\n{contact}"));
            }
            // the user's own doing: no support contact
            for class in [
                FailureClass::UserViolation,
                FailureClass::BadInput,
                FailureClass::Timeout,
                FailureClass::Cancelled,
            ] {
                let text = failure_text(&t, &failed(class), Some("@genq_help"));
                assert!(!text.contains("@genq_help"), "{class:?}: {text}");
            }
        }
    }

    #[test]
    fn without_a_refund_the_support_line_still_follows_the_text() {
        let mut t = tracked(Lang::En);
        t.price = 0;
        let text = failure_text(&t, &failed(FailureClass::Billing), Some("https://t.me/x"));
        let first = crate::i18n::t(
            Lang::En,
            "fail.billing",
            &[("refund", &crate::i18n::t(Lang::En, "refund.none", &[]))],
        );
        assert_eq!(
            text,
            format!(
                "{}\n{}",
                first.trim(),
                t_support(Lang::En, "https://t.me/x")
            )
        );
    }

    fn t_support(lang: Lang, contact: &str) -> String {
        crate::i18n::t(lang, "support.contact", &[("contact", &contact)])
    }
}
