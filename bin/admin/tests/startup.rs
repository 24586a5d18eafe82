//! The admin binary's start-up rules: no token only on loopback.

use std::time::Duration;

use genq_testkit::{ChildProcess, free_port, http_get, redis_url, unique_prefix, wait_until};

fn admin(args: &[&str], token: Option<&str>) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_admin"));
    cmd.args(args)
        .env("GENQ_REDIS_URL", redis_url())
        .env_remove("GENQ_ADMIN_TOKEN");
    if let Some(t) = token {
        cmd.env("GENQ_ADMIN_TOKEN", t);
    }
    cmd.output().expect("run admin")
}

#[test]
fn refuses_to_serve_the_api_openly_without_a_token() {
    let addr = format!("0.0.0.0:{}", free_port());
    let out = admin(&["--addr", &addr, "--no-database"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("without a token: set GENQ_ADMIN_TOKEN"));
    let out = admin(&["--addr", &addr, "--no-database"], Some("short"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("too short"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_on_loopback_without_a_token() {
    let addr = format!("127.0.0.1:{}", free_port());
    let env = [
        ("GENQ_REDIS_URL", redis_url()),
        ("GENQ_PREFIX", unique_prefix("adminstart")),
    ];
    let _admin = ChildProcess::spawn(
        env!("CARGO_BIN_EXE_admin"),
        &["--addr", &addr, "--no-database"],
        &env,
    )
    .expect("spawn admin");
    let queues = wait_until(Duration::from_secs(20), || {
        let addr = addr.clone();
        async move { http_get(&addr, "/api/queues") }
    })
    .await;
    assert_eq!(queues.as_deref(), Some("[]"));
    assert!(http_get(&addr, "/metrics").is_some_and(|m| m.contains("genq_admin_up 1")));
}
