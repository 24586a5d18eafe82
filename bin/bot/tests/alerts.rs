//! Admin alerts in Telegram, with the real bot and worker processes: a provider's
//! billing errors, all its keys cooling down and dead letters growing reach
//! `bot.admin_ids` once per incident, however many rounds the condition lasts, and
//! again once it cleared and came back.

mod common;

use common::{Options, Stack, WAIT, is_text};
use genq_redis::NewJob;
use genq_testkit::{FakeFailure, SentKind, wait_until};

const ADMIN: i64 = 9_100;
const USER: i64 = 9_101;

/// The admin chat's texts that are the English catalog's `key`.
fn alerts(stack: &Stack, key: &str) -> usize {
    stack
        .tg
        .sent(ADMIN)
        .iter()
        .filter(|m| m.kind == SentKind::Text)
        .filter(|m| m.text.as_deref().is_some_and(|t| is_text(t, key)))
        .count()
}

/// Waits until the admin chat has `n` alerts of `key`.
async fn wait_alerts(stack: &Stack, key: &str, n: usize) {
    let got = wait_until(WAIT, || {
        let count = alerts(stack, key);
        async move { (count >= n).then_some(count) }
    })
    .await;
    assert_eq!(
        got,
        Some(n),
        "{key}: admin chat has {:#?}",
        stack.tg.sent(ADMIN)
    );
}

/// The user orders an upscale, which fails for billing at the provider; the user
/// is told so (the status message, or a message of its own).
async fn upscale_fails_for_billing(stack: &Stack) {
    let menu = stack.send_photo(USER).await;
    let before = stack.tap(USER, &menu, "up2:");
    stack
        .wait_sent(USER, before, |m| {
            m.text
                .as_deref()
                .is_some_and(|t| is_text(t, "fail.billing"))
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_billing_incident_alerts_the_admins_once_and_again_after_it_cleared() {
    let stack = Stack::start(
        "bot_alerts",
        Options {
            admin_ids: vec![ADMIN],
            extra_bot: "alert_interval_secs = 1\nalert_dead_letters = 3".to_owned(),
            ..Options::default()
        },
    )
    .await;
    // the admin has talked to the bot (a bot may only write to such users)
    let before = stack.sent_count(ADMIN);
    stack.tg.user_sends_command(ADMIN, ADMIN, "/start");
    stack.next_text(ADMIN, before).await;

    // the media provider's only key is refused for billing
    stack
        .provider
        .fail_key("fake-media-key", FakeFailure::Billing);
    upscale_fails_for_billing(&stack).await;
    wait_alerts(&stack, "admin.alert_billing", 1).await;
    wait_alerts(&stack, "admin.alert_keys_billing", 1).await;
    let billing = stack
        .tg
        .sent(ADMIN)
        .into_iter()
        .filter_map(|m| m.text)
        .find(|t| is_text(t, "admin.alert_billing"))
        .unwrap_or_default();
    assert!(
        billing.contains("upscale") && billing.contains("img"),
        "the alert names the job type and the queue: {billing}"
    );

    // the incident goes on: another order fails the same way (the key still cools)
    upscale_fails_for_billing(&stack).await;
    // a marker in a later round: dead letters grow on `img` (3 more, besides the
    // two upscales); its alert comes from a round that also saw the second billing
    // failure and the key still cooling
    for _ in 0..3 {
        stack
            .queue
            .push(NewJob::new(
                "img",
                "probe",
                r#"{"fail": {"class": "bad_input", "message": "marker"}}"#,
            ))
            .await
            .unwrap();
    }
    wait_alerts(&stack, "admin.alert_dead", 1).await;
    assert_eq!(
        alerts(&stack, "admin.alert_billing"),
        1,
        "billing: one alert per incident"
    );
    assert_eq!(
        alerts(&stack, "admin.alert_keys_billing"),
        1,
        "keys: one alert per incident"
    );

    // the keys come back (their cool-downs end) and the incident ends…
    stack.provider.clear_key_failures();
    let mut conn = stack.queue.connection();
    let cool: Vec<String> = redis::AsyncCommands::keys(
        &mut conn,
        format!("{}:provider:{{media}}:cool:*", stack.prefix),
    )
    .await
    .unwrap();
    assert_eq!(cool.len(), 1, "the key cooled down: {cool:?}");
    let _: () = redis::AsyncCommands::del(&mut conn, &cool).await.unwrap();
    let incident = format!("{}:bot:alert:keys:media", stack.prefix);
    let ended = wait_until(WAIT, || {
        let mut conn = conn.clone();
        let incident = incident.clone();
        async move {
            let exists: bool = redis::AsyncCommands::exists(&mut conn, &incident)
                .await
                .ok()?;
            (!exists).then_some(())
        }
    })
    .await;
    assert!(ended.is_some(), "the keys incident never ended");

    // …and when it happens again, it is a new incident: one more alert
    stack
        .provider
        .fail_key("fake-media-key", FakeFailure::Billing);
    upscale_fails_for_billing(&stack).await;
    wait_alerts(&stack, "admin.alert_keys_billing", 2).await;
    // the billing incident never ended (failures kept coming within its window)
    assert_eq!(alerts(&stack, "admin.alert_billing"), 1);
    assert_eq!(alerts(&stack, "admin.alert_dead"), 1);
    // the user was never sent an alert
    assert!(
        stack
            .tg
            .sent(USER)
            .iter()
            .filter_map(|m| m.text.as_deref())
            .all(|t| !t.starts_with("🚨")),
        "{:#?}",
        stack.tg.sent(USER)
    );
    stack.finish().await;
}
