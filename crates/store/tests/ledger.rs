//! Operators' grants and deductions, and reading the ledger, against real PostgreSQL.

use genq_store::{LedgerKind, MAX_CREDIT_MOVE, PaidJob, Store, StoreError};

mod common;
use common::open;

const OP: &str = "operator:test";

/// The balance equals the ledger's sum and is never negative.
async fn assert_consistent(store: &Store, user_id: i64) -> i64 {
    let balance = store.balance(user_id).await.unwrap();
    assert_eq!(
        store.ledger_sum(user_id).await.unwrap(),
        balance,
        "ledger sums to the balance"
    );
    assert!(balance >= 0, "balance {balance} is negative");
    balance
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_and_a_deduction_are_audited_in_the_ledger() {
    let (store, schema) = open("ledger_moves").await;
    let (user, _) = store.welcome_user(5001, "en", 30).await.unwrap();

    let granted = store
        .grant_credits(5001, 100, "  tester for seed 003 ", "operator:cli:alice")
        .await
        .unwrap();
    assert_eq!(
        (
            granted.user_id,
            granted.telegram_id,
            granted.amount,
            granted.balance_after
        ),
        (user.id, 5001, 100, 130)
    );
    let deducted = store
        .deduct_credits(5001, 25, "double grant by mistake", "operator:admin-api")
        .await
        .unwrap();
    assert_eq!((deducted.amount, deducted.balance_after), (-25, 105));
    assert!(deducted.ledger_id > granted.ledger_id);
    assert_eq!(assert_consistent(&store, user.id).await, 105);

    let ledger = store.ledger_of(user.id, 50).await.unwrap();
    let seen: Vec<_> = ledger
        .iter()
        .map(|e| {
            (
                e.kind,
                e.amount,
                e.reason.as_deref(),
                e.actor.as_deref(),
                e.job_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (
                LedgerKind::Deduct,
                -25,
                Some("double grant by mistake"),
                Some("operator:admin-api"),
                None
            ),
            (
                LedgerKind::Grant,
                100,
                Some("tester for seed 003"),
                Some("operator:cli:alice"),
                None
            ),
            (LedgerKind::Grant, 30, Some("welcome"), None, None),
        ],
        "newest first, the reason trimmed, who moved it"
    );
    assert_eq!(ledger[0].id, deducted.ledger_id);
    assert_eq!(ledger[1].id, granted.ledger_id);

    // a limit; and a charge shows with its job
    let charged = store
        .charge_and_enqueue(&PaidJob {
            user_id: user.id,
            job_type: "generate_image".to_owned(),
            queue: "img".to_owned(),
            payload: serde_json::json!({ "prompt": "a cat" }),
            price: 10,
            idempotency_key: None,
        })
        .await
        .unwrap();
    let last_two = store.ledger_of(user.id, 2).await.unwrap();
    assert_eq!(last_two.len(), 2);
    assert_eq!(
        (last_two[0].kind, last_two[0].amount),
        (LedgerKind::Charge, -10)
    );
    assert_eq!(last_two[0].job_id.as_deref(), Some(charged.job_id()));
    assert_eq!(last_two[1].id, deducted.ledger_id);
    assert_eq!(assert_consistent(&store, user.id).await, 95);

    // deducting everything down to zero is allowed
    let emptied = store
        .deduct_credits(5001, 95, "account closed", OP)
        .await
        .unwrap();
    assert_eq!(emptied.balance_after, 0);
    assert_eq!(assert_consistent(&store, user.id).await, 0);
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_moves_are_refused_with_messages_that_name_the_problem() {
    let (store, schema) = open("ledger_refusals").await;
    let (user, _) = store.welcome_user(5002, "ru", 5).await.unwrap();

    let e = store
        .grant_credits(999_999, 10, "why", OP)
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::UnknownTelegramUser(999_999)),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "no user with Telegram id 999999 (they have not written to the bot yet)"
    );
    assert!(matches!(
        store.deduct_credits(999_999, 1, "why", OP).await,
        Err(StoreError::UnknownTelegramUser(999_999))
    ));

    for amount in [0, -5, MAX_CREDIT_MOVE + 1] {
        for r in [
            store.grant_credits(5002, amount, "why", OP).await,
            store.deduct_credits(5002, amount, "why", OP).await,
        ] {
            let e = r.unwrap_err();
            assert!(
                matches!(e, StoreError::BadAmount { amount: a, .. } if a == amount),
                "{e:?}"
            );
            assert!(
                e.to_string()
                    .contains(&format!("1 to 1000000 credits, got {amount}")),
                "{e}"
            );
        }
    }
    assert!(
        store
            .grant_credits(5002, MAX_CREDIT_MOVE, "the largest grant", OP)
            .await
            .is_ok(),
        "the limit itself is allowed"
    );
    store
        .deduct_credits(5002, MAX_CREDIT_MOVE, "taken back", OP)
        .await
        .unwrap();

    for reason in ["", "   ", &"x".repeat(501)] {
        let e = store.grant_credits(5002, 1, reason, OP).await.unwrap_err();
        assert!(matches!(e, StoreError::BadReason { max: 500, .. }), "{e:?}");
        assert!(
            e.to_string().contains("a reason of 1 to 500 characters"),
            "{e}"
        );
    }
    // 500 characters (not bytes) is fine
    store
        .grant_credits(5002, 1, &"ж".repeat(500), OP)
        .await
        .unwrap();
    store
        .deduct_credits(5002, 1, &"ж".repeat(500), OP)
        .await
        .unwrap();
    assert!(matches!(
        store.grant_credits(5002, 1, "why", " ").await,
        Err(StoreError::Invalid(_))
    ));

    let e = store
        .deduct_credits(5002, 10, "too much", OP)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::WouldGoNegative {
                telegram_id: 5002,
                balance: 5,
                amount: 10
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "user 5002 has 5 credits; deducting 10 would make it negative"
    );

    // nothing refused was written
    assert_eq!(assert_consistent(&store, user.id).await, 5);
    let kinds: Vec<_> = store
        .ledger_of(user.id, 500)
        .await
        .unwrap()
        .iter()
        .map(|e| (e.kind, e.amount))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (LedgerKind::Deduct, -1),
            (LedgerKind::Grant, 1),
            (LedgerKind::Deduct, -MAX_CREDIT_MOVE),
            (LedgerKind::Grant, MAX_CREDIT_MOVE),
            (LedgerKind::Grant, 5),
        ]
    );

    for limit in [0, -1, 501] {
        assert!(matches!(
            store.ledger_of(user.id, limit).await,
            Err(StoreError::Invalid(_))
        ));
    }
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_grants_and_deductions_keep_the_balance_equal_to_the_ledger() {
    let (store, schema) = open("ledger_concurrent").await;
    let (user, _) = store.welcome_user(5003, "en", 10).await.unwrap();
    let other = common::another(&schema).await;

    // 40 grants of 1 and 80 deductions of 1 at once from two "processes" on a balance
    // of 10: every grant lands; a deduction lands only while the balance allows it.
    let tasks = (0..120).map(|i| {
        let store = if i % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        tokio::spawn(async move {
            if i % 3 == 0 {
                store.grant_credits(5003, 1, "load", OP).await
            } else {
                store.deduct_credits(5003, 1, "load", OP).await
            }
        })
    });
    let results: Vec<_> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let granted = results
        .iter()
        .filter(|r| matches!(r, Ok(m) if m.amount == 1))
        .count() as i64;
    let deducted = results
        .iter()
        .filter(|r| matches!(r, Ok(m) if m.amount == -1))
        .count() as i64;
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::WouldGoNegative { balance: 0, .. })))
        .count() as i64;
    assert_eq!(granted, 40, "every grant lands");
    assert_eq!(deducted + refused, 80, "{results:?}");
    assert!(deducted >= 10, "at least the starting balance was deducted");
    let balance = assert_consistent(&store, user.id).await;
    assert_eq!(balance, 10 + granted - deducted);

    // every balance_after is distinct: the moves were serialised by the row lock
    let mut afters: Vec<_> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|m| (m.ledger_id, m.balance_after))
        .collect();
    afters.sort();
    let mut balance_walk = 10;
    for (_, after) in &afters {
        assert!(*after >= 0);
        assert!((after - balance_walk).abs() == 1, "each step moves by one");
        balance_walk = *after;
    }
    assert_eq!(balance_walk, balance, "ledger order replays to the balance");
    schema.drop().await;
}
