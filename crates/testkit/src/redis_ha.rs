//! Highly available Redis set-ups of a test's own, on free ports in a temporary
//! directory, every process killed on drop:
//!
//! - [`RedisSentinelSet`]: a primary, a replica and three sentinels watching them
//!   (`mymaster`, quorum 2, a primary is down after 1 s without an answer);
//! - [`RedisClusterNodes`]: a real Redis Cluster of three primaries (no replicas),
//!   slots split evenly by `redis-cli --cluster create`.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::{free_port, wait_until};

/// The name the sentinels know the primary by.
pub const SENTINEL_MASTER: &str = "mymaster";

/// How long a fixture waits for its servers to come up or agree.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

fn io_err(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::other(msg.into())
}

/// One `redis-server` process (killed on drop).
struct Server {
    port: u16,
    child: Option<Child>,
}

impl Server {
    /// Starts `redis-server` with `args` (a config file first, if any) on `port`.
    fn spawn(port: u16, args: &[String]) -> std::io::Result<Self> {
        let child = Command::new("redis-server")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(Self {
            port,
            child: Some(child),
        })
    }

    /// A plain data server on `port`, its files in `dir`, without persistence.
    fn data(port: u16, dir: &Path, extra: &[&str]) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args.push("--dir".to_owned());
        args.push(dir.display().to_string());
        Self::spawn(port, &args)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends the command `args` to the server at `port` on a fresh connection.
async fn query<T: redis::FromRedisValue>(port: u16, args: &[&str]) -> Option<T> {
    let (name, rest) = args.split_first()?;
    let mut cmd = redis::cmd(name);
    for a in rest {
        cmd.arg(*a);
    }
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let mut con = client.get_multiplexed_async_connection().await.ok()?;
    cmd.query_async(&mut con).await.ok()
}

/// Waits until the server at `port` answers PING.
async fn wait_answering(port: u16) -> std::io::Result<()> {
    wait_until(SETUP_TIMEOUT, || query::<String>(port, &["PING"]))
        .await
        .map(|_| ())
        .ok_or_else(|| io_err(format!("redis-server on port {port} did not start")))
}

fn temp_dir(kind: &str) -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("genq-{kind}-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A primary, one replica and three sentinels (see the module docs).
pub struct RedisSentinelSet {
    primary: Server,
    replica: Server,
    sentinels: Vec<Server>,
    dir: PathBuf,
}

impl RedisSentinelSet {
    /// Starts them and waits until the replica is in sync and every sentinel
    /// knows the replica and the two other sentinels (so a failover can happen).
    pub async fn start() -> std::io::Result<Self> {
        let dir = temp_dir("sentinel")?;
        let primary_port = free_port();
        let primary = Server::data(primary_port, &dir.join("primary"), &[])?;
        wait_answering(primary_port).await?;
        let replica_port = free_port();
        let replica = Server::data(
            replica_port,
            &dir.join("replica"),
            &["--replicaof", "127.0.0.1", &primary_port.to_string()],
        )?;
        wait_answering(replica_port).await?;
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let port = free_port();
            let conf = dir.join(format!("sentinel-{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {dir}\n\
                     sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {primary_port} 2\n\
                     sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n\
                     sentinel failover-timeout {SENTINEL_MASTER} 3000\n\
                     sentinel parallel-syncs {SENTINEL_MASTER} 1\n",
                    dir = dir.display()
                ),
            )?;
            let server =
                Server::spawn(port, &[conf.display().to_string(), "--sentinel".to_owned()])?;
            wait_answering(port).await?;
            sentinels.push(server);
        }
        let me = Self {
            primary,
            replica,
            sentinels,
            dir,
        };
        me.wait_ready().await?;
        Ok(me)
    }

    async fn wait_ready(&self) -> std::io::Result<()> {
        let replica = self.replica.port;
        let synced = wait_until(SETUP_TIMEOUT, || async move {
            let info: String = query(replica, &["INFO", "replication"]).await?;
            info.contains("master_link_status:up").then_some(())
        })
        .await;
        synced.ok_or_else(|| io_err("the replica did not sync with the primary"))?;
        for s in &self.sentinels {
            let port = s.port;
            let knows = wait_until(SETUP_TIMEOUT, || async move {
                let replicas: Vec<redis::Value> =
                    query(port, &["SENTINEL", "replicas", SENTINEL_MASTER]).await?;
                let others: Vec<redis::Value> =
                    query(port, &["SENTINEL", "sentinels", SENTINEL_MASTER]).await?;
                (!replicas.is_empty() && others.len() >= 2).then_some(())
            })
            .await;
            knows.ok_or_else(|| {
                io_err(format!(
                    "sentinel on port {port} did not discover the replica and the other sentinels"
                ))
            })?;
        }
        Ok(())
    }

    /// `redis+sentinel://` URL of the three sentinels and the master name.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{SENTINEL_MASTER}", hosts.join(","))
    }

    /// The port of the primary the set started with.
    pub fn primary_port(&self) -> u16 {
        self.primary.port
    }

    /// The port of the replica the set started with.
    pub fn replica_port(&self) -> u16 {
        self.replica.port
    }

    /// URL of the primary the set started with (direct, not through sentinels).
    pub fn primary_url(&self) -> String {
        self.primary.url()
    }

    /// SIGKILLs the primary.
    pub fn kill_primary(&mut self) {
        self.primary.kill();
    }

    /// The port of the primary the first sentinel names now.
    pub async fn current_primary_port(&self) -> Option<u16> {
        let (_, port): (String, String) = query(
            self.sentinels.first()?.port,
            &["SENTINEL", "get-master-addr-by-name", SENTINEL_MASTER],
        )
        .await?;
        port.parse().ok()
    }

    /// Waits until the sentinels name the replica as the primary and it takes writes.
    pub async fn wait_failover(&self, timeout: Duration) -> bool {
        let replica = self.replica.port;
        wait_until(timeout, || async move {
            (self.current_primary_port().await? == replica).then_some(())?;
            let role: Vec<redis::Value> = query(replica, &["ROLE"]).await?;
            let first: String = redis::from_redis_value(role.into_iter().next()?).ok()?;
            (first == "master").then_some(())
        })
        .await
        .is_some()
    }
}

impl Drop for RedisSentinelSet {
    fn drop(&mut self) {
        for s in &mut self.sentinels {
            s.kill();
        }
        self.replica.kill();
        self.primary.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of three primaries (see the module docs).
pub struct RedisClusterNodes {
    nodes: Vec<Server>,
    dir: PathBuf,
}

/// A free port whose cluster bus port (port + 10000) is free too.
fn free_cluster_port(taken: &[u16]) -> std::io::Result<u16> {
    for _ in 0..200 {
        let port = free_port();
        if port == 0 || port > 55_535 || taken.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return Ok(port);
        }
    }
    Err(io_err("no free port with a free cluster bus port"))
}

impl RedisClusterNodes {
    /// Starts three cluster-enabled servers, creates the cluster, and waits until
    /// every node says `cluster_state:ok`.
    pub async fn start() -> std::io::Result<Self> {
        let dir = temp_dir("cluster")?;
        let mut nodes = Vec::new();
        let mut ports = Vec::new();
        for _ in 0..3 {
            let port = free_cluster_port(&ports)?;
            ports.push(port);
            let node_dir = dir.join(port.to_string());
            let conf = node_dir.join("nodes.conf");
            let node = Server::data(
                port,
                &node_dir,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &conf.display().to_string(),
                    "--cluster-node-timeout",
                    "2000",
                ],
            )?;
            nodes.push(node);
        }
        for port in &ports {
            wait_answering(*port).await?;
        }
        let me = Self { nodes, dir };
        me.create().await?;
        Ok(me)
    }

    async fn create(&self) -> std::io::Result<()> {
        let mut cmd = tokio::process::Command::new("redis-cli");
        cmd.arg("--cluster").arg("create");
        for n in &self.nodes {
            cmd.arg(format!("127.0.0.1:{}", n.port));
        }
        let out = cmd
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .await?;
        if !out.status.success() {
            return Err(io_err(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&out.stdout)
            )));
        }
        for n in &self.nodes {
            let port = n.port;
            let ok = wait_until(SETUP_TIMEOUT, || async move {
                let info: String = query(port, &["CLUSTER", "INFO"]).await?;
                info.contains("cluster_state:ok").then_some(())
            })
            .await;
            ok.ok_or_else(|| {
                io_err(format!(
                    "cluster node {port} never reached cluster_state:ok"
                ))
            })?;
        }
        Ok(())
    }

    /// `redis+cluster://` URL naming every node as a seed.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// The nodes' ports.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The keys matching `pattern` that each node holds itself, by port.
    pub async fn keys_per_node(&self, pattern: &str) -> Vec<(u16, Vec<String>)> {
        let mut out = Vec::new();
        for n in &self.nodes {
            let mut keys = Vec::new();
            let mut cursor: u64 = 0;
            loop {
                let cursor_arg = cursor.to_string();
                let reply: Option<(u64, Vec<String>)> = query(
                    n.port,
                    &["SCAN", &cursor_arg, "MATCH", pattern, "COUNT", "1000"],
                )
                .await;
                let Some((next, mut batch)) = reply else {
                    break;
                };
                keys.append(&mut batch);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            out.push((n.port, keys));
        }
        out
    }
}

impl Drop for RedisClusterNodes {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
