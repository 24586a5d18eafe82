//! Test helpers shared by every crate's tests, written once.
//!
//! - [`redis_url`] and [`unique_prefix`]: tests on the shared Redis each use their
//!   own key prefix, so they run in parallel; [`cleanup_prefix`] removes its keys.
//! - [`PrivateRedis`]: a `redis-server` of the test's own on a free port, for tests
//!   that restart, stop or flood the server (never the shared one).
//! - [`RedisSentinelSet`] (a primary, a replica, three sentinels) and
//!   [`RedisClusterNodes`] (a three-primary Redis Cluster), of a test's own.
//! - [`free_port`], [`wait_until`].
//! - [`FakeProvider`]: a fake AI provider on 127.0.0.1 speaking both protocols of
//!   `docs/PROVIDER-PROTOCOLS.md`, with scripted failures and call counters.
//! - [`FakeTelegram`]: a fake Telegram Bot API server on 127.0.0.1 (what teloxide
//!   calls), with scripted users, 429s, Telegram's limits, and a record of every call.
//! - [`TestSchema`]: a PostgreSQL schema of the test's own; [`ChildProcess`]: a genq
//!   binary under test, its stderr kept; [`http_get`].

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

mod fake_provider;
mod fake_telegram;
mod fake_vendors;
mod netns;
mod redis_ha;

/// Serves `app` on `listener` in a background task until the returned sender is
/// dropped or fired (the fake servers stop when their handle drops).
pub(crate) fn spawn_server(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    name: &'static str,
) -> tokio::sync::oneshot::Sender<()> {
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        if let Err(e) = serve.await {
            tracing::warn!(error = %e, "{name}: server stopped with an error");
        }
    });
    shutdown
}

pub use fake_provider::{
    DEFAULT_TASK_DURATION, FakeFailure, FakeProvider, MALFORMED_BODY, TaskErrorCode, promo_toml,
    providers_toml,
};
pub use fake_telegram::{
    CallbackAnswer, FakeTelegram, Invoice, PreCheckoutAnswer, SentKind, SentMessage, StarRefund,
};
pub use fake_vendors::{
    FakeVendor, FakeVendorKind, KIE_WEBHOOK_KEY, REPLICATE_WEBHOOK_SECRET, VendorFailure,
    VendorTaskFailure, WebhookMode,
};
pub use netns::NetHost;
pub use redis_ha::{RedisClusterNodes, RedisSentinelSet, SENTINEL_MASTER};

/// The shared Redis tests use: `GENQ_TEST_REDIS_URL`, else 127.0.0.1:6379.
pub fn redis_url() -> String {
    std::env::var("GENQ_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned())
}

/// A key prefix no other test uses.
pub fn unique_prefix(test: &str) -> String {
    format!(
        "genqtest-{test}-{}",
        ulid::Ulid::new().to_string().to_lowercase()
    )
}

/// Deletes every key under `prefix` on the Redis at `url`.
pub async fn cleanup_prefix(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut con) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let pattern = format!("{prefix}:*");
    let mut cursor: u64 = 0;
    loop {
        let reply: Result<(u64, Vec<String>), _> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut con)
            .await;
        let Ok((next, keys)) = reply else { return };
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("UNLINK").arg(&keys).query_async(&mut con).await;
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Polls `check` every 20 ms until it returns `Some`, or `timeout` passes.
pub async fn wait_until<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `redis-server` of the test's own, on a free port: without persistence, or
/// with an append-only file synced on every write ([`PrivateRedis::start_persistent`]:
/// a restart keeps the data, so a test can make Redis *unavailable* without making
/// it *forget*). Killed when dropped.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
    persistent: bool,
    /// More `redis-server` arguments (e.g. `--maxmemory-policy allkeys-lru`).
    extra: Vec<String>,
}

impl PrivateRedis {
    /// Starts one without persistence and waits until it answers.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(false).await
    }

    /// Starts one with `appendonly yes`, `appendfsync always` and waits until it
    /// answers: a stop and restart loses nothing.
    pub async fn start_persistent() -> std::io::Result<Self> {
        Self::start_with(true).await
    }

    /// Starts one without persistence with more `redis-server` arguments.
    pub async fn start_with_args(args: &[&str]) -> std::io::Result<Self> {
        let mut me = Self::new(false)?;
        me.extra = args.iter().map(|a| (*a).to_owned()).collect();
        me.spawn().await?;
        Ok(me)
    }

    async fn start_with(persistent: bool) -> std::io::Result<Self> {
        let mut me = Self::new(persistent)?;
        me.spawn().await?;
        Ok(me)
    }

    fn new(persistent: bool) -> std::io::Result<Self> {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("genq-redis-{port}-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            port,
            child: None,
            dir,
            persistent,
            extra: Vec::new(),
        })
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    async fn spawn(&mut self) -> std::io::Result<()> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                if self.persistent { "yes" } else { "no" },
                "--appendfsync",
                "always",
            ])
            .args(&self.extra)
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.query_info().await.is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(std::io::Error::other(format!(
            "redis-server on port {} did not start",
            self.port
        )))
    }

    /// Kills the server (without persistence its data is gone).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills and starts it again on the same port.
    pub async fn restart(&mut self) -> std::io::Result<()> {
        self.stop();
        self.spawn().await
    }

    async fn query_info(&self) -> Option<String> {
        let client = redis::Client::open(self.url()).ok()?;
        let mut con = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut con)
            .await
            .ok()
    }

    /// `INFO memory`'s used_memory, in bytes.
    pub async fn used_memory(&self) -> Option<u64> {
        self.query_info()
            .await?
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// GET `http://{addr}{path}` over a plain TCP connection; the body, if the status is 200.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// A child process of the test (a genq binary), killed when dropped. Its stderr
/// is copied to the test's stderr (shown when a test fails) and kept for
/// [`ChildProcess::wait_for_output`].
pub struct ChildProcess {
    child: Child,
    pub name: String,
    output: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ChildProcess {
    /// Spawns `program` with `args` and extra environment.
    pub fn spawn(program: &str, args: &[&str], env: &[(&str, String)]) -> std::io::Result<Self> {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn()?;
        let name = program.rsplit('/').next().unwrap_or(program).to_owned();
        let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        if let Some(stderr) = child.stderr.take() {
            let output = output.clone();
            let prefix = format!("[{name} {}]", child.id());
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                {
                    eprintln!("{prefix} {line}");
                    if let Ok(mut out) = output.lock() {
                        out.push(line);
                    }
                }
            });
        }
        Ok(Self {
            child,
            name,
            output,
        })
    }

    /// True when a line of the process's stderr so far contains `needle`.
    pub fn output_contains(&self, needle: &str) -> bool {
        self.output
            .lock()
            .map(|out| out.iter().any(|l| l.contains(needle)))
            .unwrap_or(false)
    }

    /// Waits until a line of the process's stderr contains `needle`.
    pub async fn wait_for_output(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || async {
            self.output
                .lock()
                .ok()
                .and_then(|out| out.iter().any(|l| l.contains(needle)).then_some(()))
        })
        .await
        .is_some()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to clean up.
    pub fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM: asks for a graceful stop.
    pub fn sigterm(&self) -> bool {
        Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Waits up to `timeout` for the process to exit; its exit status if it did.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shared PostgreSQL tests use: `GENQ_TEST_DATABASE_URL`, else the local `test` database.
pub fn database_url() -> String {
    std::env::var("GENQ_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A PostgreSQL schema of the test's own (tests run in parallel, each in its own
/// schema); [`TestSchema::drop`] removes it with everything in it.
pub struct TestSchema {
    pub url: String,
    pub name: String,
}

impl TestSchema {
    pub async fn create(test: &str) -> Result<Self, sqlx::Error> {
        let url = database_url();
        let name = format!(
            "t_{}_{}",
            test,
            ulid::Ulid::new().to_string().to_lowercase()
        );
        let mut con = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await?;
        // the name is made here from a ULID: safe to splice
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&mut con)
            .await?;
        Ok(Self { url, name })
    }

    pub async fn drop(self) {
        if let Ok(mut con) = <sqlx::PgConnection as sqlx::Connection>::connect(&self.url).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA {} CASCADE",
                self.name
            )))
            .execute(&mut con)
            .await;
        }
    }
}
