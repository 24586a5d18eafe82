//! Credits bought with Telegram Stars (currency `XTR`, no payment provider token):
//!
//! 1. `/buy` (or a "Buy credits" button) shows the packages of the configuration;
//! 2. a package's button sends its invoice; the payload names the package, its
//!    credits and price, and the user (`genq:<package>:<credits>:<stars>:<user>`);
//! 3. the `pre_checkout_query` is answered at once in its update handler (Telegram
//!    cancels after 10 s): yes only if the package is still offered at that price in
//!    Stars, the payer is the invoice's user and is not blocked;
//! 4. the `successful_payment` message grants the credits **once per
//!    `telegram_payment_charge_id`** (the store's unique payment row; the intake
//!    already handles each update once, this covers a payment seen in two updates)
//!    and thanks the user with the new balance;
//! 5. refunds: an operator requests one (admin API, CLI, `/admin refund`), which
//!    takes the credits back at once; [`run_refunds`] (one replica, the status lease)
//!    asks Telegram (`refundStarPayment`) and marks it done, or failed with the
//!    credits given back. Telegram's `refunded_payment` is recorded once.

use std::{sync::Arc, time::Duration};

use genq_config::CreditPackage;
use teloxide::{
    ApiError, RequestError,
    payloads::AnswerPreCheckoutQuerySetters,
    prelude::{Requester as _, *},
    types::{
        InlineKeyboardMarkup, LabeledPrice, PreCheckoutQuery, RefundedPayment, SuccessfulPayment,
        TelegramTransactionId, UserId,
    },
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    BotError,
    app::BotApp,
    conversation::{
        callbacks::Action,
        keyboards::{keyboard, row},
        requester::Requester,
    },
    i18n::{Lang, t},
    transport::send::with_retry,
};

/// The currency of Telegram Stars.
pub const STARS: &str = "XTR";

/// What an invoice's payload says (set by this bot, returned by Telegram).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoicePayload {
    pub package: String,
    pub credits: i64,
    pub stars: u32,
    pub tg_user: i64,
}

impl InvoicePayload {
    fn new(package: &CreditPackage, tg_user: i64) -> Self {
        Self {
            package: package.id.clone(),
            credits: package.credits,
            stars: package.stars,
            tg_user,
        }
    }

    pub fn encode(&self) -> String {
        format!(
            "genq:{}:{}:{}:{}",
            self.package, self.credits, self.stars, self.tg_user
        )
    }

    pub fn parse(raw: &str) -> Option<Self> {
        let mut parts = raw.split(':');
        if parts.next()? != "genq" {
            return None;
        }
        let payload = Self {
            package: parts.next()?.to_owned(),
            credits: parts.next()?.parse().ok()?,
            stars: parts.next()?.parse().ok()?,
            tg_user: parts.next()?.parse().ok()?,
        };
        (parts.next().is_none() && payload.credits > 0 && payload.stars > 0).then_some(payload)
    }
}

fn label(package: &CreditPackage, lang: Lang) -> &str {
    match lang {
        Lang::Ru => &package.label_ru,
        Lang::En => &package.label_en,
    }
}

/// The "Buy credits" button (under refusals for lack of credits, and `/balance`).
pub fn buy_button(lang: Lang) -> InlineKeyboardMarkup {
    keyboard(vec![row(vec![(
        t(lang, "buy.button", &[]),
        Action::BuyMenu,
    )])])
}

/// `/buy`: the packages, one button each.
pub(crate) async fn show_packages(app: &BotApp, who: &Requester) -> Result<(), BotError> {
    let lang = who.lang;
    if app.cfg.packages.is_empty() {
        app.say_to(who, &t(lang, "buy.unavailable", &[]), None)
            .await?;
        return Ok(());
    }
    let balance = app.store.balance(who.user_id).await?;
    let rows = app
        .cfg
        .packages
        .iter()
        .map(|p| {
            row(vec![(
                t(
                    lang,
                    "buy.package",
                    &[("label", &label(p, lang)), ("stars", &p.stars)],
                ),
                Action::Buy(p.id.clone()),
            )])
        })
        .collect();
    let text = t(lang, "buy.choose", &[("balance", &balance)]);
    app.say_to(who, &text, Some(keyboard(rows))).await?;
    Ok(())
}

/// A package's button: its invoice in Stars. The answer to the tap, if any.
pub(crate) async fn send_invoice(
    app: &BotApp,
    who: &Requester,
    package_id: &str,
) -> Result<Option<String>, BotError> {
    let lang = who.lang;
    let Some(package) = app.cfg.packages.iter().find(|p| p.id == package_id) else {
        return Ok(Some(t(lang, "buy.package_gone", &[])));
    };
    if let Some(tap) = who.tap.as_ref().filter(|tap| tap.take()) {
        app.send_tap_answer(tap, None).await;
    }
    let payload = InvoicePayload::new(package, who.tg_user).encode();
    let title = label(package, lang).to_owned();
    let description = t(lang, "buy.invoice", &[("credits", &package.credits)]);
    let price = LabeledPrice::new(title.clone(), package.stars);
    let sent = with_retry(|| {
        app.bot
            .send_invoice(
                ChatId(who.chat_id),
                title.clone(),
                description.clone(),
                payload.clone(),
                STARS,
                vec![price.clone()],
            )
            .into_future()
    })
    .await;
    if let Err(e) = sent {
        app.metrics
            .payment_errors
            .with_label_values(&["invoice"])
            .inc();
        return Err(e.into());
    }
    app.metrics
        .invoices
        .with_label_values(&[package.id.as_str()])
        .inc();
    Ok(None)
}

/// Why a pre-checkout query is refused (the catalog key of what Telegram shows).
fn refuse_reason(app: &BotApp, q: &PreCheckoutQuery, blocked: bool) -> Option<&'static str> {
    let Some(payload) = InvoicePayload::parse(&q.invoice_payload) else {
        return Some("buy.refused_other");
    };
    if blocked {
        return Some("buy.refused_blocked");
    }
    if payload.tg_user != q.from.id.0 as i64 {
        return Some("buy.refused_other");
    }
    let offered = app.cfg.packages.iter().find(|p| p.id == payload.package);
    match offered {
        Some(p)
            if p.stars == payload.stars
                && p.credits == payload.credits
                && q.currency == STARS
                && q.total_amount == payload.stars =>
        {
            None
        }
        _ => Some("buy.refused_package"),
    }
}

/// The pre-checkout query, answered at once (Telegram allows 10 s): its own lane
/// in the intake, no queue, one database read.
pub(crate) async fn on_pre_checkout(app: Arc<BotApp>, q: PreCheckoutQuery) -> Result<(), BotError> {
    app.metrics
        .updates
        .with_label_values(&["pre_checkout"])
        .inc();
    let lang = Lang::from_code(q.from.language_code.as_deref());
    let blocked = match app.store.is_blocked(q.from.id.0 as i64).await {
        Ok(b) => b,
        Err(e) => {
            warn!(error = %e, "could not check the payer; refusing the purchase");
            app.metrics
                .payment_errors
                .with_label_values(&["pre_checkout"])
                .inc();
            true
        }
    };
    let refusal = refuse_reason(&app, &q, blocked);
    let answered = with_retry(|| {
        let mut req = app
            .bot
            .answer_pre_checkout_query(q.id.clone(), refusal.is_none());
        if let Some(key) = refusal {
            req = req.error_message(t(lang, key, &[]));
        }
        req.into_future()
    })
    .await;
    let outcome = refusal.map_or("accepted", |_| "refused");
    app.metrics
        .pre_checkouts
        .with_label_values(&[outcome])
        .inc();
    if let Err(e) = answered {
        app.metrics
            .payment_errors
            .with_label_values(&["pre_checkout"])
            .inc();
        warn!(error = %e, "pre-checkout query not answered");
        return Err(e.into());
    }
    info!(outcome, payload = %q.invoice_payload, "pre-checkout query answered");
    Ok(())
}

/// `successful_payment`: the credits, granted once per Telegram charge id; thanks.
pub(crate) async fn on_successful_payment(
    app: &BotApp,
    who: &Requester,
    paid: &SuccessfulPayment,
) -> Result<(), BotError> {
    let charge = paid.telegram_payment_charge_id.0.clone();
    let Some(payload) = InvoicePayload::parse(&paid.invoice_payload) else {
        // paid for something this bot did not sell: keep the proof, tell an operator
        app.metrics
            .payment_errors
            .with_label_values(&["unknown_payload"])
            .inc();
        warn!(charge = %charge, payload = %paid.invoice_payload, "payment with an unknown payload");
        return Ok(());
    };
    let purchase = genq_store::NewPurchase {
        telegram_id: who.tg_user,
        telegram_payment_charge_id: charge.clone(),
        provider_payment_charge_id: Some(paid.provider_payment_charge_id.clone())
            .filter(|s| !s.is_empty()),
        package: payload.package.clone(),
        currency: paid.currency.clone(),
        stars: i64::from(paid.total_amount),
        credits: payload.credits,
    };
    let recorded = match app.store.record_purchase(&purchase).await {
        Ok(r) => r,
        Err(e) => {
            app.metrics
                .payment_errors
                .with_label_values(&["grant"])
                .inc();
            return Err(e.into());
        }
    };
    if !recorded.granted {
        info!(charge = %charge, "payment seen before: nothing granted again");
        return Ok(());
    }
    info!(charge = %charge, package = %payload.package, credits = payload.credits, "credits bought");
    let package = payload.package.as_str();
    app.metrics.purchases.with_label_values(&[package]).inc();
    app.metrics
        .purchased_stars
        .with_label_values(&[package])
        .inc_by(u64::from(paid.total_amount));
    let text = t(
        who.lang,
        "buy.thanks",
        &[
            ("credits", &payload.credits),
            ("balance", &recorded.balance),
        ],
    );
    app.say_to(who, &text, None).await?;
    Ok(())
}

/// Telegram's `refunded_payment`: recorded once.
pub(crate) async fn on_refunded_payment(
    app: &BotApp,
    refunded: &RefundedPayment,
) -> Result<(), BotError> {
    let charge = &refunded.telegram_payment_charge_id.0;
    if app.store.record_telegram_refund(charge).await? {
        info!(charge = %charge, "Telegram reported a refunded payment");
    }
    Ok(())
}

/// How often requested refunds are looked for.
const REFUNDS_EVERY: Duration = Duration::from_secs(2);

/// Carries out requested refunds until `stop` (on the replica holding the status
/// lease): `refundStarPayment`, then done; Telegram saying it was refunded already
/// counts as done; another refusal fails the refund (the credits go back).
pub async fn run_refunds(app: Arc<BotApp>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(REFUNDS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match app
            .tracker
            .status_lease(&app.instance, REFUNDS_EVERY * 5)
            .await
        {
            Ok(true) => {
                if let Err(e) = refund_requested(&app).await {
                    warn!(error = %e, "refunds not carried out this round");
                }
            }
            Ok(false) => {}
            Err(e) => warn!(error = %e, "status lease unavailable"),
        }
    }
}

async fn refund_requested(app: &BotApp) -> Result<(), BotError> {
    for payment in app.store.requested_refunds(20).await? {
        let user = UserId(u64::try_from(payment.telegram_id).unwrap_or_default());
        let charge = TelegramTransactionId(payment.telegram_payment_charge_id.clone());
        let outcome = match app.bot.refund_star_payment(user, charge).await {
            Ok(_) => "done",
            Err(RequestError::Api(ApiError::Unknown(e))) if e.contains("ALREADY_REFUNDED") => {
                "done"
            }
            Err(
                e @ (RequestError::Network(_) | RequestError::RetryAfter(_) | RequestError::Io(_)),
            ) => {
                warn!(payment = payment.id, error = %e, "refund not reached Telegram; will try again");
                continue;
            }
            Err(e) => {
                warn!(payment = payment.id, error = %e, "Telegram refused the refund; credits given back");
                app.store
                    .fail_payment_refund(payment.id, &e.to_string())
                    .await?;
                app.metrics.refunds.with_label_values(&["failed"]).inc();
                continue;
            }
        };
        if app.store.complete_payment_refund(payment.id).await? {
            info!(payment = payment.id, "payment refunded");
            app.metrics.refunds.with_label_values(&[outcome]).inc();
        }
    }
    Ok(())
}

/// `/admin refund <payment id> <reason…>`: requests the refund (credits taken back
/// now; the Stars by [`run_refunds`]); what to answer.
pub(crate) async fn admin_refund(app: &BotApp, who: &Requester, args: &str) -> String {
    let lang = who.lang;
    let (id, reason) = args
        .trim()
        .split_once(char::is_whitespace)
        .unwrap_or((args.trim(), ""));
    let (Ok(id), false) = (id.parse::<i64>(), reason.trim().is_empty()) else {
        return t(lang, "buy.admin_refund_usage", &[]);
    };
    let actor = format!("bot-admin:{}", who.tg_user);
    match app
        .store
        .request_payment_refund(id, &actor, reason.trim())
        .await
    {
        Ok(r) => t(
            lang,
            "buy.admin_refund_requested",
            &[
                ("id", &id),
                ("credits", &r.payment.credits),
                ("balance", &r.balance),
            ],
        ),
        Err(e) => t(lang, "buy.admin_refund_refused", &[("reason", &e)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invoice_payload_round_trips_and_strangers_are_refused() {
        let p = InvoicePayload {
            package: "m".to_owned(),
            credits: 300,
            stars: 125,
            tg_user: 42,
        };
        assert_eq!(InvoicePayload::parse(&p.encode()), Some(p.clone()));
        assert!(p.encode().len() <= 128);
        for bad in [
            "",
            "genq",
            "genq:m:300:125",
            "x:m:300:125:42",
            "genq:m:0:125:42",
            "genq:m:300:125:42:9",
        ] {
            assert_eq!(InvoicePayload::parse(bad), None, "{bad}");
        }
    }
}
