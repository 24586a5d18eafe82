//! The bot never drops, repeats or stalls a user's request: updates Telegram was
//! told about survive a crash of the bot, a result goes out once even when Redis
//! goes away right after Telegram took it, every tap is answered while Telegram
//! answers 429s, and a status message never outlives its job.

mod common;

use std::time::Duration;

use common::{Options, Stack, WAIT, button, buttons, is_text, text};
use genq_testkit::{PrivateRedis, SentKind, SentMessage, wait_until};

/// True when the message still carries a live Cancel button.
fn has_live_cancel(m: &SentMessage) -> bool {
    !m.deleted && buttons(m).iter().any(|(_, d)| d.starts_with("cx:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_confirmed_to_telegram_before_a_crash_are_handled_once_after_restart() {
    let mut stack = Stack::start("bot_intake_crash", Options::default()).await;
    let chat = 4101;
    stack.start_dialog(chat).await;
    let menu = stack.send_photo(chat).await;
    let user = stack.user(chat).await;
    let balance = stack.store.balance(user.id).await.expect("balance");

    // the next bot records what it receives, then stops before handling it
    stack.kill_bot();
    stack
        .start_bot_with(&[("GENQ_FAILPOINT", "bot:before_handle".to_owned())])
        .await;
    let before = stack.sent_count(chat);
    stack.tg.user_sends_text(chat, chat, "tell me a story");
    let tap = stack
        .tg
        .user_presses_button(chat, chat, menu.message_id, &button(&menu, "up2:"));
    stack.tg.user_sends_command(chat, chat, "/balance");
    let held = stack
        .bot
        .as_ref()
        .expect("the bot")
        .wait_for_output("failpoint bot:before_handle reached", WAIT)
        .await;
    assert!(held, "the bot received the updates and held their handlers");
    // Telegram was told: the next getUpdates moved the offset past the batch
    let confirmed = wait_until(WAIT, || async {
        (stack.tg.pending_updates() == 0).then_some(())
    })
    .await;
    assert!(confirmed.is_some(), "the batch was confirmed to Telegram");
    assert_eq!(stack.sent_count(chat), before, "nothing was handled yet");
    assert_eq!(stack.jobs_of(user.id, "generate_reply").await, 0);
    stack.kill_bot();

    // the next bot finds them recorded and handles each once
    stack.start_bot().await;
    stack
        .wait_sent(chat, before, |m| {
            m.text.as_deref() == Some("Echo: tell me a story")
        })
        .await;
    stack.next_result(chat, before).await;
    stack
        .wait_sent(chat, before, |m| {
            m.text.as_deref().is_some_and(|t| is_text(t, "balance"))
        })
        .await;
    let answered = wait_until(WAIT, || async {
        let n = stack
            .tg
            .callback_answers()
            .iter()
            .filter(|a| a.callback_query_id == tap)
            .count();
        (n > 0).then_some(n)
    })
    .await;
    assert_eq!(answered, Some(1), "the tap was answered");
    // let anything that would run twice run twice
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sent = stack.tg.sent(chat);
    let count =
        |pred: &dyn Fn(&SentMessage) -> bool| sent[before..].iter().filter(|m| pred(m)).count();
    assert_eq!(
        count(&|m| m.text.as_deref() == Some("Echo: tell me a story")),
        1
    );
    assert_eq!(
        count(&|m| m.kind == SentKind::Photo || m.kind == SentKind::Document),
        1
    );
    assert_eq!(
        count(&|m| m.text.as_deref().is_some_and(|t| is_text(t, "balance"))),
        1
    );
    assert_eq!(stack.jobs_of(user.id, "generate_reply").await, 1);
    assert_eq!(stack.jobs_of(user.id, "upscale").await, 1);
    assert_eq!(
        stack.ledger(user.id, "charge").await.len(),
        2,
        "two charges, once each"
    );
    stack.wait_balance(user.id, balance - 1 - 2).await;
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_right_after_a_photo_was_sent_does_not_send_it_again() {
    let mut redis = PrivateRedis::start_persistent()
        .await
        .expect("a private redis-server");
    let opts = Options {
        redis_url: Some(redis.url()),
        ..Options::default()
    };
    let stack = Stack::start("bot_redis_blip", opts).await;
    let chat = 4201;
    let menu = stack.send_photo(chat).await;
    let user = stack.user(chat).await;
    stack.tg.hold_next("sendPhoto", 1);
    let before = stack.tap(chat, &menu, "up2:");
    let ack = stack.next_text(chat, before).await;
    let held = wait_until(WAIT, || async {
        (stack.tg.held("sendPhoto") == 1).then_some(())
    })
    .await;
    assert!(held.is_some(), "the photo reached Telegram");
    // Telegram has the photo; Redis goes away before the bot hears so
    redis.stop();
    stack.tg.release("sendPhoto");
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.restart().await.expect("redis back with its data");

    // the delivery ends (status message finished) and nothing is sent again
    stack
        .wait_text(chat, ack.message_id, |t| t == text("status.done", &[]))
        .await;
    let settled = wait_until(Duration::from_secs(60), || async {
        let stats = stack.queue.stats("delivery").await.ok()?;
        (stats.running == 0 && stats.scheduled == 0 && stats.ready == 0).then_some(())
    })
    .await;
    assert!(settled.is_some(), "the delivery job ended");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let photos = stack
        .tg
        .sent(chat)
        .iter()
        .filter(|m| matches!(m.kind, SentKind::Photo | SentKind::Document))
        .count();
    assert_eq!(photos, 1, "the photo went out once");
    assert_eq!(stack.tg.calls("sendPhoto"), 1, "and was sent once");
    stack.wait_balance(user.id, 100 - 2).await;
    stack.finish().await;
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_that_arrives_before_its_acknowledgement_leaves_no_live_status_message() {
    let stack = Stack::start("bot_late_ack", Options::default()).await;
    let chat = 4301;
    let menu = stack.send_photo(chat).await;
    // the acknowledgement's status message reaches Telegram, but the bot hears of
    // it only after the result was delivered
    stack.tg.hold_next("sendMessage", 1);
    let before = stack.tap(chat, &menu, "up2:");
    let held = wait_until(WAIT, || async {
        (stack.tg.held("sendMessage") == 1).then_some(())
    })
    .await;
    assert!(held.is_some(), "the acknowledgement was on its way");
    stack.next_result(chat, before).await;
    stack.tg.release("sendMessage");
    let ended = wait_until(WAIT, || async {
        let live: Vec<SentMessage> = stack
            .tg
            .sent(chat)
            .into_iter()
            .filter(has_live_cancel)
            .collect();
        live.is_empty().then_some(())
    })
    .await;
    assert!(
        ended.is_some(),
        "a status message kept its Cancel button: {:#?}",
        stack.tg.sent(chat)
    );
    // and it stays so (the status loop does not bring the button back)
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!stack.tg.sent(chat).iter().any(has_live_cancel));
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tap_of_two_hundred_users_is_answered_while_telegram_answers_429s() {
    let stack = Stack::start("bot_taps_429", Options::default()).await;
    let users: Vec<i64> = (0..200).map(|i| 60_000 + i).collect();
    for &u in &users {
        stack.tg.user_sends_command(u, u, "/start");
    }
    let mut menus = Vec::new();
    for &u in &users {
        let menu = stack
            .wait_sent(u, 0, |m| {
                buttons(m).iter().any(|(_, d)| d.starts_with("persona:"))
            })
            .await;
        menus.push(menu);
    }
    // 5% of sends are refused, and one chat is refused everything for 30 s
    stack.tg.rate_limit_share(0.05, 2);
    stack
        .tg
        .rate_limit_chat(users[0], Duration::from_secs(30), 30);
    let taps: Vec<String> = users
        .iter()
        .zip(&menus)
        .map(|(&u, menu)| {
            stack
                .tg
                .user_presses_button(u, u, menu.message_id, &button(menu, "persona:"))
        })
        .collect();
    let answers = wait_until(Duration::from_secs(60), || async {
        let answers = stack.tg.callback_answers();
        let mine: Vec<Duration> = answers
            .iter()
            .filter(|a| taps.contains(&a.callback_query_id))
            .map(|a| a.after)
            .collect();
        (mine.len() == taps.len()).then_some(mine)
    })
    .await;
    let mut answers = answers.unwrap_or_else(|| {
        panic!(
            "not every tap was answered: {} of {}",
            stack
                .tg
                .callback_answers()
                .iter()
                .filter(|a| taps.contains(&a.callback_query_id))
                .count(),
            taps.len()
        )
    });
    answers.sort();
    let pct = |p: usize| answers[(answers.len() * p / 100).min(answers.len() - 1)];
    println!(
        "200 taps under 5% 429s: tap answered p50 {:?}, p99 {:?}, max {:?}; 429s answered {}",
        pct(50),
        pct(99),
        answers[answers.len() - 1],
        stack.tg.answered_429()
    );
    assert!(
        stack.tg.answered_429() > 0,
        "Telegram did refuse some sends"
    );
    let bot = stack.bot.as_ref().expect("the bot");
    assert!(
        !bot.output_contains("queue is full"),
        "no queue filled up anywhere"
    );
    stack.finish().await;
}
