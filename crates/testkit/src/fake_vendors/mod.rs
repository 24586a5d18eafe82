//! Fake AI vendors on 127.0.0.1, one per vendor genq has an adapter for (fal,
//! Replicate, Runway, KIE, ComfyUI), each speaking that vendor's HTTP API with its
//! real request and response shapes, auth header, states and error bodies
//! (docs/PROVIDER-PROTOCOLS.md, section 3), so the adapters are tested over real HTTP.
//!
//! ```no_run
//! # async fn demo() {
//! use genq_testkit::{FakeVendor, FakeVendorKind, VendorFailure};
//! let fal = FakeVendor::start(FakeVendorKind::Fal).await;
//! // point `[providers.video] kind = "fal"`'s base_url at fal.base_url()
//! fal.fail_next(1, VendorFailure::RateLimited { retry_after_secs: 2 });
//! assert_eq!(fal.submits(), 0);
//! # }
//! ```
//!
//! Knobs: the next calls failing a given way ([`VendorFailure`], in the vendor's
//! shape), the next task failing ([`VendorTaskFailure`]), task duration, holding
//! submit answers (the task is created, the answer waits: a worker can be killed
//! mid-submit), a limit of live tasks per key answered with the vendor's 429.
//! Counters: calls per label (`submit`, `poll`, `result`, `cancel`,
//! `upload`, `queue`, `file`), tasks created, tasks cancelled. Result files are
//! served under `/files/` without auth, like a vendor's CDN.

// handlers answer early with a ready response: `Result<_, Response>` is the idiom
#![allow(clippy::result_large_err)]

mod comfyui;
mod fal;
mod kie;
mod replicate;
mod runway;
mod webhooks;

pub use webhooks::{KIE_WEBHOOK_KEY, REPLICATE_WEBHOOK_SECRET, WebhookMode};

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::{net::TcpListener, sync::oneshot, time::Instant};

use crate::fake_provider::{SubmitHold, lock, media};

/// Which vendor a fake speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeVendorKind {
    Fal,
    Replicate,
    Runway,
    Kie,
    ComfyUi,
}

impl FakeVendorKind {
    /// The `kind` a genq provider section gives this vendor.
    pub fn config_kind(self) -> &'static str {
        match self {
            FakeVendorKind::Fal => "fal",
            FakeVendorKind::Replicate => "replicate",
            FakeVendorKind::Runway => "runway",
            FakeVendorKind::Kie => "kie",
            FakeVendorKind::ComfyUi => "comfyui",
        }
    }
}

/// A failure a call answers with, in the vendor's own shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VendorFailure {
    /// A content-policy refusal.
    Policy,
    /// Credits, balance or quota exhausted.
    Billing,
    /// Too many requests, with the vendor's retry hint (`Retry-After` where it sends one).
    RateLimited { retry_after_secs: u64 },
    /// A 5xx.
    ServerError,
    /// A request the vendor rejects as invalid.
    Validation,
}

/// How a task ends when it fails (the vendor's asynchronous failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VendorTaskFailure {
    /// Moderation rejected the input or output.
    Policy,
    /// The vendor's model or machine failed.
    Internal,
}

/// A task the fake holds.
pub(crate) struct VTask {
    submitted: Instant,
    duration: Duration,
    forced: Option<VendorTaskFailure>,
    cancelled: bool,
    video: bool,
    pub(crate) model: String,
    /// The `Authorization` value that created it (its key).
    owner: String,
}

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Queued,
    Running(u8),
    Done,
    Failed(VendorTaskFailure),
    Cancelled,
}

impl VTask {
    fn phase(&self) -> Phase {
        if self.cancelled {
            return Phase::Cancelled;
        }
        let elapsed = self.submitted.elapsed();
        if elapsed < self.duration / 10 {
            return Phase::Queued;
        }
        if elapsed < self.duration {
            let pct = (elapsed.as_millis() * 100)
                .checked_div(self.duration.as_millis())
                .unwrap_or(99);
            return Phase::Running(pct.clamp(1, 99) as u8);
        }
        match self.forced {
            Some(f) => Phase::Failed(f),
            None => Phase::Done,
        }
    }
}

struct Knobs {
    task_duration: Duration,
    /// Live tasks (queued or running) allowed per key; over it a submit is a 429.
    task_limit_per_key: Option<usize>,
    next_failures: VecDeque<VendorFailure>,
    next_task_failures: VecDeque<VendorTaskFailure>,
}

#[derive(Default)]
struct Counters {
    calls: HashMap<&'static str, usize>,
    submits: usize,
    cancels: usize,
    auth: Vec<String>,
    bodies: Vec<serde_json::Value>,
    /// Submits refused with 429 because the key had its limit of live tasks.
    over_limit: usize,
    /// The most tasks live (queued or running) at once, over all keys.
    peak_live: usize,
}

/// The state every handler of one fake shares.
pub(crate) struct VShared {
    pub(crate) kind: FakeVendorKind,
    pub(crate) root: String,
    knobs: Mutex<Knobs>,
    counters: Mutex<Counters>,
    pub(crate) tasks: Mutex<HashMap<String, VTask>>,
    /// Order of creation (ComfyUI's queue numbers).
    pub(crate) order: Mutex<Vec<String>>,
    hold: SubmitHold,
    /// What happens to a task's completion webhook (when its submit gave a URL).
    pub(crate) webhook_mode: Mutex<WebhookMode>,
    /// The HTTP status of every webhook delivery try, in order (0: no answer).
    pub(crate) webhook_deliveries: Mutex<Vec<u16>>,
}

impl VShared {
    /// Counts a call, checks its auth header, applies a scripted failure.
    pub(crate) fn gate(&self, label: &'static str, headers: &HeaderMap) -> Result<(), Response> {
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        {
            let mut c = lock(&self.counters);
            *c.calls.entry(label).or_default() += 1;
            if !auth.is_empty() {
                c.auth.push(auth.clone());
            }
        }
        let scheme = match self.kind {
            FakeVendorKind::Fal => Some("Key "),
            FakeVendorKind::ComfyUi => None,
            _ => Some("Bearer "),
        };
        if let Some(scheme) = scheme
            && !(auth.starts_with(scheme) && auth.len() > scheme.len())
        {
            return Err(self.unauthorized());
        }
        let failure = lock(&self.knobs).next_failures.pop_front();
        match failure {
            Some(f) => Err(self.failure(f)),
            None => Ok(()),
        }
    }

    fn unauthorized(&self) -> Response {
        match self.kind {
            FakeVendorKind::Fal => fal::failure_response(VendorFailure::Billing),
            FakeVendorKind::Replicate => (
                StatusCode::UNAUTHORIZED,
                axum::Json(serde_json::json!({"title": "Unauthenticated", "detail": "You did not pass a valid authentication token", "status": 401})),
            )
                .into_response(),
            FakeVendorKind::Runway => (
                StatusCode::UNAUTHORIZED,
                axum::Json(serde_json::json!({"error": "Missing or invalid API key"})),
            )
                .into_response(),
            FakeVendorKind::Kie => kie::envelope(401, "You do not have access permissions", None),
            FakeVendorKind::ComfyUi => StatusCode::UNAUTHORIZED.into_response(),
        }
    }

    fn failure(&self, f: VendorFailure) -> Response {
        match self.kind {
            FakeVendorKind::Fal => fal::failure_response(f),
            FakeVendorKind::Replicate => replicate::failure_response(f),
            FakeVendorKind::Runway => runway::failure_response(f),
            FakeVendorKind::Kie => kie::failure_response(f),
            FakeVendorKind::ComfyUi => comfyui::failure_response(f),
        }
    }

    /// Records a task (taking the next scripted task failure) under `id`, for the
    /// key in `headers`' `Authorization`; over the per-key task limit nothing is
    /// created and the answer is the vendor's 429 (`Retry-After: 1`).
    pub(crate) fn create(
        &self,
        id: String,
        headers: &HeaderMap,
        model: &str,
        video: bool,
        body: serde_json::Value,
    ) -> Result<(), Response> {
        let owner = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let (duration, forced, limit) = {
            let mut k = lock(&self.knobs);
            (
                k.task_duration,
                k.next_task_failures.pop_front(),
                k.task_limit_per_key,
            )
        };
        {
            // counting the key's live tasks and adding one is one step
            let mut tasks = lock(&self.tasks);
            let live = tasks
                .values()
                .filter(|t| {
                    t.owner == owner && matches!(t.phase(), Phase::Queued | Phase::Running(_))
                })
                .count();
            if limit.is_some_and(|max| live >= max) {
                lock(&self.counters).over_limit += 1;
                return Err(self.failure(VendorFailure::RateLimited {
                    retry_after_secs: 1,
                }));
            }
            tasks.insert(
                id.clone(),
                VTask {
                    submitted: Instant::now(),
                    duration,
                    forced,
                    cancelled: false,
                    video,
                    model: model.to_owned(),
                    owner,
                },
            );
            let live_all = tasks
                .values()
                .filter(|t| matches!(t.phase(), Phase::Queued | Phase::Running(_)))
                .count();
            let mut c = lock(&self.counters);
            c.peak_live = c.peak_live.max(live_all);
        }
        lock(&self.order).push(id);
        let mut c = lock(&self.counters);
        c.submits += 1;
        c.bodies.push(body);
        Ok(())
    }

    /// Waits while submits are held.
    pub(crate) async fn hold(&self) {
        self.hold.wait().await;
    }

    pub(crate) fn phase(&self, id: &str) -> Option<Phase> {
        lock(&self.tasks).get(id).map(VTask::phase)
    }

    pub(crate) fn model_of(&self, id: &str) -> Option<String> {
        lock(&self.tasks).get(id).map(|t| t.model.clone())
    }

    /// Marks a task cancelled (counted); false when there is no such task.
    pub(crate) fn cancel(&self, id: &str) -> bool {
        let found = match lock(&self.tasks).get_mut(id) {
            Some(t) => {
                t.cancelled = true;
                true
            }
            None => false,
        };
        if found {
            lock(&self.counters).cancels += 1;
        }
        found
    }

    /// The URL of a task's result file (no auth needed, like a CDN).
    pub(crate) fn file_url(&self, id: &str) -> String {
        let video = lock(&self.tasks).get(id).is_some_and(|t| t.video);
        format!(
            "{}/files/{id}.{}",
            self.root,
            if video { "mp4" } else { "png" }
        )
    }

    pub(crate) fn is_video(&self, id: &str) -> bool {
        lock(&self.tasks).get(id).is_some_and(|t| t.video)
    }
}

/// `GET /files/{name}`: a task's result, an MP4 or a PNG.
pub(crate) async fn file(State(shared): State<Arc<VShared>>, Path(name): Path<String>) -> Response {
    {
        let mut c = lock(&shared.counters);
        *c.calls.entry("file").or_default() += 1;
    }
    let id = name.rsplit_once('.').map_or(name.as_str(), |(id, _)| id);
    if shared.phase(id).is_none() {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    }
    let made = if shared.is_video(id) {
        media::video().await.map(|b| (b, "video/mp4"))
    } else {
        media::png(64, 64).await.map(|b| (b, "image/png"))
    };
    match made {
        Ok((bytes, ct)) => ([(header::CONTENT_TYPE, ct)], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

/// Parses a JSON body or answers 400.
pub(crate) fn json_body(body: &Bytes) -> Result<serde_json::Value, Response> {
    serde_json::from_slice(body)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")).into_response())
}

/// A new vendor-style id.
pub(crate) fn new_id() -> String {
    ulid::Ulid::new().to_string().to_lowercase()
}

/// A running fake vendor; it stops when dropped.
pub struct FakeVendor {
    shared: Arc<VShared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

impl FakeVendor {
    /// Starts one on a free port of 127.0.0.1.
    ///
    /// # Panics
    /// If no port of 127.0.0.1 can be bound (a broken test machine).
    pub async fn start(kind: FakeVendorKind) -> Self {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("binding 127.0.0.1:0 for a fake vendor");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(VShared {
            kind,
            root: format!("http://{addr}"),
            knobs: Mutex::new(Knobs {
                task_duration: Duration::from_millis(300),
                task_limit_per_key: None,
                next_failures: VecDeque::new(),
                next_task_failures: VecDeque::new(),
            }),
            counters: Mutex::new(Counters::default()),
            tasks: Mutex::new(HashMap::new()),
            order: Mutex::new(Vec::new()),
            hold: SubmitHold::default(),
            webhook_mode: Mutex::new(WebhookMode::Send),
            webhook_deliveries: Mutex::new(Vec::new()),
        });
        let vendor = match kind {
            FakeVendorKind::Fal => fal::router(),
            FakeVendorKind::Replicate => replicate::router(),
            FakeVendorKind::Runway => runway::router(),
            FakeVendorKind::Kie => kie::router(),
            FakeVendorKind::ComfyUi => comfyui::router(),
        };
        let app = Router::new()
            .route("/files/{name}", get(file))
            .route(
                "/.well-known/jwks.json",
                get(|| async { axum::Json(webhooks::fal_jwks()) }),
            )
            .merge(vendor)
            .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
            .with_state(shared.clone());
        let shutdown = crate::spawn_server(listener, app, "fake vendor");
        tracing::info!(%addr, ?kind, "fake vendor listening");
        Self {
            shared,
            addr,
            shutdown: Some(shutdown),
        }
    }

    /// The base URL a genq provider of this kind is configured with (fal and KIE
    /// and ComfyUI: the root; Replicate and Runway: `/v1`).
    pub fn base_url(&self) -> String {
        match self.shared.kind {
            FakeVendorKind::Replicate | FakeVendorKind::Runway => {
                format!("{}/v1", self.shared.root)
            }
            _ => self.shared.root.clone(),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn root_url(&self) -> String {
        self.shared.root.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn kind(&self) -> FakeVendorKind {
        self.shared.kind
    }

    /// The next `n` calls (any endpoint but result files) fail with `failure`.
    pub fn fail_next(&self, n: usize, failure: VendorFailure) {
        lock(&self.shared.knobs)
            .next_failures
            .extend(std::iter::repeat_n(failure, n));
    }

    /// The next task created fails this way when its time is up.
    pub fn fail_next_task(&self, failure: VendorTaskFailure) {
        lock(&self.shared.knobs)
            .next_task_failures
            .push_back(failure);
    }

    /// Tasks created from now on finish this long after their submit (default 300 ms).
    pub fn set_task_duration(&self, duration: Duration) {
        lock(&self.shared.knobs).task_duration = duration;
    }

    /// At most `limit` live tasks (queued or running) per API key; a submit over it
    /// is answered with the vendor's 429 (`Retry-After: 1`). `None`: no limit.
    pub fn set_task_limit_per_key(&self, limit: Option<usize>) {
        lock(&self.shared.knobs).task_limit_per_key = limit;
    }

    /// Submits refused because their key had its limit of live tasks.
    pub fn over_limit_answers(&self) -> usize {
        lock(&self.shared.counters).over_limit
    }

    /// The most tasks live at once, over all keys.
    pub fn peak_tasks_in_flight(&self) -> usize {
        lock(&self.shared.counters).peak_live
    }

    /// While true, a submit creates its task and then waits to answer.
    pub fn hold_submits(&self, hold: bool) {
        self.shared.hold.set(hold);
    }

    /// Tasks created (billable): a ComfyUI prompt looked up again is not created
    /// again, but one queued again (a second `POST /prompt`) is. The submit requests
    /// received are `calls("submit")`.
    pub fn submits(&self) -> usize {
        lock(&self.shared.counters).submits
    }

    /// Tasks cancelled through the vendor's cancel endpoint.
    pub fn cancels(&self) -> usize {
        lock(&self.shared.counters).cancels
    }

    /// HTTP calls received for `label`: `submit`, `poll`, `result`, `cancel`,
    /// `upload`, `queue`, `file` (failed calls included).
    pub fn calls(&self, label: &str) -> usize {
        lock(&self.shared.counters)
            .calls
            .get(label)
            .copied()
            .unwrap_or(0)
    }

    /// Every `Authorization` header value received, in order.
    pub fn auth_headers(&self) -> Vec<String> {
        lock(&self.shared.counters).auth.clone()
    }

    /// The bodies of the submits that created tasks, in order.
    pub fn submitted_bodies(&self) -> Vec<serde_json::Value> {
        lock(&self.shared.counters).bodies.clone()
    }

    /// What the fake does with completion webhooks from now on (default: sends them).
    pub fn set_webhook_mode(&self, mode: WebhookMode) {
        *lock(&self.shared.webhook_mode) = mode;
    }

    /// The HTTP status genq answered each webhook delivery try with (0: no answer).
    pub fn webhook_deliveries(&self) -> Vec<u16> {
        lock(&self.shared.webhook_deliveries).clone()
    }

    /// Where the fake fal's webhook public keys are (its JWKS).
    pub fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.shared.root)
    }

    /// The ids of the tasks created, in order.
    pub fn task_ids(&self) -> Vec<String> {
        lock(&self.shared.order).clone()
    }
}

impl Drop for FakeVendor {
    fn drop(&mut self) {
        self.hold_submits(false);
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
