//! The admin process on a Redis Cluster and behind Redis Sentinel (through a
//! failover): its API and cluster metrics read every queue.

use std::{collections::BTreeMap, time::Duration};

use genq_redis::{NewJob, RedisConfig, RedisQueue};
use genq_testkit::{
    ChildProcess, RedisClusterNodes, RedisSentinelSet, free_port, http_get, unique_prefix,
    wait_until,
};

/// Pushes 3 jobs to `text` and 2 to `img`.
async fn push_jobs(url: &str, prefix: &str) {
    let queue = RedisQueue::connect(RedisConfig::with_url(url).prefix(prefix))
        .await
        .expect("connect");
    for (q, n) in [("text", 3), ("img", 2)] {
        for i in 0..n {
            queue
                .push(NewJob::json(q, "probe", &serde_json::json!({ "echo": i })).expect("payload"))
                .await
                .expect("push");
        }
    }
}

fn admin(url: &str, prefix: &str, addr: &str) -> ChildProcess {
    let env = [
        ("GENQ_REDIS_URL", url.to_owned()),
        ("GENQ_PREFIX", prefix.to_owned()),
    ];
    ChildProcess::spawn(
        env!("CARGO_BIN_EXE_admin"),
        &["--addr", addr, "--no-database"],
        &env,
    )
    .expect("spawn admin")
}

/// Ready jobs per queue, as the admin's API says (once it says 2 queues).
async fn ready_per_queue(addr: &str) -> Option<BTreeMap<String, u64>> {
    wait_until(Duration::from_secs(30), || async {
        let body = http_get(addr, "/api/queues")?;
        let list: Vec<serde_json::Value> = serde_json::from_str(&body).ok()?;
        let map: BTreeMap<String, u64> = list
            .iter()
            .filter_map(|q| Some((q["queue"].as_str()?.to_owned(), q["ready"].as_u64()?)))
            .collect();
        (map.len() == 2).then_some(map)
    })
    .await
}

fn expected() -> BTreeMap<String, u64> {
    BTreeMap::from([("img".to_owned(), 2), ("text".to_owned(), 3)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_reads_every_queue_of_a_cluster() {
    let cluster = RedisClusterNodes::start()
        .await
        .expect("a 3-primary cluster");
    let prefix = unique_prefix("admincluster");
    push_jobs(&cluster.url(), &prefix).await;
    let addr = format!("127.0.0.1:{}", free_port());
    let _admin = admin(&cluster.url(), &prefix, &addr);
    assert_eq!(ready_per_queue(&addr).await, Some(expected()));
    let metrics = http_get(&addr, "/metrics").expect("metrics");
    assert!(
        metrics.contains(r#"genq_admin_queue_depth{queue="img",state="ready"} 2"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_follows_a_sentinel_failover() {
    let mut set = RedisSentinelSet::start()
        .await
        .expect("a primary, a replica and three sentinels");
    let prefix = unique_prefix("adminsentinel");
    push_jobs(&set.url(), &prefix).await;
    let addr = format!("127.0.0.1:{}", free_port());
    let mut admin = admin(&set.url(), &prefix, &addr);
    assert_eq!(ready_per_queue(&addr).await, Some(expected()));
    // the replica has the jobs too, then the primary dies
    tokio::time::sleep(Duration::from_secs(1)).await;
    set.kill_primary();
    assert!(set.wait_failover(Duration::from_secs(60)).await, "failover");
    assert_eq!(
        ready_per_queue(&addr).await,
        Some(expected()),
        "the same admin process reads the promoted replica"
    );
    assert!(
        admin.wait_exit(Duration::from_millis(100)).await.is_none(),
        "the admin was not restarted"
    );
}
