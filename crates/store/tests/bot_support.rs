//! What the Telegram bot needs from the store (welcome credits, follow-up jobs and
//! their refunds, open jobs, default personas), against real PostgreSQL, each test
//! in a schema of its own.

use chrono::{TimeZone, Utc};
use genq_core::JobStatus;
use genq_store::{Charged, PaidJob, Settled, Store, StoreError};

mod common;
use common::{another, count, final_event, open, settle_four_times};

fn paid(user_id: i64, job_type: &str, price: i64) -> PaidJob {
    PaidJob {
        user_id,
        job_type: job_type.to_owned(),
        queue: "img".to_owned(),
        payload: serde_json::json!({ "dialog_id": 1 }),
        price,
        idempotency_key: None,
    }
}

async fn charge(store: &Store, user_id: i64, job_type: &str, price: i64) -> String {
    match store
        .charge_and_enqueue(&paid(user_id, job_type, price))
        .await
        .unwrap()
    {
        Charged::Created { job_id, .. } => job_id,
        other => panic!("expected a new job, got {other:?}"),
    }
}

async fn follow_up(store: &Store, parent: &str, child: &str) -> bool {
    store
        .record_follow_up(
            parent,
            child,
            "generate_image",
            "img",
            &serde_json::json!({ "prompt": "a lighthouse at dawn" }),
        )
        .await
        .unwrap()
}

async fn grants(store: &Store, user_id: i64) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM credit_ledger WHERE user_id = $1 AND kind = 'grant' AND reason = 'welcome'",
    )
    .bind(user_id)
    .fetch_one(store.pool())
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_welcome_grant_is_given_once_even_to_concurrent_first_contacts() {
    let (first, schema) = open("welcome").await;
    let second = another(&schema).await;

    // two bots see the same new user at the same moment, several times over
    for telegram_id in 3001..3011_i64 {
        let a = {
            let s = first.clone();
            tokio::spawn(async move { s.welcome_user(telegram_id, "en", 10).await.unwrap() })
        };
        let b = {
            let s = second.clone();
            tokio::spawn(async move { s.welcome_user(telegram_id, "de", 10).await.unwrap() })
        };
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        assert_eq!(a.0.id, b.0.id);
        assert_eq!(
            [a.1, b.1].iter().filter(|created| **created).count(),
            1,
            "exactly one call creates the user: {a:?} {b:?}"
        );
        assert_eq!((a.0.credits, b.0.credits), (10, 10), "both see the grant");
        let id = a.0.id;
        assert_eq!(grants(&first, id).await, 1);
        assert_eq!(first.balance(id).await.unwrap(), 10);
        assert_eq!(first.ledger_sum(id).await.unwrap(), 10);
    }

    // a returning user gets nothing more, and is marked seen with their new language
    let (again, created) = first.welcome_user(3001, "fr", 10).await.unwrap();
    assert!(!created);
    assert_eq!((again.credits, again.language.as_str()), (10, "fr"));
    assert_eq!(grants(&first, again.id).await, 1);
    assert_eq!(first.ledger_sum(again.id).await.unwrap(), 10);

    // spending does not re-arm the welcome
    charge(&first, again.id, "generate_image", 4).await;
    let (after, created) = first.welcome_user(3001, "fr", 10).await.unwrap();
    assert!(!created);
    assert_eq!(after.credits, 6);
    assert_eq!(first.ledger_sum(after.id).await.unwrap(), 6);

    // a user first met through upsert_user is not new to welcome_user
    let known = first.upsert_user(3100, "en").await.unwrap();
    let (user, created) = first.welcome_user(3100, "en", 10).await.unwrap();
    assert!(!created);
    assert_eq!((user.id, user.credits), (known.id, 0));

    // no welcome credits configured: created, no ledger entry
    let (user, created) = first.welcome_user(3200, "en", 0).await.unwrap();
    assert!(created);
    assert_eq!(user.credits, 0);
    assert_eq!(grants(&first, user.id).await, 0);
    assert_eq!(first.ledger_sum(user.id).await.unwrap(), 0);

    assert!(matches!(
        first.welcome_user(3300, "en", -5).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        first.welcome_user(3300, "", 5).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(first.user_by_telegram_id(3300).await.unwrap(), None);

    // every welcomed user was counted active today
    let active: i64 = sqlx::query_scalar("SELECT count(DISTINCT user_id) FROM user_activity")
        .fetch_one(first.pool())
        .await
        .unwrap();
    assert_eq!(active, 12);
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_follow_up_refunds_its_parents_charge_once() {
    let (first, schema) = open("followup").await;
    let second = another(&schema).await;
    let (user, _) = first.welcome_user(4001, "en", 20).await.unwrap();
    let parent = charge(&first, user.id, "generate_image_prompt", 7).await;
    assert_eq!(first.balance(user.id).await.unwrap(), 13);

    // the prompt job pushes its image job itself; recording it twice is one row
    assert!(follow_up(&first, &parent, "child-1").await);
    assert!(!follow_up(&second, &parent, "child-1").await);
    let child = first.job("child-1").await.unwrap().unwrap();
    assert_eq!(child.user_id, user.id);
    assert_eq!(child.price, 0);
    assert_eq!(child.parent_id.as_deref(), Some(parent.as_str()));
    assert_eq!(child.status, "queued");
    assert!(child.pushed_at.is_some(), "already in Redis");
    assert_eq!(
        first.outbox_len().await.unwrap(),
        1,
        "only the parent's entry"
    );
    assert_eq!(first.job(&parent).await.unwrap().unwrap().parent_id, None);

    // the parent's own work succeeded
    assert_eq!(
        first
            .settle(&final_event(&parent, JobStatus::Succeeded))
            .await
            .unwrap(),
        Settled::Recorded { refunded: 0 }
    );
    assert_eq!(first.balance(user.id).await.unwrap(), 13);

    // the image failed: two settlers see the event twice each
    let event = final_event("child-1", JobStatus::Failed);
    let outcomes = settle_four_times(&first, &second, &event).await;
    assert_eq!(
        count(&outcomes, &Settled::Recorded { refunded: 7 }),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        count(&outcomes, &Settled::AlreadySettled),
        3,
        "{outcomes:?}"
    );
    // a late cancellation of the same child changes nothing
    assert_eq!(
        second
            .settle(&final_event("child-1", JobStatus::Cancelled))
            .await
            .unwrap(),
        Settled::AlreadySettled
    );
    assert_eq!(first.balance(user.id).await.unwrap(), 20);
    assert_eq!(first.ledger_sum(user.id).await.unwrap(), 20);
    let refund: (String, i64) = sqlx::query_as(
        "SELECT job_id, amount FROM credit_ledger WHERE kind = 'refund' AND user_id = $1",
    )
    .bind(user.id)
    .fetch_one(first.pool())
    .await
    .unwrap();
    assert_eq!(refund, (parent.clone(), 7), "the refund names the parent");
    assert_eq!(
        first.job("child-1").await.unwrap().unwrap().status,
        "failed"
    );

    // another follow-up of the same, already refunded parent, cancelled: nothing more
    assert!(follow_up(&first, &parent, "child-2").await);
    assert_eq!(
        first
            .settle(&final_event("child-2", JobStatus::Cancelled))
            .await
            .unwrap(),
        Settled::Recorded { refunded: 0 }
    );

    // a parent that failed (and was refunded) itself is not refunded again by its child
    let failed_parent = charge(&first, user.id, "generate_image_prompt", 5).await;
    assert!(follow_up(&first, &failed_parent, "child-3").await);
    assert_eq!(
        first
            .settle(&final_event(&failed_parent, JobStatus::Failed))
            .await
            .unwrap(),
        Settled::Recorded { refunded: 5 }
    );
    assert_eq!(
        first
            .settle(&final_event("child-3", JobStatus::Cancelled))
            .await
            .unwrap(),
        Settled::Recorded { refunded: 0 }
    );
    // ... nor the other way round: a child refunds first, then the parent fails
    let late_parent = charge(&first, user.id, "generate_image_prompt", 3).await;
    assert!(follow_up(&first, &late_parent, "child-4").await);
    assert_eq!(
        first
            .settle(&final_event("child-4", JobStatus::Failed))
            .await
            .unwrap(),
        Settled::Recorded { refunded: 3 }
    );
    assert_eq!(
        first
            .settle(&final_event(&late_parent, JobStatus::Failed))
            .await
            .unwrap(),
        Settled::Recorded { refunded: 0 }
    );
    assert_eq!(first.balance(user.id).await.unwrap(), 20);
    assert_eq!(first.ledger_sum(user.id).await.unwrap(), 20);

    // a parent the store never saw, and bad follow-ups
    let err = first
        .record_follow_up(
            "no-such-job",
            "child-5",
            "generate_image",
            "img",
            &serde_json::json!({}),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::UnknownJob(id) if id == "no-such-job"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "no job no-such-job");
    assert_eq!(first.job("child-5").await.unwrap(), None);
    assert!(matches!(
        first
            .record_follow_up(
                &parent,
                "child-6",
                "generate_image",
                "No Such Queue",
                &serde_json::json!({})
            )
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        first
            .record_follow_up(
                &parent,
                &parent,
                "generate_image",
                "img",
                &serde_json::json!({})
            )
            .await,
        Err(StoreError::Invalid(_))
    ));
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_succeeded_follow_up_refunds_nothing() {
    let (store, schema) = open("followok").await;
    let (user, _) = store.welcome_user(4101, "en", 10).await.unwrap();
    let parent = charge(&store, user.id, "generate_image_prompt", 6).await;
    assert!(follow_up(&store, &parent, "child-ok").await);
    assert_eq!(
        store
            .settle(&final_event(&parent, JobStatus::Succeeded))
            .await
            .unwrap(),
        Settled::Recorded { refunded: 0 }
    );
    assert_eq!(
        store
            .settle(&final_event("child-ok", JobStatus::Succeeded))
            .await
            .unwrap(),
        Settled::Recorded { refunded: 0 }
    );
    // a late failure report for the finished child is ignored
    assert_eq!(
        store
            .settle(&final_event("child-ok", JobStatus::Failed))
            .await
            .unwrap(),
        Settled::AlreadySettled
    );
    assert_eq!(store.balance(user.id).await.unwrap(), 4);
    assert_eq!(store.ledger_sum(user.id).await.unwrap(), 4);
    let refunds: i64 =
        sqlx::query_scalar("SELECT count(*) FROM credit_ledger WHERE kind = 'refund'")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(refunds, 0);
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_jobs_of_user_lists_only_open_jobs_oldest_first() {
    let (store, schema) = open("openjobs").await;
    let (user, _) = store.welcome_user(4201, "en", 100).await.unwrap();
    let (other, _) = store.welcome_user(4202, "en", 100).await.unwrap();
    assert_eq!(store.open_jobs_of_user(user.id).await.unwrap(), []);

    let queued = charge(&store, user.id, "generate_image", 5).await;
    let running = charge(&store, user.id, "generate_video", 20).await;
    let approval = charge(&store, user.id, "generate_image", 5).await;
    let succeeded = charge(&store, user.id, "generate_reply", 0).await;
    let failed = charge(&store, user.id, "generate_image", 5).await;
    let cancelled = charge(&store, user.id, "generate_image", 5).await;
    charge(&store, other.id, "generate_image", 5).await;
    assert!(follow_up(&store, &approval, "child-open").await);

    store
        .settle(&final_event(&succeeded, JobStatus::Succeeded))
        .await
        .unwrap();
    store
        .settle(&final_event(&failed, JobStatus::Failed))
        .await
        .unwrap();
    store
        .settle(&final_event(&cancelled, JobStatus::Cancelled))
        .await
        .unwrap();
    for (id, status) in [(&running, "running"), (&approval, "awaiting_approval")] {
        sqlx::query("UPDATE jobs SET status = $2 WHERE id = $1")
            .bind(id)
            .bind(status)
            .execute(store.pool())
            .await
            .unwrap();
    }
    // creation order, made explicit: the follow-up is the oldest, then running, ...
    for (minute, id) in [
        (1, "child-open"),
        (2, running.as_str()),
        (3, queued.as_str()),
        (4, approval.as_str()),
    ] {
        sqlx::query("UPDATE jobs SET created_at = $2 WHERE id = $1")
            .bind(id)
            .bind(Utc.with_ymd_and_hms(2026, 3, 5, 10, minute, 0).unwrap())
            .execute(store.pool())
            .await
            .unwrap();
    }

    let open = store.open_jobs_of_user(user.id).await.unwrap();
    let listed: Vec<_> = open
        .iter()
        .map(|j| {
            (
                j.id.as_str(),
                j.job_type.as_str(),
                j.queue.as_str(),
                j.price,
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("child-open", "generate_image", "img", 0),
            (running.as_str(), "generate_video", "img", 20),
            (queued.as_str(), "generate_image", "img", 5),
            (approval.as_str(), "generate_image", "img", 5),
        ]
    );
    assert_eq!(store.open_jobs_of_user(other.id).await.unwrap().len(), 1);
    assert_eq!(store.open_jobs_of_user(999_999).await.unwrap(), []);
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_seeds_the_default_personas() {
    let (store, schema) = open("personas").await;
    let personas = store.personas().await.unwrap();
    assert!(personas.len() >= 3, "{personas:?}");
    for name in ["Mia", "Leo", "Ada"] {
        let p = personas
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no persona {name}: {personas:?}"));
        assert!(p.system_prompt.contains(name), "{p:?}");
        assert!(
            p.system_prompt.contains("language the user writes in"),
            "{p:?}"
        );
        assert!(!p.greeting.is_empty() && !p.fixed_look.is_empty(), "{p:?}");
        assert!(!p.greeting.contains('\n') && !p.fixed_look.contains('\n'));
    }
    // re-running the migrations adds nothing
    store.migrate().await.unwrap();
    assert_eq!(store.personas().await.unwrap().len(), personas.len());
    schema.drop().await;
}

#[tokio::test]
async fn a_job_still_in_the_outbox_is_cancelled_and_refunded_once() {
    let (store, schema) = open("cancelunpushed").await;
    let user = store.welcome_user(501, "en", 10).await.unwrap().0;
    let job = charge(&store, user.id, "upscale", 4).await;
    assert_eq!(store.balance(user.id).await.unwrap(), 6);
    assert_eq!(store.cancel_unpushed(&job).await.unwrap(), Some(4));
    assert_eq!(store.balance(user.id).await.unwrap(), 10);
    assert_eq!(store.ledger_sum(user.id).await.unwrap(), 10);
    assert_eq!(store.job(&job).await.unwrap().unwrap().status, "cancelled");
    assert_eq!(
        store.outbox_len().await.unwrap(),
        0,
        "the relay will not push it"
    );
    // again, or once settled: nothing more
    assert_eq!(store.cancel_unpushed(&job).await.unwrap(), None);
    assert_eq!(
        store
            .settle(&final_event(&job, JobStatus::Cancelled))
            .await
            .unwrap(),
        Settled::AlreadySettled
    );
    assert_eq!(store.balance(user.id).await.unwrap(), 10);

    // a pushed job is not in the outbox: cancelled in Redis instead
    let pushed = charge(&store, user.id, "upscale", 4).await;
    store
        .claim_outbox(10)
        .await
        .unwrap()
        .mark_pushed()
        .await
        .unwrap();
    assert_eq!(store.cancel_unpushed(&pushed).await.unwrap(), None);
    assert_eq!(store.balance(user.id).await.unwrap(), 6);
    schema.drop().await;
}

#[tokio::test]
async fn an_exchange_is_stored_together_in_the_order_it_was_said() {
    let (store, schema) = open("exchange").await;
    let user = store.welcome_user(502, "en", 0).await.unwrap().0;
    let persona = store.personas().await.unwrap()[0].id;
    let dialog = store.new_dialog(user.id, persona).await.unwrap();
    store
        .append_exchange(dialog.id, "hello", "hi there")
        .await
        .unwrap();
    let m = store.last_messages(dialog.id, 10).await.unwrap();
    let said: Vec<(&str, &str)> = m
        .iter()
        .map(|m| (m.role.as_str(), m.content.as_str()))
        .collect();
    assert_eq!(said, [("user", "hello"), ("assistant", "hi there")]);
    assert!(matches!(
        store.append_exchange(dialog.id, "", "x").await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.append_exchange(dialog.id + 1000, "a", "b").await,
        Err(StoreError::UnknownDialog(_))
    ));
    assert_eq!(store.last_messages(dialog.id, 10).await.unwrap().len(), 2);
    schema.drop().await;
}

#[tokio::test]
async fn recent_jobs_come_with_their_users_telegram_id_and_language() {
    let (store, schema) = open("recentjobs").await;
    let user = store.welcome_user(503, "ru", 10).await.unwrap().0;
    let job = charge(&store, user.id, "upscale", 2).await;
    let child = "child-of-recent";
    assert!(follow_up(&store, &job, child).await);
    let now = Utc::now();
    let recent = store
        .jobs_created_between(now - chrono::Duration::minutes(1), now, 10)
        .await
        .unwrap();
    assert_eq!(recent.len(), 2, "the job and its follow-up");
    let r = &recent[0];
    assert_eq!(recent[1].id, child);
    assert_eq!(recent[1].parent_id.as_deref(), Some(job.as_str()));
    assert_eq!(r.parent_id, None);
    assert_eq!(
        (r.id.as_str(), r.telegram_id, r.language.as_str()),
        (job.as_str(), 503, "ru")
    );
    assert_eq!(
        (r.price, r.job_type.as_str(), r.status.as_str()),
        (2, "upscale", "queued")
    );
    let old = Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap();
    assert!(
        store
            .jobs_created_between(old, old + chrono::Duration::days(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
    schema.drop().await;
}
