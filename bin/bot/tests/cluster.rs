//! The whole bot on a real Redis Cluster of three primaries started by the test:
//! the `bot` process (tracking, limits, chat state, alerts, the delivery worker)
//! and `genq run` (workers, relay, settler) connected through the seed list. A
//! text gets its reply and a picture its photo, charged once each; the queues the
//! picture passes through (`text`, `img`, `delivery`) live on different shards.

mod common;

use common::{Options, Stack, button, text};
use genq_testkit::{RedisClusterNodes, SentKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_answers_and_delivers_a_picture_on_a_redis_cluster() {
    let cluster = RedisClusterNodes::start()
        .await
        .expect("a three-primary Redis Cluster");
    let opts = Options {
        redis_url: Some(cluster.url()),
        ..Options::default()
    };
    let stack = Stack::start("bot_cluster", opts).await;
    let chat = 1201;
    stack.start_dialog(chat).await;
    let user = stack.user(chat).await;
    let reply = stack.chat(chat, "a lighthouse in the fog").await;
    stack.wait_balance(user.id, 99).await;

    let before = stack.tap(chat, &reply, "pic:");
    let status = stack.next_text(chat, before).await;
    assert!(
        button(&status, "cx:").len() > 3,
        "the status message has a Cancel button"
    );
    let photo = stack
        .wait_sent(chat, before, |m| m.kind == SentKind::Photo)
        .await;
    assert!(
        !photo.text.clone().unwrap_or_default().is_empty(),
        "captioned"
    );
    stack
        .wait_text(chat, status.message_id, |t| t == text("status.done", &[]))
        .await;
    stack.wait_balance(user.id, 96).await;
    assert_eq!(stack.ledger(user.id, "charge").await, vec![-1, -3]);

    // the picture's queues are on different shards of the cluster
    let per_node = cluster
        .keys_per_node(&format!("{}:{{*}}:stats", stack.prefix))
        .await;
    let shards_used = per_node.iter().filter(|(_, keys)| !keys.is_empty()).count();
    assert!(
        shards_used >= 2,
        "the queues' keys spread over the shards: {per_node:?}"
    );
    stack.finish().await;
}
