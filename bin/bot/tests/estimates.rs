//! The time estimate in the acknowledgement, with the real bot and worker: computed
//! from the queue (its history, else the job type's configured timeout), shown in
//! the tap's answer and the status message, in the user's language.

mod common;

use common::{Options, Stack, WAIT, is_text};
use genq_telegram::{
    estimate::{CACHE_FOR, Eta},
    i18n::Lang,
};
use genq_testkit::{SentMessage, wait_until};

/// A message's text as first sent (before any edit).
fn first_text(m: SentMessage) -> String {
    m.edits.into_iter().next().or(m.text).unwrap_or_default()
}

/// The user taps Upscale x2 under a new photo; the tap's answer and the status
/// message (as first sent), once both are there and the result came.
async fn upscale(stack: &Stack, chat: i64) -> (String, String) {
    let menu = stack.send_photo(chat).await;
    let answers_before = stack.tg.callback_answers().len();
    let before = stack.tap(chat, &menu, "up2:");
    let status: SentMessage = stack.next_text(chat, before).await;
    stack.next_result(chat, before).await;
    let tap = wait_until(WAIT, || {
        let answers = stack.tg.callback_answers();
        async move { answers.get(answers_before).and_then(|a| a.text.clone()) }
    })
    .await
    .expect("the tap was answered with a text");
    (tap, first_text(status))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acknowledgement_estimates_the_wait_from_the_queue_history() {
    let stack = Stack::start("bot_estimates", Options::default()).await;
    let chat = 5001;

    // no history yet: the upscale's configured timeout (300 s) / 10 for its run,
    // 1 s for the delivery, nothing ahead → 31 s, "about 30 seconds"
    let (tap, status) = upscale(&stack, chat).await;
    assert!(is_text(&tap, "ack.queued_eta"), "{tap}");
    assert_eq!(tap, status, "the tap's answer and the status message agree");
    assert_eq!(
        Eta::find_in(&tap, Lang::En),
        Some(Eta::Seconds(30)),
        "{tap}"
    );

    // once the queue's figures are read again, the upscale just run is the history:
    // the fake provider's upscales take a fraction of that. Figures older than
    // CACHE_FOR are still shown once while they are read again in the background.
    tokio::time::sleep(CACHE_FOR).await;
    let _stale_or_fresh = upscale(&stack, chat).await;
    let (tap, _) = upscale(&stack, chat).await;
    let eta = Eta::find_in(&tap, Lang::En).expect("an estimate");
    assert!(eta.secs() < 30, "from the history, not the default: {tap}");

    // a Russian user reads it in Russian
    let ru = 5002;
    stack.tg.set_user_language(ru, "ru");
    let menu = stack.send_photo(ru).await;
    let before = stack.tap(ru, &menu, "up2:");
    let first = first_text(stack.next_text(ru, before).await);
    assert!(
        Eta::find_in(&first, Lang::Ru).is_some() && first.contains("Ожидание"),
        "{first}"
    );
    stack.finish().await;
}
