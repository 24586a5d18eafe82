//! Alerts to the operators (`bot.admin_ids`) in Telegram, once per incident.
//!
//! Every `bot.alert_interval_secs` (10 s) every bot replica looks at three facts in
//! Redis:
//!
//! - **billing errors**: completion events (`<p>:{q}:events`, read on from where
//!   this replica left off) of jobs that failed with class `billing`, per job type;
//! - **all keys of a provider cooling down**: every `<p>:provider:{<name>}:cool:…`
//!   of a configured provider present (`KeyPool::cooling`), by reason;
//! - **dead letters growing**: a queue's dead-letter counter (`failed` in
//!   `<p>:{q}:stats`, which trimming the capped `:dead` set does not lower) up by
//!   `bot.alert_dead_letters` (5) or more since the start of the current window
//!   (`<p>:bot:alert:deadbase:<q>`, the counter when the window started; it
//!   expires after 30 rounds and the next round starts a new window).
//!
//! A condition seen is an incident `<p>:bot:alert:<kind>:<name>`: `SET NX PX` —
//! the replica whose `SET` created the key sends the alert; while the condition is
//! seen again its TTL is renewed (`PEXPIRE`), and nobody sends anything. The
//! incident ends when the key expires: 3 rounds after all keys were last seen
//! cooling, 30 rounds after the last billing failure or dead-letter growth; a new
//! occurrence after that alerts again. On top, at most [`MAX_ALERTS_PER_HOUR`]
//! alerts an hour (`<p>:bot:alert:budget`, a counter expiring an hour after its
//! first alert): an incident over the budget is let go (its key deleted) and
//! alerts in a later round when there is budget again, as does one whose alert
//! reached no admin.

use std::{collections::HashMap, sync::Arc, time::Duration};

use genq_providers::{CoolReason, KeyPool};
use prometheus::{IntCounter, IntCounterVec, Opts};
use redis::Value;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::{
    BotError,
    app::BotApp,
    i18n::{Lang, t},
    transport::send::say,
};

mod incidents;

pub use incidents::{Incidents, Start};

/// Alerts sent per hour at most (all kinds, all replicas).
pub const MAX_ALERTS_PER_HOUR: u64 = 20;
/// Rounds after which an incident ends when its condition is no longer seen.
const KEYS_CLEAR_ROUNDS: u32 = 3;
const BILLING_CLEAR_ROUNDS: u32 = 30;
const DEAD_WINDOW_ROUNDS: u32 = 30;
/// Events read per queue and round at most.
const EVENTS_PER_ROUND: usize = 1000;
/// The longest error text quoted in an alert.
const ERROR_CHARS: usize = 300;

/// `genq_bot_alerts_total{kind}` and `genq_bot_alert_rounds_total`.
#[derive(Clone)]
struct AlertMetrics {
    sent: IntCounterVec,
    rounds: IntCounter,
}

impl AlertMetrics {
    fn new(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        let sent = IntCounterVec::new(
            Opts::new(
                "genq_bot_alerts_total",
                "Alerts sent to the admins in Telegram, by kind (billing, keys, dead_letters)",
            ),
            &["kind"],
        )?;
        let rounds = IntCounter::new(
            "genq_bot_alert_rounds_total",
            "Rounds of the admin-alert checks this replica ran",
        )?;
        registry.register(Box::new(sent.clone()))?;
        registry.register(Box::new(rounds.clone()))?;
        Ok(Self { sent, rounds })
    }
}

/// One alert to send: its incident, kind (for the metric) and text by language.
struct Alert {
    incident: String,
    kind: &'static str,
    clear_after: Duration,
    text: Box<dyn Fn(Lang) -> String + Send + Sync>,
}

/// The alert loop of one replica.
pub struct Alerts {
    app: Arc<BotApp>,
    pools: Vec<KeyPool>,
    incidents: Incidents,
    metrics: AlertMetrics,
    every: Duration,
    /// Per queue, the last event id read.
    cursors: HashMap<String, String>,
}

impl Alerts {
    /// The loop for `app`, watching `pools` (every configured provider's keys);
    /// metrics go to `registry`.
    pub fn new(
        app: Arc<BotApp>,
        pools: Vec<KeyPool>,
        registry: &prometheus::Registry,
    ) -> Result<Self, BotError> {
        let metrics = AlertMetrics::new(registry).map_err(|e| BotError::Setup(e.to_string()))?;
        let incidents = Incidents::new(
            app.queue.connection(),
            &app.queue.config().prefix,
            MAX_ALERTS_PER_HOUR,
        );
        let every = Duration::from_secs(app.cfg.alert_interval_secs.max(1));
        Ok(Self {
            app,
            pools,
            incidents,
            metrics,
            every,
            cursors: HashMap::new(),
        })
    }

    fn rounds(&self, n: u32) -> Duration {
        self.every * n
    }

    /// Runs until `stop` (at once when there are no admins to tell).
    pub async fn run(mut self, stop: CancellationToken) {
        if self.app.cfg.admin_ids.is_empty() {
            info!("no bot.admin_ids: admin alerts are off");
            return;
        }
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let span = info_span!("alert_round");
            if let Err(e) = self.round().instrument(span).await {
                warn!(error = %e, "admin alert round failed");
            }
            self.metrics.rounds.inc();
        }
    }

    /// One look at every condition; alerts for the incidents that start now.
    async fn round(&mut self) -> Result<(), BotError> {
        let mut alerts = self.billing().await?;
        alerts.extend(self.keys_cooling().await);
        alerts.extend(self.dead_letters().await?);
        for alert in alerts {
            match self
                .incidents
                .start(&alert.incident, alert.clear_after)
                .await?
            {
                Start::Ongoing => {}
                Start::Deferred => {
                    warn!(incident = %alert.incident, "admin alert held back: hourly budget spent")
                }
                Start::New => self.send(&alert).await?,
            }
        }
        Ok(())
    }

    /// Sends an alert to every admin; lets the incident go when none got it.
    async fn send(&self, alert: &Alert) -> Result<(), BotError> {
        let mut delivered = 0;
        for &admin in &self.app.cfg.admin_ids {
            let lang = match self.app.store.user_by_telegram_id(admin).await {
                Ok(Some(user)) => Lang::from_code(Some(&user.language)),
                _ => Lang::En,
            };
            match say(&self.app.bot, admin, &(alert.text)(lang), None).await {
                Ok(_) => delivered += 1,
                Err(e) => {
                    warn!(admin, incident = %alert.incident, error = %e, "admin alert not sent")
                }
            }
        }
        if delivered == 0 {
            return self.incidents.abandon(&alert.incident).await;
        }
        self.metrics.sent.with_label_values(&[alert.kind]).inc();
        info!(incident = %alert.incident, admins = delivered, "admin alert sent");
        Ok(())
    }

    /// Billing failures among the events since the last round, by job type.
    async fn billing(&mut self) -> Result<Vec<Alert>, BotError> {
        let mut out = Vec::new();
        let start_window = self.rounds(BILLING_CLEAR_ROUNDS);
        for queue in self.app.offers.queues() {
            let key = format!("{}:events", self.app.queue.base_key(&queue));
            let mut c = self.app.queue.connection();
            let from = match self.cursors.get(&queue) {
                Some(id) => format!("({id}"),
                None => {
                    // at start: the failures of the last window count
                    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut c).await?;
                    let now_ms = secs * 1000 + micros / 1000;
                    format!(
                        "{}-0",
                        now_ms.saturating_sub(start_window.as_millis() as u64)
                    )
                }
            };
            let reply: Value = redis::cmd("XRANGE")
                .arg(&key)
                .arg(&from)
                .arg("+")
                .arg("COUNT")
                .arg(EVENTS_PER_ROUND)
                .query_async(&mut c)
                .await?;
            let events = crate::streams::parse_entries(&reply);
            if let Some((last, _)) = events.last() {
                self.cursors.insert(queue.clone(), last.clone());
            } else if !self.cursors.contains_key(&queue) {
                self.cursors
                    .insert(queue.clone(), from.trim_start_matches('(').to_owned());
            }
            let mut by_type: HashMap<String, (u64, String)> = HashMap::new();
            for (_, fields) in &events {
                if fields.get("class").map(String::as_str) != Some("billing") {
                    continue;
                }
                let job_type = fields.get("type").cloned().unwrap_or_default();
                let entry = by_type.entry(job_type).or_default();
                entry.0 += 1;
                entry.1 = fields.get("error").cloned().unwrap_or_default();
            }
            for (job_type, (count, error)) in by_type {
                let error: String = error.chars().take(ERROR_CHARS).collect();
                let queue = queue.clone();
                out.push(Alert {
                    incident: format!("billing:{job_type}"),
                    kind: "billing",
                    clear_after: start_window,
                    text: Box::new(move |lang| {
                        t(
                            lang,
                            "admin.alert_billing",
                            &[
                                ("job_type", &job_type),
                                ("queue", &queue),
                                ("count", &count),
                                ("error", &error),
                            ],
                        )
                    }),
                });
            }
        }
        Ok(out)
    }

    /// Providers whose every key cools down.
    async fn keys_cooling(&self) -> Vec<Alert> {
        let mut out = Vec::new();
        for pool in &self.pools {
            let cooling = match pool.cooling().await {
                Ok(c) => c,
                Err(e) => {
                    warn!(provider = pool.provider(), error = %e, "key cool-downs unreadable");
                    continue;
                }
            };
            if pool.is_empty() || cooling.len() < pool.len() {
                continue;
            }
            let billing = cooling.iter().any(|c| c.reason == CoolReason::Billing);
            let minutes = cooling
                .iter()
                .map(|c| c.remaining_secs)
                .min()
                .unwrap_or(0)
                .div_ceil(60);
            let provider = pool.provider().to_owned();
            let keys = pool.len();
            out.push(Alert {
                incident: format!("keys:{provider}"),
                kind: "keys",
                clear_after: self.rounds(KEYS_CLEAR_ROUNDS),
                text: Box::new(move |lang| {
                    let key = if billing {
                        "admin.alert_keys_billing"
                    } else {
                        "admin.alert_keys_rate_limited"
                    };
                    t(
                        lang,
                        key,
                        &[
                            ("provider", &provider),
                            ("keys", &keys),
                            ("minutes", &minutes),
                        ],
                    )
                }),
            });
        }
        out
    }

    /// Queues whose dead letters grew by the threshold within the window.
    async fn dead_letters(&self) -> Result<Vec<Alert>, BotError> {
        let mut out = Vec::new();
        let window = self.rounds(DEAD_WINDOW_ROUNDS);
        let mut queues = self.app.offers.queues();
        queues.push(self.app.cfg.delivery_queue.clone());
        for queue in queues {
            let stats = self.app.queue.stats(&queue).await?;
            let added = self.incidents.growth(&queue, stats.failed, window).await?;
            if added < self.app.cfg.alert_dead_letters {
                continue;
            }
            let dead = stats.dead;
            out.push(Alert {
                incident: format!("dead:{queue}"),
                kind: "dead_letters",
                clear_after: window,
                text: Box::new(move |lang| {
                    t(
                        lang,
                        "admin.alert_dead",
                        &[("queue", &queue), ("added", &added), ("dead", &dead)],
                    )
                }),
            });
        }
        Ok(out)
    }
}
