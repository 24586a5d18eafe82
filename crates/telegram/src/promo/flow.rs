//! Ordering a promo video: `/promo` (or its button under `/start` and `/help`), the
//! brief as a text or a voice message, the brief shown back with the price and the
//! balance under Start / Cancel, and Start placing the order: one charge of the
//! `promo` pipeline under the confirmation message's idempotency key.

use serde::{Deserialize, Serialize};

use crate::{
    BotError,
    app::BotApp,
    conversation::{
        callbacks::Action,
        chat_state::ChatState,
        keyboards::{keyboard, row},
        requester::Requester,
    },
    delivery::tracking::Kind,
    i18n::t,
    orders::place::{Order, Placed},
    transport::send::trim_chars,
};

/// The shortest brief worth a script.
pub const BRIEF_MIN_CHARS: usize = 10;
/// The longest brief (it goes into the script's prompt).
pub const BRIEF_MAX_CHARS: usize = 2000;
/// How much of the brief the confirmation quotes.
const BRIEF_QUOTE_CHARS: usize = 1500;

/// A brief waiting for Start, behind the confirmation's buttons.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BriefStash {
    pub(crate) brief: String,
    pub(crate) owner: i64,
}

/// `/promo`: asks for the brief (the next text or voice message is it).
pub(crate) async fn ask_brief(app: &BotApp, who: &Requester) -> Result<(), BotError> {
    let Some(promo) = &app.offers.promo else {
        app.say_to(who, &t(who.lang, "promo.not_offered", &[]), None)
            .await?;
        return Ok(());
    };
    app.states
        .set(who.chat_id, &ChatState::AwaitPromoBrief)
        .await?;
    let text = t(
        who.lang,
        "promo.ask_brief",
        &[("price", &promo.offer.price)],
    );
    app.say_to(who, &text, None).await?;
    Ok(())
}

/// The brief arrived (typed, or transcribed from a voice message): shown back with
/// the price and the balance, under Start / Cancel.
pub(crate) async fn confirm(app: &BotApp, who: &Requester, brief: &str) -> Result<(), BotError> {
    let Some(promo) = &app.offers.promo else {
        app.say_to(who, &t(who.lang, "promo.not_offered", &[]), None)
            .await?;
        return Ok(());
    };
    let brief = brief.trim();
    let chars = brief.chars().count();
    if chars < BRIEF_MIN_CHARS {
        let text = t(
            who.lang,
            "promo.brief_too_short",
            &[("min", &BRIEF_MIN_CHARS)],
        );
        app.say_to(who, &text, None).await?;
        return Ok(());
    }
    if chars > BRIEF_MAX_CHARS {
        let text = t(
            who.lang,
            "promo.brief_too_long",
            &[("len", &chars), ("max", &BRIEF_MAX_CHARS)],
        );
        app.say_to(who, &text, None).await?;
        return Ok(());
    }
    app.states.clear(who.chat_id).await?;
    let token = app
        .states
        .stash(&BriefStash {
            brief: brief.to_owned(),
            owner: who.tg_user,
        })
        .await?;
    let balance = app.store.balance(who.user_id).await?;
    let price = promo.offer.price;
    let text = t(
        who.lang,
        "promo.confirm",
        &[
            ("brief", &trim_chars(brief, BRIEF_QUOTE_CHARS)),
            ("price", &price),
            ("balance", &balance),
        ],
    );
    let buttons = keyboard(vec![row(vec![
        (
            t(who.lang, "promo.button.start", &[("price", &price)]),
            Action::PromoStart(token.clone()),
        ),
        (
            t(who.lang, "promo.button.drop", &[]),
            Action::PromoDrop(token),
        ),
    ])]);
    app.say_to(who, &text, Some(buttons)).await?;
    Ok(())
}

/// Start under the confirmation `msg_id`: the promo video is charged once (a
/// double tap finds the order by its idempotency key) and tracked like any job.
pub(crate) async fn start(
    app: &BotApp,
    who: &Requester,
    token: &str,
    msg_id: i32,
) -> Result<Option<String>, BotError> {
    let Some(promo) = &app.offers.promo else {
        return Ok(Some(t(who.lang, "promo.not_offered", &[])));
    };
    let Some(stash) = app.states.unstash::<BriefStash>(token).await? else {
        return Ok(Some(t(who.lang, "promo.expired", &[])));
    };
    if stash.owner != who.tg_user {
        return Ok(Some(t(who.lang, "err.stale_button", &[])));
    }
    let payload = serde_json::to_value(genq_catalog::PromoInput {
        brief: stash.brief.clone(),
        lang: who.lang.code().to_owned(),
    })
    .map_err(|e| BotError::Encode(e.to_string()))?;
    let order = Order {
        kind: Kind::Promo,
        offer: promo.offer.clone(),
        payload,
        idem: format!("promo:{}:{msg_id}", who.chat_id),
        dialog_id: None,
        caption: None,
        video_of: None,
    };
    let placed = app.place(who, vec![order]).await?;
    if matches!(placed, Placed::Created(_)) {
        // the confirmation's buttons have served: Cancel now lives under the status
        crate::promo::gates::clear_buttons(app, who.chat_id, msg_id).await;
    }
    Ok(match placed {
        Placed::Duplicate { active: true } => Some(t(who.lang, "err.already_taken", &[])),
        Placed::Duplicate { active: false } => Some(t(who.lang, "promo.already_ended", &[])),
        Placed::Created(_) | Placed::Refused => None,
    })
}

/// Cancel under the confirmation: the brief is taken away (a later Start finds
/// nothing), unless Start already placed the order.
pub(crate) async fn drop(
    app: &BotApp,
    who: &Requester,
    token: &str,
    msg_id: i32,
) -> Result<Option<String>, BotError> {
    let idem = format!("promo:{}:{msg_id}", who.chat_id);
    if app
        .store
        .job_by_idempotency_key(who.user_id, &idem)
        .await?
        .is_some()
    {
        return Ok(Some(t(who.lang, "promo.already_started", &[])));
    }
    let Some(stash) = app.states.take::<BriefStash>(token).await? else {
        return Ok(Some(t(who.lang, "promo.expired", &[])));
    };
    if stash.owner != who.tg_user {
        return Ok(Some(t(who.lang, "err.stale_button", &[])));
    }
    crate::promo::gates::clear_buttons(app, who.chat_id, msg_id).await;
    app.say_to(who, &t(who.lang, "promo.dropped", &[]), None)
        .await?;
    Ok(None)
}
