//! Durable intake: an update is recorded in PostgreSQL (`bot_updates`, keyed by its
//! `update_id`) before Telegram is told it arrived — before the next `getUpdates`
//! moves the offset past it, or before the webhook answers 200 — and is handled from
//! there, exactly once:
//!
//! - the replica that records an update claims it under a lease (database time) and
//!   handles it; when done it marks it handled;
//! - a replica that dies mid-way leaves it unhandled: when the lease runs out, any
//!   replica's recovery claims it (one replica each: `FOR UPDATE SKIP LOCKED`) and
//!   handles it; Telegram sending it again finds the `update_id` known and adds
//!   nothing;
//! - a chat's updates are handled in order, one at a time; different chats at once,
//!   at most [`MAX_IN_FLIGHT`] updates in all (the poller waits for room: no
//!   unbounded queue).
//!
//! Why an own polling loop rather than teloxide's: teloxide's listener moves its
//! offset as soon as `getUpdates` returns, and its dispatcher does not say when a
//! handler finished, so nothing could hold the confirmation until the update is safe.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use genq_core::failpoint;
use serde_json::Value;
use teloxide::{dispatching::UpdateHandler, prelude::*, types::Update};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::{BotError, app::BotApp, conversation::schema};

/// How long a claimed update is this replica's before another may take it over.
pub const LEASE: Duration = Duration::from_secs(15);
/// How often the leases of updates being handled are extended.
const RENEW_EVERY: Duration = Duration::from_secs(5);
/// How often unhandled updates whose lease ran out are looked for.
const RECOVER_EVERY: Duration = Duration::from_secs(2);
/// Updates handled at once, all chats together.
pub const MAX_IN_FLIGHT: usize = 512;
/// `getUpdates`' long-polling timeout (seconds).
const POLL_TIMEOUT_SECS: u32 = 10;
/// How long handled updates are kept (for operators and duplicate detection).
const KEEP_HANDLED: Duration = Duration::from_secs(7 * 24 * 3600);

/// Why a `getUpdates` call brought nothing, and how long Telegram asked to wait.
#[derive(Debug)]
struct PollError {
    message: String,
    retry_after: Option<Duration>,
}

impl PollError {
    fn new(message: String) -> Self {
        Self {
            message,
            retry_after: None,
        }
    }
}

fn with_slash(url: &str) -> String {
    if url.ends_with('/') {
        url.to_owned()
    } else {
        format!("{url}/")
    }
}

/// The updates of a `getUpdates` answer (`{"ok":true,"result":[…]}`), each with its
/// id; Telegram's error otherwise. An update without a numeric `update_id` cannot be
/// confirmed or deduplicated: the whole answer is refused.
fn parse_updates(reply: Value) -> Result<Vec<(i64, Value)>, PollError> {
    if reply.get("ok").and_then(Value::as_bool) != Some(true) {
        let description = reply
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("no description");
        let code = reply.get("error_code").and_then(Value::as_i64).unwrap_or(0);
        return Err(PollError {
            message: format!("Telegram refused getUpdates ({code}): {description}"),
            retry_after: reply
                .pointer("/parameters/retry_after")
                .and_then(Value::as_u64)
                .map(Duration::from_secs),
        });
    }
    let Some(Value::Array(result)) = reply.get("result") else {
        return Err(PollError::new(
            "getUpdates answered without a result list".to_owned(),
        ));
    };
    result
        .iter()
        .map(|u| {
            let id = u.get("update_id").and_then(Value::as_i64).ok_or_else(|| {
                PollError::new(format!("an update without a numeric update_id: {u}"))
            })?;
            Ok((id, u.clone()))
        })
        .collect()
}

/// teloxide's `Update` as Telegram sent it. Read from text, not from a `Value`:
/// teloxide's reader of an update's kind needs borrowed keys, and from a `Value`
/// it silently reads every update as an unknown kind.
fn decode_update(body: &Value) -> Result<Update, serde_json::Error> {
    serde_json::from_str(&body.to_string())
}

/// One update waiting for its chat's turn.
struct Pending {
    update_id: i64,
    body: Value,
    _permit: OwnedSemaphorePermit,
}

/// The intake of one bot replica.
pub struct Intake {
    app: Arc<BotApp>,
    handler: UpdateHandler<BotError>,
    /// Updates claimed here and not finished (their leases are renewed).
    claimed: Mutex<HashSet<i64>>,
    /// Per chat: the updates waiting behind the one being handled. A chat is in the
    /// map while a task handles its updates.
    lanes: Mutex<HashMap<i64, VecDeque<Pending>>>,
    room: Arc<Semaphore>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Which lane an update goes to: its chat (or its sender's private chat); an update
/// without either has a lane of its own.
fn lane_of(update_id: i64, body: &Value) -> i64 {
    if body.get("pre_checkout_query").is_some() {
        // answered within Telegram's 10 s whatever the payer's chat is doing
        return i64::MIN / 2 - update_id;
    }
    let chat = [
        "message",
        "edited_message",
        "channel_post",
        "callback_query",
    ]
    .iter()
    .find_map(|kind| {
        let v = body.get(kind)?;
        v.pointer("/chat/id")
            .or_else(|| v.pointer("/message/chat/id"))
            .or_else(|| v.pointer("/from/id"))
            .and_then(Value::as_i64)
    })
    .or_else(|| {
        body.as_object()?
            .values()
            .find_map(|v| v.pointer("/from/id").and_then(Value::as_i64))
    });
    chat.unwrap_or(i64::MIN / 2 - update_id)
}

impl Intake {
    pub fn new(app: Arc<BotApp>) -> Arc<Self> {
        Arc::new(Self {
            app,
            handler: schema(),
            claimed: Mutex::new(HashSet::new()),
            lanes: Mutex::new(HashMap::new()),
            room: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        })
    }

    fn owner(&self) -> &str {
        &self.app.instance
    }

    /// Records `updates` (id, body as Telegram sent it) and starts handling the new
    /// ones. When this returns `Ok`, they are safe: Telegram may be told.
    pub async fn accept(self: &Arc<Self>, updates: Vec<(i64, Value)>) -> Result<(), BotError> {
        let new = self
            .app
            .store
            .record_updates(&updates, self.owner(), LEASE)
            .await?;
        let dupes = updates.len() - new.len();
        if dupes > 0 {
            info!(count = dupes, "updates seen before were not recorded again");
        }
        locked(&self.claimed).extend(new.iter().copied());
        let mut bodies: HashMap<i64, Value> = updates.into_iter().collect();
        for id in new {
            if let Some(body) = bodies.remove(&id) {
                self.app
                    .metrics
                    .intake
                    .with_label_values(&["recorded"])
                    .inc();
                self.spawn_when_room(id, body);
            }
        }
        Ok(())
    }

    /// Queues an update on its chat's lane once there is room (without holding up
    /// the caller: a webhook answers, the poller records the next batch).
    fn spawn_when_room(self: &Arc<Self>, update_id: i64, body: Value) {
        let this = self.clone();
        match self.room.clone().try_acquire_owned() {
            Ok(permit) => this.enqueue(update_id, body, permit),
            Err(_) => {
                tokio::spawn(async move {
                    if let Ok(permit) = this.room.clone().acquire_owned().await {
                        this.enqueue(update_id, body, permit);
                    }
                });
            }
        }
    }

    /// Waits until at most `MAX_IN_FLIGHT - headroom` updates are in flight (the
    /// poller's back-pressure: it asks Telegram for more only when there is room).
    async fn wait_for_room(&self, headroom: usize) {
        let want = u32::try_from(headroom.min(MAX_IN_FLIGHT))
            .unwrap_or(1)
            .max(1);
        if let Ok(permits) = self.room.acquire_many(want).await {
            drop(permits);
        }
    }

    fn enqueue(self: &Arc<Self>, update_id: i64, body: Value, permit: OwnedSemaphorePermit) {
        let lane = lane_of(update_id, &body);
        let pending = Pending {
            update_id,
            body,
            _permit: permit,
        };
        let start = {
            let mut lanes = locked(&self.lanes);
            match lanes.get_mut(&lane) {
                Some(queue) => {
                    queue.push_back(pending);
                    None
                }
                None => {
                    lanes.insert(lane, VecDeque::new());
                    Some(pending)
                }
            }
        };
        if let Some(first) = start {
            tokio::spawn(self.clone().drain_lane(lane, first));
        }
    }

    /// Handles a chat's updates in order until its lane is empty.
    async fn drain_lane(self: Arc<Self>, lane: i64, first: Pending) {
        let mut next = Some(first);
        while let Some(p) = next {
            self.handle(p.update_id, p.body).await;
            next = {
                let mut lanes = locked(&self.lanes);
                let popped = lanes.get_mut(&lane).and_then(VecDeque::pop_front);
                if popped.is_none() {
                    lanes.remove(&lane);
                }
                popped
            };
        }
    }

    /// Runs the update's handlers, then marks it handled.
    async fn handle(&self, update_id: i64, body: Value) {
        let span = info_span!("update", update_id);
        async {
            failpoint("bot:before_handle").await;
            let outcome = match decode_update(&body) {
                Ok(update) => self.run_handlers(update).await,
                Err(e) => {
                    warn!(error = %e, "undecodable update skipped");
                    "undecodable"
                }
            };
            self.app.metrics.intake.with_label_values(&[outcome]).inc();
            self.finish(update_id, outcome).await;
        }
        .instrument(span)
        .await;
    }

    /// The handler tree on its own task (a panic is contained and logged).
    async fn run_handlers(&self, update: Update) -> &'static str {
        let handler = self.handler.clone();
        let deps = dptree::deps![self.app.clone(), update];
        let run = tokio::spawn(async move { handler.dispatch(deps).await });
        match run.await {
            Ok(std::ops::ControlFlow::Break(Ok(()))) => "handled",
            Ok(std::ops::ControlFlow::Break(Err(e))) => {
                warn!(error = %e, "update handler failed");
                "failed"
            }
            Ok(std::ops::ControlFlow::Continue(_)) => "ignored",
            Err(e) => {
                error!(error = %e, "update handler panicked");
                "panicked"
            }
        }
    }

    /// Marks an update handled, retrying a while (else its lease runs out and it is
    /// handled again: at least once).
    async fn finish(&self, update_id: i64, outcome: &str) {
        let mut delay = Duration::from_millis(100);
        for _ in 0..8 {
            match self.app.store.finish_update(update_id, outcome).await {
                Ok(_) => break,
                Err(e) => {
                    warn!(error = %e, retry_in = ?delay, "could not mark the update handled");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        locked(&self.claimed).remove(&update_id);
    }

    /// Long polling until `stop`: each batch is recorded before the next
    /// `getUpdates` (whose offset confirms it to Telegram).
    pub async fn run_polling(self: Arc<Self>, stop: CancellationToken) -> Result<(), BotError> {
        if let Err(e) = self.app.bot.delete_webhook().await {
            warn!(error = %e, "could not remove a webhook before polling");
        }
        let mut offset: Option<i64> = None;
        let mut delay = Duration::from_millis(500);
        info!("long polling started");
        while !stop.is_cancelled() {
            self.wait_for_room(100).await;
            let batch = tokio::select! {
                _ = stop.cancelled() => break,
                got = self.get_updates(offset) => got,
            };
            let records = match batch {
                Ok(u) => u,
                Err(e) => {
                    let wait = e.retry_after.unwrap_or(delay);
                    warn!(error = %e.message, retry_in = ?wait, "getUpdates failed");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            delay = Duration::from_millis(500);
            let Some(last) = records.iter().map(|(id, _)| *id).max() else {
                continue;
            };
            // the offset moves only once the batch is recorded
            while let Err(e) = self.accept(records.clone()).await {
                warn!(error = %e, retry_in = ?delay, "could not record updates; not confirming them");
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            delay = Duration::from_millis(500);
            offset = Some(last + 1);
        }
        Ok(())
    }

    /// One `getUpdates` call, read as raw JSON: every update is kept exactly as
    /// Telegram sent it (teloxide's types do not serialize back what they parsed).
    async fn get_updates(&self, offset: Option<i64>) -> Result<Vec<(i64, Value)>, PollError> {
        let bot = &self.app.bot;
        let url = format!(
            "{}bot{}/getUpdates",
            with_slash(bot.api_url().as_str()),
            bot.token()
        );
        let mut body = serde_json::json!({ "timeout": POLL_TIMEOUT_SECS, "limit": 100 });
        if let Some(o) = offset {
            body["offset"] = o.into();
        }
        let reply: Value = bot
            .client()
            .post(url)
            .timeout(Duration::from_secs(u64::from(POLL_TIMEOUT_SECS) + 10))
            .json(&body)
            .send()
            .await
            .map_err(|e| PollError::new(format!("Telegram unreachable: {e}")))?
            .json()
            .await
            .map_err(|e| PollError::new(format!("Telegram answered something unreadable: {e}")))?;
        parse_updates(reply)
    }

    /// Lease renewal, recovery of updates whose bot died, and purging, until `stop`.
    pub async fn run_upkeep(self: Arc<Self>, stop: CancellationToken) {
        let mut renew = tokio::time::interval(RENEW_EVERY);
        let mut recover = tokio::time::interval(RECOVER_EVERY);
        let mut purge = tokio::time::interval(Duration::from_secs(3600));
        for t in [&mut renew, &mut recover, &mut purge] {
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = renew.tick() => self.renew().await,
                _ = recover.tick() => {
                    if let Err(e) = self.recover().await {
                        warn!(error = %e, "could not look for unhandled updates");
                    }
                }
                _ = purge.tick() => {
                    if let Err(e) = self.app.store.purge_handled_updates(KEEP_HANDLED).await {
                        warn!(error = %e, "could not purge handled updates");
                    }
                    if let Err(e) = self.app.store.purge_tracked(KEEP_HANDLED).await {
                        warn!(error = %e, "could not purge old tracking records");
                    }
                }
            }
        }
    }

    async fn renew(&self) {
        let ids: Vec<i64> = locked(&self.claimed).iter().copied().collect();
        if let Err(e) = self
            .app
            .store
            .renew_updates(self.owner(), &ids, LEASE)
            .await
        {
            warn!(error = %e, "could not renew update leases");
        }
    }

    /// Claims updates left unhandled by a replica that died, and handles them.
    async fn recover(self: &Arc<Self>) -> Result<(), BotError> {
        let room = self.room.available_permits().min(100);
        if room == 0 {
            return Ok(());
        }
        let stale = self
            .app
            .store
            .claim_stale_updates(self.owner(), LEASE, room as i64)
            .await?;
        for u in stale {
            warn!(
                update_id = u.update_id,
                attempt = u.attempts,
                "taking up an update its bot did not finish"
            );
            self.app
                .metrics
                .intake
                .with_label_values(&["recovered"])
                .inc();
            locked(&self.claimed).insert(u.update_id);
            self.spawn_when_room(u.update_id, u.body);
        }
        Ok(())
    }

    /// Waits (up to `grace`) for the updates being handled here to finish; the rest
    /// are recovered by another replica (or this one's successor) when their lease
    /// runs out.
    pub async fn drain(&self, grace: Duration) {
        let all = u32::try_from(MAX_IN_FLIGHT).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(grace, self.room.acquire_many(all)).await;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn updates_go_to_their_chats_lane() {
        let msg = json!({"update_id": 5, "message": {"chat": {"id": 42}, "from": {"id": 7}}});
        assert_eq!(lane_of(5, &msg), 42);
        let tap = json!({"update_id": 6, "callback_query": {"from": {"id": 7}, "message": {"chat": {"id": 42}}}});
        assert_eq!(lane_of(6, &tap), 42);
        let inaccessible = json!({"update_id": 7, "callback_query": {"from": {"id": 7}}});
        assert_eq!(lane_of(7, &inaccessible), 7);
        let checkout = json!({"update_id": 8, "pre_checkout_query": {"from": {"id": 9}}});
        assert_ne!(
            lane_of(8, &checkout),
            9,
            "a pre-checkout query waits for no chat"
        );
        let other = json!({"update_id": 9, "poll": {"id": "x"}});
        assert_ne!(lane_of(9, &other), lane_of(10, &other));
    }

    #[test]
    fn a_recorded_update_decodes_to_its_kind() {
        let body = json!({"update_id": 5, "message": {"message_id": 1, "date": 1_700_000_000,
            "chat": {"id": 42, "type": "private", "first_name": "A"},
            "from": {"id": 42, "is_bot": false, "first_name": "A"}, "text": "hi"}});
        let update = decode_update(&body).expect("decodes");
        assert!(matches!(
            update.kind,
            teloxide::types::UpdateKind::Message(ref m) if m.text() == Some("hi")
        ));
    }

    #[test]
    fn a_getupdates_answer_gives_raw_updates_or_telegrams_error() {
        let ok = json!({"ok": true, "result": [{"update_id": 3, "message": {"text": "hi"}}]});
        let got = parse_updates(ok).expect("updates");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, 3);
        assert_eq!(got[0].1["message"]["text"], "hi");
        let flood = json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 4", "parameters": {"retry_after": 4}});
        let e = parse_updates(flood).expect_err("refused");
        assert_eq!(e.retry_after, Some(Duration::from_secs(4)));
        assert!(e.message.contains("429"));
        let no_id = json!({"ok": true, "result": [{"message": {}}]});
        assert!(parse_updates(no_id).is_err());
    }
}
