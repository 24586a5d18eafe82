//! Inline buttons: personas, "Draw the scene", the photo menu (upscale, face swap,
//! animate → style → count), and the Cancel button of a status message. Every tap is
//! answered (`answerCallbackQuery`); a button that no longer leads anywhere says so
//! politely and does nothing.

use std::sync::Arc;

use genq_core::JobStatus;
use genq_job_generate_image_prompt::{ImagePrompt, ImagePromptRequest};
use genq_job_generate_video::{Template, VideoRequest};
use genq_job_upscale::UpscaleRequest;
use genq_providers::ChatMessage;
use teloxide::{
    payloads::EditMessageReplyMarkupSetters,
    prelude::{Requester as _, *},
    types::{CallbackQuery, InlineKeyboardMarkup, MessageId},
};
use tracing::warn;

use crate::{
    BotError,
    app::BotApp,
    conversation::{
        callbacks::{Action, VideoStyle},
        chat_state::{ChatState, PhotoStash, VideoStash},
        handlers::{known_user, language, to_json, video_count_menu},
        keyboards::{keyboard, row},
        requester::{Requester, TapAnswer},
    },
    delivery::tracking::{Kind, Tracked},
    i18n::{Lang, t},
    orders::{
        cancel::cancel_job,
        place::{Order, Placed},
    },
};

/// A tap: handled, then answered with a small notice when there is something to say.
pub(crate) async fn on_callback(app: Arc<BotApp>, q: CallbackQuery) -> Result<(), BotError> {
    let lang = language(&q.from);
    app.metrics.updates.with_label_values(&["callback"]).inc();
    let pending = TapAnswer::new(q.id.clone());
    let answer = match handle_callback(&app, &q, lang, &pending).await {
        Ok(answer) => answer,
        Err(e) => {
            warn!(error = %e, "button handling failed");
            Some(t(lang, "err.internal", &[]))
        }
    };
    if !pending.take() {
        return Ok(()); // answered already (the acknowledgement, or before a message)
    }
    app.send_tap_answer(&pending, answer).await;
    Ok(())
}

/// Where a tap came from.
struct Tap {
    who: Requester,
    /// The message the button is under.
    msg_id: i32,
}

/// The answer to a button that no longer leads anywhere.
fn stale(lang: Lang) -> Option<String> {
    Some(t(lang, "err.stale_button", &[]))
}

/// Handles a tap; the text of the answer, if any.
async fn handle_callback(
    app: &BotApp,
    q: &CallbackQuery,
    lang: Lang,
    pending: &TapAnswer,
) -> Result<Option<String>, BotError> {
    let Some(action) = q.data.as_deref().and_then(Action::parse) else {
        return Ok(Some(t(lang, "err.unknown_button", &[])));
    };
    let Some(message) = &q.message else {
        return Ok(stale(lang));
    };
    let (db_user, _) = known_user(app, &q.from, lang).await?;
    let tap = Tap {
        who: Requester {
            chat_id: message.chat().id.0,
            tg_user: q.from.id.0 as i64,
            user_id: db_user.id,
            lang,
            reply_to: None,
            tap: Some(pending.clone()),
        },
        msg_id: message.id().0,
    };
    match action {
        Action::Persona(id) => choose_persona(app, &tap, id, db_user.credits).await,
        Action::Picture(dialog_id) => picture(app, &tap, dialog_id).await,
        Action::Upscale { token, factor } => upscale(app, &tap, &token, factor).await,
        Action::FaceSwap { token } => face_swap(app, &tap, &token).await,
        Action::Animate { token } => animate(app, &tap, &token).await,
        Action::Style { token, style } => video_style(app, &tap, &token, style).await,
        Action::Count { token, count } => videos(app, &tap, &token, count).await,
        Action::CancelJob(job_id) => cancel_button(app, &tap, &job_id).await,
        Action::Reopen(dialog_id) => {
            crate::conversation::dialogs::reopen(app, &tap.who, dialog_id).await
        }
        Action::BuyMenu => {
            crate::payments::show_packages(app, &tap.who).await?;
            Ok(None)
        }
        Action::Buy(package) => crate::payments::send_invoice(app, &tap.who, &package).await,
        Action::PromoAsk => {
            crate::promo::flow::ask_brief(app, &tap.who).await?;
            Ok(None)
        }
        Action::PromoStart(token) => {
            crate::promo::flow::start(app, &tap.who, &token, tap.msg_id).await
        }
        Action::PromoDrop(token) => {
            crate::promo::flow::drop(app, &tap.who, &token, tap.msg_id).await
        }
        Action::PromoApprove { id, stage } => {
            crate::promo::gates::approve(app, &tap.who, &id, stage, tap.msg_id).await
        }
    }
}

/// What to answer after an order.
fn answer_placed(lang: Lang, placed: &Placed) -> Option<String> {
    match placed {
        Placed::Duplicate { active: true } => Some(t(lang, "err.already_taken", &[])),
        Placed::Duplicate { active: false } => stale(lang),
        Placed::Created(_) | Placed::Refused => None,
    }
}

async fn choose_persona(
    app: &BotApp,
    tap: &Tap,
    persona_id: i64,
    credits: i64,
) -> Result<Option<String>, BotError> {
    let lang = tap.who.lang;
    let persona = match app.store.persona(persona_id).await {
        Ok(p) => p,
        Err(genq_store::StoreError::UnknownPersona(_)) => return Ok(stale(lang)),
        Err(e) => return Err(e.into()),
    };
    app.store.new_dialog(tap.who.user_id, persona.id).await?;
    app.states.clear(tap.who.chat_id).await?;
    let mut text = t(
        lang,
        "start.persona_chosen",
        &[("persona", &persona.name), ("greeting", &persona.greeting)],
    );
    if let Some(offer) = &app.offers.reply {
        // sending a message is the confirmation: its price is said first
        text.push_str("\n\n");
        text.push_str(&t(
            lang,
            "start.reply_price",
            &[("price", &offer.price), ("credits", &credits)],
        ));
    }
    app.say_to(&tap.who, &text, None).await?;
    Ok(None)
}

/// GenerateImagePrompt for the scene of one of the user's dialogs.
async fn picture(app: &BotApp, tap: &Tap, dialog_id: i64) -> Result<Option<String>, BotError> {
    let who = &tap.who;
    let Some(offer) = app.offers.picture.clone() else {
        return Ok(stale(who.lang));
    };
    let dialogs = app.store.dialogs(who.user_id).await?;
    let Some(dialog) = dialogs.into_iter().find(|d| d.id == dialog_id) else {
        return Ok(stale(who.lang));
    };
    let persona = app.store.persona(dialog.persona_id).await?;
    let messages: Vec<ChatMessage> = app
        .store
        .last_messages(dialog.id, app.cfg.history_messages)
        .await?
        .into_iter()
        .map(|m| ChatMessage::new(m.role.as_str(), m.content))
        .collect();
    if messages.is_empty() {
        return Ok(stale(who.lang));
    }
    let payload = ImagePromptRequest {
        persona_look: persona.fixed_look,
        messages,
        width: 1024,
        height: 1024,
    };
    let order = Order {
        kind: Kind::ImagePrompt,
        offer,
        payload: to_json(&payload)?,
        idem: format!("pic:{}:{}", who.chat_id, tap.msg_id),
        dialog_id: Some(dialog.id),
        caption: None,
        video_of: None,
    };
    let placed = app.place(who, vec![order]).await?;
    Ok(answer_placed(who.lang, &placed))
}

/// A stashed value behind a button, when it is still there and the user's own.
async fn own_stash<S: serde::de::DeserializeOwned>(
    app: &BotApp,
    token: &str,
    tg_user: i64,
    owner: impl Fn(&S) -> i64,
) -> Result<Option<S>, BotError> {
    Ok(app
        .states
        .unstash::<S>(token)
        .await?
        .filter(|s| owner(s) == tg_user))
}

async fn own_photo(app: &BotApp, tap: &Tap, token: &str) -> Result<Option<PhotoStash>, BotError> {
    own_stash::<PhotoStash>(app, token, tap.who.tg_user, |s| s.owner).await
}

async fn upscale(
    app: &BotApp,
    tap: &Tap,
    token: &str,
    factor: u32,
) -> Result<Option<String>, BotError> {
    let who = &tap.who;
    let (Some(stash), Some(offer)) = (
        own_photo(app, tap, token).await?,
        app.offers.upscale.clone(),
    ) else {
        return Ok(stale(who.lang));
    };
    let order = Order {
        kind: Kind::Photo,
        offer,
        payload: to_json(&UpscaleRequest {
            image: stash.image,
            factor,
        })?,
        idem: format!("up{factor}:{}:{}", who.chat_id, tap.msg_id),
        dialog_id: None,
        caption: None,
        video_of: None,
    };
    let placed = app.place(who, vec![order]).await?;
    Ok(answer_placed(who.lang, &placed))
}

/// Face swap onto the photo: the next photo the user sends is the face.
async fn face_swap(app: &BotApp, tap: &Tap, token: &str) -> Result<Option<String>, BotError> {
    let who = &tap.who;
    let Some(stash) = own_photo(app, tap, token).await? else {
        return Ok(stale(who.lang));
    };
    let state = ChatState::AwaitFace {
        target: stash.image,
    };
    app.states.set(who.chat_id, &state).await?;
    app.say_to(who, &t(who.lang, "photo.face_prompt", &[]), None)
        .await?;
    Ok(None)
}

/// Animate the photo: the styles.
async fn animate(app: &BotApp, tap: &Tap, token: &str) -> Result<Option<String>, BotError> {
    let lang = tap.who.lang;
    if own_photo(app, tap, token).await?.is_none() {
        return Ok(stale(lang));
    }
    let buttons = [
        ("button.tpl_ugc", VideoStyle::Ugc),
        ("button.tpl_ad", VideoStyle::Ad),
        ("button.tpl_own", VideoStyle::Own),
    ]
    .into_iter()
    .map(|(key, style)| {
        (
            t(lang, key, &[]),
            Action::Style {
                token: token.to_owned(),
                style,
            },
        )
    })
    .collect();
    let text = t(lang, "animate.template", &[]);
    app.say_to(&tap.who, &text, Some(keyboard(vec![row(buttons)])))
        .await?;
    Ok(None)
}

/// A style: a ready-made one goes on to the count; "own prompt" asks for the prompt.
async fn video_style(
    app: &BotApp,
    tap: &Tap,
    token: &str,
    style: VideoStyle,
) -> Result<Option<String>, BotError> {
    let who = &tap.who;
    let Some(stash) = own_photo(app, tap, token).await? else {
        return Ok(stale(who.lang));
    };
    let template = match style {
        VideoStyle::Ugc => Template::Ugc,
        VideoStyle::Ad => Template::Ad,
        VideoStyle::Own => {
            let state = ChatState::AwaitVideoPrompt { image: stash.image };
            app.states.set(who.chat_id, &state).await?;
            app.say_to(who, &t(who.lang, "animate.own_prompt", &[]), None)
                .await?;
            return Ok(None);
        }
    };
    let video = VideoStash {
        image: stash.image,
        template,
        prompt: template_prompt(template).to_owned(),
        owner: who.tg_user,
    };
    video_count_menu(app, who, &video).await?;
    Ok(None)
}

/// What the video provider is asked for with a ready-made style (provider-facing,
/// not shown to users).
fn template_prompt(template: Template) -> &'static str {
    match template {
        Template::Ugc => {
            "Bring this photo to life as a casual handheld smartphone clip: natural movement, \
             authentic user-generated style"
        }
        Template::Ad => {
            "Bring this photo to life as a polished commercial shot: smooth camera move, clean \
             light, product advertisement style"
        }
        Template::Custom => "",
    }
}

/// `count` GenerateVideo jobs, charged `count` times; the menu's buttons go once
/// the order is placed.
async fn videos(
    app: &BotApp,
    tap: &Tap,
    token: &str,
    count: u32,
) -> Result<Option<String>, BotError> {
    let who = &tap.who;
    let (Some(stash), Some(offer)) = (
        own_stash::<VideoStash>(app, token, who.tg_user, |s| s.owner).await?,
        app.offers.video.clone(),
    ) else {
        return Ok(stale(who.lang));
    };
    let mut orders = Vec::new();
    for n in 1..=count {
        let payload = VideoRequest {
            prompt: stash.prompt.clone(),
            template: stash.template,
            image: Some(stash.image.clone()),
            seconds: 5,
        };
        orders.push(Order {
            kind: Kind::Video,
            offer: offer.clone(),
            payload: to_json(&payload)?,
            idem: format!("vid:{}:{}:{count}:{n}", who.chat_id, tap.msg_id),
            dialog_id: None,
            caption: None,
            video_of: Some((n, count)),
        });
    }
    let placed = app.place(who, orders).await?;
    if let Placed::Created(_) = placed {
        let empty = InlineKeyboardMarkup::new(Vec::<Vec<_>>::new());
        if let Err(e) = app
            .bot
            .edit_message_reply_markup(ChatId(who.chat_id), MessageId(tap.msg_id))
            .reply_markup(empty)
            .await
        {
            warn!(error = %e, "the count menu kept its buttons");
        }
    }
    Ok(answer_placed(who.lang, &placed))
}

/// The image job a finished picture prompt pushed (the prompt's result names it),
/// with its queue; `None` while the prompt is still running.
async fn image_job_of(
    app: &BotApp,
    prompt: &Tracked,
) -> Result<Option<(String, String)>, BotError> {
    let Some(queue) = app.offers.picture_image_queue.clone() else {
        return Ok(None);
    };
    let Some(state) = app.queue.job(&prompt.queue, &prompt.job_id).await? else {
        return Ok(None);
    };
    if state.status != JobStatus::Succeeded {
        return Ok(None);
    }
    let child = state
        .result
        .and_then(|r| serde_json::from_value::<ImagePrompt>(r).ok())
        .map(|p| p.image_job_id);
    Ok(child.map(|c| (c, queue)))
}

/// The Cancel button of a status message.
async fn cancel_button(app: &BotApp, tap: &Tap, job_id: &str) -> Result<Option<String>, BotError> {
    let who = &tap.who;
    let Some(mut tracked) = app.tracker.get_or_restore(job_id).await? else {
        return Ok(stale(who.lang));
    };
    if tracked.tg_user != who.tg_user {
        return Ok(stale(who.lang));
    }
    // a picture's prompt is done: its image job stands behind the button now
    let mut job_id = job_id.to_owned();
    let mut queue = tracked.queue.clone();
    if let Some(child) = tracked.handed_to.clone()
        && let Some(image) = app.tracker.get_or_restore(&child).await?
    {
        job_id = child;
        tracked = image;
        queue = tracked.queue.clone();
    } else if tracked.kind == Kind::ImagePrompt
        && let Some((child, child_queue)) = image_job_of(app, &tracked).await?
    {
        // finished, its hand-over still on its way: the image job is already queued
        job_id = child;
        queue = child_queue;
    }
    let job_id = job_id.as_str();
    if cancel_job(app, &queue, job_id).await? {
        Ok(Some(t(who.lang, "status.cancelling", &[])))
    } else {
        Ok(stale(who.lang))
    }
}
