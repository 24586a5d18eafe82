//! Cool-downs that fit the signal, and provider limits shared by every host: the
//! clients against the fake provider over HTTP, key pools in real Redis.

mod common;

use std::time::Duration;

use common::{cfg, pool};
use genq_core::JobError;
use genq_metrics::ProviderMetrics;
use genq_providers::{
    Adaptive, ChatMessage, CoolReason, KeyLimits, KeyPool, OpenAiClient, ProviderErrorKind,
    TaskClient, TaskKind, holding,
};
use genq_testkit::{FakeFailure, FakeProvider, cleanup_prefix, redis_url, unique_prefix};

fn ping() -> Vec<ChatMessage> {
    vec![ChatMessage::new("user", "ping")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_cools_the_key_as_long_as_the_vendor_says_and_quota_for_the_long_period() {
    let fake = FakeProvider::start().await;
    let prefix = unique_prefix("cool");
    let metrics = ProviderMetrics::new(&prometheus::Registry::new()).unwrap();
    let keys = pool(&prefix, &["only"], &metrics).await;
    let client = OpenAiClient::new(&cfg(&fake, "/v1"), keys.clone(), metrics).unwrap();

    // one 429 with Retry-After: 2 cools the key about 2 s, not an hour
    fake.fail_next(
        1,
        FakeFailure::RateLimited {
            retry_after_secs: Some(2),
        },
    );
    let err = client.chat("m", &ping(), None).await.unwrap_err();
    assert_eq!(
        err.kind,
        ProviderErrorKind::RateLimited {
            retry_after: Some(Duration::from_secs(2))
        }
    );
    let cooling = keys.cooling().await.unwrap();
    assert_eq!(cooling.len(), 1);
    assert_eq!(cooling[0].reason, CoolReason::RateLimited);
    assert!((1..=2).contains(&cooling[0].remaining_secs), "{cooling:?}");
    // while it cools, nothing is sent: every host skips the key
    let calls = fake.calls("chat");
    assert!(client.chat("m", &ping(), None).await.is_err());
    assert_eq!(fake.calls("chat"), calls);
    let back = genq_testkit::wait_until(Duration::from_secs(10), || async {
        keys.cooling().await.unwrap().is_empty().then_some(())
    })
    .await;
    assert!(back.is_some(), "the key is back after its Retry-After");
    assert_eq!(client.chat("m", &ping(), None).await.unwrap(), "Echo: ping");

    // a 429 without a hint: the configured fallback (default 60 s)
    fake.fail_next(
        1,
        FakeFailure::RateLimited {
            retry_after_secs: None,
        },
    );
    client.chat("m", &ping(), None).await.unwrap_err();
    let cooling = keys.cooling().await.unwrap();
    assert!(
        (50..=60).contains(&cooling[0].remaining_secs),
        "{cooling:?}"
    );

    // quota exhausted (a 429 saying insufficient_quota) is billing: the long period,
    // replacing the short rate-limit cool-down
    fake.fail_next(1, FakeFailure::QuotaExhausted);
    let metrics2 = ProviderMetrics::new(&prometheus::Registry::new()).unwrap();
    let keys2 = pool(&prefix, &["other"], &metrics2).await;
    let client2 = OpenAiClient::new(&cfg(&fake, "/v1"), keys2.clone(), metrics2).unwrap();
    let err = client2.chat("m", &ping(), None).await.unwrap_err();
    assert_eq!(err.kind, ProviderErrorKind::Billing, "{err}");
    let cooling = keys2.cooling().await.unwrap();
    assert_eq!(cooling[0].reason, CoolReason::Billing);
    assert!(cooling[0].remaining_secs > 23 * 3600, "{cooling:?}");
    // a later rate limit never shortens it
    keys2
        .cool_down_for(
            &keys2.by_fingerprint(&cooling[0].fingerprint).unwrap(),
            CoolReason::RateLimited,
            Some(Duration::from_secs(1)),
        )
        .await
        .unwrap();
    assert_eq!(
        keys2.cooling().await.unwrap()[0].reason,
        CoolReason::Billing
    );
    cleanup_prefix(&redis_url(), &prefix).await;
}

fn image() -> serde_json::Value {
    serde_json::json!({ "prompt": "x", "width": 64, "height": 32 })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_slots_are_shared_by_every_host_and_released_or_expired() {
    let fake = FakeProvider::start().await;
    fake.set_tasks_never_finish(true);
    let prefix = unique_prefix("slots");
    let limits = KeyLimits {
        max_in_flight: Some(2),
        slot_lease: Duration::from_secs(1),
        ..KeyLimits::default()
    };
    // two "hosts": two pools and clients over the same Redis prefix
    let host = || {
        let prefix = prefix.clone();
        let limits = limits.clone();
        let fake_cfg = cfg(&fake, "/queue");
        async move {
            let metrics = ProviderMetrics::new(&prometheus::Registry::new()).unwrap();
            let keys = pool(&prefix, &["k1"], &metrics).await.with_limits(limits);
            TaskClient::new(&fake_cfg, keys, metrics).unwrap()
        }
    };
    let a = host().await;
    let b = host().await;
    let t1 = holding(
        "genq-j1",
        a.submit("img", TaskKind::Image, image(), "genq-j1"),
    )
    .await
    .unwrap();
    let _t2 = holding(
        "genq-j2",
        b.submit("img", TaskKind::Image, image(), "genq-j2"),
    )
    .await
    .unwrap();
    // the third, on either host, finds no capacity: nothing is sent, a deferral
    let calls = fake.calls("submit");
    let err = holding(
        "genq-j3",
        a.submit("img", TaskKind::Image, image(), "genq-j3"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err.kind, ProviderErrorKind::NoCapacity { .. }),
        "{err:?}"
    );
    assert_eq!(fake.calls("submit"), calls, "nothing sent without capacity");
    let job: JobError = err.into();
    assert!(job.deferred && job.retry_after.is_some(), "{job:?}");

    let views = a.keys().limit_views().await.unwrap();
    assert_eq!(views[0].in_flight, 2);
    assert_eq!(views[0].in_flight_limit, Some(2));

    // the holder of j1 takes its slot over (a resumed run) and ends it: capacity
    let slot = a.keys().hold(&t1.key, "genq-j1").await.unwrap();
    slot.release().await;
    holding(
        "genq-j3",
        b.submit("img", TaskKind::Image, image(), "genq-j3"),
    )
    .await
    .unwrap();
    // nobody renews j2 and j3 (their workers "died"): their slots expire
    let freed = genq_testkit::wait_until(Duration::from_secs(10), || async {
        (a.keys().limit_views().await.unwrap()[0].in_flight == 0).then_some(())
    })
    .await;
    assert!(freed.is_some(), "expired slots are reclaimed");
    holding(
        "genq-j4",
        a.submit("img", TaskKind::Image, image(), "genq-j4"),
    )
    .await
    .unwrap();
    cleanup_prefix(&redis_url(), &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_minute_and_adaptive_limits() {
    let fake = FakeProvider::start().await;
    let prefix = unique_prefix("rpm");
    let prom = prometheus::Registry::new();
    let metrics = ProviderMetrics::new(&prom).unwrap();
    let keys = pool(&prefix, &["k1"], &metrics)
        .await
        .with_limits(KeyLimits {
            requests_per_minute: Some(3),
            ..KeyLimits::default()
        });
    let client = OpenAiClient::new(&cfg(&fake, "/v1"), keys.clone(), metrics.clone()).unwrap();
    for _ in 0..3 {
        client.chat("m", &ping(), None).await.unwrap();
    }
    let err = client.chat("m", &ping(), None).await.unwrap_err();
    match err.kind {
        // a request comes back every 20 s
        ProviderErrorKind::NoCapacity { retry_after } => {
            assert!(
                retry_after > Duration::from_secs(5) && retry_after <= Duration::from_secs(21),
                "{retry_after:?}"
            )
        }
        other => panic!("expected no capacity, got {other:?}"),
    }
    assert_eq!(fake.calls("chat"), 3);

    // adaptive: a 429 halves the key's limit; successes while full raise it again
    let keys = pool(&prefix, &["k2"], &metrics)
        .await
        .with_limits(KeyLimits {
            max_in_flight: Some(8),
            adaptive: Some(Adaptive {
                start: 4,
                ceiling: 8,
                increase_after: 1,
                decrease: 0.5,
                decrease_guard: Duration::ZERO,
            }),
            ..KeyLimits::default()
        });
    let client = OpenAiClient::new(&cfg(&fake, "/v1"), keys.clone(), metrics).unwrap();
    let limit = |keys: KeyPool| async move { keys.limit_views().await.unwrap()[0].in_flight_limit };
    assert_eq!(limit(keys.clone()).await, Some(4));
    fake.fail_next(
        1,
        FakeFailure::RateLimited {
            retry_after_secs: None,
        },
    );
    let err = client.chat("m", &ping(), None).await.unwrap_err();
    // adaptive: the probe's 429 is a deferral (not a failed attempt), no long cool-down
    assert!(
        matches!(err.kind, ProviderErrorKind::NoCapacity { .. }),
        "{err:?}"
    );
    assert!(keys.cooling().await.unwrap().is_empty());
    assert_eq!(limit(keys.clone()).await, Some(2));
    // a success with the key (nearly) full counts towards growth
    client.chat("m", &ping(), None).await.unwrap();
    assert_eq!(limit(keys.clone()).await, Some(3));
    let text = genq_metrics::render(&prom).unwrap();
    assert!(
        text.contains("genq_provider_effective_limit{key=\"key-"),
        "{text}"
    );
    cleanup_prefix(&redis_url(), &prefix).await;
}

/// A successful answer saying the key's budget is spent (`x-ratelimit-remaining-
/// requests: 0`) rests the key until the vendor's reset: the next call is a
/// deferral (nothing sent), not a 429; after the reset calls go out again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_rests_the_key_before_the_vendor_says_429() {
    let fake = FakeProvider::start().await;
    fake.set_request_budget_per_key(Some((3, Duration::from_secs(3))));
    let prefix = unique_prefix("spent");
    let metrics = ProviderMetrics::new(&prometheus::Registry::new()).unwrap();
    let keys = pool(&prefix, &["only"], &metrics).await;
    let client = OpenAiClient::new(&cfg(&fake, "/v1"), keys.clone(), metrics).unwrap();

    for _ in 0..3 {
        assert_eq!(client.chat("m", &ping(), None).await.unwrap(), "Echo: ping");
    }
    let cooling = keys.cooling().await.unwrap();
    assert_eq!(cooling.len(), 1, "the third answer said 0 left");
    assert_eq!(cooling[0].reason, CoolReason::Spent);
    assert!(cooling[0].remaining_secs <= 3, "{cooling:?}");

    let err = client.chat("m", &ping(), None).await.unwrap_err();
    assert!(
        matches!(err.kind, ProviderErrorKind::NoCapacity { .. }),
        "a deferral, not a failure: {err}"
    );
    let job_error: JobError = err.into();
    assert!(job_error.deferred, "the job is not charged an attempt");
    assert_eq!(fake.calls("chat"), 3, "nothing was sent while it rested");
    assert_eq!(fake.rate_limited_answers(), 0);

    let back = genq_testkit::wait_until(Duration::from_secs(10), || async {
        keys.cooling().await.unwrap().is_empty().then_some(())
    })
    .await;
    assert!(back.is_some(), "the key is back at the vendor's reset");
    assert_eq!(client.chat("m", &ping(), None).await.unwrap(), "Echo: ping");
    assert_eq!(fake.rate_limited_answers(), 0, "no 429 was ever needed");
    cleanup_prefix(&redis_url(), &prefix).await;
}
