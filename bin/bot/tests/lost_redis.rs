//! Redis loses everything (FLUSHALL) while paid pictures are being made. PostgreSQL
//! is the record: the settler puts the lost jobs back, the bot restores its
//! tracking, and every user gets their one result (or, after `/cancel`, their one
//! cancellation and refund). Nobody is told "could not deliver" for a result that
//! reached them before the loss.

mod common;

use std::time::Duration;

use common::{Options, Stack, WAIT, buttons, is_text, text};
use genq_testkit::{PrivateRedis, SentKind, SentMessage, wait_until};

fn has_live_cancel(m: &SentMessage) -> bool {
    !m.deleted && buttons(m).iter().any(|(_, d)| d.starts_with("cx:"))
}

fn results(stack: &Stack, chat: i64) -> usize {
    stack
        .tg
        .sent(chat)
        .iter()
        .filter(|m| matches!(m.kind, SentKind::Photo | SentKind::Document))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_get_their_one_message_after_redis_lost_everything() {
    let redis = PrivateRedis::start().await.expect("a private redis-server");
    let opts = Options {
        redis_url: Some(redis.url()),
        // the pictures are still being made when Redis loses them
        task_duration: Duration::from_secs(4),
        extra_bot: "orphan_sweep_secs = 2\n".to_owned(),
        ..Options::default()
    };
    let stack = Stack::start("bot_lost_redis", opts).await;
    // a reply delivered before the loss
    let early = 4301;
    stack.start_dialog(early).await;
    stack.chat(early, "hello before the loss").await;
    let early_sent = stack.sent_count(early);

    // three users order an upscale each; the status messages are up
    let chats = [4302, 4303, 4304];
    let mut status = Vec::new();
    for &chat in &chats {
        let menu = stack.send_photo(chat).await;
        let before = stack.tap(chat, &menu, "up2:");
        status.push(stack.next_text(chat, before).await);
    }
    let users: Vec<i64> = {
        let mut v = Vec::new();
        for &chat in &chats {
            v.push(stack.user(chat).await.id);
        }
        v
    };
    let pushed = wait_until(WAIT, || async {
        (stack.store.outbox_len().await.ok()? == 0).then_some(())
    })
    .await;
    assert!(pushed.is_some(), "the jobs reached Redis");

    // Redis loses everything; the last user cancels right away
    let mut c = redis::Client::open(redis.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut c)
        .await
        .expect("flushall");
    let canceller = chats[2];
    let before = stack.sent_count(canceller);
    stack.tg.user_sends_command(canceller, canceller, "/cancel");
    let answer = stack.next_text(canceller, before).await;
    assert!(
        is_text(answer.text.as_deref().unwrap_or(""), "cancel.done"),
        "/cancel sees the lost job: {:?}",
        answer.text
    );

    // the other two get their one picture, and their status messages end
    for (i, &chat) in chats[..2].iter().enumerate() {
        let got = wait_until(Duration::from_secs(90), || async {
            (results(&stack, chat) >= 1).then_some(())
        })
        .await;
        assert!(
            got.is_some(),
            "chat {chat} got its picture: {:#?}",
            stack.tg.sent(chat)
        );
        stack
            .wait_text(chat, status[i].message_id, |t| {
                t == text("status.done", &[])
            })
            .await;
        stack.wait_balance(users[i], 100 - 2).await;
    }
    // the canceller's status message says so, and the credits came back once
    stack
        .wait_text(canceller, status[2].message_id, |t| {
            is_text(t, "fail.cancelled")
        })
        .await;
    stack.wait_balance(users[2], 100).await;
    assert_eq!(stack.ledger(users[2], "refund").await, vec![2]);

    // a few sweeps later: nothing more was sent, to anyone
    tokio::time::sleep(Duration::from_secs(6)).await;
    for (i, &chat) in chats.iter().enumerate() {
        let n = if i < 2 { 1 } else { 0 };
        assert_eq!(results(&stack, chat), n, "chat {chat}: one result at most");
        let live = stack.message(chat, status[i].message_id).expect("status");
        assert!(
            !has_live_cancel(&live),
            "chat {chat}: no live Cancel button"
        );
        for m in stack.tg.sent(chat) {
            assert!(
                !is_text(m.text.as_deref().unwrap_or(""), "fail.delivery"),
                "chat {chat} was told the result could not be delivered"
            );
        }
    }
    let late: Vec<_> = stack.tg.sent(early).into_iter().skip(early_sent).collect();
    assert!(
        late.iter().all(|m| m.kind == SentKind::Action),
        "the early user heard nothing more: {late:#?}"
    );
    assert_eq!(
        stack.jobs_of(users[0], "upscale").await,
        1,
        "one job per order, put back with its own id"
    );
    stack.finish().await;
    drop(redis);
}
