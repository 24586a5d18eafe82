//! Commands, voice, guard rails and acknowledgements: the real `bot` and a real
//! worker against the fake Telegram server, the fake provider, real Redis and
//! real PostgreSQL.

mod common;

use std::time::Duration;

use common::{Options, Stack, WAIT, button, buttons, is_text, text};
use genq_redis::NewJob;
use genq_testkit::SentKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voice_message_is_transcribed_and_answered_as_text() {
    let stack = Stack::start("bot_voice", Options::default()).await;
    let chat = 2001;
    stack.start_dialog(chat).await;
    let user = stack.user(chat).await;
    let before = stack.sent_count(chat);
    stack.tg.user_sends_voice(chat, chat, vec![7u8; 3000], 2);
    let reply = stack
        .wait_sent(chat, before, |m| {
            m.kind == SentKind::Text && m.text.as_deref().is_some_and(|t| t.starts_with("Echo:"))
        })
        .await;
    assert_eq!(reply.text.as_deref(), Some("Echo: transcribed 3000 bytes"));
    assert_eq!(stack.provider.calls("transcriptions"), 1);
    stack.wait_balance(user.id, 99).await;

    // over the 20 MB a bot may download: refused before anything is fetched
    let before = stack.sent_count(chat);
    stack
        .tg
        .user_sends_voice(chat, chat, vec![0u8; 21 * 1024 * 1024], 600);
    let refusal = stack.next_text(chat, before).await;
    assert!(
        is_text(
            refusal.text.as_deref().unwrap_or_default(),
            "err.file_too_large"
        ),
        "{refusal:?}"
    );
    assert_eq!(stack.provider.calls("transcriptions"), 1);
    stack.wait_balance(user.id, 99).await;
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_users_jobs_and_refunds_them() {
    let stack = Stack::start("bot_cancel", Options::default()).await;
    stack.provider.set_tasks_never_finish(true);
    let chat = 2002;
    let menu = stack.send_photo(chat).await;
    let user = stack.user(chat).await;
    let before = stack.tap(chat, &menu, "up4:");
    let status = stack.next_text(chat, before).await;
    stack.wait_balance(user.id, 98).await;
    // wait until it runs (polling the provider's task that never ends)
    stack
        .wait_text(chat, status.message_id, |t| {
            is_text(t, "status.running") || is_text(t, "status.progress")
        })
        .await;
    let before = stack.sent_count(chat);
    stack.tg.user_sends_command(chat, chat, "/cancel");
    let said = stack.next_text(chat, before).await;
    assert_eq!(said.text, Some(text("cancel.done", &[("count", &1)])));
    let end = stack
        .wait_text(chat, status.message_id, |t| is_text(t, "fail.cancelled"))
        .await;
    assert!(
        end.ends_with(&text("refund.returned", &[("credits", &2)])),
        "{end}"
    );
    stack.wait_balance(user.id, 100).await;

    let before = stack.sent_count(chat);
    stack.tg.user_sends_command(chat, chat, "/cancel");
    let said = stack.next_text(chat, before).await;
    assert_eq!(said.text, Some(text("cancel.none", &[])));
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cancel_button_of_a_running_job_cancels_it() {
    let stack = Stack::start("bot_cancel_button", Options::default()).await;
    stack.provider.set_tasks_never_finish(true);
    let chat = 2003;
    let menu = stack.send_photo(chat).await;
    let user = stack.user(chat).await;
    let before = stack.tap(chat, &menu, "up2:");
    let status = stack
        .wait_sent(chat, before, |m| {
            m.kind == SentKind::Text && !buttons(m).is_empty()
        })
        .await;
    stack
        .tg
        .user_presses_button(chat, chat, status.message_id, &button(&status, "cx:"));
    stack
        .wait_text(chat, status.message_id, |t| is_text(t, "fail.cancelled"))
        .await;
    stack.wait_balance(user.id, 100).await;
    assert!(
        stack
            .tg
            .callback_answers()
            .iter()
            .any(|a| a.text == Some(text("status.cancelling", &[]))),
        "the tap is answered"
    );
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balance_help_and_admin_answer() {
    let opts = Options {
        admin_ids: vec![2005],
        ..Options::default()
    };
    let stack = Stack::start("bot_commands", opts).await;
    let (chat, admin) = (2004, 2005);
    for (who, command) in [(chat, "/balance"), (chat, "/help"), (chat, "/admin")] {
        let before = stack.sent_count(who);
        stack.tg.user_sends_command(who, who, command);
        stack
            .wait_sent(who, before, |m| m.kind == SentKind::Text)
            .await;
    }
    let said: Vec<String> = stack
        .tg
        .sent(chat)
        .into_iter()
        .filter_map(|m| m.text)
        .collect();
    // the balance, then the credit history: here the welcome credits
    let user = stack.user(chat).await;
    let ledger = stack.store.ledger_of(user.id, 5).await.unwrap();
    let day = |i: usize| ledger[i].created_at.format("%Y-%m-%d").to_string();
    let welcome = text(
        "ledger.entry",
        &[
            ("date", &day(0)),
            ("what", &text("ledger.welcome", &[])),
            ("amount", &"+100"),
        ],
    );
    assert_eq!(
        said[0],
        format!(
            "{}\n\n{}\n{welcome}",
            text("balance", &[("credits", &100)]),
            text("ledger.title", &[])
        )
    );
    let help = text(
        "help",
        &[
            ("reply_price", &1),
            ("picture_price", &3),
            ("upscale_price", &2),
            ("face_swap_price", &3),
            ("video_price", &10),
        ],
    );
    assert_eq!(said[1], help, "the prices come from the configuration");
    assert_eq!(said[2], text("admin.denied", &[]));

    // an operator's deduction shows, newest first, with its reason
    stack
        .store
        .deduct_credits(chat, 30, "duplicate account", "operator:test")
        .await
        .unwrap();
    let before = stack.sent_count(chat);
    stack.tg.user_sends_command(chat, chat, "/balance");
    let answer = stack
        .wait_sent(chat, before, |m| m.kind == SentKind::Text)
        .await;
    let ledger = stack.store.ledger_of(user.id, 5).await.unwrap();
    let deducted = text(
        "ledger.entry_reason",
        &[
            ("date", &ledger[0].created_at.format("%Y-%m-%d")),
            ("what", &text("ledger.deduct", &[])),
            ("amount", &"-30"),
            ("reason", &"duplicate account"),
        ],
    );
    assert_eq!(
        answer.text.unwrap_or_default(),
        format!(
            "{}\n\n{}\n{deducted}\n{welcome}",
            text("balance", &[("credits", &70)]),
            text("ledger.title", &[])
        )
    );

    stack.tg.user_sends_command(admin, admin, "/admin");
    let stats = stack
        .wait_sent(admin, 0, |m| m.kind == SentKind::Text)
        .await;
    let stats = stats.text.unwrap_or_default();
    assert!(is_text(&stats, "admin.stats"), "{stats}");
    for queue in ["text:", "img:", "video:", "delivery:"] {
        assert!(stats.contains(queue), "queue depths: {stats}");
    }
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_credits_too_long_a_text_and_too_many_jobs_are_refused() {
    let opts = Options {
        welcome_credits: 3,
        max_concurrent: 1,
        ..Options::default()
    };
    let stack = Stack::start("bot_refusals", opts).await;
    stack.provider.set_tasks_never_finish(true);
    let chat = 2006;
    let menu = stack.send_photo(chat).await;
    let user = stack.user(chat).await;

    // one upscale runs (2 of 3 credits); a second is over the concurrent cap
    let before = stack.tap(chat, &menu, "up2:");
    stack.next_text(chat, before).await;
    let before = stack.tap(chat, &menu, "up4:");
    let busy = stack.next_text(chat, before).await;
    assert_eq!(
        busy.text,
        Some(text(
            "err.too_many_jobs",
            &[("count", &1), ("needed", &1), ("max", &1)]
        ))
    );
    stack.wait_balance(user.id, 1).await;

    // the face swap costs 3 with 1 left: refused, nothing charged
    stack.tg.user_sends_command(chat, chat, "/cancel");
    stack.wait_balance(user.id, 3).await;
    let slots_free = genq_testkit::wait_until(WAIT, || async {
        let open = stack.store.open_jobs_of_user(user.id).await.ok()?;
        open.is_empty().then_some(())
    })
    .await;
    assert!(slots_free.is_some());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts = stack.video_count_menu(chat, &menu, "ad").await;
    let before = stack.tap(chat, &counts, "n:");
    let refusal = stack.next_text(chat, before).await;
    assert_eq!(
        refusal.text,
        Some(text("err.insufficient", &[("price", &10), ("balance", &3)]))
    );
    stack.wait_balance(user.id, 3).await;
    assert_eq!(stack.jobs_of(user.id, "generate_video").await, 0);

    // a text over the limit is refused before anything else
    let before = stack.sent_count(chat);
    stack.tg.user_sends_text(chat, chat, &"x".repeat(2001));
    let refusal = stack.next_text(chat, before).await;
    assert_eq!(
        refusal.text,
        Some(text("err.text_too_long", &[("len", &2001), ("max", &2000)]))
    );
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acknowledgement_gives_the_queue_position_when_there_is_a_backlog() {
    let stack = Stack::start("bot_position", Options::default()).await;
    let chat = 2007;
    let menu = stack.send_photo(chat).await;
    let user = stack.user(chat).await;
    // two jobs wait on a paused `img` queue
    stack.queue.pause("img").await.unwrap();
    for _ in 0..2 {
        stack
            .queue
            .push(NewJob::new("img", "probe", "{}"))
            .await
            .unwrap();
    }
    let before = stack.tap(chat, &menu, "up2:");
    let ack = stack.next_text(chat, before).await;
    assert_eq!(ack.text, Some(text("ack.position", &[("ahead", &2)])));
    // once in the queue, the status message keeps the position up to date
    stack
        .wait_text(chat, ack.message_id, |t| {
            t == text("status.queued_position", &[("ahead", &2)])
        })
        .await;
    stack.queue.resume("img").await.unwrap();
    stack.next_result(chat, before).await;
    stack
        .wait_text(chat, ack.message_id, |t| t == text("status.done", &[]))
        .await;
    let edits = stack.message(chat, ack.message_id).unwrap().edits;
    assert!(
        edits.len() >= 2 && edits.len() <= 6,
        "edited as it moved, not re-sent: {edits:?}"
    );
    stack.wait_balance(user.id, 98).await;
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_starts_a_fresh_dialog_and_other_messages_are_explained() {
    let stack = Stack::start("bot_new", Options::default()).await;
    let chat = 2008;
    stack.start_dialog(chat).await;
    let user = stack.user(chat).await;
    stack.chat(chat, "remember the blue door").await;
    let old = stack.store.active_dialog(user.id).await.unwrap().unwrap();

    let before = stack.sent_count(chat);
    stack.tg.user_sends_command(chat, chat, "/new");
    let said = stack.next_text(chat, before).await;
    let persona = stack.store.persona(old.persona_id).await.unwrap();
    assert_eq!(
        said.text,
        Some(text("new.done", &[("persona", &persona.name)]))
    );
    let fresh = stack.store.active_dialog(user.id).await.unwrap().unwrap();
    assert_ne!(fresh.id, old.id);
    assert_eq!(fresh.persona_id, old.persona_id);
    stack.chat(chat, "hello again").await;
    let messages = genq_testkit::wait_until(WAIT, || async {
        let m = stack.store.last_messages(fresh.id, 50).await.ok()?;
        (m.len() == 2).then_some(m)
    })
    .await
    .expect("the new dialog holds only the new exchange");
    assert_eq!(messages[0].content, "hello again");

    // a location is nothing the bot does: it says what it understands
    let before = stack.sent_count(chat);
    stack.tg.user_sends_message(
        chat,
        chat,
        serde_json::json!({ "location": { "latitude": 55.75, "longitude": 37.62 } }),
    );
    let said = stack.next_text(chat, before).await;
    assert_eq!(said.text, Some(text("err.unsupported", &[])));
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_a_job_the_relay_has_not_pushed_yet() {
    let mut stack = Stack::start("bot_cancel_unpushed", Options::default()).await;
    let chat = 2009;
    let menu = stack.send_photo(chat).await;
    let user = stack.user(chat).await;
    // no relay: the order stays in the outbox
    stack.kill_worker();
    let before = stack.tap(chat, &menu, "up2:");
    let status = stack.next_text(chat, before).await;
    stack.wait_balance(user.id, 98).await;
    assert_eq!(stack.store.outbox_len().await.unwrap(), 1);

    let before = stack.sent_count(chat);
    stack.tg.user_sends_command(chat, chat, "/cancel");
    let said = stack
        .wait_sent(chat, before, |m| {
            m.kind == SentKind::Text && m.message_id > status.message_id
        })
        .await;
    assert_eq!(said.text, Some(text("cancel.done", &[("count", &1)])));
    let end = stack
        .wait_text(chat, status.message_id, |t| is_text(t, "fail.cancelled"))
        .await;
    assert!(
        end.ends_with(&text("refund.returned", &[("credits", &2)])),
        "{end}"
    );
    stack.wait_balance(user.id, 100).await;
    assert_eq!(stack.store.outbox_len().await.unwrap(), 0);

    // the relay comes back: nothing is pushed, nothing runs
    stack.start_worker().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stack.provider.submits(), 0);
    assert!(
        !stack
            .tg
            .sent(chat)
            .iter()
            .any(|m| matches!(m.kind, SentKind::Photo | SentKind::Document))
    );
    stack.wait_balance(user.id, 100).await;
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tap_on_a_finished_jobs_button_holds_no_slot() {
    let opts = Options {
        max_concurrent: 1,
        ..Options::default()
    };
    let stack = Stack::start("bot_slot_release", opts).await;
    let chat = 2010;
    let menu = stack.send_photo(chat).await;
    let user = stack.user(chat).await;
    let before = stack.tap(chat, &menu, "up2:");
    stack.next_result(chat, before).await;
    stack.wait_balance(user.id, 98).await;
    // the job is over: wait until the bot has closed it
    genq_testkit::wait_until(WAIT, || async {
        let mut conn = stack.queue.connection();
        let open: i64 =
            redis::AsyncCommands::zcard(&mut conn, format!("{}:bot:open:{chat}", stack.prefix))
                .await
                .ok()?;
        (open == 0).then_some(())
    })
    .await
    .expect("the slot is released");

    let answered = stack.tg.callback_answers().len();
    stack
        .tg
        .user_presses_button(chat, chat, menu.message_id, &button(&menu, "up2:"));
    let answers = genq_testkit::wait_until(WAIT, || {
        let a = stack.tg.callback_answers();
        async move { (a.len() > answered).then_some(a) }
    })
    .await
    .unwrap();
    assert_eq!(answers[answered].text, Some(text("err.stale_button", &[])));
    // the one slot is free: a new order goes through
    let before = stack.tap(chat, &menu, "up4:");
    let ack = stack.next_text(chat, before).await;
    assert!(!is_text(
        ack.text.as_deref().unwrap_or_default(),
        "err.too_many_jobs"
    ));
    stack.next_result(chat, before).await;
    stack.wait_balance(user.id, 96).await;
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_order_that_does_not_fit_the_free_slots_is_refused_naming_the_cap() {
    let opts = Options {
        max_concurrent: 3,
        ..Options::default()
    };
    let stack = Stack::start("bot_cap_refusal", opts).await;
    stack.provider.set_tasks_never_finish(true);
    let chat = 2016;
    let menu = stack.send_photo(chat).await;
    let user = stack.user(chat).await;
    let before = stack.tap(chat, &menu, "up2:");
    stack.next_text(chat, before).await;
    let counts = stack.video_count_menu(chat, &menu, "ugc").await;
    let five = button(&counts, "n:");
    let five = format!(
        "{}:5",
        five.rsplit_once(':')
            .map_or(five.as_str(), |(head, _)| head)
    );
    let before = stack.sent_count(chat);
    stack
        .tg
        .user_presses_button(chat, chat, counts.message_id, &five);
    let refusal = stack.next_text(chat, before).await;
    assert_eq!(
        refusal.text,
        Some(text(
            "err.too_many_jobs",
            &[("count", &1), ("needed", &5), ("max", &3)]
        ))
    );
    assert_eq!(stack.jobs_of(user.id, "generate_video").await, 0);
    stack.finish().await;
}
