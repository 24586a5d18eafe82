//! The Redis settings that decide whether queued jobs survive: its eviction policy
//! (anything but `noeviction` may silently delete jobs under memory pressure) and
//! its persistence (what a restart keeps). Every genq process checks them at start.

use crate::{QueueError, RedisQueue};

/// What the server is set to do with memory and restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// `maxmemory-policy` (`INFO memory`'s `maxmemory_policy`).
    pub maxmemory_policy: String,
    /// Append-only file on.
    pub aof_enabled: bool,
    /// `appendfsync`, when the server lets `CONFIG GET` read it.
    pub appendfsync: Option<String>,
    /// RDB snapshots configured (`save` not empty), when readable.
    pub rdb_snapshots: Option<bool>,
}

/// The value of `field` in an `INFO` section's `field:value` lines.
fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

impl ServerSettings {
    /// Reads them from `INFO memory`, `INFO persistence` and (best effort, managed
    /// Redis services often refuse it) `CONFIG GET`.
    pub fn from_info(memory: &str, persistence: &str) -> Result<Self, QueueError> {
        let policy = info_field(memory, "maxmemory_policy").ok_or_else(|| {
            QueueError::Protocol("INFO memory has no maxmemory_policy".to_owned())
        })?;
        Ok(Self {
            maxmemory_policy: policy.to_owned(),
            aof_enabled: info_field(persistence, "aof_enabled") == Some("1"),
            appendfsync: None,
            rdb_snapshots: None,
        })
    }

    /// Why the server may lose queued jobs by itself (an eviction policy), if it may.
    pub fn eviction_problem(&self) -> Option<String> {
        (self.maxmemory_policy != "noeviction").then(|| {
            format!(
                "Redis maxmemory-policy is '{}': under memory pressure Redis deletes keys, \
                 queued jobs among them. Set `maxmemory-policy noeviction` (CONFIG SET or \
                 redis.conf), or start anyway with GENQ_ALLOW_EVICTION=1 / --allow-eviction",
                self.maxmemory_policy
            )
        })
    }

    /// What a Redis restart keeps, in words, for the start-up log.
    pub fn persistence(&self) -> String {
        match (self.aof_enabled, &self.appendfsync, self.rdb_snapshots) {
            (true, Some(fsync), _) => format!("append-only file, appendfsync {fsync}"),
            (true, None, _) => "append-only file".to_owned(),
            (false, _, Some(true)) => {
                "RDB snapshots only: a restart loses what came after the last one".to_owned()
            }
            _ => "none: a restart of Redis loses every queued job".to_owned(),
        }
    }
}

impl RedisQueue {
    /// The server's eviction and persistence settings.
    pub async fn server_settings(&self) -> Result<ServerSettings, QueueError> {
        let mut c = self.connection();
        let memory: String = redis::cmd("INFO").arg("memory").query_async(&mut c).await?;
        let persistence: String = redis::cmd("INFO")
            .arg("persistence")
            .query_async(&mut c)
            .await?;
        let mut s = ServerSettings::from_info(&memory, &persistence)?;
        let config = |name: &'static str| {
            let mut c = self.connection();
            async move {
                let pair: Vec<String> = redis::cmd("CONFIG")
                    .arg("GET")
                    .arg(name)
                    .query_async(&mut c)
                    .await
                    .ok()?;
                pair.get(1).cloned()
            }
        };
        s.appendfsync = config("appendfsync").await;
        s.rdb_snapshots = config("save").await.map(|v| !v.trim().is_empty());
        Ok(s)
    }

    /// The start-up check of every genq process: refuses (an error naming the
    /// setting) a server that may evict keys unless `allow_eviction`, which only
    /// warns; logs what a restart of Redis keeps.
    pub async fn check_server(&self, allow_eviction: bool) -> Result<ServerSettings, QueueError> {
        let s = self.server_settings().await?;
        if let Some(problem) = s.eviction_problem() {
            if !allow_eviction {
                return Err(QueueError::Config(problem));
            }
            tracing::warn!("{problem} (allowed by GENQ_ALLOW_EVICTION)");
        }
        let persistence = s.persistence();
        if s.aof_enabled {
            tracing::info!(%persistence, "Redis persistence");
        } else {
            tracing::warn!(%persistence, "Redis persistence: see README, \"Production Redis\"");
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_are_read_from_info_and_judged() {
        let memory = "# Memory\r\nused_memory:1000\r\nmaxmemory_policy:allkeys-lru\r\n";
        let persistence = "# Persistence\r\nloading:0\r\naof_enabled:0\r\n";
        let s = ServerSettings::from_info(memory, persistence).expect("settings");
        assert_eq!(s.maxmemory_policy, "allkeys-lru");
        assert!(!s.aof_enabled);
        let problem = s.eviction_problem().expect("eviction is a problem");
        assert!(
            problem.contains("maxmemory-policy is 'allkeys-lru'"),
            "{problem}"
        );
        assert!(s.persistence().starts_with("none"));
        let ok = ServerSettings {
            maxmemory_policy: "noeviction".to_owned(),
            aof_enabled: true,
            appendfsync: Some("everysec".to_owned()),
            rdb_snapshots: Some(false),
        };
        assert_eq!(ok.eviction_problem(), None);
        assert_eq!(ok.persistence(), "append-only file, appendfsync everysec");
        assert!(ServerSettings::from_info("", "").is_err());
    }
}
