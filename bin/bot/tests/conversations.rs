//! Scripted conversations: the real `bot` and a real worker against the fake
//! Telegram server, the fake provider, real Redis and real PostgreSQL.

mod common;

use std::time::Duration;

use common::{Options, Stack, WAIT, button, buttons, is_text, text};
use genq_testkit::{FakeFailure, SentKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_gets_a_reply_with_typing_stored_in_the_dialog_and_charged() {
    let stack = Stack::start("bot_text", Options::default()).await;
    let chat = 1001;
    stack.start_dialog(chat).await;
    let user = stack.user(chat).await;
    assert_eq!(user.credits, 100, "welcome credits");
    let start = stack.tg.sent(chat);
    assert!(
        start[0].text.as_deref().unwrap_or_default().contains("100"),
        "the greeting mentions the welcome credits: {:?}",
        start[0].text
    );
    assert!(buttons(&start[0]).len() >= 3, "three default personas");
    let price_said = text("start.reply_price", &[("price", &1), ("credits", &100)]);
    assert!(
        start
            .iter()
            .any(|m| m.text.as_deref().is_some_and(|t| t.ends_with(&price_said))),
        "a reply's price is said before the first message: {start:#?}"
    );

    let reply = stack.chat(chat, "hello there").await;
    assert!(
        stack.tg.chat_actions(chat).iter().any(|a| a == "typing"),
        "a typing action while it runs"
    );
    assert!(
        button(&reply, "pic:").len() > 4,
        "a Picture button under the reply"
    );
    stack.wait_balance(user.id, 99).await;
    let dialog = stack
        .store
        .active_dialog(user.id)
        .await
        .unwrap()
        .expect("active dialog");
    let stored = wait_for_messages(&stack, dialog.id, 2).await;
    assert_eq!(stored[0].content, "hello there");
    assert_eq!(stored[1].content, "Echo: hello there");

    // the history goes with the next request
    stack.chat(chat, "and again").await;
    stack.wait_balance(user.id, 98).await;
    stack.finish().await;
}

async fn wait_for_messages(stack: &Stack, dialog: i64, n: usize) -> Vec<genq_store::Message> {
    genq_testkit::wait_until(WAIT, || async {
        let m = stack.store.last_messages(dialog, 50).await.ok()?;
        (m.len() >= n).then_some(m)
    })
    .await
    .expect("messages stored")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_picture_button_sends_a_photo_captioned_with_its_prompt() {
    let stack = Stack::start("bot_picture", Options::default()).await;
    let chat = 1002;
    stack.start_dialog(chat).await;
    let user = stack.user(chat).await;
    let reply = stack.chat(chat, "a walk on the beach at sunset").await;
    let before = stack.tap(chat, &reply, "pic:");
    let status = stack.next_text(chat, before).await;
    assert!(
        button(&status, "cx:").len() > 3,
        "the status message has a Cancel button"
    );
    let photo = stack
        .wait_sent(chat, before, |m| m.kind == SentKind::Photo)
        .await;
    let caption = photo.text.clone().unwrap_or_default();
    assert!(!caption.is_empty(), "the prompt is the caption");
    assert!(caption.chars().count() <= 1024);
    stack
        .wait_text(chat, status.message_id, |t| t == text("status.done", &[]))
        .await;
    // reply 1 + picture 3
    stack.wait_balance(user.id, 96).await;
    assert_eq!(stack.ledger(user.id, "charge").await, vec![-1, -3]);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_photo_can_be_upscaled_and_face_swapped() {
    let stack = Stack::start("bot_photo", Options::default()).await;
    let chat = 1003;
    let menu = stack.send_photo(chat).await;
    let user = stack.user(chat).await;
    let labels: Vec<String> = buttons(&menu).into_iter().map(|(t, _)| t).collect();
    assert!(
        labels.iter().all(|l| l.chars().any(|c| c.is_ascii_digit())),
        "every paid button shows its price: {labels:?}"
    );

    let before = stack.tap(chat, &menu, "up2:");
    stack.next_result(chat, before).await;
    stack.wait_balance(user.id, 98).await;

    let before = stack.tap(chat, &menu, "fs:");
    stack.next_text(chat, before).await;
    let before = stack.sent_count(chat);
    stack
        .tg
        .user_sends_photo(chat, chat, common::png(40, 40), 40, 40);
    stack.next_result(chat, before).await;
    stack.wait_balance(user.id, 95).await;
    assert_eq!(stack.jobs_of(user.id, "face_swap").await, 1);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_videos_arrive_as_three_messages_and_three_charges() {
    let stack = Stack::start("bot_videos", Options::default()).await;
    let chat = 1004;
    let menu = stack.send_photo(chat).await;
    let user = stack.user(chat).await;
    let counts = stack.video_count_menu(chat, &menu, "ugc").await;
    let three = buttons(&counts)
        .into_iter()
        .find(|(_, d)| d.ends_with(":3"))
        .expect("a 3-videos button");
    assert!(three.0.contains("30"), "the price of three: {}", three.0);
    let before = stack.sent_count(chat);
    stack
        .tg
        .user_presses_button(chat, chat, counts.message_id, &three.1);
    let videos = genq_testkit::wait_until(WAIT, || {
        let v: Vec<_> = stack
            .tg
            .sent(chat)
            .into_iter()
            .skip(before)
            .filter(|m| m.kind == SentKind::Video)
            .collect();
        async move { (v.len() >= 3).then_some(v) }
    })
    .await
    .expect("three videos");
    assert_eq!(videos.len(), 3);
    stack.wait_balance(user.id, 70).await;
    assert_eq!(stack.ledger(user.id, "charge").await, vec![-10, -10, -10]);
    assert_eq!(stack.jobs_of(user.id, "generate_video").await, 3);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_refusal_refunds_and_says_so() {
    let stack = Stack::start("bot_policy", Options::default()).await;
    let chat = 1005;
    let menu = stack.send_photo(chat).await;
    let user = stack.user(chat).await;
    stack.provider.fail_next(1, FakeFailure::ContentPolicy);
    let before = stack.tap(chat, &menu, "up4:");
    let said = stack.wait_said(chat, before, "fail.user_violation").await;
    let refund = text("refund.returned", &[("credits", &2)]);
    assert!(said.ends_with(&refund), "the refund is mentioned: {said}");
    stack.wait_balance(user.id, 100).await;
    assert_eq!(stack.ledger(user.id, "refund").await, vec![2]);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_double_tapped_button_charges_once() {
    let stack = Stack::start("bot_double", Options::default()).await;
    let chat = 1006;
    let menu = stack.send_photo(chat).await;
    let user = stack.user(chat).await;
    let data = button(&menu, "up2:");
    stack
        .tg
        .user_presses_button(chat, chat, menu.message_id, &data);
    stack
        .tg
        .user_presses_button(chat, chat, menu.message_id, &data);
    stack
        .wait_sent(chat, 0, |m| {
            matches!(m.kind, SentKind::Photo | SentKind::Document)
        })
        .await;
    let answers = genq_testkit::wait_until(WAIT, || {
        let a = stack.tg.callback_answers();
        async move { (a.len() >= 2).then_some(a) }
    })
    .await
    .expect("both taps answered");
    // the first tap is answered at once with the acknowledgement itself, with
    // its time estimate
    let first = answers[0].text.clone().unwrap_or_default();
    assert!(
        is_text(&first, "ack.queued_eta") || is_text(&first, "ack.position_eta"),
        "{answers:?}"
    );
    // the second tap finds the job running ("already in progress") or, when the
    // upscale was quicker, finished ("no longer active")
    let second = answers[1].text.clone().unwrap_or_default();
    assert!(
        second == text("err.already_taken", &[]) || second == text("err.stale_button", &[]),
        "the second tap is told it changes nothing: {answers:?}"
    );
    stack.wait_balance(user.id, 98).await;
    assert_eq!(stack.ledger(user.id, "charge").await, vec![-2]);
    assert_eq!(stack.jobs_of(user.id, "upscale").await, 1);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_answers_with_when_to_come_back() {
    let opts = Options {
        per_minute: 2,
        ..Options::default()
    };
    let stack = Stack::start("bot_rate", opts).await;
    let chat = 1007;
    stack.start_dialog(chat).await;
    let user = stack.user(chat).await;
    for text in ["one", "two"] {
        stack.chat(chat, text).await;
    }
    let before = stack.sent_count(chat);
    stack.tg.user_sends_text(chat, chat, "three");
    let refusal = stack.next_text(chat, before).await;
    let said = refusal.text.unwrap_or_default();
    assert!(is_text(&said, "err.rate_limited"), "{said}");
    assert!(
        said.chars().any(|c| c.is_ascii_digit()),
        "says when: {said}"
    );
    stack.wait_balance(user.id, 98).await;
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegrams_429_is_honoured_and_the_photo_still_arrives() {
    let stack = Stack::start("bot_429", Options::default()).await;
    let chat = 1008;
    let menu = stack.send_photo(chat).await;
    let user = stack.user(chat).await;
    // hold deliveries back until the result is ready, then have Telegram answer 429
    stack.queue.pause("delivery").await.unwrap();
    let before = stack.tap(chat, &menu, "up2:");
    stack.next_text(chat, before).await;
    let job_id = genq_testkit::wait_until(WAIT, || async {
        let id: Option<String> =
            sqlx::query_scalar("SELECT id FROM jobs WHERE user_id = $1 AND status = 'succeeded'")
                .bind(user.id)
                .fetch_optional(stack.store.pool())
                .await
                .ok()?;
        id
    })
    .await
    .expect("the upscale succeeded");
    let deliver_id = genq_testkit::wait_until(WAIT, || async {
        let mut conn = stack.queue.connection();
        let key = format!("{}:{{delivery}}:idem:deliver:{job_id}", stack.prefix);
        redis::AsyncCommands::get::<_, Option<String>>(&mut conn, key)
            .await
            .ok()
            .flatten()
    })
    .await
    .expect("a delivery job was pushed");
    let sends_before = stack.tg.calls("sendPhoto");
    stack.tg.rate_limit_next(2, 1);
    stack.queue.resume("delivery").await.unwrap();
    let photo = stack
        .wait_sent(chat, before, |m| m.kind == SentKind::Photo)
        .await;
    assert!(photo.file_len.unwrap_or(0) > 0);
    assert_eq!(
        stack.tg.calls("sendPhoto") - sends_before,
        3,
        "two sends answered 429, the third delivered"
    );
    let delivery = genq_testkit::wait_until(WAIT, || async {
        let job = stack.queue.job("delivery", &deliver_id).await.ok()??;
        (job.status == genq_core::JobStatus::Succeeded).then_some(job)
    })
    .await
    .expect("the delivery job succeeded");
    assert_eq!(delivery.attempts, 3, "rescheduled twice after retry_after");
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_bot_is_replaced_and_the_new_one_delivers_pending_results() {
    let opts = Options {
        task_duration: Duration::from_secs(3),
        ..Options::default()
    };
    let mut stack = Stack::start("bot_restart", opts).await;
    let chat = 1009;
    let menu = stack.send_photo(chat).await;
    let user = stack.user(chat).await;
    let before = stack.tap(chat, &menu, "up2:");
    stack.next_text(chat, before).await;
    stack.kill_bot();
    // the job finishes while no bot runs
    let finished = genq_testkit::wait_until(WAIT, || async {
        let open = stack.store.open_jobs_of_user(user.id).await.ok()?;
        open.is_empty().then_some(())
    })
    .await;
    assert!(finished.is_some(), "the job finished without a bot");
    assert!(
        !stack
            .tg
            .sent(chat)
            .iter()
            .any(|m| matches!(m.kind, SentKind::Photo | SentKind::Document)),
        "nothing delivered while the bot was down"
    );
    stack.start_bot().await;
    stack.next_result(chat, before).await;
    stack.wait_balance(user.id, 98).await;
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_and_unknown_buttons_answer_politely_and_do_nothing() {
    let stack = Stack::start("bot_stale", Options::default()).await;
    let chat = 1010;
    let menu = stack.send_photo(chat).await;
    let user = stack.user(chat).await;
    let before = stack.tap(chat, &menu, "up2:");
    let status = stack
        .wait_sent(chat, before, |m| {
            m.kind == SentKind::Text && !buttons(m).is_empty()
        })
        .await;
    let cancel = button(&status, "cx:");
    stack.next_result(chat, before).await;
    stack.wait_balance(user.id, 98).await;
    let answered = stack.tg.callback_answers().len();
    stack
        .tg
        .user_presses_button(chat, chat, status.message_id, &cancel);
    stack
        .tg
        .user_presses_button(chat, chat, menu.message_id, "something:else");
    stack
        .tg
        .user_presses_button(chat, chat, menu.message_id, "up2:NOSUCHTOKEN1");
    let answers = genq_testkit::wait_until(WAIT, || {
        let a = stack.tg.callback_answers();
        async move { (a.len() >= answered + 3).then_some(a) }
    })
    .await
    .expect("every button answered");
    let texts: Vec<String> = answers[answered..]
        .iter()
        .map(|a| a.text.clone().unwrap_or_default())
        .collect();
    let stale = text("err.stale_button", &[]);
    assert_eq!(
        texts,
        [stale.clone(), text("err.unknown_button", &[]), stale],
        "a finished job's Cancel, a foreign button, an expired menu"
    );
    // nothing was charged or cancelled by them
    stack.wait_balance(user.id, 98).await;
    assert_eq!(stack.jobs_of(user.id, "upscale").await, 1);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_bot_continues_the_conversation_where_the_old_one_stopped() {
    let mut stack = Stack::start("bot_continue", Options::default()).await;
    let chat = 1011;
    let menu = stack.send_photo(chat).await;
    let user = stack.user(chat).await;
    let before = stack.tap(chat, &menu, "fs:");
    let ask = stack.next_text(chat, before).await;
    assert_eq!(ask.text, Some(text("photo.face_prompt", &[])));
    // the bot dies; its replacement knows the next photo is the face
    stack.kill_bot();
    stack.start_bot().await;
    let before = stack.sent_count(chat);
    stack
        .tg
        .user_sends_photo(chat, chat, common::png(40, 40), 40, 40);
    stack.next_result(chat, before).await;
    assert_eq!(stack.jobs_of(user.id, "face_swap").await, 1);
    stack.wait_balance(user.id, 97).await;
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_russian_speaking_user_is_answered_in_russian() {
    use genq_telegram::i18n::{Lang, t};
    let stack = Stack::start("bot_russian", Options::default()).await;
    let chat = 1012;
    stack.tg.set_user_language(chat, "ru");
    stack.tg.user_sends_command(chat, chat, "/balance");
    let balance = stack.wait_sent(chat, 0, |m| m.kind == SentKind::Text).await;
    let said = balance.text.unwrap_or_default();
    assert!(
        said.starts_with(&t(Lang::Ru, "balance", &[("credits", &100)])),
        "{said}"
    );
    assert!(said.contains(&t(Lang::Ru, "ledger.title", &[])), "{said}");
    let menu = stack.send_photo(chat).await;
    let labels: Vec<String> = buttons(&menu).into_iter().map(|(l, _)| l).collect();
    assert_eq!(labels[0], t(Lang::Ru, "button.upscale2", &[("price", &2)]));
    assert_eq!(menu.text, Some(t(Lang::Ru, "photo.menu", &[])));
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_telegram_refuses_as_a_photo_arrives_as_a_document() {
    let stack = Stack::start("bot_document", Options::default()).await;
    let chat = 1013;
    // 21:1 becomes 840×40 upscaled: over Telegram's 20:1 for photos
    let before = stack.sent_count(chat);
    stack
        .tg
        .user_sends_photo(chat, chat, common::png(420, 20), 420, 20);
    let menu = stack
        .wait_sent(chat, before, |m| {
            buttons(m).iter().any(|(_, d)| d.starts_with("up2:"))
        })
        .await;
    let user = stack.user(chat).await;
    let before = stack.tap(chat, &menu, "up2:");
    let document = stack
        .wait_sent(chat, before, |m| m.kind == SentKind::Document)
        .await;
    assert!(document.file_len.unwrap_or(0) > 0);
    assert!(stack.tg.calls("sendPhoto") >= 1, "tried as a photo first");
    assert!(
        !stack
            .tg
            .sent(chat)
            .iter()
            .any(|m| m.kind == SentKind::Photo),
        "no photo was accepted"
    );
    stack.wait_balance(user.id, 98).await;
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_picture_refused_by_the_image_provider_refunds_the_whole_picture() {
    let stack = Stack::start("bot_picture_refused", Options::default()).await;
    stack
        .provider
        .fail_key("painter-key", FakeFailure::ContentPolicy);
    let chat = 1014;
    stack.start_dialog(chat).await;
    let user = stack.user(chat).await;
    let reply = stack.chat(chat, "draw us").await;
    stack.wait_balance(user.id, 99).await;
    let before = stack.tap(chat, &reply, "pic:");
    let status = stack.next_text(chat, before).await;
    let said = stack
        .wait_text(chat, status.message_id, |t| {
            is_text(t, "fail.user_violation")
        })
        .await;
    assert!(
        said.ends_with(&text("refund.returned", &[("credits", &3)])),
        "{said}"
    );
    // the prompt succeeded, its image failed: the picture's 3 credits come back once
    stack.wait_balance(user.id, 99).await;
    assert_eq!(stack.ledger(user.id, "refund").await, vec![3]);
    assert_eq!(stack.jobs_of(user.id, "generate_image").await, 1);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_charged_by_a_bot_that_died_before_tracking_it_is_delivered_when_the_update_returns()
 {
    let stack = Stack::start("bot_orphan", Options::default()).await;
    let chat = 1015;
    let menu = stack.send_photo(chat).await;
    let user = stack.user(chat).await;
    let data = button(&menu, "up2:");
    stack
        .charge_like_a_dead_bot(chat, user.id, menu.message_id, &data)
        .await;
    // Telegram delivers the tap again to the new bot
    let before = stack.sent_count(chat);
    stack
        .tg
        .user_presses_button(chat, chat, menu.message_id, &data);
    let status = stack.next_text(chat, before).await;
    stack.next_result(chat, before).await;
    stack
        .wait_text(chat, status.message_id, |t| t == text("status.done", &[]))
        .await;
    stack.wait_balance(user.id, 98).await;
    assert_eq!(
        stack.ledger(user.id, "charge").await,
        vec![-2],
        "charged once"
    );
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_charged_by_a_bot_that_died_is_taken_up_by_the_sweep() {
    let opts = Options {
        extra_bot: "orphan_sweep_secs = 2\n".to_owned(),
        ..Options::default()
    };
    let stack = Stack::start("bot_sweep", opts).await;
    let chat = 1016;
    let menu = stack.send_photo(chat).await;
    let user = stack.user(chat).await;
    // the update is never seen again: only the sweep can find the job
    stack
        .charge_like_a_dead_bot(chat, user.id, menu.message_id, &button(&menu, "up2:"))
        .await;
    let before = stack.sent_count(chat);
    stack.next_result(chat, before).await;
    stack.wait_balance(user.id, 98).await;
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pictures_cancel_button_stops_its_image_once_the_prompt_handed_over() {
    let stack = Stack::start("bot_picture_cancel", Options::default()).await;
    let chat = 1017;
    stack.start_dialog(chat).await;
    let user = stack.user(chat).await;
    let reply = stack.chat(chat, "paint the harbour").await;
    stack.wait_balance(user.id, 99).await;
    // from now on every provider call takes 3 s: time to tap Cancel mid-image
    stack.provider.set_latency(Duration::from_secs(3));
    let before = stack.tap(chat, &reply, "pic:");
    let status = stack.next_text(chat, before).await;
    let prompt_cancel = button(&status, "cx:");
    genq_testkit::wait_until(WAIT, || async {
        (stack.jobs_of(user.id, "generate_image").await == 1).then_some(())
    })
    .await
    .expect("the prompt handed over to its image job");
    stack
        .tg
        .user_presses_button(chat, chat, status.message_id, &prompt_cancel);
    stack
        .wait_text(chat, status.message_id, |t| is_text(t, "fail.cancelled"))
        .await;
    stack.wait_balance(user.id, 99).await;
    assert_eq!(stack.ledger(user.id, "refund").await, vec![3]);
    assert!(
        !stack
            .tg
            .sent(chat)
            .iter()
            .any(|m| m.kind == SentKind::Photo),
        "no picture after the cancel"
    );
    stack.finish().await;
}
