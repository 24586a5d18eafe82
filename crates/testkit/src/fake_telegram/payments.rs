//! Telegram Stars payments: `sendInvoice` (currency `XTR`, no provider token, one
//! price), the user paying (a `pre_checkout_query` the bot must answer with
//! `answerPreCheckoutQuery` within 10 s; then a message with `successful_payment`),
//! `refundStarPayment`, and the `refunded_payment` message.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{
    FakeTelegram, Shared,
    params::Params,
    records::{Invoice, PreCheckoutAnswer, SentKind, StarRefund},
    reply::TgError,
    sent::{Draft, record_sent},
};

/// Payments the fake remembers.
#[derive(Default)]
pub(crate) struct PaymentsState {
    invoices: Vec<Invoice>,
    /// Pre-checkout queries sent to the bot and not answered yet, with when.
    pending: std::collections::HashMap<String, Instant>,
    answers: Vec<PreCheckoutAnswer>,
    next_query: u64,
    next_charge: u64,
    /// Charge id → (user, refunded).
    charges: std::collections::HashMap<String, (i64, bool)>,
    refunds: Vec<StarRefund>,
}

fn chars_within(text: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&text.chars().count())
}

/// `sendInvoice`.
pub(crate) fn send_invoice(shared: &Shared, params: &Params) -> Result<Value, TgError> {
    let chat_id = params.chat_id()?;
    let title = params.str("title").unwrap_or_default();
    let description = params.str("description").unwrap_or_default();
    let payload = params.str("payload").unwrap_or_default();
    let currency = params.str("currency").unwrap_or_default();
    if !chars_within(&title, 1, 32) {
        return Err(TgError::bad_request("INVOICE_TITLE_INVALID"));
    }
    if !chars_within(&description, 1, 255) {
        return Err(TgError::bad_request("INVOICE_DESCRIPTION_INVALID"));
    }
    if payload.is_empty() || payload.len() > 128 {
        return Err(TgError::bad_request("INVOICE_PAYLOAD_INVALID"));
    }
    if currency == "XTR" && params.str("provider_token").is_some_and(|t| !t.is_empty()) {
        return Err(TgError::bad_request(
            "provider_token must be empty for payments in Telegram Stars",
        ));
    }
    let prices = params.json("prices")?.unwrap_or(Value::Null);
    let amounts: Vec<i64> = prices
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.get("amount").and_then(Value::as_i64))
                .collect()
        })
        .unwrap_or_default();
    if amounts.is_empty() || amounts.iter().any(|a| *a <= 0) {
        return Err(TgError::bad_request("CURRENCY_TOTAL_AMOUNT_INVALID"));
    }
    if currency == "XTR" && amounts.len() != 1 {
        return Err(TgError::bad_request(
            "payments in Telegram Stars take exactly one price",
        ));
    }
    let total_amount: i64 = amounts.iter().sum();
    let draft = Draft::new(SentKind::Invoice, Some(title.clone()), params)?;
    let mut object = record_sent(shared, chat_id, draft);
    let message_id = object
        .get("message_id")
        .and_then(Value::as_i64)
        .and_then(|id| i32::try_from(id).ok())
        .unwrap_or_default();
    let invoice = json!({
        "title": title,
        "description": description,
        "start_parameter": "",
        "currency": currency,
        "total_amount": total_amount,
    });
    object["invoice"] = invoice;
    let mut state = shared.state();
    if let Some(entry) = state.chat(chat_id).bot_message(message_id) {
        entry.object = object.clone();
    }
    state.payments.invoices.push(Invoice {
        chat_id,
        message_id,
        title,
        description,
        payload,
        currency,
        total_amount,
    });
    Ok(object)
}

/// `answerPreCheckoutQuery`: once per query; `error_message` required when not ok.
pub(crate) fn answer_pre_checkout_query(
    shared: &Shared,
    params: &Params,
) -> Result<Value, TgError> {
    let id = params.str("pre_checkout_query_id").unwrap_or_default();
    let ok = params.flag("ok");
    let error_message = params.str("error_message");
    if !ok && error_message.as_deref().is_none_or(str::is_empty) {
        return Err(TgError::bad_request(
            "error_message is required when ok is false",
        ));
    }
    let mut state = shared.state();
    let Some(sent) = state.payments.pending.remove(&id) else {
        return Err(TgError::bad_request("QUERY_ID_INVALID"));
    };
    state.payments.answers.push(PreCheckoutAnswer {
        pre_checkout_query_id: id,
        ok,
        error_message,
        after: sent.elapsed(),
    });
    Ok(json!(true))
}

/// `refundStarPayment`: a known charge of that user, refunded once.
pub(crate) fn refund_star_payment(shared: &Shared, params: &Params) -> Result<Value, TgError> {
    let user_id = params.i64("user_id").unwrap_or_default();
    let charge = params.str("telegram_payment_charge_id").unwrap_or_default();
    let mut state = shared.state();
    match state.payments.charges.get_mut(&charge) {
        Some((owner, _)) if *owner != user_id => Err(TgError::bad_request("CHARGE_NOT_FOUND")),
        Some((_, true)) => Err(TgError::bad_request("CHARGE_ALREADY_REFUNDED")),
        Some((_, refunded)) => {
            *refunded = true;
            state.payments.refunds.push(StarRefund {
                user_id,
                telegram_payment_charge_id: charge,
            });
            Ok(json!(true))
        }
        None => Err(TgError::bad_request("CHARGE_NOT_FOUND")),
    }
}

impl FakeTelegram {
    /// Every invoice the bot sent, oldest first.
    pub fn invoices(&self) -> Vec<Invoice> {
        self.shared.state().payments.invoices.clone()
    }

    /// User `user_id` taps "Pay" under the invoice `message_id` in `chat_id`: the bot
    /// gets a `pre_checkout_query` with the invoice's payload and total (a `total`
    /// given overrides it, as a stale client might). The query's id.
    ///
    /// # Panics
    /// When the bot sent no such invoice (a test's mistake).
    pub fn user_pays(&self, chat_id: i64, user_id: i64, message_id: i32) -> String {
        let invoice = self
            .invoices()
            .into_iter()
            .find(|i| i.chat_id == chat_id && i.message_id == message_id)
            .expect("the bot sent that invoice");
        let id = {
            let mut state = self.shared.state();
            state.payments.next_query += 1;
            let id = format!("{}", 7_000_000_000_000_u64 + state.payments.next_query);
            state.payments.pending.insert(id.clone(), Instant::now());
            id
        };
        self.shared.push_update(json!({
            "pre_checkout_query": {
                "id": id,
                "from": self.shared.user_object(user_id),
                "currency": invoice.currency,
                "total_amount": invoice.total_amount,
                "invoice_payload": invoice.payload,
            }
        }));
        id
    }

    /// Every `answerPreCheckoutQuery`, oldest first.
    pub fn pre_checkout_answers(&self) -> Vec<PreCheckoutAnswer> {
        self.shared.state().payments.answers.clone()
    }

    /// The payment for invoice `message_id` went through: the bot gets the
    /// `successful_payment` service message. Its `telegram_payment_charge_id`.
    ///
    /// # Panics
    /// When the bot sent no such invoice (a test's mistake).
    pub fn payment_succeeds(&self, chat_id: i64, user_id: i64, message_id: i32) -> String {
        let charge = {
            let mut state = self.shared.state();
            state.payments.next_charge += 1;
            let charge = format!("stxFAKE{:08}", state.payments.next_charge);
            state
                .payments
                .charges
                .insert(charge.clone(), (user_id, false));
            charge
        };
        self.payment_repeated(chat_id, user_id, message_id, &charge);
        charge
    }

    /// The same `successful_payment` (charge id `charge`) reaches the bot again in a
    /// message of its own, as after a client retry or a second replica's view; the
    /// update's id.
    ///
    /// # Panics
    /// When the bot sent no such invoice (a test's mistake).
    pub fn payment_repeated(
        &self,
        chat_id: i64,
        user_id: i64,
        message_id: i32,
        charge: &str,
    ) -> u32 {
        let invoice = self
            .invoices()
            .into_iter()
            .find(|i| i.chat_id == chat_id && i.message_id == message_id)
            .expect("the bot sent that invoice");
        self.shared.user_message(
            chat_id,
            user_id,
            json!({
                "successful_payment": {
                    "currency": invoice.currency,
                    "total_amount": invoice.total_amount,
                    "invoice_payload": invoice.payload,
                    "telegram_payment_charge_id": charge,
                    "provider_payment_charge_id": "",
                }
            }),
        )
    }

    /// Telegram tells the bot a payment was refunded (`refunded_payment`).
    pub fn payment_refunded(&self, chat_id: i64, user_id: i64, charge: &str, stars: i64) -> u32 {
        self.shared.user_message(
            chat_id,
            user_id,
            json!({
                "refunded_payment": {
                    "currency": "XTR",
                    "total_amount": stars,
                    "invoice_payload": "refunded",
                    "telegram_payment_charge_id": charge,
                }
            }),
        )
    }

    /// Every `refundStarPayment` carried out, oldest first.
    pub fn star_refunds(&self) -> Vec<StarRefund> {
        self.shared.state().payments.refunds.clone()
    }

    /// How long ago the oldest unanswered pre-checkout query was sent, if any.
    pub fn oldest_unanswered_pre_checkout(&self) -> Option<Duration> {
        self.shared
            .state()
            .payments
            .pending
            .values()
            .map(Instant::elapsed)
            .max()
    }
}
