//! Settings shared by every binary, from flags or the environment.

use std::time::Duration;

use clap::Args;
use genq_redis::{RedisConfig, RedisQueue};

/// Redis connection and queue-keeping settings.
#[derive(Debug, Clone, Args)]
pub struct RedisArgs {
    /// Redis URL: `redis://host:port/db` (one server),
    /// `redis+sentinel://host:port,host:port/<master name>[/db]` (a Sentinel set) or
    /// `redis+cluster://host:port,host:port` (a Redis Cluster's seed nodes).
    #[arg(
        long = "redis",
        env = "GENQ_REDIS_URL",
        default_value = "redis://127.0.0.1:6379/"
    )]
    pub redis_url: String,
    /// Prefix of every genq key in Redis.
    #[arg(long, env = "GENQ_PREFIX", default_value = "genq")]
    pub prefix: String,
    /// Seconds a running job stays leased without a heartbeat (a dead worker's jobs come back after it).
    #[arg(long, env = "GENQ_LEASE_SECS", default_value_t = 20)]
    pub lease_secs: u64,
    /// Milliseconds between heartbeats (at most half the lease).
    #[arg(long, env = "GENQ_HEARTBEAT_MS", default_value_t = 5000)]
    pub heartbeat_ms: u64,
    /// Self-fencing margin in milliseconds: a job whose lease went unrenewed for
    /// the lease minus this is stopped before another worker may take it over
    /// (default: a quarter of the lease).
    #[arg(long, env = "GENQ_FENCE_MARGIN_MS")]
    pub fence_margin_ms: Option<u64>,
    /// Seconds a finished job's status and result stay readable.
    #[arg(long, env = "GENQ_RESULT_TTL_SECS", default_value_t = 3600)]
    pub result_ttl_secs: u64,
    /// Seconds an idempotency key dedupes.
    #[arg(long, env = "GENQ_IDEMPOTENCY_TTL_SECS", default_value_t = 86400)]
    pub idempotency_ttl_secs: u64,
    /// Dead letters kept per queue.
    #[arg(long, env = "GENQ_DEAD_LETTER_CAP", default_value_t = 10000)]
    pub dead_letter_cap: u64,
    /// Start even when Redis may evict keys (a `maxmemory-policy` other than
    /// `noeviction`): queued jobs may then vanish under memory pressure.
    #[arg(long, env = "GENQ_ALLOW_EVICTION")]
    pub allow_eviction: bool,
}

impl RedisArgs {
    /// Connects and checks the server's eviction policy and persistence (see
    /// [`RedisQueue::check_server`]); an error says what is wrong.
    pub async fn connect_checked(&self) -> Result<RedisQueue, String> {
        let cfg = self.to_config()?;
        let url = genq_redis::redact(&cfg.url);
        let queue = RedisQueue::connect(cfg)
            .await
            .map_err(|e| format!("cannot connect to Redis at {url}: {e}"))?;
        queue
            .check_server(self.allow_eviction)
            .await
            .map_err(|e| format!("Redis at {url}: {e}"))?;
        Ok(queue)
    }

    /// The backend configuration; an error names the bad setting.
    pub fn to_config(&self) -> Result<RedisConfig, String> {
        let cfg = RedisConfig {
            url: self.redis_url.clone(),
            prefix: self.prefix.clone(),
            lease: Duration::from_secs(self.lease_secs),
            heartbeat: Duration::from_millis(self.heartbeat_ms),
            fence_margin: self.fence_margin_ms.map(Duration::from_millis),
            result_ttl: Duration::from_secs(self.result_ttl_secs),
            idempotency_ttl: Duration::from_secs(self.idempotency_ttl_secs),
            dead_letter_cap: self.dead_letter_cap,
            ..RedisConfig::default()
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Logs to stderr; `GENQ_LOG` (or `RUST_LOG`) filters, `GENQ_LOG_FORMAT=json` for JSON lines.
pub fn init_tracing() {
    use tracing_subscriber::{EnvFilter, fmt};
    let filter = std::env::var("GENQ_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    use std::io::IsTerminal;
    let builder = fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let res = if std::env::var("GENQ_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    drop(res);
}
