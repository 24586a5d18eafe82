//! The bot's own Prometheus metrics (`genq_bot_*`); the delivery worker adds the
//! usual `genq_jobs_*` for the `deliver` job type.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct BotMetrics {
    /// Updates received, by kind: text, command, photo, voice, callback, other.
    pub updates: IntCounterVec,
    /// Orders, by job type and outcome: created, duplicate, insufficient_credits,
    /// rate_limited, too_many_jobs, error.
    pub orders: IntCounterVec,
    /// Deliveries, by what was delivered: reply, photo, document, video, failure, skipped.
    pub deliveries: IntCounterVec,
    /// Jobs whose status messages the bot keeps up to date.
    pub watched_jobs: IntGauge,
    /// The durable intake, by outcome: recorded, recovered (taken over after its bot
    /// died), handled, failed, ignored, panicked, undecodable.
    pub intake: IntCounterVec,
    /// Telegram's 429s, by what was refused: ack, tap, edit, delivery.
    pub telegram_429: IntCounterVec,
    /// Invoices sent, by package.
    pub invoices: IntCounterVec,
    /// Pre-checkout queries answered, by outcome: accepted, refused.
    pub pre_checkouts: IntCounterVec,
    /// Purchases granted (once per payment), by package.
    pub purchases: IntCounterVec,
    /// Telegram Stars received, by package.
    pub purchased_stars: IntCounterVec,
    /// Refunds of purchases carried out, by outcome: done, failed.
    pub refunds: IntCounterVec,
    /// Payment handling that failed, by step: invoice, pre_checkout, grant,
    /// unknown_payload (an operator should look).
    pub payment_errors: IntCounterVec,
}

impl BotMetrics {
    /// Shows the payment series at 0 from the start (a counter that never moved is
    /// otherwise absent, and `increase` misses its first step).
    pub fn prime_payments<'a>(&self, packages: impl IntoIterator<Item = &'a str>) {
        for package in packages {
            self.invoices.with_label_values(&[package]);
            self.purchases.with_label_values(&[package]);
            self.purchased_stars.with_label_values(&[package]);
        }
        for outcome in ["accepted", "refused"] {
            self.pre_checkouts.with_label_values(&[outcome]);
        }
        for outcome in ["done", "failed"] {
            self.refunds.with_label_values(&[outcome]);
        }
        for step in ["invoice", "pre_checkout", "grant", "unknown_payload"] {
            self.payment_errors.with_label_values(&[step]);
        }
    }

    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let updates = IntCounterVec::new(
            Opts::new(
                "genq_bot_updates_total",
                "Telegram updates received, by kind",
            ),
            &["kind"],
        )?;
        let orders = IntCounterVec::new(
            Opts::new(
                "genq_bot_orders_total",
                "Paid requests, by job type and outcome",
            ),
            &["job_type", "outcome"],
        )?;
        let deliveries = IntCounterVec::new(
            Opts::new(
                "genq_bot_deliveries_total",
                "Results delivered to chats, by what was sent",
            ),
            &["what"],
        )?;
        let watched_jobs = IntGauge::new(
            "genq_bot_watched_jobs",
            "Jobs whose status messages the bot keeps up to date",
        )?;
        let intake = IntCounterVec::new(
            Opts::new(
                "genq_bot_intake_total",
                "Telegram updates through the durable intake, by outcome",
            ),
            &["outcome"],
        )?;
        let telegram_429 = IntCounterVec::new(
            Opts::new(
                "genq_bot_telegram_429_total",
                "Telegram flood-control answers (429), by what was refused",
            ),
            &["what"],
        )?;
        let counter = |name: &str, help: &str, label: &str| {
            IntCounterVec::new(Opts::new(name, help), &[label])
        };
        let invoices = counter(
            "genq_bot_invoices_total",
            "Invoices for credit packages sent, by package",
            "package",
        )?;
        let pre_checkouts = counter(
            "genq_bot_pre_checkouts_total",
            "Pre-checkout queries answered, by outcome",
            "outcome",
        )?;
        let purchases = counter(
            "genq_bot_purchases_total",
            "Credit packages bought (granted once per payment), by package",
            "package",
        )?;
        let purchased_stars = counter(
            "genq_bot_purchased_stars_total",
            "Telegram Stars received for credits, by package",
            "package",
        )?;
        let refunds = counter(
            "genq_bot_payment_refunds_total",
            "Refunds of purchases carried out with Telegram, by outcome",
            "outcome",
        )?;
        let payment_errors = counter(
            "genq_bot_payment_errors_total",
            "Payment handling that failed, by step",
            "step",
        )?;
        for c in [
            &invoices,
            &pre_checkouts,
            &purchases,
            &purchased_stars,
            &refunds,
            &payment_errors,
        ] {
            registry.register(Box::new(c.clone()))?;
        }
        registry.register(Box::new(intake.clone()))?;
        registry.register(Box::new(telegram_429.clone()))?;
        registry.register(Box::new(updates.clone()))?;
        registry.register(Box::new(orders.clone()))?;
        registry.register(Box::new(deliveries.clone()))?;
        registry.register(Box::new(watched_jobs.clone()))?;
        Ok(Self {
            updates,
            orders,
            deliveries,
            watched_jobs,
            intake,
            telegram_429,
            invoices,
            pre_checkouts,
            purchases,
            purchased_stars,
            refunds,
            payment_errors,
        })
    }
}
