//! Placing paid work: guard rails (rate limit, concurrent jobs), the store's atomic
//! charge-and-enqueue under the Telegram message/callback idempotency key, tracking,
//! and the acknowledgement within a second ("taken into work", with the position).

use genq_store::{Charged, PaidJob, StoreError};
use tracing::warn;

use crate::{
    BotError,
    app::{BotApp, Offer},
    conversation::requester::Requester,
    delivery::{
        status_message::{apply_final, cancel_button},
        tracking::{Kind, Tracked},
    },
    i18n::{Lang, t},
    orders::{
        estimate::{Eta, Leg},
        limits::{Admission, SlotReservation},
    },
    transport::send::typing,
};

/// The longest an acknowledgement waits for its time estimate.
const ESTIMATE_BUDGET: std::time::Duration = std::time::Duration::from_millis(500);

/// How long after its charge an untracked job is taken up again when its Telegram
/// update comes back (Telegram re-delivers updates a crashed bot did not confirm).
const ORPHAN_WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);

/// One job to charge and enqueue.
#[derive(Debug, Clone)]
pub struct Order {
    pub kind: Kind,
    pub offer: Offer,
    pub payload: serde_json::Value,
    /// The idempotency key: the Telegram message or button the order came from.
    pub idem: String,
    pub dialog_id: Option<i64>,
    pub caption: Option<String>,
    pub video_of: Option<(u32, u32)>,
}

/// What became of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placed {
    /// Charged and enqueued: these job ids (the user was acknowledged).
    Created(Vec<String>),
    /// Every order was placed before (a double tap): nothing charged, nothing sent;
    /// `active` when such a job still runs.
    Duplicate { active: bool },
    /// Refused; the user was told why.
    Refused,
}

impl BotApp {
    fn count_order(&self, job_type: &str, outcome: &str) {
        self.metrics
            .orders
            .with_label_values(&[job_type, outcome])
            .inc();
    }

    /// Charges and enqueues `orders` (one user action) and acknowledges them, after
    /// the rate limit.
    pub async fn place(&self, who: &Requester, orders: Vec<Order>) -> Result<Placed, BotError> {
        let Some(first) = orders.first() else {
            return Ok(Placed::Refused);
        };
        if !self.admit(who, first.offer.job_type).await? {
            return Ok(Placed::Refused);
        }
        self.place_admitted(who, orders).await
    }

    /// Counts one paid request against the user's rate limit; false (and the user
    /// told when to come back) when over it.
    pub async fn admit(&self, who: &Requester, job_type: &str) -> Result<bool, BotError> {
        let Admission::TooMany { retry_after } = self.limiter.admit(who.tg_user).await? else {
            return Ok(true);
        };
        self.count_order(job_type, "rate_limited");
        let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
        let text = t(who.lang, "err.rate_limited", &[("seconds", &seconds)]);
        self.say_to(who, &text, None).await?;
        Ok(false)
    }

    /// [`BotApp::place`] for a request already counted by [`BotApp::admit`].
    pub async fn place_admitted(
        &self,
        who: &Requester,
        orders: Vec<Order>,
    ) -> Result<Placed, BotError> {
        let Some(first) = orders.first() else {
            return Ok(Placed::Refused);
        };
        let job_type = first.offer.job_type;
        if orders.len() > 1 {
            let total: i64 = orders.iter().map(|o| o.offer.price).sum();
            let balance = self.store.balance(who.user_id).await?;
            if balance < total && !self.all_placed_before(who, &orders).await? {
                return self.refuse_credits(who, job_type, total, balance).await;
            }
        }
        let slots: Vec<String> = orders.iter().map(|o| o.idem.clone()).collect();
        if let SlotReservation::Full { open } = self.slots.reserve(who.tg_user, &slots).await? {
            self.count_order(job_type, "too_many_jobs");
            let text = too_many_jobs_text(who.lang, open, slots.len(), self.slots.cap());
            self.say_to(who, &text, None).await?;
            return Ok(Placed::Refused);
        }
        let run = self.charge_all(who, &orders).await?;
        // every charged job is tracked before anything goes to Telegram
        for (job_id, order) in &run.created {
            self.track(who, job_id, order).await?;
        }
        let mut active_duplicate = false;
        for (job_id, order) in &run.duplicates {
            if self.tracker.is_watched(job_id).await? {
                active_duplicate = true;
            } else {
                // a tap on the button of a finished job: it holds no slot
                self.slots.release(who.tg_user, &order.idem).await?;
            }
        }
        if let Some((job_id, order)) = run.created.first() {
            self.answer_tap(who, order, job_id).await;
        }
        for (job_id, order) in &run.created {
            if let Err(e) = self.acknowledge(who, job_id, order).await {
                warn!(job_id = %job_id, error = %e, "acknowledgement not sent; the job goes on");
            }
        }
        if let Some((price, balance)) = run.short {
            if run.created.is_empty() && run.duplicates.is_empty() {
                return self.refuse_credits(who, job_type, price, balance).await;
            }
            self.count_order(job_type, "insufficient_credits");
            let text = t(
                who.lang,
                "err.insufficient",
                &[("price", &price), ("balance", &balance)],
            );
            let buy =
                (!self.cfg.packages.is_empty()).then(|| crate::payments::buy_button(who.lang));
            self.say_to(who, &text, buy).await?;
        }
        if !run.created.is_empty() {
            return Ok(Placed::Created(
                run.created.into_iter().map(|(id, _)| id).collect(),
            ));
        }
        Ok(Placed::Duplicate {
            active: active_duplicate,
        })
    }

    /// Charges the orders in turn until one finds the balance short.
    async fn charge_all<'o>(
        &self,
        who: &Requester,
        orders: &'o [Order],
    ) -> Result<ChargeRun<'o>, BotError> {
        let mut run = ChargeRun::default();
        for (i, order) in orders.iter().enumerate() {
            let job_type = order.offer.job_type;
            match self.charge(who, order).await {
                Ok(Charged::Created { job_id, .. }) => {
                    self.count_order(job_type, "created");
                    run.created.push((job_id, order));
                }
                Ok(Charged::Existing { job_id }) if self.orphaned(&job_id).await? => {
                    // charged by a bot that died before tracking it: take it up
                    self.count_order(job_type, "recovered");
                    run.created.push((job_id, order));
                }
                Ok(Charged::Existing { job_id }) => {
                    self.count_order(job_type, "duplicate");
                    run.duplicates.push((job_id, order));
                }
                Err(e) => {
                    for o in &orders[i..] {
                        self.slots.release(who.tg_user, &o.idem).await?;
                    }
                    if let BotError::Store(StoreError::InsufficientCredits { balance, price }) = e {
                        run.short = Some((price, balance));
                        break;
                    }
                    self.count_order(job_type, "error");
                    // the jobs charged so far must not go untracked
                    for (job_id, order) in &run.created {
                        self.track(who, job_id, order).await?;
                    }
                    return Err(e);
                }
            }
        }
        Ok(run)
    }

    async fn charge(&self, who: &Requester, order: &Order) -> Result<Charged, BotError> {
        let job = PaidJob {
            user_id: who.user_id,
            job_type: order.offer.job_type.to_owned(),
            queue: order.offer.queue.clone(),
            payload: order.payload.clone(),
            price: order.offer.price,
            idempotency_key: Some(order.idem.clone()),
        };
        Ok(self.store.charge_and_enqueue(&job).await?)
    }

    /// True when a job found by its idempotency key was charged recently but is not
    /// tracked: the bot that charged it died before it could track it, and Telegram
    /// delivered the update again. (An older one is a stale button, answered as such.)
    async fn orphaned(&self, job_id: &str) -> Result<bool, BotError> {
        if self.tracker.get_or_restore(job_id).await?.is_some() {
            return Ok(false);
        }
        let recent =
            chrono::Utc::now() - chrono::Duration::from_std(ORPHAN_WINDOW).unwrap_or_default();
        Ok(self
            .store
            .job(job_id)
            .await?
            .is_some_and(|j| j.created_at > recent))
    }

    /// True when every order's idempotency key already names a job (a double tap
    /// after the balance ran out must not be told "not enough credits").
    async fn all_placed_before(&self, who: &Requester, orders: &[Order]) -> Result<bool, BotError> {
        for o in orders {
            if self
                .store
                .job_by_idempotency_key(who.user_id, &o.idem)
                .await?
                .is_none()
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn refuse_credits(
        &self,
        who: &Requester,
        job_type: &str,
        price: i64,
        balance: i64,
    ) -> Result<Placed, BotError> {
        self.count_order(job_type, "insufficient_credits");
        let text = t(
            who.lang,
            "err.insufficient",
            &[("price", &price), ("balance", &balance)],
        );
        let buy = (!self.cfg.packages.is_empty()).then(|| crate::payments::buy_button(who.lang));
        self.say_to(who, &text, buy).await?;
        Ok(Placed::Refused)
    }

    /// Records the job for status and delivery.
    async fn track(&self, who: &Requester, job_id: &str, order: &Order) -> Result<(), BotError> {
        let tracked = Tracked {
            job_id: job_id.to_owned(),
            queue: order.offer.queue.clone(),
            kind: order.kind,
            chat_id: who.chat_id,
            tg_user: who.tg_user,
            user_id: who.user_id,
            lang: who.lang,
            price: order.offer.price,
            slot: order.idem.clone(),
            status_msg: None,
            reply_to: who.reply_to,
            dialog_id: order.dialog_id,
            caption: order.caption.clone(),
            video_of: order.video_of,
            handed_to: None,
        };
        self.tracker.track(&tracked).await
    }

    /// A tap that placed an order is answered at once with "taken into work" (and
    /// the position and the time estimate): a notice Telegram shows immediately,
    /// whatever the backlog of messages under its 30-a-second limit. Best effort.
    async fn answer_tap(&self, who: &Requester, order: &Order, job_id: &str) {
        let Some(tap) = who.tap.as_ref().filter(|tap| tap.take()) else {
            return;
        };
        let ahead = self
            .jobs_ahead(&order.offer.queue, job_id)
            .await
            .unwrap_or(0);
        let eta = self.eta(order, ahead).await;
        self.send_tap_answer(tap, Some(ack_text(who.lang, ahead, eta)))
            .await;
    }

    /// The time estimate for `order` with `ahead` jobs before it (see
    /// [`crate::orders::estimate`]); `None` when a queue on its way is paused, or Redis
    /// does not answer within [`ESTIMATE_BUDGET`] (the acknowledgement goes without).
    async fn eta(&self, order: &Order, ahead: u64) -> Option<Eta> {
        if order.kind == Kind::Promo {
            // a promo video waits on its user's approvals: no time to promise
            return None;
        }
        let mut legs = vec![Leg {
            queue: &order.offer.queue,
            job_type: order.offer.job_type,
            ahead: Some(ahead),
        }];
        if order.kind == Kind::ImagePrompt
            && let Some(queue) = &self.offers.picture_image_queue
        {
            // the picture's GenerateImage queues behind what is ready there now
            legs.push(Leg {
                queue,
                job_type: "generate_image",
                ahead: None,
            });
        }
        match tokio::time::timeout(ESTIMATE_BUDGET, self.estimator.estimate(&legs)).await {
            Ok(Ok(secs)) => secs.map(Eta::from_secs),
            Ok(Err(e)) => {
                warn!(error = %e, "no time estimate");
                None
            }
            Err(_) => {
                warn!("no time estimate: Redis too slow");
                None
            }
        }
    }

    /// Acknowledges a tracked job: a status message ("taken into work", the queue
    /// position when there is a backlog) with a Cancel button; a reply shows
    /// "typing" instead, and a status message only when it has to wait.
    async fn acknowledge(
        &self,
        who: &Requester,
        job_id: &str,
        order: &Order,
    ) -> Result<(), BotError> {
        let ahead = self.jobs_ahead(&order.offer.queue, job_id).await?;
        if !order.kind.has_status_message() {
            typing(&self.bot, who.chat_id).await;
            if ahead == 0 {
                return Ok(());
            }
        }
        let eta = self.eta(order, ahead).await;
        let text = ack_text(who.lang, ahead, eta);
        let msg = self
            .say_to(who, &text, Some(cancel_button(who.lang, job_id)))
            .await?;
        self.tracker.set_shown(job_id, &text).await?;
        if let Some(fin) = self.tracker.save_status(job_id, msg.0).await? {
            // the job was closed before its status message was recorded: the close
            // decided what the message ends as
            if let Err(e) = apply_final(self, who.chat_id, msg.0, &fin).await {
                warn!(job_id = %job_id, error = %e, "late acknowledgement not finished");
            }
        }
        Ok(())
    }

    /// Jobs that run before `job_id`: its place in `ready` once the relay pushed it;
    /// until then, everything ready.
    async fn jobs_ahead(&self, queue: &str, job_id: &str) -> Result<u64, BotError> {
        // read first: if the relay pushes the job after this, it is found below
        let ready = self.queue.stats(queue).await?.ready;
        if let Some(n) = self.queue.jobs_ahead(queue, job_id).await? {
            return Ok(n);
        }
        if self.queue.job(queue, job_id).await?.is_some() {
            // pushed just now (then it is in `ready`), or already running
            return Ok(self.queue.jobs_ahead(queue, job_id).await?.unwrap_or(0));
        }
        Ok(ready)
    }
}

/// What charging one action's orders did.
#[derive(Default)]
struct ChargeRun<'o> {
    /// Charged now (or taken up after a dead bot): job id and order.
    created: Vec<(String, &'o Order)>,
    /// Placed before (a double tap): job id and order.
    duplicates: Vec<(String, &'o Order)>,
    /// The balance ran short: (price, balance).
    short: Option<(i64, i64)>,
}

/// The refusal of an order that does not fit in the user's free job slots: how many
/// are in progress, how many the order needs, and the cap.
fn too_many_jobs_text(lang: Lang, open: u32, needed: usize, cap: u32) -> String {
    t(
        lang,
        "err.too_many_jobs",
        &[("count", &open), ("needed", &needed), ("max", &cap)],
    )
}

/// "Taken into work", with the number of requests ahead when there is a backlog,
/// and the time estimate when there is one.
fn ack_text(lang: Lang, ahead: u64, eta: Option<Eta>) -> String {
    match (ahead, eta) {
        (0, None) => t(lang, "ack.queued", &[]),
        (ahead, None) => t(lang, "ack.position", &[("ahead", &ahead)]),
        (0, Some(eta)) => t(lang, "ack.queued_eta", &[("eta", &eta.text(lang))]),
        (ahead, Some(eta)) => t(
            lang,
            "ack.position_eta",
            &[("ahead", &ahead), ("eta", &eta.text(lang))],
        ),
    }
}
