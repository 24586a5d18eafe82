//! `genq pipelines start|list|show|signal|cancel`: the real binary, with a real
//! `genq run --no-database` (workers and a pipeline driver) on the shared Redis
//! under a key prefix of its own. Bad input is refused with a message naming it.

use std::time::Duration;

use genq_testkit::{ChildProcess, free_port, unique_prefix, wait_until};
use serde_json::Value;

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn genq(prefix: &str, args: &[&str]) -> Run {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_genq"))
        .args(args)
        .env("GENQ_REDIS_URL", genq_testkit::redis_url())
        .env("GENQ_PREFIX", prefix)
        .env("GENQ_LOG", "warn")
        .env_remove("GENQ_CONFIG")
        .env_remove("GENQ_ROUTES")
        .output()
        .await
        .expect("run genq");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn show(prefix: &str, id: &str) -> Option<Value> {
    let run = genq(prefix, &["pipelines", "show", id]).await;
    run.ok
        .then(|| serde_json::from_str(&run.stdout).ok())
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_starts_lists_shows_signals_and_cancels_pipelines() {
    let prefix = unique_prefix("cli_pipelines");
    let _service = ChildProcess::spawn(
        env!("CARGO_BIN_EXE_genq"),
        &["run", "--no-database", "--no-admin"],
        &[
            ("GENQ_REDIS_URL", genq_testkit::redis_url()),
            ("GENQ_PREFIX", prefix.clone()),
            ("GENQ_METRICS_ADDR", format!("127.0.0.1:{}", free_port())),
            ("GENQ_LOG", "info".to_owned()),
        ],
    )
    .expect("genq run");

    let run = genq(
        &prefix,
        &["pipelines", "start", "probe-gate", r#"{"echo":"cli"}"#],
    )
    .await;
    assert!(run.ok, "start: {}", run.stderr);
    let id = run.stdout.trim().to_owned();
    let parked = wait_until(Duration::from_secs(30), || async {
        let run = genq(&prefix, &["pipelines", "list", "parked"]).await;
        run.stdout.contains(&id).then_some(())
    })
    .await;
    assert!(parked.is_some(), "the pipeline is listed as parked");
    let v = show(&prefix, &id).await.expect("show");
    assert_eq!(v["gate"]["name"], "approve");
    assert_eq!(v["stages"][1]["name"], "after");

    let bad = genq(&prefix, &["pipelines", "signal", &id, "approve", "maybe"]).await;
    assert!(
        !bad.ok && bad.stderr.contains("approve,cancel"),
        "{}",
        bad.stderr
    );
    let bad = genq(
        &prefix,
        &[
            "pipelines",
            "signal",
            &id,
            "approve",
            "approve",
            "--body",
            "{oops",
        ],
    )
    .await;
    assert!(
        !bad.ok && bad.stderr.contains("--body is not JSON"),
        "{}",
        bad.stderr
    );
    let ok = genq(
        &prefix,
        &[
            "pipelines",
            "signal",
            &id,
            "approve",
            "approve",
            "--body",
            r#"{"by":"cli"}"#,
        ],
    )
    .await;
    assert!(ok.ok, "signal: {}", ok.stderr);
    let again = genq(&prefix, &["pipelines", "signal", &id, "approve", "approve"]).await;
    assert!(
        !again.ok && again.stderr.contains("already answered"),
        "{}",
        again.stderr
    );
    let done = wait_until(Duration::from_secs(30), || async {
        show(&prefix, &id)
            .await
            .filter(|v| v["outcome"] == "succeeded")
    })
    .await
    .expect("the pipeline succeeded");
    assert_eq!(done["result"]["echo"], "cli");

    let run = genq(&prefix, &["pipelines", "start", "probe-gate"]).await;
    assert!(run.ok, "start: {}", run.stderr);
    let other = run.stdout.trim().to_owned();
    let cancel = genq(&prefix, &["pipelines", "cancel", &other]).await;
    assert!(
        cancel.ok && cancel.stdout.contains("cancelled"),
        "{}",
        cancel.stderr
    );
    let again = genq(&prefix, &["pipelines", "cancel", &other]).await;
    assert!(
        !again.ok && again.stderr.contains("already ended: cancelled"),
        "{}",
        again.stderr
    );

    let unknown = genq(&prefix, &["pipelines", "start", "no-such-type"]).await;
    assert!(
        !unknown.ok && unknown.stderr.contains("unknown pipeline type"),
        "{}",
        unknown.stderr
    );
    let missing = genq(&prefix, &["pipelines", "show", "nope"]).await;
    assert!(
        !missing.ok && missing.stderr.contains("no pipeline nope"),
        "{}",
        missing.stderr
    );
    let bad_state = genq(&prefix, &["pipelines", "list", "sleeping"]).await;
    assert!(
        !bad_state.ok && bad_state.stderr.contains("sleeping"),
        "{}",
        bad_state.stderr
    );
    let counts = genq(&prefix, &["pipelines", "list"]).await;
    assert!(
        counts.ok && counts.stdout.contains("\"parked\": 0"),
        "{}",
        counts.stdout
    );
    genq_testkit::cleanup_prefix(&genq_testkit::redis_url(), &prefix).await;
}
