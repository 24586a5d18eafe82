//! [`RedisConn`] on a real three-primary Redis Cluster started by the test: a
//! pipeline over keys of several shards is split and answered in order (an atomic
//! one is refused with CROSSSLOT), pub/sub messages arrive through the cluster, a
//! blocking stream read runs on a connection of its own, and a bad URL is refused
//! with its problem named.

use std::time::Duration;

use futures::StreamExt;
use genq_redis::{QueueError, RedisConfig, RedisQueue};
use genq_testkit::{RedisClusterNodes, unique_prefix};
use redis::AsyncCommands;

fn stream_key(prefix: &str) -> String {
    format!("{prefix}:{{video}}:events")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_connection_splits_pipelines_and_carries_pub_sub_and_blocking_reads() {
    let cluster = RedisClusterNodes::start()
        .await
        .expect("a 3-primary cluster");
    let prefix = unique_prefix("cluster_conn");
    let queue = RedisQueue::connect(RedisConfig::with_url(cluster.url()).prefix(&prefix))
        .await
        .expect("connect");
    let mut c = queue.connection();

    // keys on every shard (their tags' slots fall in the three ranges)
    let keys: Vec<String> = ["text", "img", "delivery"]
        .iter()
        .map(|tag| format!("{prefix}:{{{tag}}}:k"))
        .collect();
    let mut set = redis::pipe();
    for (i, k) in keys.iter().enumerate() {
        set.set(k, i).ignore();
    }
    set.cmd("TIME");
    let (_time,): ((u64, u64),) = set
        .query_async(&mut c)
        .await
        .expect("a cross-slot pipeline");
    let mut get = redis::pipe();
    for k in &keys {
        get.get(k);
    }
    let values: Vec<u32> = get.query_async(&mut c).await.expect("read back");
    assert_eq!(values, vec![0, 1, 2], "the replies in the pipeline's order");
    let per_node = cluster.keys_per_node(&format!("{prefix}:*")).await;
    assert!(
        per_node.iter().all(|(_, keys)| keys.len() == 1),
        "one key on each shard: {per_node:?}"
    );
    let mut atomic = redis::pipe();
    atomic.atomic();
    for k in &keys {
        atomic.get(k);
    }
    let refused: Result<Vec<Option<u32>>, _> = atomic.query_async(&mut c).await;
    let err = refused.expect_err("a transaction cannot span slots");
    assert_eq!(err.code(), Some("CROSSSLOT"), "{err}");

    // pub/sub through the cluster
    let channel = format!("{prefix}:{{img}}:notify");
    let mut messages = queue
        .subscribe(std::slice::from_ref(&channel))
        .await
        .expect("subscribe");
    let got = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let _: i64 = c.publish(&channel, "hello").await.expect("publish");
            if let Ok(Some(m)) =
                tokio::time::timeout(Duration::from_millis(200), messages.next()).await
            {
                return m;
            }
        }
    })
    .await
    .expect("a message arrives");
    assert_eq!(
        (got.channel.as_str(), got.payload.as_str()),
        (channel.as_str(), "hello")
    );

    // a blocking read waits on its own connection while the shared one works
    let stream = stream_key(&prefix);
    let mut blocking = queue
        .blocking_connection()
        .await
        .expect("blocking connection");
    let opts = redis::streams::StreamReadOptions::default().block(5000);
    let mut read = tokio::spawn(async move {
        let reply: redis::streams::StreamReadReply = blocking
            .xread_options(&[&stream_key(&prefix)], &["$"], &opts)
            .await
            .expect("xread");
        reply.keys.len()
    });
    // added until the read, which only sees entries after it started, returns
    let streams = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let _: String = c.xadd(&stream, "*", &[("id", "1")]).await.expect("xadd");
            if let Ok(done) = tokio::time::timeout(Duration::from_millis(200), &mut read).await {
                return done.expect("reader task");
            }
        }
    })
    .await
    .expect("the blocking read returns");
    assert_eq!(streams, 1);
}

#[tokio::test]
async fn bad_sentinel_and_cluster_urls_are_refused_naming_the_problem() {
    for (url, problem) in [
        ("redis+sentinel://127.0.0.1:26379", "no master name"),
        ("redis+cluster://127.0.0.1:7000,:7001", "has no host"),
        ("redis+cluster://127.0.0.1:7000/2", "only database 0"),
        ("rediss+cluster://x", "unknown scheme"),
    ] {
        match RedisQueue::connect(RedisConfig::with_url(url)).await {
            Err(QueueError::Config(msg)) => assert!(msg.contains(problem), "{url}: {msg}"),
            other => panic!("{url}: expected a configuration error, got {other:?}"),
        }
    }
}
