//! The conversations: commands, text, photos, voice, and inline buttons. Handlers
//! validate, charge and enqueue (see [`crate::orders`]); workers do the work.
//! Every user-visible text comes from the catalogs ([`crate::i18n`]).

use std::sync::Arc;

use genq_job_face_swap::FaceSwapRequest;
use genq_job_generate_image_prompt::ImagePromptRequest;
use genq_job_generate_reply::ReplyRequest;
use genq_job_generate_video::{Template, VideoRequest};
use genq_job_upscale::UpscaleRequest;
use genq_providers::ChatMessage;
use genq_store::{Role, User as StoreUser};
use serde::{Deserialize, Serialize};
use teloxide::{
    dispatching::UpdateHandler,
    net::Download,
    payloads::AnswerCallbackQuerySetters,
    prelude::{Requester as _, *},
    types::{CallbackQuery, FileMeta, User},
};
use tracing::{info, warn};

use crate::{
    BotError,
    app::BotApp,
    callbacks::{Action, VIDEO_COUNTS, VideoStyle},
    i18n::{Lang, t},
    orders::{Order, Placed, Requester},
    send::{keyboard, row, say, trim_chars, typing},
    tracking::Kind,
};

/// The largest file the Bot API lets a bot download (voice, photos).
pub const DOWNLOAD_LIMIT: u64 = 20 * 1024 * 1024;
/// Telegram's limit for an answer to a button (characters).
const CALLBACK_TEXT_LIMIT: usize = 200;
/// The longest prompt of an own-prompt video.
const VIDEO_PROMPT_LIMIT: usize = 2000;

/// What the chat is in the middle of (kept in Redis under the genq prefix).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ChatState {
    /// Face swap: the next photo is the face to put on `target`.
    AwaitFace { target: String },
    /// Animate with an own prompt: the next text is the prompt for `image`.
    AwaitVideoPrompt { image: String },
}

/// A photo the user sent, behind a menu's buttons.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PhotoStash {
    image: String,
    owner: i64,
}

/// A video order waiting for its count.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct VideoStash {
    image: String,
    template: Template,
    prompt: String,
    owner: i64,
}

/// The update handler tree.
pub fn schema() -> UpdateHandler<BotError> {
    dptree::entry()
        .branch(Update::filter_message().endpoint(on_message))
        .branch(Update::filter_callback_query().endpoint(on_callback))
}

fn language(user: &User) -> Lang {
    Lang::from_code(user.language_code.as_deref())
}

async fn on_message(app: Arc<BotApp>, msg: Message) -> Result<(), BotError> {
    let Some(user) = msg.from.as_ref() else {
        return Ok(());
    };
    let lang = language(user);
    if let Err(e) = handle_message(&app, &msg, user, lang).await {
        warn!(chat_id = msg.chat.id.0, error = %e, "message handling failed");
        let _ = say(&app.bot, msg.chat.id.0, &t(lang, "err.internal", &[]), None).await;
    }
    Ok(())
}

async fn known_user(app: &BotApp, user: &User, lang: Lang) -> Result<(StoreUser, bool), BotError> {
    Ok(app
        .store
        .welcome_user(user.id.0 as i64, lang.code(), app.cfg.welcome_credits)
        .await?)
}

async fn handle_message(
    app: &BotApp,
    msg: &Message,
    user: &User,
    lang: Lang,
) -> Result<(), BotError> {
    let (db_user, created) = known_user(app, user, lang).await?;
    let who = Requester {
        chat_id: msg.chat.id.0,
        tg_user: user.id.0 as i64,
        user_id: db_user.id,
        lang,
        reply_to: Some(msg.id.0),
    };
    let kind = if let Some(text) = msg.text() {
        if text.starts_with('/') {
            command(app, &who, text, user, created).await?;
            "command"
        } else {
            on_text(app, &who, text, msg.id.0).await?;
            "text"
        }
    } else if let Some(photos) = msg.photo() {
        match photos.last() {
            Some(largest) => on_photo(app, &who, &largest.file, msg.id.0).await?,
            None => unsupported(app, &who).await?,
        }
        "photo"
    } else if let Some(voice) = msg.voice() {
        on_voice(app, &who, &voice.file, msg.id.0).await?;
        "voice"
    } else {
        unsupported(app, &who).await?;
        "other"
    };
    app.metrics.updates.with_label_values(&[kind]).inc();
    Ok(())
}

async fn tell(app: &BotApp, who: &Requester, key: &str) -> Result<(), BotError> {
    say(&app.bot, who.chat_id, &t(who.lang, key, &[]), None).await?;
    Ok(())
}

async fn unsupported(app: &BotApp, who: &Requester) -> Result<(), BotError> {
    tell(app, who, "err.unsupported").await
}

async fn command(
    app: &BotApp,
    who: &Requester,
    text: &str,
    user: &User,
    created: bool,
) -> Result<(), BotError> {
    let word = text.split_whitespace().next().unwrap_or_default();
    let name = word
        .trim_start_matches('/')
        .split('@')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match name.as_str() {
        "start" => start(app, who, &user.first_name, created).await,
        "help" => help(app, who).await,
        "balance" => {
            let credits = app.store.balance(who.user_id).await?;
            let text = t(who.lang, "balance", &[("credits", &credits)]);
            say(&app.bot, who.chat_id, &text, None).await?;
            Ok(())
        }
        "new" => new_dialog(app, who).await,
        "cancel" => cancel_all(app, who).await,
        "admin" => crate::admin::admin(app, who).await,
        _ => help(app, who).await,
    }
}

async fn persona_keyboard(
    app: &BotApp,
    lang: Lang,
) -> Result<teloxide::types::InlineKeyboardMarkup, BotError> {
    let rows = app
        .store
        .personas()
        .await?
        .into_iter()
        .map(|p| {
            row(vec![(
                t(lang, "button.persona", &[("name", &p.name)]),
                Action::Persona(p.id),
            )])
        })
        .collect();
    Ok(keyboard(rows))
}

async fn start(app: &BotApp, who: &Requester, name: &str, created: bool) -> Result<(), BotError> {
    app.states.clear(who.chat_id).await?;
    let mut text = t(who.lang, "start.greeting", &[("name", &name)]);
    if created && app.cfg.welcome_credits > 0 {
        text.push_str("\n\n");
        text.push_str(&t(
            who.lang,
            "start.welcome_credits",
            &[("credits", &app.cfg.welcome_credits)],
        ));
    }
    let markup = persona_keyboard(app, who.lang).await?;
    say(&app.bot, who.chat_id, &text, Some(markup)).await?;
    Ok(())
}

async fn help(app: &BotApp, who: &Requester) -> Result<(), BotError> {
    let o = &app.offers;
    let text = t(
        who.lang,
        "help",
        &[
            ("reply_price", &o.reply_price()),
            ("picture_price", &o.picture_price()),
            ("upscale_price", &o.upscale_price()),
            ("face_swap_price", &o.face_swap_price()),
            ("video_price", &o.video_price()),
        ],
    );
    say(&app.bot, who.chat_id, &text, None).await?;
    Ok(())
}

async fn new_dialog(app: &BotApp, who: &Requester) -> Result<(), BotError> {
    app.states.clear(who.chat_id).await?;
    let Some(current) = app.store.active_dialog(who.user_id).await? else {
        let markup = persona_keyboard(app, who.lang).await?;
        let text = t(who.lang, "new.no_persona", &[]);
        say(&app.bot, who.chat_id, &text, Some(markup)).await?;
        return Ok(());
    };
    let persona = app.store.persona(current.persona_id).await?;
    app.store.new_dialog(who.user_id, persona.id).await?;
    let text = t(who.lang, "new.done", &[("persona", &persona.name)]);
    say(&app.bot, who.chat_id, &text, None).await?;
    Ok(())
}

/// Cancels every open job of the user; the settler refunds each as it ends.
async fn cancel_all(app: &BotApp, who: &Requester) -> Result<(), BotError> {
    app.states.clear(who.chat_id).await?;
    let mut count = 0u32;
    for job in app.store.open_jobs_of_user(who.user_id).await? {
        match app.queue.cancel(&job.queue, &job.id).await? {
            genq_redis::CancelOutcome::Cancelled | genq_redis::CancelOutcome::Signalled => {
                count += 1
            }
            other => info!(job_id = %job.id, outcome = ?other, "not cancelled"),
        }
    }
    let text = if count == 0 {
        t(who.lang, "cancel.none", &[])
    } else {
        t(who.lang, "cancel.done", &[("count", &count)])
    };
    say(&app.bot, who.chat_id, &text, None).await?;
    Ok(())
}

async fn on_text(app: &BotApp, who: &Requester, text: &str, msg_id: i32) -> Result<(), BotError> {
    let chars = text.chars().count();
    match app.states.get::<ChatState>(who.chat_id).await? {
        Some(ChatState::AwaitVideoPrompt { image }) => {
            if chars > VIDEO_PROMPT_LIMIT {
                let text = t(
                    who.lang,
                    "err.text_too_long",
                    &[("len", &chars), ("max", &VIDEO_PROMPT_LIMIT)],
                );
                say(&app.bot, who.chat_id, &text, None).await?;
                return Ok(());
            }
            app.states.clear(who.chat_id).await?;
            let stash = VideoStash {
                image,
                template: Template::Custom,
                prompt: text.trim().to_owned(),
                owner: who.tg_user,
            };
            return video_count_menu(app, who, &stash).await;
        }
        Some(ChatState::AwaitFace { .. }) => return tell(app, who, "err.not_a_photo").await,
        None => {}
    }
    if chars > app.cfg.max_text_chars {
        let text = t(
            who.lang,
            "err.text_too_long",
            &[("len", &chars), ("max", &app.cfg.max_text_chars)],
        );
        say(&app.bot, who.chat_id, &text, None).await?;
        return Ok(());
    }
    reply_order(
        app,
        who,
        text.trim(),
        format!("msg:{}:{msg_id}", who.chat_id),
    )
    .await
}

/// Text (typed or transcribed) → GenerateReply with the dialog's recent messages.
async fn reply_order(
    app: &BotApp,
    who: &Requester,
    text: &str,
    idem: String,
) -> Result<(), BotError> {
    let Some(offer) = app.offers.reply.clone() else {
        return unsupported(app, who).await;
    };
    if text.is_empty() {
        return tell(app, who, "err.empty_transcript").await;
    }
    let Some(dialog) = app.store.active_dialog(who.user_id).await? else {
        let markup = persona_keyboard(app, who.lang).await?;
        let text = t(who.lang, "err.no_dialog", &[]);
        say(&app.bot, who.chat_id, &text, Some(markup)).await?;
        return Ok(());
    };
    let persona = app.store.persona(dialog.persona_id).await?;
    let mut messages: Vec<ChatMessage> = app
        .store
        .last_messages(dialog.id, app.cfg.history_messages - 1)
        .await?
        .into_iter()
        .map(|m| ChatMessage::new(m.role.as_str(), m.content))
        .collect();
    messages.push(ChatMessage::new("user", text));
    let payload = ReplyRequest {
        persona_prompt: persona.system_prompt,
        messages,
    };
    let order = Order {
        kind: Kind::Reply,
        offer,
        payload: to_json(&payload)?,
        idem,
        dialog_id: Some(dialog.id),
        caption: None,
        video_of: None,
    };
    if let Placed::Created(_) = app.place(who, vec![order]).await? {
        app.store
            .append_message(dialog.id, Role::User, text)
            .await?;
    }
    Ok(())
}

fn to_json<T: Serialize>(value: &T) -> Result<serde_json::Value, BotError> {
    serde_json::to_value(value).map_err(|e| BotError::Encode(e.to_string()))
}

/// Downloads a user's file (within the Bot API's 20 MB) into the artifact store.
async fn download_to_artifacts(
    app: &BotApp,
    file: &FileMeta,
    ext: &str,
    content_type: &str,
) -> Result<String, BotError> {
    let remote = app.bot.get_file(file.id.clone()).await?;
    let mut bytes = Vec::with_capacity(remote.size as usize);
    app.bot.download_file(&remote.path, &mut bytes).await?;
    let stored = app.artifacts.put(bytes, ext, content_type).await?;
    Ok(stored.key)
}

async fn too_large(app: &BotApp, who: &Requester, size: u64) -> Result<(), BotError> {
    let text = t(
        who.lang,
        "err.file_too_large",
        &[
            ("size_mb", &size.div_ceil(1024 * 1024)),
            ("max_mb", &(DOWNLOAD_LIMIT / (1024 * 1024))),
        ],
    );
    say(&app.bot, who.chat_id, &text, None).await?;
    Ok(())
}

async fn on_photo(
    app: &BotApp,
    who: &Requester,
    file: &FileMeta,
    msg_id: i32,
) -> Result<(), BotError> {
    if u64::from(file.size) > DOWNLOAD_LIMIT {
        return too_large(app, who, u64::from(file.size)).await;
    }
    let image = download_to_artifacts(app, file, "jpg", "image/jpeg").await?;
    if let Some(ChatState::AwaitFace { target }) = app.states.get::<ChatState>(who.chat_id).await? {
        app.states.clear(who.chat_id).await?;
        let Some(offer) = app.offers.face_swap.clone() else {
            return unsupported(app, who).await;
        };
        let payload = FaceSwapRequest {
            source: image,
            target,
        };
        let order = Order {
            kind: Kind::Photo,
            offer,
            payload: to_json(&payload)?,
            idem: format!("fs:{}:{msg_id}", who.chat_id),
            dialog_id: None,
            caption: None,
            video_of: None,
        };
        app.place(who, vec![order]).await?;
        return Ok(());
    }
    photo_menu(app, who, image).await
}

/// Upscale x2 / x4, Face swap, Animate — each button with its price.
async fn photo_menu(app: &BotApp, who: &Requester, image: String) -> Result<(), BotError> {
    let token = app
        .states
        .stash(&PhotoStash {
            image,
            owner: who.tg_user,
        })
        .await?;
    let lang = who.lang;
    let o = &app.offers;
    let mut rows = Vec::new();
    if let Some(up) = &o.upscale {
        rows.push(row(vec![
            (
                t(lang, "button.upscale2", &[("price", &up.price)]),
                Action::Upscale {
                    token: token.clone(),
                    factor: 2,
                },
            ),
            (
                t(lang, "button.upscale4", &[("price", &up.price)]),
                Action::Upscale {
                    token: token.clone(),
                    factor: 4,
                },
            ),
        ]));
    }
    if let Some(fs) = &o.face_swap {
        rows.push(row(vec![(
            t(lang, "button.face_swap", &[("price", &fs.price)]),
            Action::FaceSwap {
                token: token.clone(),
            },
        )]));
    }
    if let Some(v) = &o.video {
        rows.push(row(vec![(
            t(lang, "button.animate", &[("price", &v.price)]),
            Action::Animate { token },
        )]));
    }
    if rows.is_empty() {
        return unsupported(app, who).await;
    }
    let text = t(lang, "photo.menu", &[]);
    say(&app.bot, who.chat_id, &text, Some(keyboard(rows))).await?;
    Ok(())
}

async fn on_voice(
    app: &BotApp,
    who: &Requester,
    file: &FileMeta,
    msg_id: i32,
) -> Result<(), BotError> {
    if u64::from(file.size) > DOWNLOAD_LIMIT {
        return too_large(app, who, u64::from(file.size)).await;
    }
    let Some(transcriber) = app.transcriber.clone() else {
        return unsupported(app, who).await;
    };
    typing(&app.bot, who.chat_id).await;
    let remote = app.bot.get_file(file.id.clone()).await?;
    let mut audio = Vec::with_capacity(remote.size as usize);
    app.bot.download_file(&remote.path, &mut audio).await?;
    let text = match transcriber
        .client
        .transcribe(&transcriber.model, audio, "voice.ogg")
        .await
    {
        Ok(text) => text,
        Err(e) => {
            warn!(chat_id = who.chat_id, error = %e, "transcription failed");
            return tell(app, who, "err.internal").await;
        }
    };
    let text = trim_chars(text.trim(), app.cfg.max_text_chars);
    reply_order(app, who, &text, format!("voice:{}:{msg_id}", who.chat_id)).await
}

async fn video_count_menu(
    app: &BotApp,
    who: &Requester,
    stash: &VideoStash,
) -> Result<(), BotError> {
    let Some(offer) = &app.offers.video else {
        return unsupported(app, who).await;
    };
    let token = app.states.stash(stash).await?;
    let buttons = VIDEO_COUNTS
        .iter()
        .map(|&count| {
            (
                t(
                    who.lang,
                    "button.count",
                    &[
                        ("count", &count),
                        ("price", &(offer.price * i64::from(count))),
                    ],
                ),
                Action::Count {
                    token: token.clone(),
                    count,
                },
            )
        })
        .collect();
    let text = t(who.lang, "animate.count", &[("price", &offer.price)]);
    say(
        &app.bot,
        who.chat_id,
        &text,
        Some(keyboard(vec![row(buttons)])),
    )
    .await?;
    Ok(())
}

async fn on_callback(app: Arc<BotApp>, q: CallbackQuery) -> Result<(), BotError> {
    let lang = language(&q.from);
    app.metrics.updates.with_label_values(&["callback"]).inc();
    let answer = match handle_callback(&app, &q, lang).await {
        Ok(answer) => answer,
        Err(e) => {
            warn!(error = %e, "button handling failed");
            Some(t(lang, "err.internal", &[]))
        }
    };
    let mut req = app.bot.answer_callback_query(q.id.clone());
    if let Some(text) = answer {
        req = req.text(trim_chars(&text, CALLBACK_TEXT_LIMIT));
    }
    if let Err(e) = req.await {
        warn!(error = %e, "callback not answered");
    }
    Ok(())
}

/// Handles a button; the text of the answer (a small notice), if any.
async fn handle_callback(
    app: &BotApp,
    q: &CallbackQuery,
    lang: Lang,
) -> Result<Option<String>, BotError> {
    let stale = || Ok(Some(t(lang, "err.stale_button", &[])));
    let Some(action) = q.data.as_deref().and_then(Action::parse) else {
        return Ok(Some(t(lang, "err.unknown_button", &[])));
    };
    let Some(message) = &q.message else {
        return stale();
    };
    let (chat_id, msg_id) = (message.chat().id.0, message.id().0);
    let (db_user, _) = known_user(app, &q.from, lang).await?;
    let who = Requester {
        chat_id,
        tg_user: q.from.id.0 as i64,
        user_id: db_user.id,
        lang,
        reply_to: None,
    };
    let placed = match action {
        Action::Persona(id) => {
            let persona = match app.store.persona(id).await {
                Ok(p) => p,
                Err(genq_store::StoreError::UnknownPersona(_)) => return stale(),
                Err(e) => return Err(e.into()),
            };
            app.store.new_dialog(who.user_id, persona.id).await?;
            app.states.clear(chat_id).await?;
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
                    &[("price", &offer.price), ("credits", &db_user.credits)],
                ));
            }
            say(&app.bot, chat_id, &text, None).await?;
            return Ok(None);
        }
        Action::Picture(dialog_id) => {
            let Some(order) = picture_order(app, &who, dialog_id, msg_id).await? else {
                return stale();
            };
            app.place(&who, vec![order]).await?
        }
        Action::Upscale { token, factor } => {
            let (Some(stash), Some(offer)) = (
                own_stash::<PhotoStash>(app, &token, who.tg_user, |s| s.owner).await?,
                app.offers.upscale.clone(),
            ) else {
                return stale();
            };
            let order = Order {
                kind: Kind::Photo,
                offer,
                payload: to_json(&UpscaleRequest {
                    image: stash.image,
                    factor,
                })?,
                idem: format!("up{factor}:{chat_id}:{msg_id}"),
                dialog_id: None,
                caption: None,
                video_of: None,
            };
            app.place(&who, vec![order]).await?
        }
        Action::FaceSwap { token } => {
            let Some(stash) =
                own_stash::<PhotoStash>(app, &token, who.tg_user, |s| s.owner).await?
            else {
                return stale();
            };
            app.states
                .set(
                    chat_id,
                    &ChatState::AwaitFace {
                        target: stash.image,
                    },
                )
                .await?;
            say(&app.bot, chat_id, &t(lang, "photo.face_prompt", &[]), None).await?;
            return Ok(None);
        }
        Action::Animate { token } => {
            if own_stash::<PhotoStash>(app, &token, who.tg_user, |s| s.owner)
                .await?
                .is_none()
            {
                return stale();
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
                        token: token.clone(),
                        style,
                    },
                )
            })
            .collect();
            let text = t(lang, "animate.template", &[]);
            say(&app.bot, chat_id, &text, Some(keyboard(vec![row(buttons)]))).await?;
            return Ok(None);
        }
        Action::Style { token, style } => {
            let Some(stash) =
                own_stash::<PhotoStash>(app, &token, who.tg_user, |s| s.owner).await?
            else {
                return stale();
            };
            let template = match style {
                VideoStyle::Ugc => Template::Ugc,
                VideoStyle::Ad => Template::Ad,
                VideoStyle::Own => {
                    app.states
                        .set(chat_id, &ChatState::AwaitVideoPrompt { image: stash.image })
                        .await?;
                    say(&app.bot, chat_id, &t(lang, "animate.own_prompt", &[]), None).await?;
                    return Ok(None);
                }
            };
            let video = VideoStash {
                image: stash.image,
                template,
                prompt: template_prompt(template).to_owned(),
                owner: who.tg_user,
            };
            video_count_menu(app, &who, &video).await?;
            return Ok(None);
        }
        Action::Count { token, count } => {
            let (Some(stash), Some(offer)) = (
                own_stash::<VideoStash>(app, &token, who.tg_user, |s| s.owner).await?,
                app.offers.video.clone(),
            ) else {
                return stale();
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
                    // one order per menu, whichever count is tapped (twice)
                    idem: format!("vid:{chat_id}:{msg_id}:{n}"),
                    dialog_id: None,
                    caption: None,
                    video_of: Some((n, count)),
                });
            }
            app.place(&who, orders).await?
        }
        Action::CancelJob(job_id) => return cancel_one(app, &who, &job_id).await,
    };
    Ok(match placed {
        Placed::Duplicate => Some(t(lang, "err.already_taken", &[])),
        Placed::Created(_) | Placed::Refused => None,
    })
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

/// GenerateImagePrompt for the scene of one of the user's dialogs.
async fn picture_order(
    app: &BotApp,
    who: &Requester,
    dialog_id: i64,
    msg_id: i32,
) -> Result<Option<Order>, BotError> {
    let Some(offer) = app.offers.picture.clone() else {
        return Ok(None);
    };
    let dialogs = app.store.dialogs(who.user_id).await?;
    let Some(dialog) = dialogs.into_iter().find(|d| d.id == dialog_id) else {
        return Ok(None);
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
        return Ok(None);
    }
    let payload = ImagePromptRequest {
        persona_look: persona.fixed_look,
        messages,
        width: 1024,
        height: 1024,
    };
    Ok(Some(Order {
        kind: Kind::ImagePrompt,
        offer,
        payload: to_json(&payload)?,
        idem: format!("pic:{}:{msg_id}", who.chat_id),
        dialog_id: Some(dialog.id),
        caption: None,
        video_of: None,
    }))
}

/// The Cancel button of a status message: a finished or cancelled job's button
/// answers politely and does nothing.
async fn cancel_one(
    app: &BotApp,
    who: &Requester,
    job_id: &str,
) -> Result<Option<String>, BotError> {
    let stale = Ok(Some(t(who.lang, "err.stale_button", &[])));
    let Some(tracked) = app.tracker.get(job_id).await? else {
        return stale;
    };
    if tracked.tg_user != who.tg_user {
        return stale;
    }
    match app.queue.cancel(&tracked.queue, job_id).await? {
        genq_redis::CancelOutcome::Cancelled | genq_redis::CancelOutcome::Signalled => {
            Ok(Some(t(who.lang, "status.cancelling", &[])))
        }
        _ => stale,
    }
}
