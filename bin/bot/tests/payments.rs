//! Buying credits with Telegram Stars, end to end against the fake Telegram: /buy,
//! the invoice in XTR, the pre-checkout query answered at once, the credits granted
//! once per payment (also when it reaches two bot replicas or comes twice), a
//! package taken off the offer refused at pre-checkout, and an operator's refund.

mod common;

use std::time::Duration;

use common::{Options, Stack, WAIT, button, buttons, is_text, text};
use genq_testkit::{SentKind, SentMessage, wait_until};

/// The user sends /buy and taps the package whose data is `buy:<id>`; the invoice.
async fn invoice_for(stack: &Stack, chat: i64, package: &str) -> genq_testkit::Invoice {
    let before = stack.sent_count(chat);
    stack.tg.user_sends_command(chat, chat, "/buy");
    let menu = stack
        .wait_sent(chat, before, |m| {
            buttons(m).iter().any(|(_, d)| d.starts_with("buy:"))
        })
        .await;
    assert!(
        menu.text
            .as_deref()
            .is_some_and(|t| is_text(t, "buy.choose")),
        "{menu:?}"
    );
    let data = format!("buy:{package}");
    assert_eq!(button(&menu, &data), data);
    stack
        .tg
        .user_presses_button(chat, chat, menu.message_id, &data);
    wait_until(WAIT, || async {
        stack
            .tg
            .invoices()
            .into_iter()
            .rev()
            .find(|i| i.chat_id == chat)
    })
    .await
    .expect("the bot sent an invoice")
}

/// Waits for the answer to pre-checkout query `id`.
async fn pre_checkout_answer(stack: &Stack, id: &str) -> genq_testkit::PreCheckoutAnswer {
    wait_until(WAIT, || async {
        stack
            .tg
            .pre_checkout_answers()
            .into_iter()
            .find(|a| a.pre_checkout_query_id == id)
    })
    .await
    .expect("the pre-checkout query was answered")
}

fn thanks(m: &SentMessage) -> bool {
    m.kind == SentKind::Text && m.text.as_deref().is_some_and(|t| is_text(t, "buy.thanks"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_grants_its_credits_once_however_often_the_payment_arrives() {
    let mut stack = Stack::start("bot_purchase", Options::default()).await;
    let chat = 5101;
    let invoice = invoice_for(&stack, chat, "m").await;
    assert_eq!(invoice.currency, "XTR");
    assert_eq!(invoice.total_amount, 125);
    assert!(invoice.payload.contains(":m:"), "{}", invoice.payload);
    let user = stack.user(chat).await;

    let query = stack.tg.user_pays(chat, chat, invoice.message_id);
    let answer = pre_checkout_answer(&stack, &query).await;
    assert!(answer.ok, "{answer:?}");
    let before = stack.sent_count(chat);
    let charge = stack.tg.payment_succeeds(chat, chat, invoice.message_id);
    let thanked = stack.wait_sent(chat, before, thanks).await;
    assert_eq!(
        thanked.text,
        Some(text("buy.thanks", &[("credits", &300), ("balance", &400)]))
    );
    stack.wait_balance(user.id, 400).await;

    // the same payment again, and to a second bot replica polling beside the first
    let replica = stack.spawn_bot(&[]).await;
    stack
        .tg
        .payment_repeated(chat, chat, invoice.message_id, &charge);
    stack
        .tg
        .payment_repeated(chat, chat, invoice.message_id, &charge);
    let handled = wait_until(WAIT, || async {
        (stack.tg.pending_updates() == 0).then_some(())
    })
    .await;
    assert!(handled.is_some());
    tokio::time::sleep(Duration::from_secs(3)).await;
    stack.wait_balance(user.id, 400).await;
    assert_eq!(stack.ledger(user.id, "purchase").await, vec![300]);
    let thanks_sent = stack.tg.sent(chat).iter().filter(|m| thanks(m)).count();
    assert_eq!(thanks_sent, 1, "thanked once");
    drop(replica);
    stack.kill_bot();
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_taken_off_the_offer_is_refused_at_pre_checkout() {
    let mut stack = Stack::start("bot_pre_checkout", Options::default()).await;
    let chat = 5201;
    let invoice = invoice_for(&stack, chat, "l").await;
    // the operator takes package "l" off the offer and restarts the bot
    let config = std::fs::read_to_string(&stack.config).expect("config");
    let config = config.replace(
        "[bot]\n",
        "[bot]\npackages = [{ id = \"s\", credits = 100, stars = 50, label_en = \"100 credits\", label_ru = \"100 кредитов\" }]\n",
    );
    std::fs::write(&stack.config, config).expect("config");
    stack.kill_bot();
    stack.start_bot().await;
    let query = stack.tg.user_pays(chat, chat, invoice.message_id);
    let answer = pre_checkout_answer(&stack, &query).await;
    assert!(!answer.ok);
    assert_eq!(answer.error_message, Some(text("buy.refused_package", &[])));
    let user = stack.user(chat).await;
    stack.wait_balance(user.id, 100).await;
    assert!(stack.ledger(user.id, "purchase").await.is_empty());
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_checkout_queries_are_answered_in_time_while_orders_meet_429s() {
    let stack = Stack::start("bot_pre_checkout_load", Options::default()).await;
    let buyers: Vec<i64> = (0..5).map(|i| 5300 + i).collect();
    let mut invoices = Vec::new();
    for &b in &buyers {
        invoices.push(invoice_for(&stack, b, "s").await);
    }
    // 100 users' orders in flight while Telegram refuses a share of the sends, and
    // the buyers' own chats are refused everything
    stack.tg.rate_limit_share(0.3, 5);
    for &b in &buyers {
        stack.tg.rate_limit_chat(b, Duration::from_secs(20), 20);
    }
    let persona = stack.store.personas().await.expect("personas")[0].id;
    let customers: Vec<i64> = (0..100).map(|i| 5400 + i).collect();
    for &u in &customers {
        let (user, _) = stack
            .store
            .welcome_user(u, "en", 100)
            .await
            .expect("a customer");
        stack
            .store
            .new_dialog(user.id, persona)
            .await
            .expect("a dialog");
    }
    for &u in &customers {
        stack.tg.user_sends_text(u, u, "tell me something");
    }
    for &b in &buyers {
        // a message of the buyer's first, whose answer waits on Telegram's 429s
        stack.tg.user_sends_command(b, b, "/balance");
    }
    let queries: Vec<String> = buyers
        .iter()
        .zip(&invoices)
        .map(|(&b, inv)| stack.tg.user_pays(b, b, inv.message_id))
        .collect();
    for q in &queries {
        let answer = pre_checkout_answer(&stack, q).await;
        assert!(answer.ok, "{answer:?}");
        println!("pre-checkout answered after {:?}", answer.after);
        assert!(
            answer.after < Duration::from_secs(10),
            "answered after Telegram's 10 s: {:?}",
            answer.after
        );
    }
    // the orders were real: each was charged
    let charged = wait_until(WAIT, || async {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM jobs WHERE job_type = 'generate_reply'")
                .fetch_one(stack.store.pool())
                .await
                .ok()?;
        (n == 100).then_some(n)
    })
    .await;
    assert_eq!(charged, Some(100), "the 100 orders were placed");
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_refund_returns_the_stars_once_and_takes_the_credits_back_once() {
    let opts = Options {
        admin_ids: vec![5501],
        ..Options::default()
    };
    let stack = Stack::start("bot_payment_refund", opts).await;
    let chat = 5501;
    let invoice = invoice_for(&stack, chat, "s").await;
    let query = stack.tg.user_pays(chat, chat, invoice.message_id);
    assert!(pre_checkout_answer(&stack, &query).await.ok);
    let before = stack.sent_count(chat);
    let charge = stack.tg.payment_succeeds(chat, chat, invoice.message_id);
    stack.wait_sent(chat, before, thanks).await;
    let user = stack.user(chat).await;
    stack.wait_balance(user.id, 200).await;
    let payment = stack
        .store
        .payments_of(user.id, 10)
        .await
        .expect("payments")
        .pop()
        .expect("the payment");

    let before = stack.sent_count(chat);
    stack.tg.user_sends_command(
        chat,
        chat,
        &format!("/admin refund {} tester asked", payment.id),
    );
    let said = stack.next_text(chat, before).await;
    assert!(
        said.text
            .as_deref()
            .is_some_and(|t| is_text(t, "buy.admin_refund_requested")),
        "{said:?}"
    );
    let refunded = wait_until(WAIT, || async {
        let r = stack.tg.star_refunds();
        (!r.is_empty()).then_some(r)
    })
    .await
    .expect("refundStarPayment was called");
    assert_eq!(refunded[0].telegram_payment_charge_id, charge);
    assert_eq!(refunded[0].user_id, chat);
    stack.wait_balance(user.id, 100).await;

    // asked again: refused, nothing moves
    let before = stack.sent_count(chat);
    stack
        .tg
        .user_sends_command(chat, chat, &format!("/admin refund {} again", payment.id));
    let said = stack.next_text(chat, before).await;
    assert!(
        said.text
            .as_deref()
            .is_some_and(|t| is_text(t, "buy.admin_refund_refused")),
        "{said:?}"
    );
    // Telegram's own notice of the refund is recorded (once)
    stack
        .tg
        .payment_refunded(chat, chat, &charge, invoice.total_amount);
    let seen = wait_until(WAIT, || async {
        let p = stack.store.payment(payment.id).await.ok()??;
        p.telegram_refunded_at.map(|_| p)
    })
    .await
    .expect("the refunded_payment was recorded");
    assert_eq!(seen.refund_status.as_deref(), Some("done"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(stack.tg.star_refunds().len(), 1, "refunded once");
    assert_eq!(stack.ledger(user.id, "purchase_refund").await, vec![-100]);
    stack.wait_balance(user.id, 100).await;
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buy_button_sits_under_balance_and_under_a_refusal_for_lack_of_credits() {
    let opts = Options {
        welcome_credits: 1,
        ..Options::default()
    };
    let stack = Stack::start("bot_buy_button", opts).await;
    let chat = 5601;
    let menu = stack.send_photo(chat).await;
    let before = stack.tap(chat, &menu, "up2:");
    let refusal = stack.next_text(chat, before).await;
    assert_eq!(
        refusal.text,
        Some(text("err.insufficient", &[("price", &2), ("balance", &1)]))
    );
    assert_eq!(button(&refusal, "buy:"), "buy:*");

    let before = stack.sent_count(chat);
    stack.tg.user_sends_command(chat, chat, "/balance");
    let balance = stack.next_text(chat, before).await;
    assert_eq!(button(&balance, "buy:"), "buy:*");
    let before = stack.tap(chat, &balance, "buy:*");
    let packages = stack
        .wait_sent(chat, before, |m| {
            buttons(m)
                .iter()
                .any(|(_, d)| d.starts_with("buy:") && d != "buy:*")
        })
        .await;
    let offered: Vec<String> = buttons(&packages).into_iter().map(|(_, d)| d).collect();
    assert_eq!(offered, ["buy:s", "buy:m", "buy:l"]);
    stack.finish().await;
}
