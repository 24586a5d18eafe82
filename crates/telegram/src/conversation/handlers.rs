//! The conversations: commands, text, photos and voice (inline buttons are in
//! `crate::conversation::buttons`). Handlers validate, charge and enqueue (see
//! [`crate::orders`]); workers do the work. Every user-visible text comes from the
//! catalogs ([`crate::i18n`]).

use std::sync::Arc;

use genq_job_face_swap::FaceSwapRequest;
use genq_job_generate_reply::ReplyRequest;
use genq_job_generate_video::Template;
use genq_providers::ChatMessage;
use genq_store::User as StoreUser;
use serde::Serialize;
use teloxide::{
    net::Download,
    prelude::{Requester as _, *},
    types::{FileMeta, User},
};
use tracing::warn;

use crate::{
    BotError,
    app::BotApp,
    conversation::{
        callbacks::{Action, VIDEO_COUNTS},
        chat_state::{ChatState, PhotoStash, VideoStash},
        keyboards::{keyboard, row, upscale_row},
        requester::Requester,
    },
    delivery::tracking::Kind,
    i18n::{Lang, t},
    orders::{cancel::cancel_job, place::Order},
    transport::send::{say, trim_chars, typing},
};

/// The largest file the Bot API lets a bot download (voice, photos).
pub const DOWNLOAD_LIMIT: u64 = 20 * 1024 * 1024;
/// The longest prompt of an own-prompt video.
const VIDEO_PROMPT_LIMIT: usize = 2000;

pub(crate) fn language(user: &User) -> Lang {
    Lang::from_code(user.language_code.as_deref())
}

pub(super) async fn on_message(app: Arc<BotApp>, msg: Message) -> Result<(), BotError> {
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

pub(crate) async fn known_user(
    app: &BotApp,
    user: &User,
    lang: Lang,
) -> Result<(StoreUser, bool), BotError> {
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
        tap: None,
    };
    let kind = if let Some(paid) = msg.successful_payment() {
        crate::payments::on_successful_payment(app, &who, paid).await?;
        "payment"
    } else if let teloxide::types::MessageKind::RefundedPayment(r) = &msg.kind {
        crate::payments::on_refunded_payment(app, &r.refunded_payment).await?;
        "refunded_payment"
    } else if let Some(text) = msg.text() {
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
    app.say_to(who, &t(who.lang, key, &[]), None).await?;
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
            let text = balance_text(app, who).await?;
            let buy = (!app.cfg.packages.is_empty()).then(|| crate::payments::buy_button(who.lang));
            app.say_to(who, &text, buy).await?;
            Ok(())
        }
        "new" => new_dialog(app, who).await,
        "dialogs" => crate::conversation::dialogs::list(app, who).await,
        "cancel" => cancel_all(app, who).await,
        "admin" => crate::admin::admin(app, who, text).await,
        "buy" => crate::payments::show_packages(app, who).await,
        "promo" => crate::promo::flow::ask_brief(app, who).await,
        _ => help(app, who).await,
    }
}

/// How many ledger entries `/balance` lists.
const BALANCE_HISTORY: i64 = 5;
/// The longest reason `/balance` quotes, in characters.
const BALANCE_REASON_CHARS: usize = 100;

/// `/balance`: the balance, then the last few ledger entries (what, how much, why
/// where an operator said why, when).
async fn balance_text(app: &BotApp, who: &Requester) -> Result<String, BotError> {
    let credits = app.store.balance(who.user_id).await?;
    let mut text = t(who.lang, "balance", &[("credits", &credits)]);
    let entries = app.store.ledger_of(who.user_id, BALANCE_HISTORY).await?;
    if entries.is_empty() {
        return Ok(text);
    }
    text.push_str("\n\n");
    text.push_str(&t(who.lang, "ledger.title", &[]));
    for e in &entries {
        text.push('\n');
        text.push_str(&ledger_line(who.lang, e));
    }
    Ok(text)
}

/// One ledger entry in words: `• 2025-01-31 credits granted: +100 — beta tester`.
fn ledger_line(lang: Lang, e: &genq_store::LedgerEntry) -> String {
    use genq_store::LedgerKind as K;
    let welcome = e.kind == K::Grant && e.reason.as_deref() == Some("welcome");
    let what = match e.kind {
        K::Grant if welcome => "ledger.welcome",
        K::Grant => "ledger.grant",
        K::Charge => "ledger.charge",
        K::Refund => "ledger.refund",
        K::Purchase => "ledger.purchase",
        K::Deduct => "ledger.deduct",
        K::PurchaseRefund => "ledger.purchase_refund",
    };
    let what = t(lang, what, &[]);
    let date = e.created_at.format("%Y-%m-%d").to_string();
    let amount = format!("{:+}", e.amount);
    // a purchase's reason is the bot's own note (package and Stars), not a why
    let reason = match (&e.reason, e.kind) {
        (_, K::Purchase) => None,
        (_, _) if welcome => None,
        (Some(r), _) if !r.trim().is_empty() => Some(trim_chars(r.trim(), BALANCE_REASON_CHARS)),
        _ => None,
    };
    match reason {
        Some(reason) => t(
            lang,
            "ledger.entry_reason",
            &[
                ("date", &date),
                ("what", &what),
                ("amount", &amount),
                ("reason", &reason),
            ],
        ),
        None => t(
            lang,
            "ledger.entry",
            &[("date", &date), ("what", &what), ("amount", &amount)],
        ),
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
    let mut markup = persona_keyboard(app, who.lang).await?;
    if let Some(price) = app.offers.promo_price() {
        markup.inline_keyboard.push(row(vec![(
            t(who.lang, "promo.button.entry", &[("price", &price)]),
            Action::PromoAsk,
        )]));
    }
    app.say_to(who, &text, Some(markup)).await?;
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
    let text = match o.promo_price() {
        Some(price) => format!(
            "{text}\n{}",
            t(who.lang, "promo.help_line", &[("price", &price)])
        ),
        None => text,
    };
    app.say_to(who, &text, None).await?;
    Ok(())
}

async fn new_dialog(app: &BotApp, who: &Requester) -> Result<(), BotError> {
    app.states.clear(who.chat_id).await?;
    let Some(current) = app.store.active_dialog(who.user_id).await? else {
        let markup = persona_keyboard(app, who.lang).await?;
        let text = t(who.lang, "new.no_persona", &[]);
        app.say_to(who, &text, Some(markup)).await?;
        return Ok(());
    };
    let persona = app.store.persona(current.persona_id).await?;
    app.store.new_dialog(who.user_id, persona.id).await?;
    let text = t(who.lang, "new.done", &[("persona", &persona.name)]);
    app.say_to(who, &text, None).await?;
    Ok(())
}

/// Cancels every open job of the user; each is refunded as it ends.
async fn cancel_all(app: &BotApp, who: &Requester) -> Result<(), BotError> {
    app.states.clear(who.chat_id).await?;
    let mut count = 0u32;
    for job in app.store.open_jobs_of_user(who.user_id).await? {
        if cancel_job(app, &job.queue, &job.id).await? {
            count += 1;
        }
    }
    let text = if count == 0 {
        t(who.lang, "cancel.none", &[])
    } else {
        t(who.lang, "cancel.done", &[("count", &count)])
    };
    app.say_to(who, &text, None).await?;
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
                app.say_to(who, &text, None).await?;
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
        Some(ChatState::AwaitPromoBrief) => {
            return crate::promo::flow::confirm(app, who, text).await;
        }
        None => {}
    }
    if chars > app.cfg.max_text_chars {
        let text = t(
            who.lang,
            "err.text_too_long",
            &[("len", &chars), ("max", &app.cfg.max_text_chars)],
        );
        app.say_to(who, &text, None).await?;
        return Ok(());
    }
    reply_order(
        app,
        who,
        text.trim(),
        format!("msg:{}:{msg_id}", who.chat_id),
        false,
    )
    .await
}

/// Text (typed or transcribed) → GenerateReply with the dialog's recent messages.
/// `admitted`: the request was already counted by the rate limit (a voice message,
/// before it was transcribed).
async fn reply_order(
    app: &BotApp,
    who: &Requester,
    text: &str,
    idem: String,
    admitted: bool,
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
        app.say_to(who, &text, Some(markup)).await?;
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
    // the exchange is stored in the dialog when the reply is delivered
    if admitted {
        app.place_admitted(who, vec![order]).await?;
    } else {
        app.place(who, vec![order]).await?;
    }
    Ok(())
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<serde_json::Value, BotError> {
    serde_json::to_value(value).map_err(|e| BotError::Encode(e.to_string()))
}

/// Downloads a user's file (within the Bot API's 20 MB) into the artifact store.
async fn download_to_artifacts(
    app: &BotApp,
    file: &FileMeta,
    ext: &str,
    content_type: &str,
) -> Result<String, BotError> {
    let bytes = download(app, file).await?;
    let stored = app.artifacts.put(bytes, ext, content_type).await?;
    Ok(stored.key)
}

/// A user's file from Telegram (`getFile`, then the download).
async fn download(app: &BotApp, file: &FileMeta) -> Result<Vec<u8>, BotError> {
    let remote = app.bot.get_file(file.id.clone()).await?;
    let mut bytes = Vec::with_capacity(remote.size as usize);
    app.bot.download_file(&remote.path, &mut bytes).await?;
    Ok(bytes)
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
    app.say_to(who, &text, None).await?;
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
        rows.push(upscale_row(lang, up.price, &token));
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
    app.say_to(who, &text, Some(keyboard(rows))).await?;
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
    let promo_brief = matches!(
        app.states.get::<ChatState>(who.chat_id).await?,
        Some(ChatState::AwaitPromoBrief)
    );
    // transcription is a paid provider call: the rate limit comes first
    let job_type = if promo_brief {
        crate::promo::PROMO
    } else {
        "generate_reply"
    };
    if !app.admit(who, job_type).await? {
        return Ok(());
    }
    typing(&app.bot, who.chat_id).await;
    let audio = download(app, file).await?;
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
    if promo_brief {
        return crate::promo::flow::confirm(app, who, &text).await;
    }
    let text = trim_chars(text.trim(), app.cfg.max_text_chars);
    reply_order(
        app,
        who,
        &text,
        format!("voice:{}:{msg_id}", who.chat_id),
        true,
    )
    .await
}

pub(crate) async fn video_count_menu(
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
    app.say_to(who, &text, Some(keyboard(vec![row(buttons)])))
        .await?;
    Ok(())
}
