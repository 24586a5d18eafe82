//! A fake Telegram Bot API server on 127.0.0.1, so the bot's tests run the real
//! HTTP path of teloxide (or any client) against it. It records every call.
//!
//! ```no_run
//! # async fn demo() {
//! use std::time::Duration;
//! use genq_testkit::{FakeTelegram, SentKind};
//! let fake = FakeTelegram::start("123:TEST").await;
//! // the bot under test: teloxide::Bot::new("123:TEST").set_api_url(fake.api_url().parse().unwrap())
//! fake.user_sends_text(42, 42, "hello");
//! let reply = fake
//!     .wait_for_sent(42, |m| m.kind == SentKind::Text, Duration::from_secs(5))
//!     .await;
//! assert!(reply.is_some());
//! # }
//! ```
//!
//! Calls are `POST /bot<token>/<method>` (any case: teloxide sends `SendMessage`)
//! with a JSON or multipart body; answers are `{"ok":true,"result":…}` or Telegram's
//! errors. A call is counted, then its token checked (401), its parameters read,
//! then a scripted 429 applies (send and edit methods), then it is served.
//!
//! Served: `getMe`, `getWebhookInfo`, `setWebhook`, `deleteWebhook`, `getUpdates`
//! (long polling, waiting at most 2 s), `sendMessage`, `editMessageText`,
//! `editMessageReplyMarkup`, `deleteMessage`, `sendChatAction`,
//! `answerCallbackQuery`, `sendPhoto`, `sendVideo`, `sendDocument`, `sendVoice`,
//! `getFile`, `setMyCommands`, `deleteMyCommands`, `getMyCommands`, and downloads
//! at `GET /file/bot<token>/<file_path>`. Any other method: 404.
//!
//! Telegram's limits are enforced with Telegram's descriptions: text 1-4096
//! characters, caption ≤ 1024, callback answer text ≤ 200, `callback_data` 1-64
//! bytes, photo uploads ≤ 10 MB (a decodable PNG/JPEG/WebP, width + height ≤ 10000,
//! sides' ratio ≤ 20), other uploads ≤ 50 MB (MB = 2^20 bytes), `getFile` ≤ 20 MB.

mod files;
mod methods;
mod objects;
mod params;
mod payments;
mod records;
mod reply;
mod sent;
mod updates;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use axum::{
    Router,
    extract::{DefaultBodyLimit, Path, Request, State as AxumState},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::Value;
use tokio::{
    net::TcpListener,
    sync::{Notify, oneshot},
};

pub use records::{CallbackAnswer, Invoice, PreCheckoutAnswer, SentKind, SentMessage, StarRefund};

use crate::fake_provider::lock;
use files::StoredFile;
use objects::BotIdentity;
use params::Params;
use reply::TgError;

/// The most characters of a message's text.
const TEXT_LIMIT: usize = 4096;
/// The most characters of a caption.
const CAPTION_LIMIT: usize = 1024;
/// The most characters of an `answerCallbackQuery` text.
const CALLBACK_TEXT_LIMIT: usize = 200;
/// The most bytes of a button's `callback_data`.
const CALLBACK_DATA_LIMIT: usize = 64;
/// The largest photo upload.
const PHOTO_UPLOAD_LIMIT: usize = 10 * 1024 * 1024;
/// The largest upload of any other file.
const UPLOAD_LIMIT: usize = 50 * 1024 * 1024;
/// The largest file `getFile` hands out.
const DOWNLOAD_LIMIT: usize = 20 * 1024 * 1024;
/// The largest request body read (an upload limit plus room for the form).
const BODY_LIMIT: usize = UPLOAD_LIMIT + 1024 * 1024;
/// The longest a `getUpdates` waits, whatever its `timeout`.
const LONG_POLL_CAP: Duration = Duration::from_secs(2);

/// A running fake Bot API server for one bot token; it stops when dropped.
pub struct FakeTelegram {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

impl FakeTelegram {
    /// Starts one for `token` on a free port of 127.0.0.1.
    ///
    /// # Panics
    /// If no port of 127.0.0.1 can be bound (a broken test machine).
    pub async fn start(token: &str) -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), token)
            .await
            .expect("binding 127.0.0.1:0 for the fake Telegram")
    }

    /// Starts one for `token` on `addr` (port 0: a free one).
    pub async fn start_on(addr: SocketAddr, token: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(token));
        let app = router(shared.clone());
        let shutdown = crate::spawn_server(listener, app, "fake Telegram");
        tracing::info!(%addr, "fake Telegram listening");
        Ok(Self {
            shared,
            addr,
            shutdown: Some(shutdown),
        })
    }

    /// `http://127.0.0.1:PORT`, for `teloxide::Bot::set_api_url` (parse it into a
    /// URL) or `TELOXIDE_API_URL`.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bot's user id (the token's numeric prefix, else 1).
    pub fn bot_id(&self) -> i64 {
        self.shared.bot.id
    }

    /// The bot's username (`getMe`), for commands such as `/start@<username>`.
    pub fn bot_username(&self) -> String {
        self.shared.bot.username.clone()
    }

    /// User `user_id` sends `text` in chat `chat_id`; the update's id.
    pub fn user_sends_text(&self, chat_id: i64, user_id: i64, text: &str) -> u32 {
        self.shared.user_sends_text(chat_id, user_id, text, false)
    }

    /// User `user_id` sends a command (`/start`, `/image a cat`; a missing `/` is
    /// added) with its `bot_command` entity; the update's id.
    pub fn user_sends_command(&self, chat_id: i64, user_id: i64, command: &str) -> u32 {
        let text = if command.starts_with('/') {
            command.to_owned()
        } else {
            format!("/{command}")
        };
        self.shared.user_sends_text(chat_id, user_id, &text, true)
    }

    /// User `user_id` sends a photo of `width` × `height`; `getFile` and the
    /// download of the largest size return `bytes`. A 90-pixel thumbnail comes first
    /// in `photo`, as in Telegram (made from `bytes` when they decode). The update's id.
    pub fn user_sends_photo(
        &self,
        chat_id: i64,
        user_id: i64,
        bytes: Vec<u8>,
        width: u32,
        height: u32,
    ) -> u32 {
        self.shared
            .user_sends_photo(chat_id, user_id, bytes.into(), width, height)
    }

    /// User `user_id` sends a message with any other content (the message object's
    /// fields, e.g. `{"location": {"latitude": 1.0, "longitude": 2.0}}`); the update's id.
    pub fn user_sends_message(&self, chat_id: i64, user_id: i64, content: Value) -> u32 {
        self.shared.user_message(chat_id, user_id, content)
    }

    /// User `user_id` sends a voice message (`audio/ogg`) of `duration_secs`;
    /// `getFile` and the download return `bytes`. The update's id.
    pub fn user_sends_voice(
        &self,
        chat_id: i64,
        user_id: i64,
        bytes: Vec<u8>,
        duration_secs: u32,
    ) -> u32 {
        self.shared
            .user_sends_voice(chat_id, user_id, bytes.into(), duration_secs)
    }

    /// User `user_id` presses the inline button with `data` under the bot's message
    /// `message_id` (an unknown or deleted one arrives as inaccessible); the callback
    /// query's id, for `answerCallbackQuery`.
    pub fn user_presses_button(
        &self,
        chat_id: i64,
        user_id: i64,
        message_id: i32,
        data: &str,
    ) -> String {
        self.shared
            .user_presses_button(chat_id, user_id, message_id, data)
    }

    /// User `user_id`'s Telegram is in `language` (e.g. "ru") from now on; "en" by default.
    pub fn set_user_language(&self, user_id: i64, language: &str) {
        self.shared
            .state()
            .languages
            .insert(user_id, language.to_owned());
    }

    /// Updates not yet acknowledged by a `getUpdates` offset.
    pub fn pending_updates(&self) -> usize {
        self.shared.state().updates.len()
    }

    /// The next `n` calls of a send or edit method (`send*`, `edit*`, including
    /// `sendChatAction`) answer 429 `Too Many Requests: retry after
    /// <retry_after_secs>` with `parameters.retry_after`; queued after earlier ones.
    pub fn rate_limit_next(&self, n: usize, retry_after_secs: u32) {
        let mut state = self.shared.state();
        state
            .rate_limits
            .extend(std::iter::repeat_n(retry_after_secs, n));
    }

    /// From now on, about `share` (0.0-1.0) of the send and edit calls answer 429
    /// with `retry_after_secs`, chosen at random (seeded: the same calls each run).
    pub fn rate_limit_share(&self, share: f64, retry_after_secs: u32) {
        self.shared.state().random_429 = (share > 0.0).then(|| Random429 {
            per_million: (share.clamp(0.0, 1.0) * 1_000_000.0) as u32,
            retry_after: retry_after_secs,
            rng: 0x9E37_79B9_7F4A_7C15,
        });
    }

    /// Every send and edit call to `chat_id` answers 429 with `retry_after_secs`
    /// for the next `duration`.
    pub fn rate_limit_chat(&self, chat_id: i64, duration: Duration, retry_after_secs: u32) {
        self.shared.state().chat_429.insert(
            chat_id,
            (std::time::Instant::now() + duration, retry_after_secs),
        );
    }

    /// How many calls were answered 429 so far.
    pub fn answered_429(&self) -> usize {
        self.shared.state().answered_429
    }

    /// The next `n` calls of `method` are served (their effect recorded) but their
    /// answers are held until [`FakeTelegram::release`]: a client waiting for them
    /// can be killed, or the world changed, between Telegram doing it and the client
    /// hearing so.
    pub fn hold_next(&self, method: &str, n: usize) {
        let mut state = self.shared.state();
        let hold = state.holds.entry(method.to_ascii_lowercase()).or_default();
        hold.remaining += n;
        hold.released = false;
    }

    /// How many calls of `method` are being held now.
    pub fn held(&self, method: &str) -> usize {
        self.shared
            .state()
            .holds
            .get(&method.to_ascii_lowercase())
            .map_or(0, |h| h.waiting)
    }

    /// Answers the held calls of `method` (and holds no more of them).
    pub fn release(&self, method: &str) {
        let mut state = self.shared.state();
        if let Some(hold) = state.holds.get_mut(&method.to_ascii_lowercase()) {
            hold.remaining = 0;
            hold.released = true;
            hold.release.notify_waiters();
        }
    }

    /// Calls received of `method` (any case; failed calls included). Downloads of
    /// files count as `download`.
    pub fn calls(&self, method: &str) -> usize {
        let method = method.to_ascii_lowercase();
        self.shared.state().calls.get(&method).copied().unwrap_or(0)
    }

    /// The parameters of every call of `method` that reached the fake with the
    /// right token and a readable body, oldest first, as a JSON object (multipart
    /// text holding JSON parsed; an uploaded part as `{"file_name", "size"}`).
    pub fn requests(&self, method: &str) -> Vec<Value> {
        let method = method.to_ascii_lowercase();
        self.shared
            .state()
            .requests
            .iter()
            .filter(|(m, _)| *m == method)
            .map(|(_, params)| params.clone())
            .collect()
    }

    /// What the bot sent to `chat_id` (messages and chat actions), oldest first.
    pub fn sent(&self, chat_id: i64) -> Vec<SentMessage> {
        self.shared
            .state()
            .chats
            .get(&chat_id)
            .map(|chat| chat.entries.iter().map(|e| e.sent.clone()).collect())
            .unwrap_or_default()
    }

    /// Waits up to `timeout` for something sent to `chat_id` that `predicate`
    /// accepts; the oldest such.
    pub async fn wait_for_sent(
        &self,
        chat_id: i64,
        predicate: impl Fn(&SentMessage) -> bool,
        timeout: Duration,
    ) -> Option<SentMessage> {
        crate::wait_until(timeout, || {
            let found = self.sent(chat_id).into_iter().find(|m| predicate(m));
            async move { found }
        })
        .await
    }

    /// The chat actions (`typing`, `upload_photo`, …) sent to `chat_id`, oldest first.
    pub fn chat_actions(&self, chat_id: i64) -> Vec<String> {
        self.sent(chat_id)
            .into_iter()
            .filter(|m| m.kind == SentKind::Action)
            .filter_map(|m| m.text)
            .collect()
    }

    /// Every `answerCallbackQuery` accepted, oldest first.
    pub fn callback_answers(&self) -> Vec<CallbackAnswer> {
        self.shared.state().callback_answers.clone()
    }

    /// The bytes of file `file_id` (sent by the bot or by a user).
    pub fn file(&self, file_id: &str) -> Option<Vec<u8>> {
        self.shared
            .state()
            .files
            .get(file_id)
            .map(|f| f.bytes.to_vec())
    }
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// The state every handler shares.
pub(crate) struct Shared {
    /// The path segment of the right token: `bot<token>`.
    bot_segment: String,
    bot: BotIdentity,
    state: Mutex<State>,
    /// Wakes long-polling `getUpdates` calls when an update is queued.
    new_update: Notify,
}

/// Everything the fake remembers.
#[derive(Default)]
struct State {
    /// Calls by lower-case method name.
    calls: HashMap<String, usize>,
    /// (lower-case method, parameters) of each call that was read.
    requests: Vec<(String, Value)>,
    chats: HashMap<i64, ChatLog>,
    /// (update_id, update), oldest first; removed when acknowledged.
    updates: VecDeque<(u32, Value)>,
    last_update_id: u32,
    files: HashMap<String, StoredFile>,
    /// `file_path` → file id.
    file_paths: HashMap<String, String>,
    next_file: u64,
    /// Callback queries sent to the bot and not answered yet, with when.
    callback_queries: HashMap<String, std::time::Instant>,
    last_callback: u64,
    callback_answers: Vec<CallbackAnswer>,
    /// `retry_after` of each of the next rate-limited calls.
    rate_limits: VecDeque<u32>,
    /// A share of send and edit calls answered 429, at random.
    random_429: Option<Random429>,
    /// Chats whose send and edit calls are all answered 429 until a deadline:
    /// chat → (deadline, retry_after).
    chat_429: HashMap<i64, (std::time::Instant, u32)>,
    /// 429s answered in all.
    answered_429: usize,
    /// Methods whose next calls are held before they are answered.
    holds: HashMap<String, Hold>,
    /// Invoices, pre-checkout queries, charges and refunds.
    payments: payments::PaymentsState,
    /// Users' `language_code` other than "en".
    languages: HashMap<i64, String>,
}

/// One chat: its message ids, what the bot sent, the user's live messages.
#[derive(Default)]
struct ChatLog {
    last_message_id: i32,
    entries: Vec<Entry>,
    user_messages: HashSet<i32>,
}

/// A sent message: the record tests see and the Message object the bot got.
struct Entry {
    sent: SentMessage,
    /// The Message as last returned (`Null` for a chat action).
    object: Value,
}

impl ChatLog {
    fn next_message_id(&mut self) -> i32 {
        self.last_message_id += 1;
        self.last_message_id
    }

    /// The bot's message `message_id`, unless deleted.
    fn bot_message(&mut self, message_id: i32) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| {
            e.sent.kind != SentKind::Action && e.sent.message_id == message_id && !e.sent.deleted
        })
    }
}

/// A share of calls answered 429 (a seeded xorshift, so runs repeat).
struct Random429 {
    /// Out of 1,000,000.
    per_million: u32,
    retry_after: u32,
    rng: u64,
}

impl Random429 {
    fn hit(&mut self) -> bool {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % 1_000_000) < u64::from(self.per_million)
    }
}

/// Calls of one method held before their answer: how many more to hold, how many
/// are waiting, and what releases them.
#[derive(Default)]
struct Hold {
    remaining: usize,
    waiting: usize,
    release: Arc<Notify>,
    released: bool,
}

impl State {
    fn chat(&mut self, chat_id: i64) -> &mut ChatLog {
        self.chats.entry(chat_id).or_default()
    }

    /// The `retry_after` of a 429 this call of a send or edit method (to `chat`)
    /// gets: scripted ones first, then a rate-limited chat, then the random share.
    fn scripted_429(&mut self, chat: Option<i64>) -> Option<u32> {
        let secs = self
            .rate_limits
            .pop_front()
            .or_else(|| {
                let (until, secs) = *self.chat_429.get(&chat?)?;
                (std::time::Instant::now() < until).then_some(secs)
            })
            .or_else(|| {
                let r = self.random_429.as_mut()?;
                r.hit().then_some(r.retry_after)
            })?;
        self.answered_429 += 1;
        Some(secs)
    }
}

impl Shared {
    fn new(token: &str) -> Self {
        Self {
            bot_segment: format!("bot{token}"),
            bot: BotIdentity::from_token(token),
            state: Mutex::new(State::default()),
            new_update: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Holds the answer of this call of `method` when a hold applies, until released.
    async fn wait_if_held(&self, method: &str) {
        let release = {
            let mut state = self.state();
            let Some(hold) = state.holds.get_mut(method) else {
                return;
            };
            if hold.remaining == 0 || hold.released {
                return;
            }
            hold.remaining -= 1;
            hold.waiting += 1;
            hold.release.clone()
        };
        loop {
            let notified = release.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.state().holds.get(method).is_some_and(|h| h.released) {
                break;
            }
            notified.await;
        }
        if let Some(hold) = self.state().holds.get_mut(method) {
            hold.waiting -= 1;
        }
    }

    /// Counts a call of `method` (lower case).
    fn count_call(&self, method: &str) {
        *self.state().calls.entry(method.to_owned()).or_default() += 1;
    }
}

/// `POST|GET /bot<token>/<method>`.
async fn api_call(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path((bot, method)): Path<(String, String)>,
    req: Request,
) -> Response {
    let method = method.to_ascii_lowercase();
    shared.count_call(&method);
    if bot != shared.bot_segment {
        return TgError::unauthorized().into_response();
    }
    let params = match Params::read(req).await {
        Ok(params) => params,
        Err(e) => return e.into_response(),
    };
    shared
        .state()
        .requests
        .push((method.clone(), params.to_record()));
    let answer = methods::call(&shared, &method, &params).await;
    shared.wait_if_held(&method).await;
    match answer {
        Ok(result) => reply::ok(result),
        Err(e) => {
            tracing::debug!(%method, ?e, "fake Telegram: call failed");
            e.into_response()
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/{bot}/{method}", post(api_call).get(api_call))
        .route("/file/{bot}/{*path}", get(files::download))
        .fallback(|| async { TgError::not_found("Not Found") })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(shared)
}
