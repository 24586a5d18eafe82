//! What a seed user would miss, with the real `bot` and a real worker against the
//! fake Telegram server, the fake provider, real Redis and real PostgreSQL: the
//! Upscale buttons under a generated picture, the support contact in a failure
//! message, and the dialog history (`/dialogs`, reopening one).

mod common;

use common::{Options, Stack, WAIT, button, buttons, text};
use genq_testkit::{FakeFailure, SentKind, wait_until};
use serde_json::Value;

/// The payload the bot charged and enqueued under `key` (what the worker sends the
/// provider).
async fn payload_of(stack: &Stack, user_id: i64, key: &str) -> Value {
    wait_until(WAIT, || async {
        sqlx::query_scalar::<_, Value>(
            "SELECT payload FROM jobs WHERE user_id = $1 AND idempotency_key = $2",
        )
        .bind(user_id)
        .bind(key)
        .fetch_optional(stack.store.pool())
        .await
        .ok()
        .flatten()
    })
    .await
    .unwrap_or_else(|| panic!("no job under {key}"))
}

/// The GenerateReply request the bot enqueued for the user's message `said`.
async fn reply_request(stack: &Stack, user_id: i64, said: &str) -> Value {
    sqlx::query_scalar::<_, Value>(
        "SELECT payload FROM jobs WHERE user_id = $1 AND job_type = 'generate_reply'
            AND payload -> 'messages' -> -1 ->> 'content' = $2",
    )
    .bind(user_id)
    .bind(said)
    .fetch_one(stack.store.pool())
    .await
    .unwrap_or_else(|e| panic!("no reply request for {said:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_picture_has_upscale_buttons_that_charge_once_even_when_double_tapped() {
    let stack = Stack::start("seed_upscale_picture", Options::default()).await;
    let chat = 1501;
    stack.start_dialog(chat).await;
    let user = stack.user(chat).await;
    let reply = stack.chat(chat, "a lighthouse in a storm").await;
    let before = stack.tap(chat, &reply, "pic:");
    let picture = stack
        .wait_sent(chat, before, |m| m.kind == SentKind::Photo)
        .await;
    stack.wait_balance(user.id, 96).await; // reply 1 + picture 3

    // Upscale ×2 / ×4 under the picture, priced like the upscale offer (2)
    let labels = buttons(&picture);
    assert_eq!(
        labels.iter().map(|(l, _)| l.clone()).collect::<Vec<_>>(),
        vec![
            text("button.upscale2", &[("price", &2)]),
            text("button.upscale4", &[("price", &2)]),
        ],
        "{picture:#?}"
    );
    let up2 = button(&picture, "up2:");
    assert!(up2.len() <= 64 && button(&picture, "up4:").len() <= 64);

    // a double tap: one order, one charge
    let before = stack.sent_count(chat);
    let first = stack
        .tg
        .user_presses_button(chat, chat, picture.message_id, &up2);
    let second = stack
        .tg
        .user_presses_button(chat, chat, picture.message_id, &up2);
    let upscaled = stack
        .wait_sent(chat, before, |m| {
            matches!(m.kind, SentKind::Photo | SentKind::Document)
        })
        .await;
    assert_ne!(upscaled.message_id, picture.message_id);
    assert!(upscaled.file_len.unwrap_or(0) > 0, "{upscaled:#?}");
    assert!(
        buttons(&upscaled).iter().all(|(_, d)| !d.starts_with("up")),
        "an upscaled photo is not offered for upscaling again: {upscaled:#?}"
    );
    let answers = wait_until(WAIT, || {
        let a: Vec<_> = stack
            .tg
            .callback_answers()
            .into_iter()
            .filter(|a| a.callback_query_id == first || a.callback_query_id == second)
            .collect();
        async move { (a.len() == 2).then_some(a) }
    })
    .await
    .expect("both taps answered");
    let later = answers
        .iter()
        .find(|a| a.callback_query_id == second)
        .and_then(|a| a.text.clone())
        .unwrap_or_default();
    assert!(
        later == text("err.already_taken", &[]) || later == text("err.stale_button", &[]),
        "the second tap changes nothing: {answers:?}"
    );
    stack.wait_balance(user.id, 94).await;
    assert_eq!(stack.ledger(user.id, "charge").await, vec![-1, -3, -2]);
    assert_eq!(stack.jobs_of(user.id, "upscale").await, 1);
    // keyed by the chat and the picture's message; the picture itself is upscaled
    let key = format!("up2:{chat}:{}", picture.message_id);
    let payload = payload_of(&stack, user.id, &key).await;
    assert_eq!(payload["factor"], 2);
    let image = payload["image"].as_str().unwrap_or_default().to_owned();
    assert!(!image.is_empty(), "{payload}");
    let image_job: Value = sqlx::query_scalar(
        "SELECT to_jsonb(j) FROM jobs j WHERE user_id = $1 AND job_type = 'generate_image'",
    )
    .bind(user.id)
    .fetch_one(stack.store.pool())
    .await
    .expect("the picture's job");
    let image_id = image_job["id"].as_str().unwrap_or_default();
    let image_queue = image_job["queue"].as_str().unwrap_or_default();
    let state = stack
        .queue
        .job(image_queue, image_id)
        .await
        .expect("redis")
        .expect("the picture's job in Redis");
    let result = state.result.expect("the picture's result");
    assert_eq!(
        result["artifact"]["key"].as_str(),
        Some(image.as_str()),
        "the upscale's input is the generated picture"
    );
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_billing_failure_names_the_support_contact() {
    let opts = Options {
        extra_bot: "support_contact = \"@genq_support\"\n".to_owned(),
        ..Options::default()
    };
    let stack = Stack::start("seed_support", opts).await;
    let chat = 1502;
    let menu = stack.send_photo(chat).await;
    let user = stack.user(chat).await;
    stack.provider.fail_next(1, FakeFailure::Billing);
    let before = stack.tap(chat, &menu, "up2:");
    let said = stack.wait_said(chat, before, "fail.billing").await;
    let contact = text("support.contact", &[("contact", &"@genq_support")]);
    let refund = text("refund.returned", &[("credits", &2)]);
    assert!(
        said.ends_with(&format!("{refund}\n{contact}")),
        "the refund, then the support contact: {said}"
    );
    stack.wait_balance(user.id, 100).await;
    assert_eq!(stack.ledger(user.id, "refund").await, vec![2]);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_dialog_is_listed_and_reopened_with_its_history() {
    let stack = Stack::start("seed_dialogs", Options::default()).await;
    let chat = 1503;
    stack.start_dialog(chat).await;
    let user = stack.user(chat).await;
    let first_dialog = stack
        .store
        .active_dialog(user.id)
        .await
        .expect("store")
        .expect("a dialog");
    stack
        .chat(chat, "Remember the red boat in the harbour, please")
        .await;

    // a second dialog
    let before = stack.sent_count(chat);
    stack.tg.user_sends_command(chat, chat, "/new");
    stack.next_text(chat, before).await;
    stack.chat(chat, "Something else entirely").await;
    let second_dialog = stack
        .store
        .active_dialog(user.id)
        .await
        .expect("store")
        .expect("a dialog");
    assert_ne!(second_dialog.id, first_dialog.id);

    // the list: newest first, titled, the earlier one with a Reopen button
    let before = stack.sent_count(chat);
    stack.tg.user_sends_command(chat, chat, "/dialogs");
    let list = stack.next_text(chat, before).await;
    let listed = list.text.clone().unwrap_or_default();
    let first_title = "Remember the red boat in the harbour, p…";
    assert_eq!(first_title.chars().count(), 40);
    assert_eq!(
        listed,
        [
            text("dialogs.header", &[]),
            text(
                "dialogs.line_current",
                &[("n", &1), ("title", &"Something else entirely")]
            ),
            text("dialogs.line", &[("n", &2), ("title", &first_title)]),
        ]
        .join("\n")
    );
    let reopen = buttons(&list);
    assert_eq!(
        reopen,
        vec![(
            text("button.reopen", &[("n", &2), ("title", &first_title)]),
            format!("dlg:{}", first_dialog.id)
        )],
        "only the earlier dialog can be reopened"
    );

    // someone else's tap on that dialog is refused and changes nothing
    let stranger = 1504;
    stack.start_dialog(stranger).await;
    let stranger_user = stack.user(stranger).await;
    let stranger_dialog = stack.store.active_dialog(stranger_user.id).await.unwrap();
    let stranger_menu = stack
        .tg
        .sent(stranger)
        .iter()
        .find(|m| m.kind == SentKind::Text)
        .expect("the stranger's greeting")
        .message_id;
    let foreign = stack.tg.user_presses_button(
        stranger,
        stranger,
        stranger_menu,
        &format!("dlg:{}", first_dialog.id),
    );
    let answer = wait_until(WAIT, || {
        let a = stack
            .tg
            .callback_answers()
            .into_iter()
            .find(|a| a.callback_query_id == foreign);
        async move { a }
    })
    .await
    .expect("the stranger's tap is answered");
    assert_eq!(answer.text, Some(text("err.stale_button", &[])));
    assert_eq!(
        stack.store.active_dialog(stranger_user.id).await.unwrap(),
        stranger_dialog
    );
    assert_eq!(
        stack
            .store
            .active_dialog(user.id)
            .await
            .unwrap()
            .map(|d| d.id),
        Some(second_dialog.id)
    );

    // reopen the first
    let before = stack.tap(chat, &list, "dlg:");
    let reopened = stack.next_text(chat, before).await;
    let persona = stack
        .store
        .persona(first_dialog.persona_id)
        .await
        .expect("persona");
    assert_eq!(
        reopened.text.as_deref(),
        Some(
            text(
                "dialogs.reopened",
                &[("persona", &persona.name), ("title", &first_title)]
            )
            .as_str()
        )
    );
    assert_eq!(
        stack
            .store
            .active_dialog(user.id)
            .await
            .unwrap()
            .map(|d| d.id),
        Some(first_dialog.id)
    );

    // the next message continues it: its request carries the first dialog's history
    stack.chat(chat, "What colour was the boat?").await;
    let payload = reply_request(&stack, user.id, "What colour was the boat?").await;
    let sent: Vec<(String, String)> = payload["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap_or_default().to_owned(),
                m["content"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let pairs = |items: &[(&str, &str)]| -> Vec<(String, String)> {
        items
            .iter()
            .map(|(r, c)| ((*r).to_owned(), (*c).to_owned()))
            .collect()
    };
    assert_eq!(
        sent,
        pairs(&[
            ("user", "Remember the red boat in the harbour, please"),
            (
                "assistant",
                "Echo: Remember the red boat in the harbour, please"
            ),
            ("user", "What colour was the boat?"),
        ]),
        "the first dialog's history, not the second's"
    );
    assert_eq!(
        payload["persona_prompt"].as_str(),
        Some(persona.system_prompt.as_str())
    );
    // and the exchange is stored in the first dialog
    let stored = wait_until(WAIT, || async {
        let m = stack.store.last_messages(first_dialog.id, 10).await.ok()?;
        (m.len() == 4).then_some(m)
    })
    .await
    .expect("the exchange stored in the reopened dialog");
    assert_eq!(stored[3].content, "Echo: What colour was the boat?");
    assert_eq!(
        stack
            .store
            .last_messages(second_dialog.id, 10)
            .await
            .unwrap()
            .len(),
        2,
        "the second dialog is untouched"
    );
    stack.finish().await;
}
