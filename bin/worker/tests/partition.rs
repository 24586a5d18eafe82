//! A worker host cut off from Redis mid-job (a real link cut: the worker runs in a
//! network namespace whose veth link to Redis is taken down, while its link to the
//! provider stays up). It must stop its job (self-fencing) before its lease can be
//! taken over, so it makes no provider call once another host may run the job;
//! the other host finishes the job, resuming the same provider task, and the job's
//! final event is written once.

mod common;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::Path,
    time::{Duration, SystemTime},
};

use common::png;
use genq_core::JobStatus;
use genq_redis::{NewJob, RedisConfig, RedisQueue};
use genq_testkit::{
    ChildProcess, FakeProvider, NetHost, PrivateRedis, free_port, unique_prefix, wait_until,
};

const LEASE_SECS: u64 = 4;
/// The two links of the cut-off host: to Redis, to the provider.
const REDIS_LINK: usize = 0;
const PROVIDER_LINK: usize = 1;

/// Both hosts share the provider key (a re-run resumes the task with the key that
/// submitted it); the fake tells them apart by the address their calls come from.
fn config(dir: &Path, artifacts: &Path, provider_base: &str, host: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{host}.toml"));
    let text = format!(
        r#"
[artifacts]
dir = "{artifacts}"

[providers.media]
protocol = "queue"
base_url = "{provider_base}/queue"
keys = ["shared-key"]

[jobs.upscale]
provider = "media"
poll_interval_ms = 200
"#,
        artifacts = artifacts.display(),
    );
    std::fs::write(&path, text).expect("write config");
    path
}

fn worker_env(redis_url: String, prefix: &str, config: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("GENQ_REDIS_URL", redis_url),
        ("GENQ_PREFIX", prefix.to_owned()),
        ("GENQ_CONFIG", config.display().to_string()),
        ("GENQ_LEASE_SECS", LEASE_SECS.to_string()),
        ("GENQ_HEARTBEAT_MS", "500".to_owned()),
        ("GENQ_METRICS_ADDR", format!("127.0.0.1:{}", free_port())),
        ("GENQ_LOG", "info".to_owned()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cut_off_from_redis_stops_before_another_host_takes_its_job() {
    let host_a = NetHost::create(2).expect("a network namespace (tests run as root)");
    let redis = PrivateRedis::start_with_args(&["--bind", "0.0.0.0", "--protected-mode", "no"])
        .await
        .expect("a private redis-server");
    let fake = FakeProvider::start_on(SocketAddr::from(([0, 0, 0, 0], 0)))
        .await
        .expect("fake provider");
    fake.set_task_duration(Duration::from_secs(12));
    let port = fake.addr().port();
    let prefix = unique_prefix("partition");
    let dir = std::env::temp_dir().join(&prefix);
    let artifacts = dir.join("artifacts");
    std::fs::create_dir_all(artifacts.join("inputs")).expect("temp dir");
    std::fs::write(artifacts.join("inputs/scene.png"), png(200, 100)).expect("input");
    let gateway = |link| host_a.gateway(link);
    let config_a = config(
        &dir,
        &artifacts,
        &format!("http://{}:{port}", gateway(PROVIDER_LINK)),
        "host-a",
    );
    let config_b = config(
        &dir,
        &artifacts,
        &format!("http://127.0.0.1:{port}"),
        "host-b",
    );
    let from_a = IpAddr::V4(host_a.address(PROVIDER_LINK));
    let from_b = IpAddr::V4(Ipv4Addr::LOCALHOST);

    // host A (in its namespace) takes the job and starts paying the provider
    let (ip, args) = host_a.wrap(env!("CARGO_BIN_EXE_worker"), &["--queues", "img"]);
    let redis_from_a = format!("redis://{}:{}/", gateway(REDIS_LINK), redis.port);
    let mut worker_a =
        ChildProcess::spawn(ip, &args, &worker_env(redis_from_a, &prefix, &config_a))
            .expect("spawn worker A");
    assert!(
        worker_a
            .wait_for_output("worker started", Duration::from_secs(30))
            .await
    );
    let queue = RedisQueue::connect(RedisConfig::with_url(redis.url()).prefix(&prefix))
        .await
        .expect("connect");
    let id = queue
        .push(
            NewJob::json(
                "img",
                "upscale",
                &serde_json::json!({ "image": "inputs/scene.png", "factor": 2 }),
            )
            .expect("payload"),
        )
        .await
        .expect("push")
        .id;
    let polling = wait_until(Duration::from_secs(30), || async {
        (fake.calls_from(from_a).len() >= 3).then_some(())
    })
    .await;
    assert!(polling.is_some(), "host A submitted the task and polls it");
    // host B is up, idle, reaping
    let mut worker_b = ChildProcess::spawn(
        env!("CARGO_BIN_EXE_worker"),
        &["--queues", "img"],
        &worker_env(redis.url(), &prefix, &config_b),
    )
    .expect("spawn worker B");
    assert!(
        worker_b
            .wait_for_output("worker started", Duration::from_secs(30))
            .await
    );

    // A's link to Redis goes down; its link to the provider stays up
    host_a.cut(REDIS_LINK).expect("cut the link");
    assert!(
        worker_a
            .wait_for_output("leases not renewed in time", Duration::from_secs(30))
            .await,
        "host A fenced itself"
    );
    let fenced_seen = SystemTime::now();

    let done = wait_until(Duration::from_secs(60), || async {
        queue
            .job("img", &id)
            .await
            .ok()
            .flatten()
            .filter(|s| s.status.is_final())
    })
    .await
    .expect("host B finished the job");
    assert_eq!(done.status, JobStatus::Succeeded, "{done:?}");

    let a_calls = fake.calls_from(from_a);
    let b_calls = fake.calls_from(from_b);
    let Some(&(_, b_first)) = b_calls.first() else {
        panic!("host B never called the provider");
    };
    assert!(
        b_calls.iter().all(|(label, _)| *label != "submit"),
        "host B resumed host A's task: {b_calls:?}"
    );
    assert_eq!(fake.submits(), 1, "the provider task was paid once");
    for (label, at) in &a_calls {
        assert!(
            *at < b_first,
            "host A called `{label}` after host B took the job over"
        );
        assert!(
            *at <= fenced_seen,
            "host A called `{label}` after it fenced itself"
        );
    }
    // no call from A either in the seconds after (its handler is gone)
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fake.calls_from(from_a).len(), a_calls.len());

    // the job's final event, once
    let mut conn = queue.connection();
    let events: Vec<redis::streams::StreamId> = {
        let reply: redis::streams::StreamRangeReply =
            redis::AsyncCommands::xrange_all(&mut conn, format!("{prefix}:{{img}}:events"))
                .await
                .expect("events");
        reply.ids
    };
    let mine = events
        .iter()
        .filter(|e| e.get::<String>("id").as_deref() == Some(id.as_str()))
        .count();
    assert_eq!(mine, 1, "one final event for the job");

    worker_a.sigkill();
    worker_b.sigkill();
    drop(host_a);
    let _ = std::fs::remove_dir_all(&dir);
}
