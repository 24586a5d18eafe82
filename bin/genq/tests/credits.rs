//! `genq credits grant|deduct|ledger|refund`: the real binary against a PostgreSQL schema of
//! its own. Moves land in the ledger with who and why; bad input is refused with the
//! store's message and a non-zero exit, writing nothing.

use genq_store::{LedgerKind, NewPurchase, Store, StoreConfig};
use genq_testkit::TestSchema;
use serde_json::Value;

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

async fn genq(schema: &TestSchema, args: &[&str], user: Option<&str>) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_genq"));
    cmd.args(args)
        .env("GENQ_DATABASE_URL", &schema.url)
        .env("GENQ_DATABASE_SCHEMA", &schema.name)
        .env("GENQ_LOG", "warn")
        .env_remove("GENQ_CONFIG")
        .env_remove("GENQ_ROUTES");
    match user {
        Some(u) => cmd.env("USER", u),
        None => cmd.env_remove("USER"),
    };
    let out = cmd.output().await.expect("run genq");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_grants_deducts_and_reads_the_ledger_from_the_command_line() {
    let schema = TestSchema::create("cli_credits").await.unwrap();
    let store = Store::open(&StoreConfig::new(&schema.url).schema(&schema.name))
        .await
        .unwrap();
    let (user, _) = store.welcome_user(7001, "en", 30).await.unwrap();

    let run = genq(
        &schema,
        &["credits", "grant", "7001", "100", "--reason", "beta tester"],
        Some("alice"),
    )
    .await;
    assert!(run.ok, "grant failed: {}", run.stderr);
    let moved = run.json();
    assert_eq!(
        (
            moved["telegram_id"].as_i64(),
            moved["amount"].as_i64(),
            moved["balance_after"].as_i64()
        ),
        (Some(7001), Some(100), Some(130))
    );

    let run = genq(
        &schema,
        &[
            "credits",
            "deduct",
            "7001",
            "40",
            "--reason",
            "granted twice",
            "--actor",
            "bob",
        ],
        Some("alice"),
    )
    .await;
    assert!(run.ok, "deduct failed: {}", run.stderr);
    assert_eq!(
        (
            run.json()["amount"].as_i64(),
            run.json()["balance_after"].as_i64()
        ),
        (Some(-40), Some(90))
    );
    // without $USER the actor is plain operator:cli
    let run = genq(
        &schema,
        &["credits", "grant", "7001", "1", "--reason", "no user"],
        None,
    )
    .await;
    assert!(run.ok, "{}", run.stderr);

    assert_eq!(store.balance(user.id).await.unwrap(), 91);
    assert_eq!(store.ledger_sum(user.id).await.unwrap(), 91);
    let ledger = store.ledger_of(user.id, 10).await.unwrap();
    let audit: Vec<_> = ledger
        .iter()
        .map(|e| (e.kind, e.amount, e.reason.as_deref(), e.actor.as_deref()))
        .collect();
    assert_eq!(
        audit,
        vec![
            (LedgerKind::Grant, 1, Some("no user"), Some("operator:cli")),
            (
                LedgerKind::Deduct,
                -40,
                Some("granted twice"),
                Some("operator:bob")
            ),
            (
                LedgerKind::Grant,
                100,
                Some("beta tester"),
                Some("operator:cli:alice")
            ),
            (LedgerKind::Grant, 30, Some("welcome"), None),
        ]
    );

    let run = genq(
        &schema,
        &["credits", "ledger", "7001", "--limit", "2"],
        None,
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    let shown = run.json();
    assert_eq!(shown["balance"].as_i64(), Some(91));
    let entries = shown["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{shown}");
    assert_eq!(
        (
            &entries[0]["kind"],
            &entries[1]["kind"],
            &entries[1]["actor"]
        ),
        (
            &Value::from("grant"),
            &Value::from("deduct"),
            &Value::from("operator:bob")
        )
    );
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credit_commands_fail_with_the_reason_and_write_nothing() {
    let schema = TestSchema::create("cli_credits_bad").await.unwrap();
    let store = Store::open(&StoreConfig::new(&schema.url).schema(&schema.name))
        .await
        .unwrap();
    let (user, _) = store.welcome_user(7002, "ru", 5).await.unwrap();

    for (args, says) in [
        (
            vec!["credits", "grant", "999", "10", "--reason", "x"],
            "no user with Telegram id 999",
        ),
        (
            vec!["credits", "grant", "7002", "0", "--reason", "x"],
            "the amount must be 1 to 1000000 credits, got 0",
        ),
        (
            vec!["credits", "deduct", "7002", "-4", "--reason", "x"],
            "the amount must be 1 to 1000000 credits, got -4",
        ),
        (
            vec!["credits", "grant", "7002", "5", "--reason", " "],
            "a reason of 1 to 500 characters is required",
        ),
        (
            vec!["credits", "deduct", "7002", "10", "--reason", "too much"],
            "user 7002 has 5 credits; deducting 10 would make it negative",
        ),
        (
            vec!["credits", "ledger", "999"],
            "no user with Telegram id 999",
        ),
        (
            vec!["credits", "ledger", "7002", "--limit", "0"],
            "limit must be 1 to 500, got 0",
        ),
        (vec!["credits", "grant", "7002", "5"], "--reason <REASON>"),
        (
            vec!["credits", "grant", "7002", "lots", "--reason", "x"],
            "invalid value 'lots'",
        ),
    ] {
        let run = genq(&schema, &args, Some("alice")).await;
        assert!(!run.ok, "{args:?} succeeded: {}", run.stdout);
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
    }
    assert_eq!(store.balance(user.id).await.unwrap(), 5);
    assert_eq!(store.ledger_of(user.id, 10).await.unwrap().len(), 1);
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_refunds_a_purchase_once_from_the_command_line() {
    let schema = TestSchema::create("cli_refund").await.unwrap();
    let store = Store::open(&StoreConfig::new(&schema.url).schema(&schema.name))
        .await
        .unwrap();
    let (user, _) = store.welcome_user(7003, "en", 0).await.unwrap();
    let bought = store
        .record_purchase(&NewPurchase {
            telegram_id: 7003,
            telegram_payment_charge_id: "cli-charge-1".to_owned(),
            provider_payment_charge_id: None,
            package: "p50".to_owned(),
            currency: "XTR".to_owned(),
            stars: 25,
            credits: 50,
        })
        .await
        .unwrap();
    let id = bought.payment_id.to_string();

    let run = genq(
        &schema,
        &["credits", "refund", &id, "--reason", "charged twice"],
        Some("carol"),
    )
    .await;
    assert!(run.ok, "refund failed: {}", run.stderr);
    let refund = run.json();
    assert_eq!(
        (
            refund["balance"].as_i64(),
            refund["payment"]["refund_status"].as_str(),
            refund["payment"]["refund_actor"].as_str()
        ),
        (Some(0), Some("requested"), Some("operator:cli:carol"))
    );

    for (args, says) in [
        (
            vec!["credits", "refund", id.as_str(), "--reason", "again"],
            "refunded before",
        ),
        (
            vec!["credits", "refund", "987654", "--reason", "x"],
            "no payment 987654",
        ),
        (vec!["credits", "refund", id.as_str()], "--reason <REASON>"),
    ] {
        let run = genq(&schema, &args, Some("carol")).await;
        assert!(!run.ok, "{args:?} succeeded: {}", run.stdout);
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
    }
    let refunds = store
        .ledger_of(user.id, 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == LedgerKind::PurchaseRefund)
        .count();
    assert_eq!(refunds, 1, "taken back once");
    assert_eq!(store.balance(user.id).await.unwrap(), 0);
    assert_eq!(store.ledger_sum(user.id).await.unwrap(), 0);
    schema.drop().await;
}
