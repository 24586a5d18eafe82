//! A queued job's position: how many ready jobs run before it.

use genq_redis::{NewJob, RedisConfig, RedisQueue};
use genq_testkit::{cleanup_prefix, redis_url, unique_prefix};

#[tokio::test]
async fn jobs_ahead_counts_the_ready_jobs_that_run_first() {
    let prefix = unique_prefix("position");
    let queue = RedisQueue::connect(RedisConfig::with_url(redis_url()).prefix(&prefix))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..4 {
        let pushed = queue
            .push(NewJob::new("pos", "probe", format!("{i}")))
            .await
            .unwrap();
        ids.push(pushed.id);
    }
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            queue.jobs_ahead("pos", id).await.unwrap(),
            Some(i as u64),
            "job {i} waits behind the {i} pushed before it"
        );
    }
    assert_eq!(queue.jobs_ahead("pos", "no-such-job").await.unwrap(), None);
    queue.cancel("pos", &ids[0]).await.unwrap();
    assert_eq!(queue.jobs_ahead("pos", &ids[3]).await.unwrap(), Some(2));
    assert!(queue.jobs_ahead("bad queue!", &ids[1]).await.is_err());
    cleanup_prefix(&redis_url(), &prefix).await;
}
