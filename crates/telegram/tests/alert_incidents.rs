//! Admin-alert incidents against the real Redis: one alert per incident whichever
//! replica sees it first, a new one after it ended, the hourly budget, dead-letter
//! growth windows.

use std::time::Duration;

use genq_redis::RedisConn;
use genq_telegram::alerts::{Incidents, Start};
use genq_testkit::{cleanup_prefix, redis_url, unique_prefix};

async fn conn() -> RedisConn {
    redis::Client::open(redis_url())
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap()
        .into()
}

const LONG: Duration = Duration::from_secs(600);

#[tokio::test]
async fn two_replicas_seeing_one_condition_alert_once() {
    let prefix = unique_prefix("alert-once");
    let a = Incidents::new(conn().await, &prefix, 20);
    let b = Incidents::new(conn().await, &prefix, 20);
    let (first, second) = tokio::join!(a.start("keys:media", LONG), b.start("keys:media", LONG));
    let mut starts = [first.unwrap(), second.unwrap()];
    starts.sort_by_key(|s| *s != Start::New);
    assert_eq!(starts, [Start::New, Start::Ongoing]);
    // the condition lasts: round after round, nobody alerts again
    for _ in 0..5 {
        assert_eq!(a.start("keys:media", LONG).await.unwrap(), Start::Ongoing);
        assert_eq!(b.start("keys:media", LONG).await.unwrap(), Start::Ongoing);
    }
    // another condition is another incident
    assert_eq!(a.start("billing:upscale", LONG).await.unwrap(), Start::New);
    cleanup_prefix(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn an_incident_that_ended_alerts_again_and_one_not_sent_is_retried() {
    let prefix = unique_prefix("alert-again");
    let a = Incidents::new(conn().await, &prefix, 20);
    let key = format!("{prefix}:bot:alert:dead:img");
    assert_eq!(a.start("dead:img", LONG).await.unwrap(), Start::New);
    let mut c = conn().await;
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 600_000, "ends when not seen again: {ttl}");
    // the incident ends (its key expires when the condition is no longer seen)
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(a.start("dead:img", LONG).await.unwrap(), Start::New);
    // an alert that reached no admin lets the incident go: the next round alerts
    a.abandon("dead:img").await.unwrap();
    assert_eq!(a.start("dead:img", LONG).await.unwrap(), Start::New);
    cleanup_prefix(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn over_the_hourly_budget_an_incident_waits_for_a_later_round() {
    let prefix = unique_prefix("alert-budget");
    let a = Incidents::new(conn().await, &prefix, 2);
    assert_eq!(a.start("billing:a", LONG).await.unwrap(), Start::New);
    assert_eq!(a.start("billing:b", LONG).await.unwrap(), Start::New);
    assert_eq!(a.start("billing:c", LONG).await.unwrap(), Start::Deferred);
    // not recorded: held back again, not taken as ongoing
    assert_eq!(a.start("billing:c", LONG).await.unwrap(), Start::Deferred);
    // an abandoned alert gives its share of the budget back
    a.abandon("billing:a").await.unwrap();
    assert_eq!(a.start("billing:c", LONG).await.unwrap(), Start::New);
    let mut c = conn().await;
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{prefix}:bot:alert:budget"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(
        ttl > 0 && ttl <= 3_600_000,
        "the budget is an hour's: {ttl}"
    );
    cleanup_prefix(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn dead_letter_growth_counts_from_the_start_of_the_window() {
    let prefix = unique_prefix("alert-growth");
    let a = Incidents::new(conn().await, &prefix, 20);
    // the first look starts the window: nothing grew yet
    assert_eq!(a.growth("img", 40, LONG).await.unwrap(), 0);
    assert_eq!(a.growth("img", 43, LONG).await.unwrap(), 3);
    assert_eq!(a.growth("img", 47, LONG).await.unwrap(), 7);
    // other queues have windows of their own
    assert_eq!(a.growth("text", 5, LONG).await.unwrap(), 0);
    // a new window (the old one expired) starts from the count then
    let mut c = conn().await;
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}:bot:alert:deadbase:img"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(a.growth("img", 47, LONG).await.unwrap(), 0);
    assert_eq!(a.growth("img", 48, LONG).await.unwrap(), 1);
    cleanup_prefix(&redis_url(), &prefix).await;
}
