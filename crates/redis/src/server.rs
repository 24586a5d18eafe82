//! The Redis settings that decide whether queued jobs survive: its eviction policy
//! (anything but `noeviction` may silently delete jobs under memory pressure) and
//! its persistence (what a restart keeps). Every genq process checks them at start.

use redis::Value;

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
    /// `INFO <section>` of every server holding data, by address: the one server
    /// (or Sentinel-named primary), or every primary of a Cluster.
    async fn info_per_node(&self, section: &str) -> Result<Vec<(String, String)>, QueueError> {
        let text = |v: Value| {
            redis::from_redis_value::<String>(v)
                .map_err(|e| QueueError::Protocol(format!("INFO {section}: {e}")))
        };
        let mut c = self.connection();
        let reply: Value = redis::cmd("INFO").arg(section).query_async(&mut c).await?;
        match reply {
            // a Cluster answers with each primary's reply by its address
            Value::Map(pairs) => pairs
                .into_iter()
                .map(|(node, info)| Ok((text(node)?, text(info)?)))
                .collect(),
            other => Ok(vec![(String::new(), text(other)?)]),
        }
    }

    /// `CONFIG GET name` (best effort: managed Redis services often refuse it).
    async fn config_value(&self, name: &str) -> Option<String> {
        let mut c = self.connection();
        let pair: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg(name)
            .query_async(&mut c)
            .await
            .ok()?;
        pair.get(1).cloned()
    }

    /// Each data-holding server's eviction and persistence settings, by address
    /// (one entry, address empty, outside a Cluster).
    pub async fn server_settings_per_node(
        &self,
    ) -> Result<Vec<(String, ServerSettings)>, QueueError> {
        let memory = self.info_per_node("memory").await?;
        let persistence: std::collections::HashMap<String, String> = self
            .info_per_node("persistence")
            .await?
            .into_iter()
            .collect();
        let appendfsync = self.config_value("appendfsync").await;
        let rdb_snapshots = self
            .config_value("save")
            .await
            .map(|v| !v.trim().is_empty());
        memory
            .into_iter()
            .map(|(node, memory)| {
                let persistence = persistence.get(&node).map_or("", String::as_str);
                let mut s = ServerSettings::from_info(&memory, persistence)?;
                s.appendfsync = appendfsync.clone();
                s.rdb_snapshots = rdb_snapshots;
                Ok((node, s))
            })
            .collect()
    }

    /// The server's eviction and persistence settings (on a Cluster, the first
    /// primary's; see [`RedisQueue::server_settings_per_node`]).
    pub async fn server_settings(&self) -> Result<ServerSettings, QueueError> {
        self.server_settings_per_node()
            .await?
            .into_iter()
            .next()
            .map(|(_, s)| s)
            .ok_or_else(|| QueueError::Protocol("INFO answered for no server".to_owned()))
    }

    /// The start-up check of every genq process: refuses (an error naming the
    /// setting, and on a Cluster the node) a server that may evict keys unless
    /// `allow_eviction`, which only warns; logs what a restart of Redis keeps.
    /// On a Cluster every primary is checked.
    pub async fn check_server(&self, allow_eviction: bool) -> Result<ServerSettings, QueueError> {
        let nodes = self.server_settings_per_node().await?;
        for (node, s) in &nodes {
            let at = if node.is_empty() {
                String::new()
            } else {
                format!(" (node {node})")
            };
            if let Some(problem) = s.eviction_problem() {
                if !allow_eviction {
                    return Err(QueueError::Config(format!("{problem}{at}")));
                }
                tracing::warn!("{problem}{at} (allowed by GENQ_ALLOW_EVICTION)");
            }
            let persistence = s.persistence();
            if s.aof_enabled {
                tracing::info!(%persistence, node = %node, "Redis persistence");
            } else {
                tracing::warn!(%persistence, node = %node, "Redis persistence: see README, \"Production Redis\"");
            }
        }
        nodes
            .into_iter()
            .next()
            .map(|(_, s)| s)
            .ok_or_else(|| QueueError::Protocol("INFO answered for no server".to_owned()))
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
