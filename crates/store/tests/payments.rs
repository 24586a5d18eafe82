//! Purchases with Telegram Stars and their refunds, on a real PostgreSQL: granted
//! once per charge id however many processes record it at once, refunds that take
//! the credits back once and never below zero, a failed refund giving them back.

mod common;

use genq_store::NewPurchase;

fn purchase(telegram_id: i64, charge: &str) -> NewPurchase {
    NewPurchase {
        telegram_id,
        telegram_payment_charge_id: charge.to_owned(),
        provider_payment_charge_id: None,
        package: "m".to_owned(),
        currency: "XTR".to_owned(),
        stars: 125,
        credits: 300,
    }
}

#[tokio::test]
async fn a_purchase_recorded_by_four_processes_at_once_is_granted_once() {
    let (store, schema) = common::open("pay_once").await;
    let other = common::another(&schema).await;
    let (user, _) = store.welcome_user(900, "en", 10).await.expect("user");
    let runs = [store.clone(), other.clone(), store.clone(), other.clone()]
        .map(|s| tokio::spawn(async move { s.record_purchase(&purchase(900, "stx-1")).await }));
    let outcomes: Vec<_> = futures::future::join_all(runs)
        .await
        .into_iter()
        .map(|r| r.expect("task").expect("recorded"))
        .collect();
    assert_eq!(outcomes.iter().filter(|o| o.granted).count(), 1);
    assert!(
        outcomes
            .iter()
            .all(|o| o.payment_id == outcomes[0].payment_id)
    );
    assert_eq!(store.balance(user.id).await.expect("balance"), 310);
    assert_eq!(store.ledger_sum(user.id).await.expect("sum"), 310);
    let payments = store.payments_of(user.id, 10).await.expect("payments");
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].telegram_id, 900);
    assert_eq!(payments[0].stars, 125);
    schema.drop().await;
}

#[tokio::test]
async fn bad_purchases_are_refused_with_the_reason() {
    let (store, schema) = common::open("pay_bad").await;
    store.welcome_user(901, "en", 0).await.expect("user");
    let mut p = purchase(901, "stx-2");
    p.credits = 0;
    let e = store.record_purchase(&p).await.expect_err("no credits");
    assert!(e.to_string().contains("positive"), "{e}");
    let e = store
        .record_purchase(&purchase(999_999, "stx-3"))
        .await
        .expect_err("unknown user");
    assert!(e.to_string().contains("999999"), "{e}");
    schema.drop().await;
}

#[tokio::test]
async fn a_refund_takes_the_credits_back_once_and_never_below_zero() {
    let (store, schema) = common::open("pay_refund").await;
    let (user, _) = store.welcome_user(902, "en", 0).await.expect("user");
    let bought = store
        .record_purchase(&purchase(902, "stx-4"))
        .await
        .expect("bought");
    let refund = store
        .request_payment_refund(bought.payment_id, "operator:test", "asked")
        .await
        .expect("requested");
    assert_eq!(refund.balance, 0);
    assert_eq!(refund.payment.refund_status.as_deref(), Some("requested"));
    let again = store
        .request_payment_refund(bought.payment_id, "operator:test", "twice")
        .await
        .expect_err("once");
    assert!(again.to_string().contains("refunded before"), "{again}");
    assert_eq!(
        store.requested_refunds(10).await.expect("requested").len(),
        1
    );
    assert!(
        store
            .complete_payment_refund(bought.payment_id)
            .await
            .expect("done")
    );
    assert!(
        !store
            .complete_payment_refund(bought.payment_id)
            .await
            .expect("done")
    );
    assert!(store.requested_refunds(10).await.expect("none").is_empty());
    assert_eq!(store.ledger_sum(user.id).await.expect("sum"), 0);

    // spent credits cannot be taken back
    let spent = store
        .record_purchase(&purchase(902, "stx-5"))
        .await
        .expect("bought");
    store
        .deduct_credits(902, 250, "spent on pictures", "operator:test")
        .await
        .expect("spent");
    let e = store
        .request_payment_refund(spent.payment_id, "operator:test", "asked")
        .await
        .expect_err("spent");
    assert!(e.to_string().contains("negative"), "{e}");
    assert_eq!(store.balance(user.id).await.expect("balance"), 50);
    schema.drop().await;
}

#[tokio::test]
async fn a_refund_telegram_refuses_gives_the_credits_back_once() {
    let (store, schema) = common::open("pay_refund_fail").await;
    let (user, _) = store.welcome_user(903, "en", 0).await.expect("user");
    let bought = store
        .record_purchase(&purchase(903, "stx-6"))
        .await
        .expect("bought");
    store
        .request_payment_refund(bought.payment_id, "operator:test", "asked")
        .await
        .expect("requested");
    assert_eq!(store.balance(user.id).await.expect("balance"), 0);
    assert!(
        store
            .fail_payment_refund(bought.payment_id, "CHARGE_NOT_FOUND")
            .await
            .expect("failed")
    );
    assert!(
        !store
            .fail_payment_refund(bought.payment_id, "again")
            .await
            .expect("once")
    );
    assert_eq!(store.balance(user.id).await.expect("balance"), 300);
    assert_eq!(store.ledger_sum(user.id).await.expect("sum"), 300);
    let p = store
        .payment(bought.payment_id)
        .await
        .expect("read")
        .expect("payment");
    assert_eq!(p.refund_status.as_deref(), Some("failed"));
    assert!(store.record_telegram_refund("stx-6").await.expect("seen"));
    assert!(!store.record_telegram_refund("stx-6").await.expect("once"));
    schema.drop().await;
}
