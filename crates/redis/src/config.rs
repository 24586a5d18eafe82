//! Backend settings, with the defaults PRODUCT.md and the foundation issue name.

use std::time::Duration;

/// How the backend talks to Redis and how long things live there.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://host:port/db`, `redis+sentinel://host:port,…/<master name>[/db]` or
    /// `redis+cluster://host:port,…` (see [`crate::RedisTarget`]).
    pub url: String,
    /// Every key starts with it; keys of one queue are `<prefix>:{<queue>}:...`.
    pub prefix: String,
    /// How long a running job stays leased without a heartbeat. A dead worker's jobs
    /// return to the queue at most `lease + heartbeat` after its last heartbeat.
    pub lease: Duration,
    /// How often a worker renews its leases and looks for expired ones.
    pub heartbeat: Duration,
    /// Self-fencing: a worker that has not renewed a job's lease for `lease -
    /// fence_margin` stops the job, so it makes no provider call once another
    /// worker may take it over. The margin covers stopping the handler and the
    /// hosts' clocks running at slightly different rates. `None`: a quarter of
    /// the lease (5 s of the default 20 s).
    pub fence_margin: Option<Duration>,
    /// How long a finished job's data (status, result) stays readable. Zero deletes it at once.
    pub result_ttl: Duration,
    /// How long an idempotency key dedupes.
    pub idempotency_ttl: Duration,
    /// Dead letters kept per queue; the oldest go first.
    pub dead_letter_cap: u64,
    /// Completion events kept per queue (approximately).
    pub events_maxlen: u64,
    /// Most jobs leased by one fetch.
    pub fetch_batch: usize,
    /// An idle worker looks for due work at least this often, even without a notification.
    pub poll_interval: Duration,
    /// Runs a job may lose to dying workers before it is dead-lettered.
    pub max_lost_leases: u32,
    /// Largest payload accepted by a push, in bytes.
    pub max_payload_bytes: usize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379/".to_owned(),
            prefix: "genq".to_owned(),
            lease: Duration::from_secs(20),
            heartbeat: Duration::from_secs(5),
            fence_margin: None,
            result_ttl: Duration::from_secs(3600),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            dead_letter_cap: 10_000,
            events_maxlen: 10_000,
            fetch_batch: 200,
            poll_interval: Duration::from_secs(1),
            max_lost_leases: 5,
            max_payload_bytes: 1024 * 1024,
        }
    }
}

impl RedisConfig {
    pub fn with_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The self-fencing margin in force (see [`RedisConfig::fence_margin`]).
    pub fn effective_fence_margin(&self) -> Duration {
        self.fence_margin.unwrap_or(self.lease / 4)
    }

    /// Checks the settings; the error names the bad one.
    pub fn validate(&self) -> Result<(), String> {
        crate::target::RedisTarget::parse(&self.url).map_err(|e| match e {
            crate::QueueError::Config(problem) => problem,
            other => other.to_string(),
        })?;
        if self.prefix.is_empty() || self.prefix.contains(['{', '}', ' ']) {
            return Err(format!(
                "redis prefix '{}' must be non-empty, without spaces or braces",
                self.prefix
            ));
        }
        if self.lease < Duration::from_secs(1) {
            return Err(format!("lease {:?} is shorter than 1 s", self.lease));
        }
        if self.heartbeat.is_zero() || self.heartbeat * 2 > self.lease {
            return Err(format!(
                "heartbeat {:?} must be positive and at most half the lease ({:?})",
                self.heartbeat, self.lease
            ));
        }
        let margin = self.effective_fence_margin();
        if margin.is_zero() || self.lease.saturating_sub(margin) <= self.heartbeat {
            return Err(format!(
                "fence margin {margin:?} must be positive and leave more than a heartbeat ({:?}) of the lease ({:?})",
                self.heartbeat, self.lease
            ));
        }
        if self.fetch_batch == 0 || self.fetch_batch > 10_000 {
            return Err(format!("fetch batch {} must be 1-10000", self.fetch_batch));
        }
        if self.dead_letter_cap == 0 {
            return Err("dead-letter cap must be at least 1".to_owned());
        }
        if self.poll_interval.is_zero() {
            return Err("poll interval must be positive".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_settings_are_named() {
        assert!(RedisConfig::default().validate().is_ok());
        let bad = RedisConfig {
            heartbeat: Duration::from_secs(15),
            ..RedisConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("heartbeat"));
        let bad = RedisConfig {
            fence_margin: Some(Duration::from_secs(16)),
            ..RedisConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("fence margin"));
        let bad = RedisConfig::default().prefix("a{b}");
        assert!(bad.validate().unwrap_err().contains("prefix"));
    }
}
