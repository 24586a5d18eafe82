//! The promo video's approvals: each open gate is offered to the user once (the
//! script as text, an album of the first pictures, the first clips) with Approve /
//! Cancel, and the status message says where the pipeline is and how long is left.
//! Approve signals the gate: the first answer wins, a second tap hears "already
//! answered", a tap after the end "already ended". Cancel is the status message's
//! own Cancel button (the generic job cancel ends the pipeline).

use genq_job_write_script::Script;
use genq_pipeline::{GateView, PipelineView, SignalRefused};
use serde_json::Value;
use teloxide::{
    payloads::{EditMessageReplyMarkupSetters, SendVideoSetters},
    prelude::{Requester as _, *},
    types::{InlineKeyboardMarkup, InputFile, InputMedia, InputMediaPhoto, MessageId},
};
use tracing::{debug, warn};

use crate::{
    BotError,
    app::BotApp,
    conversation::{
        callbacks::Action,
        keyboards::{keyboard, row},
        requester::Requester,
    },
    delivery::{deliver::FILE_LIMIT, tracking::Tracked},
    i18n::{Lang, t},
    promo::text::{self, APPROVE_CLIPS, APPROVE_IMAGES, APPROVE_SCRIPT, CLIPS, IMAGES, SCRIPT},
    transport::send::say,
};

/// How long one replica holds the offer of a gate before another may try.
const OFFER_CLAIM_MS: u64 = 120_000;

/// Redis server time (ms): gate deadlines are in it.
pub(crate) async fn server_ms(app: &BotApp) -> Result<u64, BotError> {
    let mut c = app.queue.connection();
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut c).await?;
    Ok(secs * 1000 + micros / 1000)
}

/// Removes the buttons under `msg_id` (best effort: the button's answer already
/// told the user what happened).
pub(crate) async fn clear_buttons(app: &BotApp, chat: i64, msg_id: i32) {
    let cleared = app
        .bot
        .edit_message_reply_markup(ChatId(chat), MessageId(msg_id))
        .reply_markup(InlineKeyboardMarkup::new(Vec::<Vec<_>>::new()))
        .await;
    if let Err(e) = cleared {
        debug!(chat, msg_id, error = %e, "buttons not cleared");
    }
}

/// The status loop's look at a promo video: offers its open gate (once) and
/// returns the status line to show.
pub(crate) async fn look(app: &BotApp, tracked: &Tracked) -> Result<Option<String>, BotError> {
    let Some(view) = app.pipelines.view(&tracked.job_id).await? else {
        return Ok(None);
    };
    let now = server_ms(app).await?;
    if let Some(gate) = &view.gate
        && app.cooling.remaining(tracked.chat_id).is_none()
    {
        offer_once(app, tracked, &view, gate, now).await?;
    }
    Ok(Some(text::status_line(tracked.lang, &view, now)))
}

/// The record (in `bot_deliveries`) that gate `gate` was offered.
fn offered_mark(gate: &str) -> String {
    format!("gate.{gate}")
}

/// Offers gate `gate` unless it was offered already: claimed in Redis (one replica
/// sends it), recorded in PostgreSQL once sent.
async fn offer_once(
    app: &BotApp,
    tracked: &Tracked,
    view: &PipelineView,
    gate: &GateView,
    now: u64,
) -> Result<(), BotError> {
    let mark = offered_mark(&gate.name);
    if app.store.was_delivered(&tracked.job_id, &mark).await? {
        return Ok(());
    }
    let claim = format!("{}:bot:gate:{}:{}", app.prefix(), tracked.job_id, gate.name);
    let mut c = app.queue.connection();
    let claimed: bool = redis::cmd("SET")
        .arg(&claim)
        .arg(&app.instance)
        .arg("NX")
        .arg("PX")
        .arg(OFFER_CLAIM_MS)
        .query_async::<Option<String>>(&mut c)
        .await?
        .is_some();
    if !claimed {
        return Ok(());
    }
    let minutes = text::minutes_left(gate.deadline_ms, now);
    let sent = send_offer(app, tracked, view, gate, minutes).await;
    match sent {
        Ok(()) => {
            app.store.mark_delivered(&tracked.job_id, &mark).await?;
            Ok(())
        }
        Err(e) => {
            // let the next look try again
            let _: Result<(), _> = redis::AsyncCommands::del(&mut c, &claim).await;
            if let BotError::Telegram(re) = &e
                && app.cooling.note_error(tracked.chat_id, re)
            {
                app.metrics.telegram_429.with_label_values(&["gate"]).inc();
            }
            Err(e)
        }
    }
}

/// The stage called `name`'s step outputs, in order.
fn outputs<'v>(view: &'v PipelineView, name: &str) -> Vec<&'v Value> {
    view.stages
        .iter()
        .find(|s| s.name == name)
        .map(|s| s.steps.iter().filter_map(|j| j.output.as_ref()).collect())
        .unwrap_or_default()
}

fn artifact_key(output: &Value) -> Option<String> {
    output["artifact"]["key"].as_str().map(str::to_owned)
}

async fn send_offer(
    app: &BotApp,
    tracked: &Tracked,
    view: &PipelineView,
    gate: &GateView,
    minutes: u64,
) -> Result<(), BotError> {
    let lang = tracked.lang;
    let buttons = gate_buttons(lang, &tracked.job_id, gate);
    let chat = tracked.chat_id;
    let text = match gate.name.as_str() {
        APPROVE_SCRIPT => {
            let script: Script = outputs(view, SCRIPT)
                .first()
                .and_then(|v| serde_json::from_value((*v).clone()).ok())
                .ok_or_else(|| BotError::Encode("the promo script is unreadable".to_owned()))?;
            text::script_text(lang, &script, minutes)
        }
        APPROVE_IMAGES => {
            let keys: Vec<String> = outputs(view, IMAGES)
                .into_iter()
                .filter_map(artifact_key)
                .collect();
            let shown = send_album(app, chat, lang, &keys).await?;
            text::gate_question(lang, &gate.name, minutes, shown, keys.len())
        }
        APPROVE_CLIPS => {
            let keys: Vec<String> = outputs(view, CLIPS)
                .into_iter()
                .filter_map(artifact_key)
                .collect();
            let shown = send_clips(app, chat, lang, &keys).await?;
            text::gate_question(lang, &gate.name, minutes, shown, keys.len())
        }
        other => {
            warn!(job_id = %tracked.job_id, gate = other, "a promo gate this bot does not know");
            return Ok(());
        }
    };
    say(&app.bot, chat, &text, Some(buttons)).await?;
    Ok(())
}

fn gate_buttons(lang: Lang, id: &str, gate: &GateView) -> InlineKeyboardMarkup {
    keyboard(vec![row(vec![
        (
            text::approve_label(lang, &gate.name),
            Action::PromoApprove {
                id: id.to_owned(),
                stage: gate.stage as u32,
            },
        ),
        (
            t(lang, "promo.button.drop", &[]),
            Action::CancelJob(id.to_owned()),
        ),
    ])])
}

/// An album of the first `promo.image_previews` pictures; how many it shows.
async fn send_album(
    app: &BotApp,
    chat: i64,
    lang: Lang,
    keys: &[String],
) -> Result<usize, BotError> {
    let n = app
        .offers
        .promo
        .as_ref()
        .map_or(3, |p| p.image_previews)
        .min(keys.len());
    let mut media = Vec::with_capacity(n);
    for (i, key) in keys.iter().take(n).enumerate() {
        let bytes = app.artifacts.get(key, FILE_LIMIT).await?;
        let mut photo =
            InputMediaPhoto::new(InputFile::memory(bytes).file_name(format!("{i}.png")));
        if i == 0 {
            photo = photo.caption(t(
                lang,
                "promo.images_caption",
                &[("shown", &n), ("total", &keys.len())],
            ));
        }
        media.push(InputMedia::Photo(photo));
    }
    match media.len() {
        0 => {}
        // an album needs two at least
        1 => {
            let bytes = app.artifacts.get(&keys[0], FILE_LIMIT).await?;
            app.bot
                .send_photo(ChatId(chat), InputFile::memory(bytes).file_name("0.png"))
                .await?;
        }
        _ => {
            app.bot.send_media_group(ChatId(chat), media).await?;
        }
    }
    Ok(n)
}

/// The first `promo.video_previews` clips; how many it shows.
async fn send_clips(
    app: &BotApp,
    chat: i64,
    lang: Lang,
    keys: &[String],
) -> Result<usize, BotError> {
    let n = app
        .offers
        .promo
        .as_ref()
        .map_or(2, |p| p.video_previews)
        .min(keys.len());
    for (i, key) in keys.iter().take(n).enumerate() {
        let bytes = app.artifacts.get(key, FILE_LIMIT).await?;
        let caption = t(
            lang,
            "promo.clip_caption",
            &[("n", &(i + 1)), ("total", &keys.len())],
        );
        app.bot
            .send_video(
                ChatId(chat),
                InputFile::memory(bytes).file_name(format!("clip{}.mp4", i + 1)),
            )
            .caption(caption)
            .await?;
    }
    Ok(n)
}

/// Approve under a gate's question (`stage`: the gate's stage index).
pub(crate) async fn approve(
    app: &BotApp,
    who: &Requester,
    id: &str,
    stage: u32,
    msg_id: i32,
) -> Result<Option<String>, BotError> {
    let lang = who.lang;
    let Some(tracked) = app.tracker.get_or_restore(id).await? else {
        return Ok(Some(t(lang, "promo.already_ended", &[])));
    };
    if tracked.tg_user != who.tg_user {
        return Ok(Some(t(lang, "err.stale_button", &[])));
    }
    let Some(view) = app.pipelines.view(id).await? else {
        return Ok(Some(t(lang, "promo.already_ended", &[])));
    };
    let Some(gate) = view.stages.get(stage as usize).map(|s| s.name.clone()) else {
        return Ok(Some(t(lang, "err.stale_button", &[])));
    };
    let answer = app
        .pipelines
        .signal(
            id,
            &gate,
            super::APPROVE,
            &serde_json::json!({"by": who.tg_user}),
        )
        .await?;
    let key = match answer {
        Ok(_) => {
            clear_buttons(app, who.chat_id, msg_id).await;
            "promo.approved"
        }
        Err(SignalRefused::AlreadyDecided { .. }) => "promo.already_decided",
        Err(SignalRefused::Finished { .. } | SignalRefused::UnknownPipeline) => {
            clear_buttons(app, who.chat_id, msg_id).await;
            "promo.already_ended"
        }
        Err(_) => "promo.not_open",
    };
    Ok(Some(t(lang, key, &[])))
}
