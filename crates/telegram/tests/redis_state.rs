//! Rate limits, job slots and chat states against the real Redis, each test under a
//! key prefix of its own.

use std::time::Duration;

use genq_redis::RedisConn;
use genq_telegram::{
    chat_state::ChatStates,
    limits::{Admission, JobSlots, RateLimits, SlotReservation, UserLimiter},
};
use genq_testkit::{cleanup_prefix, redis_url, unique_prefix};
use serde::{Deserialize, Serialize};

const USER: i64 = 1_000_001;

async fn conn() -> RedisConn {
    redis::Client::open(redis_url())
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap()
        .into()
}

/// The Redis server's clock, in ms.
async fn server_now_ms(c: &mut RedisConn) -> i64 {
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(c).await.unwrap();
    secs * 1000 + micros / 1000
}

async fn zcard(c: &mut RedisConn, key: &str) -> i64 {
    redis::cmd("ZCARD").arg(key).query_async(c).await.unwrap()
}

async fn pttl(c: &mut RedisConn, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(c).await.unwrap()
}

fn limits(per_minute: u32, per_hour: u32) -> RateLimits {
    RateLimits {
        per_minute,
        per_hour,
    }
}

fn retry_after(a: Admission) -> Duration {
    match a {
        Admission::TooMany { retry_after } => retry_after,
        Admission::Allowed => panic!("expected TooMany, got Allowed"),
    }
}

// ---- UserLimiter ----

#[tokio::test]
async fn rate_per_minute_then_too_many() {
    let prefix = unique_prefix("rate-minute");
    let limiter = UserLimiter::new(conn().await, &prefix, limits(5, 100));
    for i in 0..5 {
        assert_eq!(
            limiter.admit(USER).await.unwrap(),
            Admission::Allowed,
            "#{i}"
        );
    }
    let wait = retry_after(limiter.admit(USER).await.unwrap());
    assert!(
        (Duration::from_secs(1)..=Duration::from_secs(60)).contains(&wait),
        "{wait:?}"
    );
    // the oldest entry was made just now: it leaves the window in about a minute
    assert!(wait > Duration::from_secs(50), "{wait:?}");
    cleanup_prefix(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn rate_denied_requests_are_not_recorded() {
    let prefix = unique_prefix("rate-denied");
    let limiter = UserLimiter::new(conn().await, &prefix, limits(3, 100));
    for _ in 0..3 {
        assert_eq!(limiter.admit(USER).await.unwrap(), Admission::Allowed);
    }
    for _ in 0..5 {
        retry_after(limiter.admit(USER).await.unwrap());
    }
    let mut c = conn().await;
    assert_eq!(zcard(&mut c, &limiter.key(USER)).await, 3);
    cleanup_prefix(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn rate_per_hour_limit() {
    let prefix = unique_prefix("rate-hour");
    let limiter = UserLimiter::new(conn().await, &prefix, limits(1000, 3));
    for _ in 0..3 {
        assert_eq!(limiter.admit(USER).await.unwrap(), Admission::Allowed);
    }
    let wait = retry_after(limiter.admit(USER).await.unwrap());
    assert!(
        (Duration::from_secs(3500)..=Duration::from_secs(3600)).contains(&wait),
        "{wait:?}"
    );
    cleanup_prefix(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn rate_users_are_independent() {
    let prefix = unique_prefix("rate-users");
    let limiter = UserLimiter::new(conn().await, &prefix, limits(2, 100));
    for _ in 0..2 {
        assert_eq!(limiter.admit(USER).await.unwrap(), Admission::Allowed);
    }
    retry_after(limiter.admit(USER).await.unwrap());
    assert_eq!(limiter.admit(USER + 1).await.unwrap(), Admission::Allowed);
    assert_eq!(limiter.admit(-USER).await.unwrap(), Admission::Allowed);
    cleanup_prefix(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn rate_key_expires_after_an_hour() {
    let prefix = unique_prefix("rate-ttl");
    let limiter = UserLimiter::new(conn().await, &prefix, limits(5, 20));
    limiter.admit(USER).await.unwrap();
    let mut c = conn().await;
    let ttl = pttl(&mut c, &limiter.key(USER)).await;
    assert!((3_590_000..=3_600_000).contains(&ttl), "{ttl}");
    cleanup_prefix(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn rate_window_slides() {
    let prefix = unique_prefix("rate-slide");
    let limiter = UserLimiter::new(conn().await, &prefix, limits(5, 100));
    let key = limiter.key(USER);
    let mut c = conn().await;
    // five requests 58.5 s ago: the minute is full for another 1.5 s
    let then = server_now_ms(&mut c).await - 58_500;
    for i in 0..5 {
        let _: i64 = redis::cmd("ZADD")
            .arg(&key)
            .arg(then)
            .arg(format!("{then}-seed{i}"))
            .query_async(&mut c)
            .await
            .unwrap();
    }
    let wait = retry_after(limiter.admit(USER).await.unwrap());
    assert!(
        (Duration::from_secs(1)..=Duration::from_millis(1500)).contains(&wait),
        "{wait:?}"
    );
    tokio::time::sleep(wait + Duration::from_millis(50)).await;
    assert_eq!(limiter.admit(USER).await.unwrap(), Admission::Allowed);
    cleanup_prefix(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn rate_hour_window_slides_and_old_entries_are_dropped() {
    let prefix = unique_prefix("rate-slide-hour");
    let limiter = UserLimiter::new(conn().await, &prefix, limits(5, 3));
    let key = limiter.key(USER);
    let mut c = conn().await;
    let now = server_now_ms(&mut c).await;
    // one entry older than an hour (dropped), three 59 min 50 s old (a full hour)
    let mut seed = vec![(now - 3_700_000, "old".to_owned())];
    for i in 0..3 {
        seed.push((now - 3_590_000 + i, format!("seed{i}")));
    }
    for (score, member) in &seed {
        let _: i64 = redis::cmd("ZADD")
            .arg(&key)
            .arg(*score)
            .arg(member)
            .query_async(&mut c)
            .await
            .unwrap();
    }
    let wait = retry_after(limiter.admit(USER).await.unwrap());
    assert!(
        (Duration::from_secs(9)..=Duration::from_secs(10)).contains(&wait),
        "{wait:?}"
    );
    assert_eq!(
        zcard(&mut c, &key).await,
        3,
        "the entry older than 1 h is gone"
    );
    cleanup_prefix(&redis_url(), &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_concurrent_admits_never_exceed_the_limit() {
    let prefix = unique_prefix("rate-concurrent");
    let a = UserLimiter::new(conn().await, &prefix, limits(7, 100));
    let b = UserLimiter::new(conn().await, &prefix, limits(7, 100));
    let mut tasks = Vec::new();
    for i in 0..60 {
        let limiter = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move { limiter.admit(USER).await }));
    }
    let mut allowed = 0;
    for task in tasks {
        if task.await.unwrap().unwrap() == Admission::Allowed {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 7);
    let mut c = conn().await;
    assert_eq!(zcard(&mut c, &a.key(USER)).await, 7);
    cleanup_prefix(&redis_url(), &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_entries_are_unique_within_a_millisecond() {
    let prefix = unique_prefix("rate-unique");
    let limiter = UserLimiter::new(conn().await, &prefix, limits(1000, 1000));
    let mut tasks = Vec::new();
    for _ in 0..300 {
        let limiter = limiter.clone();
        tasks.push(tokio::spawn(async move { limiter.admit(USER).await }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), Admission::Allowed);
    }
    let mut c = conn().await;
    assert_eq!(zcard(&mut c, &limiter.key(USER)).await, 300);
    cleanup_prefix(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn rate_replicas_share_the_count() {
    let prefix = unique_prefix("rate-replicas");
    let a = UserLimiter::new(conn().await, &prefix, limits(5, 100));
    let b = UserLimiter::new(conn().await, &prefix, limits(5, 100));
    for i in 0..5 {
        let replica = if i % 2 == 0 { &a } else { &b };
        assert_eq!(
            replica.admit(USER).await.unwrap(),
            Admission::Allowed,
            "#{i}"
        );
    }
    retry_after(a.admit(USER).await.unwrap());
    retry_after(b.admit(USER).await.unwrap());
    cleanup_prefix(&redis_url(), &prefix).await;
}

// ---- JobSlots ----

fn ids(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

async fn sorted_open(slots: &JobSlots, user: i64) -> Vec<String> {
    let mut open = slots.open(user).await.unwrap();
    open.sort();
    open
}

#[tokio::test]
async fn slots_reserve_up_to_cap_then_full() {
    let prefix = unique_prefix("slots-cap");
    let slots = JobSlots::new(conn().await, &prefix, 3);
    for id in ["a", "b", "c"] {
        assert_eq!(
            slots.reserve(USER, &ids(&[id])).await.unwrap(),
            SlotReservation::Reserved
        );
    }
    assert_eq!(
        slots.reserve(USER, &ids(&["d"])).await.unwrap(),
        SlotReservation::Full { open: 3 }
    );
    assert_eq!(sorted_open(&slots, USER).await, ids(&["a", "b", "c"]));
    // another user has slots of their own
    assert_eq!(
        slots.reserve(USER + 1, &ids(&["d"])).await.unwrap(),
        SlotReservation::Reserved
    );
    // the key expires with its slots
    let mut c = conn().await;
    let ttl = pttl(&mut c, &slots.key(USER)).await;
    assert!((7_100_000..=7_200_000).contains(&ttl), "{ttl}");
    cleanup_prefix(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn slots_release_frees_a_slot() {
    let prefix = unique_prefix("slots-release");
    let slots = JobSlots::new(conn().await, &prefix, 2);
    assert_eq!(
        slots.reserve(USER, &ids(&["a", "b"])).await.unwrap(),
        SlotReservation::Reserved
    );
    assert_eq!(
        slots.reserve(USER, &ids(&["c"])).await.unwrap(),
        SlotReservation::Full { open: 2 }
    );
    slots.release(USER, "a").await.unwrap();
    slots.release(USER, "never-reserved").await.unwrap();
    assert_eq!(slots.open(USER).await.unwrap(), ids(&["b"]));
    assert_eq!(
        slots.reserve(USER, &ids(&["c"])).await.unwrap(),
        SlotReservation::Reserved
    );
    slots.release(USER, "b").await.unwrap();
    slots.release(USER, "c").await.unwrap();
    assert!(slots.open(USER).await.unwrap().is_empty());
    cleanup_prefix(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn slots_reserving_several_is_all_or_nothing() {
    let prefix = unique_prefix("slots-many");
    let slots = JobSlots::new(conn().await, &prefix, 3);
    assert_eq!(
        slots.reserve(USER, &ids(&["a"])).await.unwrap(),
        SlotReservation::Reserved
    );
    assert_eq!(
        slots.reserve(USER, &ids(&["b", "c", "d"])).await.unwrap(),
        SlotReservation::Full { open: 1 }
    );
    assert_eq!(slots.open(USER).await.unwrap(), ids(&["a"]));
    assert_eq!(
        slots.reserve(USER, &ids(&["b", "c"])).await.unwrap(),
        SlotReservation::Reserved
    );
    assert_eq!(sorted_open(&slots, USER).await, ids(&["a", "b", "c"]));
    // nothing to reserve is always fine
    assert_eq!(
        slots.reserve(USER, &[]).await.unwrap(),
        SlotReservation::Reserved
    );
    cleanup_prefix(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn slots_an_id_counts_once() {
    let prefix = unique_prefix("slots-same");
    let slots = JobSlots::new(conn().await, &prefix, 1);
    assert_eq!(
        slots.reserve(USER, &ids(&["a", "a"])).await.unwrap(),
        SlotReservation::Reserved
    );
    // reserving it again (a retried request) renews it
    assert_eq!(
        slots.reserve(USER, &ids(&["a"])).await.unwrap(),
        SlotReservation::Reserved
    );
    assert_eq!(
        slots.reserve(USER, &ids(&["a", "b"])).await.unwrap(),
        SlotReservation::Full { open: 1 }
    );
    assert_eq!(slots.open(USER).await.unwrap(), ids(&["a"]));
    cleanup_prefix(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn slots_expire_by_themselves() {
    let prefix = unique_prefix("slots-expire");
    let slots = JobSlots::new(conn().await, &prefix, 1).with_ttl(Duration::from_millis(300));
    assert_eq!(
        slots.reserve(USER, &ids(&["lost"])).await.unwrap(),
        SlotReservation::Reserved
    );
    assert_eq!(
        slots.reserve(USER, &ids(&["b"])).await.unwrap(),
        SlotReservation::Full { open: 1 }
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(slots.open(USER).await.unwrap().is_empty());
    assert_eq!(
        slots.reserve(USER, &ids(&["b"])).await.unwrap(),
        SlotReservation::Reserved
    );
    assert_eq!(slots.open(USER).await.unwrap(), ids(&["b"]));
    cleanup_prefix(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn slots_expired_members_are_dropped_even_if_the_key_lives_on() {
    let prefix = unique_prefix("slots-expired-member");
    let slots = JobSlots::new(conn().await, &prefix, 2);
    let key = slots.key(USER);
    let mut c = conn().await;
    // a slot whose release was lost, expired a second ago, next to a live one
    let now = server_now_ms(&mut c).await;
    let _: i64 = redis::cmd("ZADD")
        .arg(&key)
        .arg(now - 1000)
        .arg("lost")
        .arg(now + 60_000)
        .arg("live")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(slots.open(USER).await.unwrap(), ids(&["live"]));
    assert_eq!(
        slots.reserve(USER, &ids(&["new"])).await.unwrap(),
        SlotReservation::Reserved
    );
    assert_eq!(zcard(&mut c, &key).await, 2);
    cleanup_prefix(&redis_url(), &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slots_concurrent_reservations_never_exceed_the_cap() {
    let prefix = unique_prefix("slots-concurrent");
    let a = JobSlots::new(conn().await, &prefix, 4);
    let b = JobSlots::new(conn().await, &prefix, 4);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let slots = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            slots.reserve(USER, &[format!("job-{i}")]).await
        }));
    }
    let mut reserved = 0;
    for task in tasks {
        match task.await.unwrap().unwrap() {
            SlotReservation::Reserved => reserved += 1,
            SlotReservation::Full { open } => assert_eq!(open, 4),
        }
    }
    assert_eq!(reserved, 4);
    assert_eq!(b.open(USER).await.unwrap().len(), 4);
    cleanup_prefix(&redis_url(), &prefix).await;
}

// ---- ChatStates ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Dialog {
    Idle,
    Chatting { persona: String, turns: u32 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ButtonData {
    job: String,
    action: String,
    count: u8,
}

const CHAT: i64 = -100_123_456;
const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn chat_state_set_get_clear() {
    let prefix = unique_prefix("chat-roundtrip");
    let states = ChatStates::new(conn().await, &prefix, HOUR);
    assert_eq!(states.get::<Dialog>(CHAT).await.unwrap(), None);
    let state = Dialog::Chatting {
        persona: "Alice".to_owned(),
        turns: 3,
    };
    states.set(CHAT, &state).await.unwrap();
    assert_eq!(states.get::<Dialog>(CHAT).await.unwrap(), Some(state));
    states.set(CHAT, &Dialog::Idle).await.unwrap();
    assert_eq!(
        states.get::<Dialog>(CHAT).await.unwrap(),
        Some(Dialog::Idle)
    );
    assert_eq!(states.get::<Dialog>(CHAT + 1).await.unwrap(), None);

    let mut c = conn().await;
    let key = format!("{prefix}:bot:chat:{CHAT}");
    assert_eq!(states.chat_key(CHAT), key);
    let ttl = pttl(&mut c, &key).await;
    assert!((3_590_000..=3_600_000).contains(&ttl), "{ttl}");

    states.clear(CHAT).await.unwrap();
    assert_eq!(states.get::<Dialog>(CHAT).await.unwrap(), None);
    states.clear(CHAT).await.unwrap();
    cleanup_prefix(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn chat_state_is_shared_by_replicas() {
    let prefix = unique_prefix("chat-replicas");
    let a = ChatStates::new(conn().await, &prefix, HOUR);
    let b = ChatStates::new(conn().await, &prefix, HOUR);
    let state = Dialog::Chatting {
        persona: "Боб".to_owned(),
        turns: 1,
    };
    a.set(CHAT, &state).await.unwrap();
    assert_eq!(b.get::<Dialog>(CHAT).await.unwrap(), Some(state));
    b.clear(CHAT).await.unwrap();
    assert_eq!(a.get::<Dialog>(CHAT).await.unwrap(), None);
    cleanup_prefix(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn chat_state_undecodable_is_none_and_deleted() {
    let prefix = unique_prefix("chat-garbage");
    let states = ChatStates::new(conn().await, &prefix, HOUR);
    let key = states.chat_key(CHAT);
    let mut c = conn().await;
    for garbage in ["not json {", "{\"Unknown\":{}}", "42"] {
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(garbage)
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(states.get::<Dialog>(CHAT).await.unwrap(), None, "{garbage}");
        let exists: i64 = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(exists, 0, "{garbage} was not deleted");
    }
    cleanup_prefix(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn chat_state_expires() {
    let prefix = unique_prefix("chat-expire");
    let states = ChatStates::new(conn().await, &prefix, Duration::from_millis(200));
    states.set(CHAT, &Dialog::Idle).await.unwrap();
    assert_eq!(
        states.get::<Dialog>(CHAT).await.unwrap(),
        Some(Dialog::Idle)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(states.get::<Dialog>(CHAT).await.unwrap(), None);
    cleanup_prefix(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn stash_and_unstash() {
    let prefix = unique_prefix("chat-stash");
    let a = ChatStates::new(conn().await, &prefix, HOUR);
    let b = ChatStates::new(conn().await, &prefix, HOUR);
    let value = ButtonData {
        job: "01HZX3K6Q4T8V2N5M7P9R1S3W5".to_owned(),
        action: "upscale4".to_owned(),
        count: 2,
    };
    let token = a.stash(&value).await.unwrap();
    assert!((10..=12).contains(&token.len()), "{token}");
    assert!(token.bytes().all(|b| b.is_ascii_alphanumeric()), "{token}");
    // fits in callback data with room to spare
    assert!(format!("act:{token}").len() <= 64);
    // not deleted by reading; seen by another replica
    assert_eq!(
        a.unstash::<ButtonData>(&token).await.unwrap(),
        Some(value.clone())
    );
    assert_eq!(
        b.unstash::<ButtonData>(&token).await.unwrap(),
        Some(value.clone())
    );
    // tokens differ
    let other = a.stash(&value).await.unwrap();
    assert_ne!(token, other);
    // undecodable as the asked type: None
    assert_eq!(a.unstash::<Dialog>(&token).await.unwrap(), None);

    let mut c = conn().await;
    let key = format!("{prefix}:bot:tok:{token}");
    assert_eq!(a.token_key(&token), key);
    let ttl = pttl(&mut c, &key).await;
    assert!((3_590_000..=3_600_000).contains(&ttl), "{ttl}");
    cleanup_prefix(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn unstash_bad_token_is_none() {
    let prefix = unique_prefix("chat-badtoken");
    let states = ChatStates::new(conn().await, &prefix, HOUR);
    // a value under a key a malformed token could otherwise reach
    let mut c = conn().await;
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}:bot:tok:abc:defghij"))
        .arg("1")
        .query_async(&mut c)
        .await
        .unwrap();
    for bad in [
        "",
        "short",
        "abc:defghij",
        "ABCDEFGHIJKLM",
        "abcdefghi*",
        "abcde fghij",
        "ЖЖЖЖЖЖ",
    ] {
        assert_eq!(states.unstash::<i64>(bad).await.unwrap(), None, "{bad:?}");
    }
    // well-formed but unknown
    assert_eq!(states.unstash::<i64>("0123456789AB").await.unwrap(), None);
    cleanup_prefix(&redis_url(), &prefix).await;
}
