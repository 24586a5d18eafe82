//! The store against real PostgreSQL, each test in a schema of its own.

use chrono::{NaiveDate, TimeZone, Utc};
use genq_core::JobStatus;
use genq_store::{Charged, MIGRATOR, PaidJob, Role, Settled, Store, StoreConfig, StoreError};

mod common;
use common::{another, count, final_event, open, settle_four_times};

fn paid(user_id: i64, price: i64, key: Option<&str>) -> PaidJob {
    PaidJob {
        user_id,
        job_type: "generate_image".to_owned(),
        queue: "img".to_owned(),
        payload: serde_json::json!({ "prompt": "a cat" }),
        price,
        idempotency_key: key.map(str::to_owned),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_charges_on_a_balance_of_ten() {
    let (store, schema) = open("charges").await;
    let user = store.upsert_user(1001, "en").await.unwrap();
    store.grant(user.id, 10, "welcome").await.unwrap();
    let tasks = (0..50).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.charge_and_enqueue(&paid(user.id, 1, None)).await })
    });
    let results: Vec<_> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let ok = results
        .iter()
        .filter(|r| matches!(r, Ok(Charged::Created { .. })))
        .count();
    let refused = results
        .iter()
        .filter(|r| {
            matches!(
                r,
                Err(StoreError::InsufficientCredits {
                    balance: 0,
                    price: 1
                })
            )
        })
        .count();
    assert_eq!((ok, refused), (10, 40));
    assert_eq!(store.balance(user.id).await.unwrap(), 0);
    assert_eq!(
        store.ledger_sum(user.id).await.unwrap(),
        0,
        "ledger sums to the balance"
    );
    assert_eq!(
        store.outbox_len().await.unwrap(),
        10,
        "every charged job is in the outbox"
    );
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_idempotency_key_twenty_times_is_one_job_and_one_charge() {
    let (store, schema) = open("idem").await;
    let user = store.upsert_user(1002, "ru").await.unwrap();
    store.grant(user.id, 100, "welcome").await.unwrap();
    let tasks = (0..20).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .charge_and_enqueue(&paid(user.id, 5, Some("cb-77")))
                .await
                .unwrap()
        })
    });
    let results: Vec<Charged> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let ids: std::collections::HashSet<_> = results.iter().map(|c| c.job_id().to_owned()).collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(
        results
            .iter()
            .filter(|c| matches!(c, Charged::Created { .. }))
            .count(),
        1
    );
    assert_eq!(store.balance(user.id).await.unwrap(), 95);
    assert_eq!(store.ledger_sum(user.id).await.unwrap(), 95);
    assert_eq!(store.outbox_len().await.unwrap(), 1);
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_seen_twice_by_two_settlers_is_refunded_once() {
    let (first, schema) = open("settle").await;
    let second = another(&schema).await;
    let user = first.upsert_user(1003, "en").await.unwrap();
    first.grant(user.id, 20, "welcome").await.unwrap();
    let job = first
        .charge_and_enqueue(&paid(user.id, 7, None))
        .await
        .unwrap();
    assert_eq!(first.balance(user.id).await.unwrap(), 13);

    let event = final_event(job.job_id(), JobStatus::Failed);
    let outcomes = settle_four_times(&first, &second, &event).await;
    assert_eq!(
        count(&outcomes, &Settled::Recorded { refunded: 7 }),
        1,
        "{outcomes:?}"
    );
    assert_eq!(count(&outcomes, &Settled::AlreadySettled), 3);
    assert_eq!(first.balance(user.id).await.unwrap(), 20);
    assert_eq!(first.ledger_sum(user.id).await.unwrap(), 20);
    // a late, different outcome for the same job changes nothing
    assert_eq!(
        second
            .settle(&final_event(job.job_id(), JobStatus::Cancelled))
            .await
            .unwrap(),
        Settled::AlreadySettled
    );
    let record = first.job(job.job_id()).await.unwrap().unwrap();
    assert_eq!((record.status.as_str(), record.attempts), ("failed", 3));
    assert_eq!(record.error_class.as_deref(), Some("transient"));
    // a job the store never charged is not its business
    assert_eq!(
        first
            .settle(&final_event("someone-else", JobStatus::Failed))
            .await
            .unwrap(),
        Settled::NotTracked
    );
    // success refunds nothing
    let ok = first
        .charge_and_enqueue(&paid(user.id, 4, None))
        .await
        .unwrap();
    assert_eq!(
        first
            .settle(&final_event(ok.job_id(), JobStatus::Succeeded))
            .await
            .unwrap(),
        Settled::Recorded { refunded: 0 }
    );
    assert_eq!(first.balance(user.id).await.unwrap(), 16);
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_reach_the_latest_schema_and_rerun_as_a_no_op() {
    let (store, schema) = open("migrate").await;
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(applied as usize, MIGRATOR.iter().count());
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
    )
    .bind(&schema.name)
    .fetch_all(store.pool())
    .await
    .unwrap();
    for t in [
        "credit_ledger",
        "dialogs",
        "event_checkpoints",
        "jobs",
        "messages",
        "outbox",
        "personas",
        "user_activity",
        "users",
    ] {
        assert!(
            tables.iter().any(|x| x == t),
            "missing table {t}: {tables:?}"
        );
    }
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let (store, schema) = open("badreq").await;
    let user = store.upsert_user(1004, "en").await.unwrap();
    let err = store
        .charge_and_enqueue(&paid(user.id, 3, None))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "not enough credits: balance 0, price 3");
    let err = store
        .charge_and_enqueue(&paid(999_999, 1, None))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "no user 999999");
    let err = store
        .charge_and_enqueue(&paid(user.id, -1, None))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("price must not be negative"));
    let mut bad_queue = paid(user.id, 0, None);
    bad_queue.queue = "No Such Queue".to_owned();
    assert!(
        store
            .charge_and_enqueue(&bad_queue)
            .await
            .unwrap_err()
            .to_string()
            .contains("invalid queue name")
    );
    assert!(
        store
            .grant(user.id, 0, "x")
            .await
            .unwrap_err()
            .to_string()
            .contains("must be positive")
    );
    assert!(store.upsert_user(5, "").await.is_err());
    let err = Store::connect(&StoreConfig::new("not a url"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("database URL 'not a url' is not valid"),
        "{err}"
    );
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialog_memory_keeps_several_dialogs_and_the_last_n_messages() {
    let (store, schema) = open("dialogs").await;
    let user = store.upsert_user(1005, "en").await.unwrap();
    let seeded = store.personas().await.unwrap().len();
    let anna = store
        .upsert_persona(
            "Anna",
            "You are Anna, a barista.",
            "Hi! Coffee?",
            "red scarf",
        )
        .await
        .unwrap();
    let max = store
        .upsert_persona("Max", "You are Max, a pilot.", "Ready for take-off?", "")
        .await
        .unwrap();
    assert_eq!(
        store.personas().await.unwrap().len(),
        seeded + 2,
        "the migration's default personas and the two new ones"
    );

    let first = store.new_dialog(user.id, anna.id).await.unwrap();
    for i in 0..10 {
        let role = if i % 2 == 0 {
            Role::User
        } else {
            Role::Assistant
        };
        store
            .append_message(first.id, role, &format!("message {i}"))
            .await
            .unwrap();
    }
    let last = store.last_messages(first.id, 4).await.unwrap();
    let texts: Vec<_> = last.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(
        texts,
        ["message 6", "message 7", "message 8", "message 9"],
        "oldest first"
    );
    assert_eq!(last[0].role, Role::User);

    let second = store.new_dialog(user.id, max.id).await.unwrap();
    assert_eq!(
        store.active_dialog(user.id).await.unwrap().unwrap().id,
        second.id
    );
    let third = store.new_dialog(user.id, anna.id).await.unwrap();
    let all = store.dialogs(user.id).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all.iter().filter(|d| d.is_active).count(), 1);
    assert_eq!(
        store.active_dialog(user.id).await.unwrap().unwrap().id,
        third.id
    );
    assert_eq!(
        store.last_messages(first.id, 100).await.unwrap().len(),
        10,
        "old dialogs keep their messages"
    );

    assert!(matches!(
        store.append_message(first.id, Role::User, "").await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.append_message(424242, Role::User, "hi").await,
        Err(StoreError::UnknownDialog(424242))
    ));
    assert!(matches!(
        store.new_dialog(user.id, 424242).await,
        Err(StoreError::UnknownPersona(424242))
    ));
    schema.drop().await;
}

/// A small data set whose answers are known by construction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_match_a_known_data_set() {
    let (store, schema) = open("stats").await;
    let pool = store.pool();
    let day = |d: u32| NaiveDate::from_ymd_opt(2026, 3, d).unwrap();
    // Cohort March 1: users 1-4. Cohort March 2: users 5-6.
    for (tg, signup) in [(1, 1), (2, 1), (3, 1), (4, 1), (5, 2), (6, 2)] {
        sqlx::query(
            "INSERT INTO users (telegram_id, created_at, last_seen_at) VALUES ($1, $2, $2)",
        )
        .bind(tg as i64)
        .bind(Utc.with_ymd_and_hms(2026, 3, signup, 12, 0, 0).unwrap())
        .execute(pool)
        .await
        .unwrap();
    }
    let id = |tg: i64| {
        let store = store.clone();
        async move { store.user_by_telegram_id(tg).await.unwrap().unwrap().id }
    };
    // activity (telegram id, day of March)
    let activity = [
        (1, 1),
        (2, 1),
        (3, 1),
        (4, 1),
        (5, 2),
        (6, 2), // signup days
        (1, 2),
        (2, 2),
        (5, 3), // D1: cohort 1 -> 2 users, cohort 2 -> 1 user
        (1, 8),
        (6, 9),  // D7: cohort 1 -> 1, cohort 2 -> 1
        (1, 31), // D30: cohort 1 -> 1
        (3, 25),
        (4, 30),
        (1, 30), // recent activity
    ];
    for (tg, d) in activity {
        sqlx::query("INSERT INTO user_activity (user_id, day) VALUES ($1, $2)")
            .bind(id(tg).await)
            .bind(day(d))
            .execute(pool)
            .await
            .unwrap();
    }
    let stats = store.user_stats(day(31)).await.unwrap();
    // active on Mar 31: user 1; in the 7 days Mar 25-31: users 1, 3, 4; in 30 days (Mar 2-31): 1, 2, 3, 4, 5, 6
    assert_eq!(
        (
            stats.total,
            stats.active_1d,
            stats.active_7d,
            stats.active_30d
        ),
        (6, 1, 3, 6)
    );

    let new = store.new_users_per_day(day(1), day(31)).await.unwrap();
    assert_eq!(
        new.iter().map(|n| (n.day, n.users)).collect::<Vec<_>>(),
        [(day(1), 4), (day(2), 2)]
    );

    let r = store.retention(day(1), day(2)).await.unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(
        (r[0].cohort_day, r[0].size, r[0].d1, r[0].d7, r[0].d30),
        (day(1), 4, 2, 1, 1)
    );
    assert_eq!(
        (r[1].cohort_day, r[1].size, r[1].d1, r[1].d7, r[1].d30),
        (day(2), 2, 1, 1, 0)
    );

    // jobs: two succeeded images (price 5) and one failed, refunded image; one free reply
    let u1 = id(1).await;
    store.grant(u1, 100, "test").await.unwrap();
    let mut ids = Vec::new();
    for (job_type, price) in [
        ("generate_image", 5),
        ("generate_image", 5),
        ("generate_image", 5),
        ("generate_reply", 0),
    ] {
        let mut job = paid(u1, price, None);
        job.job_type = job_type.to_owned();
        ids.push(
            store
                .charge_and_enqueue(&job)
                .await
                .unwrap()
                .job_id()
                .to_owned(),
        );
    }
    sqlx::query("UPDATE jobs SET created_at = $1")
        .bind(Utc.with_ymd_and_hms(2026, 3, 5, 10, 0, 0).unwrap())
        .execute(pool)
        .await
        .unwrap();
    for (i, status) in [
        JobStatus::Succeeded,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Succeeded,
    ]
    .into_iter()
    .enumerate()
    {
        store.settle(&final_event(&ids[i], status)).await.unwrap();
    }
    let daily = store.jobs_per_day(day(5), day(5)).await.unwrap();
    let rows: Vec<_> = daily
        .iter()
        .map(|d| {
            (
                d.job_type.as_str(),
                d.status.as_str(),
                d.jobs,
                d.credits_charged,
                d.credits_refunded,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("generate_image", "failed", 1, 5, 5),
            ("generate_image", "succeeded", 2, 10, 0),
            ("generate_reply", "succeeded", 1, 0, 0),
        ]
    );
    assert_eq!(store.balance(u1).await.unwrap(), 90);
    schema.drop().await;
}
