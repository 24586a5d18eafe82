//! The admin's `/metrics`: cluster-wide figures only the admin sees (queues from
//! Redis, credits and users from PostgreSQL, key cool-downs), under `genq_admin_*` so
//! they never collide with a worker's own process metrics.

use prometheus::{GaugeVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::AdminState;

#[derive(Clone)]
pub struct AdminMetrics {
    pub up: IntGauge,
    pub queue_depth: IntGaugeVec,
    pub oldest_ready_age: GaugeVec,
    pub paused: IntGaugeVec,
    pub dead_letters: IntGaugeVec,
    pub workers_alive: IntGaugeVec,
    pub queue_jobs: IntGaugeVec,
    pub credits_today: IntGaugeVec,
    pub users_active: IntGaugeVec,
    pub provider_keys: IntGaugeVec,
    pub provider_keys_cooling: IntGaugeVec,
    pub jobs_lost_by_redis: IntGaugeVec,
    pub pipelines: IntGaugeVec,
    pub pipelines_finished: IntGaugeVec,
    /// Vendor webhooks received, by provider and outcome (woke, not_waiting, duplicate,
    /// refused, unknown_provider, error).
    pub webhooks: IntCounterVec,
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec, prometheus::Error> {
    IntGaugeVec::new(Opts::new(name, help), labels)
}

impl AdminMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            up: IntGauge::new("genq_admin_up", "1 while the admin process runs")?,
            queue_depth: gauge_vec(
                "genq_admin_queue_depth",
                "Jobs per queue and state",
                &["queue", "state"],
            )?,
            oldest_ready_age: GaugeVec::new(
                Opts::new(
                    "genq_admin_queue_oldest_ready_age_seconds",
                    "Age of the oldest ready job",
                ),
                &["queue"],
            )?,
            paused: gauge_vec(
                "genq_admin_queue_paused",
                "1 while the queue is paused",
                &["queue"],
            )?,
            dead_letters: gauge_vec(
                "genq_admin_dead_letters",
                "Dead letters per queue",
                &["queue"],
            )?,
            workers_alive: gauge_vec(
                "genq_admin_workers_alive",
                "Worker processes heartbeating on the queue",
                &["queue"],
            )?,
            queue_jobs: gauge_vec(
                "genq_admin_queue_jobs",
                "Jobs pushed, succeeded, failed, retried, cancelled, recovered since the queue began",
                &["queue", "outcome"],
            )?,
            credits_today: gauge_vec(
                "genq_admin_credits_today",
                "Credits moved today (UTC), by kind: charged, refunded, granted, deducted, purchased, purchase_refunded",
                &["kind"],
            )?,
            users_active: gauge_vec(
                "genq_admin_users_active",
                "Users active in the window",
                &["window"],
            )?,
            provider_keys: gauge_vec(
                "genq_admin_provider_keys",
                "API keys configured per provider",
                &["provider"],
            )?,
            provider_keys_cooling: gauge_vec(
                "genq_admin_provider_keys_cooling",
                "API keys cooling down per provider",
                &["provider"],
            )?,
            jobs_lost_by_redis: gauge_vec(
                "genq_admin_jobs_lost_by_redis",
                "Paid jobs PostgreSQL had open that Redis had lost (restart without persistence, failover, FLUSHALL), since the record began, by what the settler did: requeued (each loss), failed (refunded)",
                &["action"],
            )?,
            pipelines: gauge_vec(
                "genq_admin_pipelines",
                "Pipelines by state: queued, active (jobs in flight), parked (at a gate, holding no worker slot), finished (kept for the result TTL)",
                &["state"],
            )?,
            pipelines_finished: gauge_vec(
                "genq_admin_pipelines_finished",
                "Pipelines ended since the deployment began, by type and outcome (succeeded, failed, cancelled, timed_out)",
                &["type", "outcome"],
            )?,
            webhooks: IntCounterVec::new(
                Opts::new(
                    "genq_admin_webhooks_total",
                    "Vendor completion webhooks received, by provider and outcome",
                ),
                &["provider", "outcome"],
            )?,
        };
        registry.register(Box::new(m.webhooks.clone()))?;
        // webhooks to a provider that takes none are counted here (from zero)
        m.webhooks.with_label_values(&["-", "unknown_provider"]);
        for state in ["queued", "active", "parked", "finished"] {
            m.pipelines.with_label_values(&[state]).set(0);
        }
        registry.register(Box::new(m.up.clone()))?;
        for v in [
            &m.queue_depth,
            &m.paused,
            &m.dead_letters,
            &m.workers_alive,
            &m.queue_jobs,
            &m.credits_today,
            &m.users_active,
            &m.provider_keys,
            &m.provider_keys_cooling,
            &m.jobs_lost_by_redis,
            &m.pipelines,
            &m.pipelines_finished,
        ] {
            registry.register(Box::new(v.clone()))?;
        }
        registry.register(Box::new(m.oldest_ready_age.clone()))?;
        m.up.set(1);
        Ok(m)
    }

    /// Reads the figures afresh (on each scrape). What cannot be read is logged and skipped.
    pub async fn refresh(&self, state: &AdminState) {
        match state.queue.queues().await {
            Ok(queues) => {
                for q in queues {
                    self.refresh_queue(state, &q).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "metrics: queues unreadable"),
        }
        if let Some(store) = &state.store {
            let today = chrono::Utc::now().date_naive();
            match store.credits_on(today).await {
                Ok(kinds) => {
                    for (kind, credits) in kinds {
                        self.credits_today.with_label_values(&[kind]).set(credits);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "metrics: credits unreadable"),
            }
            match store.user_stats(today).await {
                Ok(u) => {
                    self.users_active
                        .with_label_values(&["1d"])
                        .set(u.active_1d);
                    self.users_active
                        .with_label_values(&["7d"])
                        .set(u.active_7d);
                    self.users_active
                        .with_label_values(&["30d"])
                        .set(u.active_30d);
                }
                Err(e) => tracing::warn!(error = %e, "metrics: users unreadable"),
            }
            match store.lost_job_counts().await {
                Ok((requeued, failed)) => {
                    self.jobs_lost_by_redis
                        .with_label_values(&["requeued"])
                        .set(requeued);
                    self.jobs_lost_by_redis
                        .with_label_values(&["failed"])
                        .set(failed);
                }
                Err(e) => tracing::warn!(error = %e, "metrics: lost jobs unreadable"),
            }
        }
        let pipelines = genq_pipeline::PipelineClient::new(state.queue.clone());
        match pipelines.counts().await {
            Ok(c) => {
                for (st, v) in [
                    ("queued", c.queued),
                    ("active", c.active),
                    ("parked", c.parked),
                    ("finished", c.finished),
                ] {
                    self.pipelines.with_label_values(&[st]).set(v as i64);
                }
            }
            Err(e) => tracing::warn!(error = %e, "metrics: pipelines unreadable"),
        }
        if let Ok(outcomes) = pipelines.outcomes().await {
            for (t, o, n) in outcomes {
                self.pipelines_finished
                    .with_label_values(&[t.as_str(), o.as_str()])
                    .set(n as i64);
            }
        }
        for pool in &state.keys {
            self.provider_keys
                .with_label_values(&[pool.provider()])
                .set(pool.len() as i64);
            match pool.cooling().await {
                Ok(c) => self
                    .provider_keys_cooling
                    .with_label_values(&[pool.provider()])
                    .set(c.len() as i64),
                Err(e) => tracing::warn!(error = %e, "metrics: key cool-downs unreadable"),
            }
        }
    }

    async fn refresh_queue(&self, state: &AdminState, q: &str) {
        let Ok(s) = state.queue.stats(q).await else {
            return;
        };
        for (st, v) in [
            ("ready", s.ready),
            ("scheduled", s.scheduled),
            ("running", s.running),
            ("dead", s.dead),
        ] {
            self.queue_depth.with_label_values(&[q, st]).set(v as i64);
        }
        self.oldest_ready_age
            .with_label_values(&[q])
            .set(s.oldest_ready_age_secs);
        self.paused.with_label_values(&[q]).set(i64::from(s.paused));
        self.dead_letters.with_label_values(&[q]).set(s.dead as i64);
        for (outcome, v) in [
            ("pushed", s.pushed),
            ("succeeded", s.succeeded),
            ("failed", s.failed),
            ("retried", s.retried),
            ("cancelled", s.cancelled),
            ("recovered", s.recovered),
        ] {
            self.queue_jobs
                .with_label_values(&[q, outcome])
                .set(v as i64);
        }
        if let Ok(w) = state.queue.workers(q).await {
            self.workers_alive
                .with_label_values(&[q])
                .set(w.len() as i64);
        }
    }
}
