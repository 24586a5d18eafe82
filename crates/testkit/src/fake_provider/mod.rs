//! A fake AI provider on 127.0.0.1 speaking both protocols of
//! `docs/PROVIDER-PROTOCOLS.md`: OpenAI-compatible under `/v1` and queue-style
//! under `/queue`, so tests and benchmarks run the real HTTP path.
//!
//! ```no_run
//! # async fn demo() {
//! use genq_testkit::{FakeFailure, FakeProvider};
//! let fake = FakeProvider::start().await;
//! let openai_base = format!("{}/v1", fake.base_url());
//! fake.fail_next(2, FakeFailure::RateLimited { retry_after_secs: Some(1) });
//! // ... run the client against `openai_base` ...
//! assert_eq!(fake.calls("chat"), 3);
//! # }
//! ```
//!
//! Structured chats (`response_format.type == "json_schema"`) answer a promo
//! script that follows the request's `Layout:` line; speech is a WAV tone as long
//! as its text takes to say at 2.5 words/s; a task submit's `Idempotency-Key`
//! seen before gets the task it created (nothing new is made or counted). While
//! [`FakeProvider::hold_submits`] is on, a submit creates (or finds) its task and
//! withholds its answer: a worker can be killed with its submit in flight.
//!
//! Every call (except a result-file download, whose URL is its own credential, as
//! a vendor's CDN link is) needs `Authorization: Bearer <key>`, else 401. A call is
//! counted, then waits the latency, then fails if a key failure or a `fail_next`
//! failure applies, else is served.

mod failure;
mod limits;
pub(crate) mod media;
mod openai;
mod queue;
mod script;

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use axum::{
    Router,
    extract::{DefaultBodyLimit, Request, State},
    http::{HeaderMap, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{MethodRouter, get, post},
};
use tokio::{net::TcpListener, sync::oneshot};

pub use failure::{FakeFailure, MALFORMED_BODY, TaskErrorCode};

use failure::ApiError;
use queue::Task;

/// How long a queue task runs unless [`FakeProvider::set_task_duration`] says otherwise.
pub const DEFAULT_TASK_DURATION: Duration = Duration::from_millis(300);

/// The largest request body accepted (base64 images, audio uploads).
const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// The configuration (TOML) of genq's artifacts directory and two providers on a
/// fake provider at `base_url`: `llm` (OpenAI protocol, key `fake-llm-key`) and
/// `media` (queue protocol, key `fake-media-key`). Tests append their `[jobs.*]` and
/// `[bot]` sections.
pub fn providers_toml(base_url: &str, artifacts: &std::path::Path) -> String {
    format!(
        r#"
[artifacts]
dir = "{artifacts}"

[providers.llm]
protocol = "openai"
base_url = "{base_url}/v1"
keys = ["fake-llm-key"]

[providers.media]
protocol = "queue"
base_url = "{base_url}/queue"
keys = ["fake-media-key"]
"#,
        artifacts = artifacts.display(),
    )
}

/// A `[promo]` section (enabled) for a config built with [`providers_toml`]:
/// script and speech on `llm`, `image_size` small enough for tests, approvals
/// waiting `approval_timeout_secs`. The config must also give
/// `[jobs.generate_image]` and `[jobs.generate_video]` a provider.
pub fn promo_toml(approval_timeout_secs: u64) -> String {
    format!(
        r#"
[promo]
enabled = true
script_provider = "llm"
speech_provider = "llm"
image_size = "288x512"
approval_timeout_secs = {approval_timeout_secs}
"#
    )
}

/// A running fake provider; it stops when dropped.
pub struct FakeProvider {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

impl FakeProvider {
    /// Starts one on a free port of 127.0.0.1.
    ///
    /// # Panics
    /// If no port of 127.0.0.1 can be bound (a broken test machine).
    pub async fn start() -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("binding 127.0.0.1:0 for the fake provider")
    }

    /// Starts one on `addr` (port 0: a free one).
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(format!("http://{addr}")));
        let app = router(shared.clone());
        let shutdown = crate::spawn_server(listener, app, "fake provider");
        tracing::info!(%addr, "fake provider listening");
        Ok(Self {
            shared,
            addr,
            shutdown: Some(shutdown),
        })
    }

    /// `http://127.0.0.1:PORT`; clients use `{base_url}/v1` and `{base_url}/queue`.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every call waits this long before it is answered.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.knobs().latency = latency;
    }

    /// Calls to `label` (`chat`, `images`, `speech`, `submit`, `poll`, `file`, ...)
    /// wait this long instead of [`set_latency`](Self::set_latency)'s.
    pub fn set_endpoint_latency(&self, label: &str, latency: Duration) {
        self.shared
            .knobs()
            .endpoint_latency
            .insert(canonical_label(label).to_owned(), latency);
    }

    /// The next `n` structured chats (`response_format.type == "json_schema"`)
    /// answer content that is not JSON (the HTTP call itself succeeds).
    pub fn set_malformed_scripts(&self, n: usize) {
        self.shared.knobs().malformed_scripts = n;
    }

    /// Tasks submitted from now on finish this long after their submit (default 300 ms).
    pub fn set_task_duration(&self, duration: Duration) {
        self.shared.knobs().task_duration = duration;
    }

    /// While true, a task submit is received, counted and acted on (its task
    /// created and remembered under its idempotency key), but its answer waits
    /// until this is set false again.
    pub fn hold_submits(&self, hold: bool) {
        self.shared.hold.set(hold);
    }

    /// While true, every task (already submitted or not) stays `running`.
    pub fn set_tasks_never_finish(&self, never: bool) {
        self.shared.knobs().never_finish = never;
    }

    /// The next `n` calls to any endpoint (task polls and file downloads included)
    /// fail with `failure`; queued after failures scripted earlier.
    pub fn fail_next(&self, n: usize, failure: FakeFailure) {
        let mut knobs = self.shared.knobs();
        knobs.next_failures.extend(std::iter::repeat_n(failure, n));
    }

    /// Every call with bearer key `key` fails with `failure` until
    /// [`clear_key_failures`](Self::clear_key_failures).
    pub fn fail_key(&self, key: &str, failure: FakeFailure) {
        self.shared
            .knobs()
            .key_failures
            .insert(key.to_owned(), failure);
    }

    /// Ends every [`fail_key`](Self::fail_key).
    pub fn clear_key_failures(&self) {
        self.shared.knobs().key_failures.clear();
    }

    /// The next submitted task (after any scripted earlier) ends `failed` with
    /// `code` when its duration has passed. Call it n times for n tasks.
    pub fn fail_next_task(&self, code: TaskErrorCode) {
        self.shared.knobs().next_task_failures.push_back(code);
    }

    /// HTTP calls received for `label`: `chat`, `images` (or `image`),
    /// `transcriptions`, `speech`, `submit`, `poll` or `file` (failed calls and
    /// repeated idempotency keys included).
    pub fn calls(&self, label: &str) -> usize {
        self.shared
            .counters()
            .calls
            .get(canonical_label(label))
            .copied()
            .unwrap_or(0)
    }

    /// Tasks created (submits that were accepted; a repeated idempotency key
    /// creates none). The submit requests received are `calls("submit")`.
    pub fn submits(&self) -> usize {
        self.shared.counters().submits
    }

    /// The distinct bearer keys seen, in first-seen order.
    pub fn keys_seen(&self) -> Vec<String> {
        self.shared.counters().keys.clone()
    }

    /// When each call from address `from` came, in order, with its label (to tell
    /// hosts apart in partition tests).
    pub fn calls_from(&self, from: std::net::IpAddr) -> Vec<(&'static str, std::time::SystemTime)> {
        self.shared
            .counters()
            .log
            .iter()
            .filter(|c| c.from == Some(from))
            .map(|c| (c.label, c.at))
            .collect()
    }

    /// When each call with bearer key `key` came, in order, with its label.
    pub fn calls_with_key(&self, key: &str) -> Vec<(&'static str, std::time::SystemTime)> {
        self.shared
            .counters()
            .log
            .iter()
            .filter(|c| c.key.as_deref() == Some(key))
            .map(|c| (c.label, c.at))
            .collect()
    }

    /// Calls received with bearer key `key`.
    pub fn requests_with_key(&self, key: &str) -> usize {
        self.shared
            .counters()
            .per_key
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.hold_submits(false);
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// The state every handler shares.
pub(crate) struct Shared {
    base_url: String,
    knobs: Mutex<Knobs>,
    counters: Mutex<Counters>,
    tasks: Mutex<HashMap<String, Task>>,
    /// Idempotency key → the task it created.
    idempotency: Mutex<HashMap<String, String>>,
    /// Per-key concurrency limits and what they saw.
    limits: Mutex<limits::Limits>,
    /// Held while a submit counts a key's tasks and creates one (one step).
    admission: Mutex<()>,
    /// Submit answers wait while it is on.
    pub(crate) hold: SubmitHold,
}

/// A counter label as recorded (`image` is `images`).
fn canonical_label(label: &str) -> &str {
    match label {
        "image" => "images",
        other => other,
    }
}

/// What tests script.
struct Knobs {
    latency: Duration,
    task_duration: Duration,
    never_finish: bool,
    next_failures: VecDeque<FakeFailure>,
    key_failures: HashMap<String, FakeFailure>,
    next_task_failures: VecDeque<TaskErrorCode>,
    endpoint_latency: HashMap<String, Duration>,
    malformed_scripts: usize,
}

/// One call as the fake saw it.
#[derive(Debug, Clone)]
struct CallRecord {
    label: &'static str,
    key: Option<String>,
    from: Option<std::net::IpAddr>,
    at: std::time::SystemTime,
}

/// What tests count.
#[derive(Default)]
struct Counters {
    calls: HashMap<&'static str, usize>,
    submits: usize,
    keys: Vec<String>,
    per_key: HashMap<String, usize>,
    /// Every call: label, key, the caller's address (when known), when it came.
    log: Vec<CallRecord>,
}

impl Shared {
    fn new(base_url: String) -> Self {
        Self {
            base_url,
            knobs: Mutex::new(Knobs {
                latency: Duration::ZERO,
                task_duration: DEFAULT_TASK_DURATION,
                never_finish: false,
                next_failures: VecDeque::new(),
                key_failures: HashMap::new(),
                next_task_failures: VecDeque::new(),
                endpoint_latency: HashMap::new(),
                malformed_scripts: 0,
            }),
            counters: Mutex::new(Counters::default()),
            tasks: Mutex::new(HashMap::new()),
            idempotency: Mutex::new(HashMap::new()),
            limits: Mutex::new(limits::Limits::default()),
            admission: Mutex::new(()),
            hold: SubmitHold::default(),
        }
    }

    fn knobs(&self) -> MutexGuard<'_, Knobs> {
        lock(&self.knobs)
    }

    fn counters(&self) -> MutexGuard<'_, Counters> {
        lock(&self.counters)
    }

    pub(crate) fn never_finish(&self) -> bool {
        self.knobs().never_finish
    }

    /// Counts a call to `label` with `key`.
    fn record_call(&self, label: &'static str, key: Option<&str>, from: Option<std::net::IpAddr>) {
        let mut counters = self.counters();
        counters.log.push(CallRecord {
            label,
            key: key.map(str::to_owned),
            from,
            at: std::time::SystemTime::now(),
        });
        *counters.calls.entry(label).or_default() += 1;
        if let Some(key) = key {
            if !counters.per_key.contains_key(key) {
                counters.keys.push(key.to_owned());
            }
            *counters.per_key.entry(key.to_owned()).or_default() += 1;
        }
    }

    /// The failure this call gets, if any: a missing key, the key's failure, the next
    /// scripted failure — in that order (a call failed by its key consumes no
    /// `fail_next`).
    fn failure_for(&self, label: &'static str, key: Option<&str>) -> Option<Response> {
        let Some(key) = key else {
            return (label != "file").then(|| {
                ApiError::unauthorized("missing `Authorization: Bearer <key>`").into_response()
            });
        };
        let mut knobs = self.knobs();
        let failure = match knobs.key_failures.get(key) {
            Some(f) => Some(f.clone()),
            None => knobs.next_failures.pop_front(),
        }?;
        tracing::debug!(label, ?failure, "fake provider: scripted failure");
        Some(failure.response())
    }

    /// Whether this structured chat answers malformed JSON (counting one down).
    pub(crate) fn take_malformed_script(&self) -> bool {
        let mut knobs = self.knobs();
        let malformed = knobs.malformed_scripts > 0;
        knobs.malformed_scripts = knobs.malformed_scripts.saturating_sub(1);
        malformed
    }

    /// The task an idempotency key created, if any.
    pub(crate) fn task_for_key(&self, key: &str) -> Option<String> {
        lock(&self.idempotency).get(key).cloned()
    }

    /// The task for `key`: the one it created before (`false`), else a new one
    /// recorded under it (`true`). Concurrent submits with one key create one task.
    pub(crate) fn create_task_once(&self, key: Option<&str>) -> (String, bool) {
        let Some(key) = key else {
            return (self.create_task(), true);
        };
        let mut seen = lock(&self.idempotency);
        if let Some(id) = seen.get(key) {
            return (id.clone(), false);
        }
        let id = self.create_task();
        seen.insert(key.to_owned(), id.clone());
        (id, true)
    }

    /// Like [`create_task_once`](Self::create_task_once) under the per-key task
    /// limit for bearer key `owner`: the 429 to answer when it is reached.
    pub(crate) fn create_task_limited(
        &self,
        idempotency_key: Option<&str>,
        owner: Option<&str>,
    ) -> Result<(String, bool), limits::OverLimit> {
        let _one_at_a_time = lock(&self.admission);
        if let Some(id) = idempotency_key.and_then(|k| self.task_for_key(k)) {
            return Ok((id, false));
        }
        self.admit_task(owner)?;
        let (id, created) = self.create_task_once(idempotency_key);
        if created {
            if let Some(task) = lock(&self.tasks).get_mut(&id) {
                task.key = owner.map(str::to_owned);
            }
            self.note_task_created(owner);
        }
        Ok((id, created))
    }

    /// Records a new task (taking the next scripted task failure); its id.
    pub(crate) fn create_task(&self) -> String {
        let (duration, forced) = {
            let mut knobs = self.knobs();
            (knobs.task_duration, knobs.next_task_failures.pop_front())
        };
        let id = format!("task_{}", ulid::Ulid::new().to_string().to_lowercase());
        lock(&self.tasks).insert(id.clone(), Task::new(duration, forced));
        self.counters().submits += 1;
        id
    }
}

/// The fakes' `hold_submits`: while on, a submit's answer waits (after the submit
/// has done its work).
pub(crate) struct SubmitHold(tokio::sync::watch::Sender<bool>);

impl Default for SubmitHold {
    fn default() -> Self {
        Self(tokio::sync::watch::channel(false).0)
    }
}

impl SubmitHold {
    pub(crate) fn set(&self, on: bool) {
        self.0.send_replace(on);
    }

    /// Returns once the hold is off.
    pub(crate) async fn wait(&self) {
        // the sender lives in `self`: the channel cannot close while this waits
        let _ = self.0.subscribe().wait_for(|on| !on).await;
    }
}

/// Locks `m`, carrying on if a holder panicked (the data stays usable).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Parses a JSON request body; a 400 naming the problem when it does not fit.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// The bearer key of `Authorization: Bearer <key>`, if any.
fn bearer_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.trim().split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then(|| key.to_owned())
}

/// The middleware in front of every endpoint: counts, waits, fails as scripted.
async fn gate(
    State((shared, label)): State<(Arc<Shared>, &'static str)>,
    req: Request,
    next: Next,
) -> Response {
    let key = bearer_key(req.headers());
    let from = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    shared.record_call(label, key.as_deref(), from);
    let latency = {
        let knobs = shared.knobs();
        knobs
            .endpoint_latency
            .get(label)
            .copied()
            .unwrap_or(knobs.latency)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let response = match shared.failure_for(label, key.as_deref()) {
        Some(failure) => failure,
        None => match shared.admit_call(key.as_deref()) {
            Ok(in_flight) => {
                let mut response = next.run(req).await;
                if let Some(guard) = &in_flight
                    && response.status().is_success()
                {
                    guard.announce(&mut response);
                }
                response
            }
            Err(refused) => refused.response(),
        },
    };
    shared.note_status(response.status());
    response
}

fn router(shared: Arc<Shared>) -> Router {
    let gated = |label: &'static str, route: MethodRouter<Arc<Shared>>| {
        route.layer(middleware::from_fn_with_state(
            (shared.clone(), label),
            gate,
        ))
    };
    Router::new()
        .route("/v1/chat/completions", gated("chat", post(openai::chat)))
        .route(
            "/v1/images/generations",
            gated("images", post(openai::images)),
        )
        .route(
            "/v1/audio/transcriptions",
            gated("transcriptions", post(openai::transcriptions)),
        )
        .route("/v1/audio/speech", gated("speech", post(openai::speech)))
        .route("/queue/tasks", gated("submit", post(queue::submit)))
        .route("/queue/tasks/{id}", gated("poll", get(queue::poll)))
        .route("/queue/files/{id}", gated("file", get(queue::file)))
        .fallback(|| async { ApiError::not_found("no such endpoint on the fake provider") })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(shared.clone())
}
