//! The queue-style endpoints under `/queue`: submit a task, poll it, download its file.
//!
//! A task is `queued` for the first tenth of its duration, `running` (progress
//! growing with time) until its duration has passed since submit, then `succeeded`
//! or `failed`. Its file is made in the background right after submit; a task whose
//! time is up but whose file is not ready yet stays `running`.

use std::{sync::Arc, time::Duration};

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{
    Shared,
    failure::{ApiError, TaskErrorCode},
    lock,
    media::{self, FileData, MAX_SIDE},
    parse_json,
};

/// A submitted task.
pub(crate) struct Task {
    submitted: Instant,
    duration: Duration,
    /// Scripted with `fail_next_task`: the task ends `failed` with this code.
    forced: Option<TaskErrorCode>,
    output: Output,
    /// The bearer key that submitted it (per-key limits).
    pub(crate) key: Option<String>,
}

/// The task's file, once made.
enum Output {
    Pending,
    Ready(FileData),
    /// Making the file failed (code `internal`).
    Failed(String),
}

/// Where a task is, as a poll sees it.
enum Status<'a> {
    Queued,
    Running(u64),
    Succeeded(&'a FileData),
    Failed(&'static str, String),
}

impl Task {
    pub(crate) fn new(duration: Duration, forced: Option<TaskErrorCode>) -> Self {
        Self {
            submitted: Instant::now(),
            duration,
            forced,
            output: Output::Pending,
            key: None,
        }
    }

    /// Not ended yet (queued or running).
    pub(crate) fn is_live(&self, never_finish: bool) -> bool {
        matches!(
            self.status(never_finish),
            Status::Queued | Status::Running(_)
        )
    }

    fn status(&self, never_finish: bool) -> Status<'_> {
        let elapsed = self.submitted.elapsed();
        if elapsed < self.duration / 10 {
            return Status::Queued;
        }
        let percent = (elapsed.as_millis() * 100)
            .checked_div(self.duration.as_millis())
            .unwrap_or(100);
        let running = Status::Running(percent.clamp(1, 99) as u64);
        if never_finish || elapsed < self.duration {
            return running;
        }
        if let Some(code) = self.forced {
            return Status::Failed(
                code.as_str(),
                "the task failed (scripted by the fake provider)".to_owned(),
            );
        }
        match &self.output {
            Output::Pending => running,
            Output::Ready(file) => Status::Succeeded(file),
            Output::Failed(message) => Status::Failed("internal", message.clone()),
        }
    }
}

/// What a task makes, decided when its input is validated.
enum Work {
    Png { width: u32, height: u32 },
    Video,
}

#[derive(Deserialize)]
struct SubmitRequest {
    kind: String,
    #[serde(default)]
    input: Value,
}

#[derive(Deserialize)]
struct VideoInput {
    prompt: String,
    #[serde(default)]
    image_b64: Option<String>,
}

#[derive(Deserialize)]
struct FaceSwapInput {
    source_b64: String,
    target_b64: String,
}

#[derive(Deserialize)]
struct UpscaleInput {
    image_b64: String,
    factor: u32,
}

#[derive(Deserialize)]
struct ImageInput {
    width: u32,
    height: u32,
}

/// `POST /queue/tasks`: validates the input, records the task, starts making its
/// file. A repeated `Idempotency-Key` gets the task that key created, and nothing
/// new is made or counted. While submits are held, the answer waits (the task is
/// created first).
pub(crate) async fn submit(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let idempotency_key = headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(id) = idempotency_key
        .as_deref()
        .and_then(|k| shared.task_for_key(k))
    {
        tracing::debug!(%id, "fake provider: repeated idempotency key, the same task");
        shared.hold.wait().await;
        return Ok(Json(json!({ "id": id })).into_response());
    }
    let req: SubmitRequest = parse_json(&body)?;
    let work = tokio::task::spawn_blocking(move || validate(&req.kind, req.input))
        .await
        .map_err(|e| ApiError::internal(format!("validating the input failed: {e}")))?
        .map_err(ApiError::bad_request)?;
    let owner = super::bearer_key(&headers);
    let (id, created) =
        match shared.create_task_limited(idempotency_key.as_deref(), owner.as_deref()) {
            Ok(made) => made,
            // the key's tasks in flight are at the limit
            Err(refused) => return Ok(refused.response()),
        };
    if created {
        tracing::debug!(%id, "fake provider: task submitted");
        tokio::spawn(produce(shared.clone(), id.clone(), work));
    }
    shared.hold.wait().await;
    Ok(Json(json!({ "id": id })).into_response())
}

/// The header a submit's idempotency key comes in.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Checks a task's input for its kind (decodes images: blocking).
fn validate(kind: &str, input: Value) -> Result<Work, String> {
    let png =
        |width: u32, height: u32| check_dims(width, height).map(|()| Work::Png { width, height });
    match kind {
        "video" => {
            let input: VideoInput = input_of(kind, input)?;
            if input.prompt.trim().is_empty() {
                return Err("`input.prompt` must not be empty".to_owned());
            }
            if let Some(b64) = &input.image_b64 {
                media::decode_image("input.image_b64", b64)?;
            }
            Ok(Work::Video)
        }
        "face_swap" => {
            let input: FaceSwapInput = input_of(kind, input)?;
            media::decode_image("input.source_b64", &input.source_b64)?;
            let (width, height) = media::decode_image("input.target_b64", &input.target_b64)?;
            png(width, height)
        }
        "upscale" => {
            let input: UpscaleInput = input_of(kind, input)?;
            if input.factor != 2 && input.factor != 4 {
                return Err(format!(
                    "`input.factor` must be 2 or 4, got {}",
                    input.factor
                ));
            }
            let (width, height) = media::decode_image("input.image_b64", &input.image_b64)?;
            png(
                width.saturating_mul(input.factor),
                height.saturating_mul(input.factor),
            )
        }
        "image" => {
            let input: ImageInput = input_of(kind, input)?;
            png(input.width, input.height)
        }
        other => Err(format!(
            "unknown `kind` {other:?} (expected video, face_swap, upscale or image)"
        )),
    }
}

/// Deserializes `input` for `kind`, naming the problem when it does not fit.
fn input_of<T: serde::de::DeserializeOwned>(kind: &str, input: Value) -> Result<T, String> {
    serde_json::from_value(input).map_err(|e| format!("`input` for kind {kind}: {e}"))
}

fn check_dims(width: u32, height: u32) -> Result<(), String> {
    let range = 1..=MAX_SIDE;
    if range.contains(&width) && range.contains(&height) {
        Ok(())
    } else {
        Err(format!(
            "the result would be {width}x{height}; both sides must be in 1..={MAX_SIDE}"
        ))
    }
}

/// Makes the task's file and stores it in the task.
async fn produce(shared: Arc<Shared>, id: String, work: Work) {
    let made = match work {
        Work::Png { width, height } => media::png(width, height).await.map(|bytes| FileData {
            bytes,
            content_type: "image/png",
        }),
        Work::Video => media::video().await.map(|bytes| FileData {
            bytes,
            content_type: "video/mp4",
        }),
    };
    let output = match made {
        Ok(file) => Output::Ready(file),
        Err(message) => {
            tracing::warn!(%id, %message, "fake provider: making a task's file failed");
            Output::Failed(message)
        }
    };
    if let Some(task) = lock(&shared.tasks).get_mut(&id) {
        task.output = output;
    }
}

/// `GET /queue/tasks/{id}`.
pub(crate) async fn poll(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let never_finish = shared.never_finish();
    let tasks = lock(&shared.tasks);
    let task = tasks
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("no task with id {id:?}")))?;
    let body = match task.status(never_finish) {
        Status::Queued => json!({ "id": id, "status": "queued", "progress": 0 }),
        Status::Running(progress) => json!({ "id": id, "status": "running", "progress": progress }),
        Status::Succeeded(file) => json!({
            "id": id,
            "status": "succeeded",
            "progress": 100,
            "result": {
                "url": format!("{}/queue/files/{id}", shared.base_url),
                "content_type": file.content_type
            }
        }),
        Status::Failed(code, message) => json!({
            "id": id,
            "status": "failed",
            "error": { "code": code, "message": message }
        }),
    };
    Ok(Json(body))
}

/// `GET /queue/files/{id}`: a succeeded task's file.
pub(crate) async fn file(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let never_finish = shared.never_finish();
    let tasks = lock(&shared.tasks);
    match tasks.get(&id).map(|t| t.status(never_finish)) {
        Some(Status::Succeeded(file)) => Ok((
            [(header::CONTENT_TYPE, file.content_type)],
            file.bytes.clone(),
        )
            .into_response()),
        Some(_) => Err(ApiError::not_found(format!(
            "task {id:?} has not succeeded: no file"
        ))),
        None => Err(ApiError::not_found(format!("no file with id {id:?}"))),
    }
}
