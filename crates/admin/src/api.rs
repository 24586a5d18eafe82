//! The `/api` handlers. Each carries its OpenAPI description (`utoipa::path`); the
//! router registers exactly the documented handlers (`routes!`).

use std::{sync::Arc, time::Duration};

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use genq_core::JobState;
use genq_redis::{CancelOutcome, DeleteOutcome, JobList, QueueStats};
use genq_runtime::EnqueueOptions;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    AdminState,
    error::{ApiError, ApiJson, ApiQuery, ErrorBody},
};

type S = State<Arc<AdminState>>;
type ApiResult<T> = Result<Json<T>, ApiError>;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "genq admin API",
        description = "Queues, jobs, dead letters, workers, API keys, user statistics, and users' credits (grants, deductions, ledger, payments, refunds). Every /api call needs `Authorization: Bearer <GENQ_ADMIN_TOKEN>`."
    ),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

pub(crate) fn routes() -> OpenApiRouter<Arc<AdminState>> {
    use utoipa::OpenApi;
    let router = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list_queues))
        .routes(routes!(list_jobs))
        .routes(routes!(get_job, delete_job))
        .routes(routes!(enqueue))
        .routes(routes!(retry_job))
        .routes(routes!(cancel_job))
        .routes(routes!(list_dead))
        .routes(routes!(retry_all_dead))
        .routes(routes!(pause_queue))
        .routes(routes!(resume_queue))
        .routes(routes!(list_workers))
        .routes(routes!(list_keys))
        .routes(routes!(user_stats));
    crate::pipelines::routes(crate::credits::routes(router))
}

/// A queue name that exists (has been pushed to or served).
async fn known_queue(state: &AdminState, queue: &str) -> Result<(), ApiError> {
    genq_core::validate_queue_name(queue).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let known = state.queue.queues().await?;
    if known.contains(queue) {
        Ok(())
    } else {
        let list = known.into_iter().collect::<Vec<_>>().join(", ");
        Err(ApiError::not_found(format!(
            "unknown queue '{queue}' (known: {list})"
        )))
    }
}

fn valid_id(id: &str) -> Result<(), ApiError> {
    if !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_:.".contains(&b))
    {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!("'{id}' is not a job id")))
    }
}

/// Paging: `offset` (default 0, at most 100000) and `limit` (default 50, 1-500).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    #[serde(default)]
    offset: usize,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    50
}

impl Paging {
    fn check(&self) -> Result<(), ApiError> {
        if self.limit == 0 || self.limit > 500 {
            return Err(ApiError::bad_request(format!(
                "limit must be 1-500, got {}",
                self.limit
            )));
        }
        if self.offset > 100_000 {
            return Err(ApiError::bad_request(format!(
                "offset must be at most 100000, got {}",
                self.offset
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// ready, scheduled, running or dead.
    list: String,
    #[serde(default)]
    offset: usize,
    #[serde(default = "default_limit")]
    limit: usize,
}

/// A page of jobs.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobPage {
    #[schema(value_type = Vec<Object>)]
    jobs: Vec<JobState>,
    offset: usize,
    limit: usize,
    total: u64,
}

/// A job in full, with its timeline.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobDetail {
    #[schema(value_type = Object)]
    job: JobState,
    timeline: Vec<TimelineEntry>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TimelineEntry {
    event: &'static str,
    at_ms: u64,
}

fn timeline(job: &JobState) -> Vec<TimelineEntry> {
    let mut t: Vec<TimelineEntry> = [
        ("enqueued", job.enqueued_at_ms),
        ("started", job.started_at_ms),
        ("due", job.due_at_ms),
        ("finished", job.finished_at_ms),
    ]
    .into_iter()
    .filter_map(|(event, at)| at.map(|at_ms| TimelineEntry { event, at_ms }))
    .collect();
    t.sort_by_key(|e| e.at_ms);
    t
}

/// Every queue with its figures.
#[utoipa::path(get, path = "/api/queues", tag = "queues", responses((status = 200, description = "Queue figures", body = Vec<Object>), (status = 401, body = ErrorBody)))]
async fn list_queues(State(state): S) -> ApiResult<Vec<QueueStats>> {
    let mut out = Vec::new();
    for q in state.queue.queues().await? {
        out.push(state.queue.stats(&q).await?);
    }
    Ok(Json(out))
}

/// Jobs of a queue by list (ready, scheduled, running, dead), paged.
#[utoipa::path(get, path = "/api/queues/{queue}/jobs", tag = "jobs", params(("queue" = String, Path), ListQuery),
    responses((status = 200, body = JobPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_jobs(
    State(state): S,
    Path(queue): Path<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<JobPage> {
    known_queue(&state, &queue).await?;
    let list: JobList = q.list.parse().map_err(ApiError::bad_request)?;
    Paging {
        offset: q.offset,
        limit: q.limit,
    }
    .check()?;
    let (jobs, total) = state
        .queue
        .list_jobs(&queue, list, q.offset, q.limit)
        .await?;
    Ok(Json(JobPage {
        jobs,
        offset: q.offset,
        limit: q.limit,
        total,
    }))
}

/// One job in full: payload, attempts, error, result, progress, timeline.
#[utoipa::path(get, path = "/api/queues/{queue}/jobs/{id}", tag = "jobs", params(("queue" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = JobDetail), (status = 404, body = ErrorBody)))]
async fn get_job(
    State(state): S,
    Path((queue, id)): Path<(String, String)>,
) -> ApiResult<JobDetail> {
    known_queue(&state, &queue).await?;
    valid_id(&id)?;
    let job = state.queue.job(&queue, &id).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "no job {id} in queue '{queue}' (unknown, or its data expired)"
        ))
    })?;
    Ok(Json(JobDetail {
        timeline: timeline(&job),
        job,
    }))
}

/// A job to push.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueRequest {
    job_type: String,
    /// The payload, as JSON.
    #[schema(value_type = Object)]
    payload: serde_json::Value,
    /// Another queue than the job type's.
    queue: Option<String>,
    delay_ms: Option<u64>,
    idempotency_key: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Enqueued {
    id: String,
    queue: String,
    /// False when the idempotency key named an existing job.
    created: bool,
}

/// Pushes a job (validated against its job type).
#[utoipa::path(post, path = "/api/jobs", tag = "jobs", request_body = EnqueueRequest,
    responses((status = 201, body = Enqueued), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn enqueue(
    State(state): S,
    ApiJson(req): ApiJson<EnqueueRequest>,
) -> Result<(StatusCode, Json<Enqueued>), ApiError> {
    let queue = match &req.queue {
        Some(q) => q.clone(),
        None => state
            .client
            .registry()
            .queue_of(&req.job_type)
            .map_err(|e| ApiError::bad_request(e.to_string()))?
            .to_owned(),
    };
    let opts = EnqueueOptions {
        delay: req.delay_ms.map(Duration::from_millis),
        idempotency_key: req.idempotency_key,
        queue: req.queue,
        id: None,
    };
    let pushed = state
        .client
        .enqueue_json(&req.job_type, &req.payload.to_string(), opts)
        .await?;
    let status = if pushed.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(Enqueued {
            id: pushed.id,
            queue,
            created: pushed.created,
        }),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Done {
    ok: bool,
    message: String,
}

/// Puts a dead-lettered job back on its queue.
#[utoipa::path(post, path = "/api/queues/{queue}/jobs/{id}/retry", tag = "dead letters", params(("queue" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = Done), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn retry_job(State(state): S, Path((queue, id)): Path<(String, String)>) -> ApiResult<Done> {
    known_queue(&state, &queue).await?;
    valid_id(&id)?;
    if state.queue.retry_dead(&queue, &id).await? {
        return Ok(Json(Done {
            ok: true,
            message: format!("job {id} is queued again"),
        }));
    }
    match state.queue.job(&queue, &id).await? {
        Some(job) => Err(ApiError::conflict(format!(
            "job {id} is {}, not a dead letter",
            job.status
        ))),
        None => Err(ApiError::not_found(format!(
            "no job {id} in queue '{queue}'"
        ))),
    }
}

/// Cancels a queued job, or stops a running one.
#[utoipa::path(post, path = "/api/queues/{queue}/jobs/{id}/cancel", tag = "jobs", params(("queue" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = Done), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn cancel_job(State(state): S, Path((queue, id)): Path<(String, String)>) -> ApiResult<Done> {
    known_queue(&state, &queue).await?;
    valid_id(&id)?;
    match state.queue.cancel(&queue, &id).await? {
        CancelOutcome::Cancelled => Ok(Json(Done {
            ok: true,
            message: format!("job {id} is cancelled"),
        })),
        CancelOutcome::Signalled => Ok(Json(Done {
            ok: true,
            message: format!("job {id} is running; its worker is stopping it"),
        })),
        CancelOutcome::AlreadyFinal(s) => {
            Err(ApiError::conflict(format!("job {id} already ended: {s}")))
        }
        CancelOutcome::NotFound => Err(ApiError::not_found(format!(
            "no job {id} in queue '{queue}'"
        ))),
    }
}

/// Deletes a job that is not running (queued, scheduled, finished or dead).
#[utoipa::path(delete, path = "/api/queues/{queue}/jobs/{id}", tag = "jobs", params(("queue" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = Done), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_job(State(state): S, Path((queue, id)): Path<(String, String)>) -> ApiResult<Done> {
    known_queue(&state, &queue).await?;
    valid_id(&id)?;
    match state.queue.delete(&queue, &id).await? {
        DeleteOutcome::Deleted => Ok(Json(Done {
            ok: true,
            message: format!("job {id} is deleted"),
        })),
        DeleteOutcome::Running => Err(ApiError::conflict(format!(
            "job {id} is running: cancel it first"
        ))),
        DeleteOutcome::NotFound => Err(ApiError::not_found(format!(
            "no job {id} in queue '{queue}'"
        ))),
    }
}

/// Dead letters of a queue, newest first.
#[utoipa::path(get, path = "/api/queues/{queue}/dead", tag = "dead letters", params(("queue" = String, Path), Paging),
    responses((status = 200, body = JobPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_dead(
    State(state): S,
    Path(queue): Path<String>,
    ApiQuery(p): ApiQuery<Paging>,
) -> ApiResult<JobPage> {
    known_queue(&state, &queue).await?;
    p.check()?;
    let (jobs, total) = state
        .queue
        .list_jobs(&queue, JobList::Dead, p.offset, p.limit)
        .await?;
    Ok(Json(JobPage {
        jobs,
        offset: p.offset,
        limit: p.limit,
        total,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Requeued {
    requeued: u64,
}

/// Puts every dead letter of a queue back.
#[utoipa::path(post, path = "/api/queues/{queue}/dead/retry", tag = "dead letters", params(("queue" = String, Path)),
    responses((status = 200, body = Requeued), (status = 404, body = ErrorBody)))]
async fn retry_all_dead(State(state): S, Path(queue): Path<String>) -> ApiResult<Requeued> {
    known_queue(&state, &queue).await?;
    Ok(Json(Requeued {
        requeued: state.queue.retry_all_dead(&queue).await?,
    }))
}

/// Stops workers taking jobs from a queue.
#[utoipa::path(post, path = "/api/queues/{queue}/pause", tag = "queues", params(("queue" = String, Path)),
    responses((status = 200, body = Done), (status = 404, body = ErrorBody)))]
async fn pause_queue(State(state): S, Path(queue): Path<String>) -> ApiResult<Done> {
    known_queue(&state, &queue).await?;
    state.queue.pause(&queue).await?;
    Ok(Json(Done {
        ok: true,
        message: format!("queue '{queue}' is paused"),
    }))
}

/// Lets workers take jobs from a queue again.
#[utoipa::path(post, path = "/api/queues/{queue}/resume", tag = "queues", params(("queue" = String, Path)),
    responses((status = 200, body = Done), (status = 404, body = ErrorBody)))]
async fn resume_queue(State(state): S, Path(queue): Path<String>) -> ApiResult<Done> {
    known_queue(&state, &queue).await?;
    state.queue.resume(&queue).await?;
    Ok(Json(Done {
        ok: true,
        message: format!("queue '{queue}' is resumed"),
    }))
}

/// Worker processes heartbeating on each queue: instance, host, queues, in-flight, last heartbeat.
#[utoipa::path(get, path = "/api/workers", tag = "workers", responses((status = 200, description = "Workers by queue", body = Object)))]
async fn list_workers(State(state): S) -> ApiResult<serde_json::Value> {
    let mut out = serde_json::Map::new();
    for q in state.queue.queues().await? {
        let workers = state.queue.workers(&q).await?;
        out.insert(
            q,
            serde_json::to_value(workers).map_err(ApiError::unavailable)?,
        );
    }
    Ok(Json(serde_json::Value::Object(out)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderKeys {
    provider: String,
    keys: usize,
    /// Keys cooling down (fingerprints only).
    #[schema(value_type = Vec<Object>)]
    cooling: Vec<genq_providers::Cooling>,
    /// Each key's limits shared by every host (in flight now, the in-flight limit
    /// in force — the adaptive one as it moves —, requests and tokens left this
    /// minute); empty when the provider has no limits.
    #[schema(value_type = Vec<Object>)]
    limits: Vec<genq_providers::KeyLimitView>,
}

/// Every provider's API keys, their cool-downs and their limits (fingerprints only, never keys).
#[utoipa::path(get, path = "/api/keys", tag = "providers", responses((status = 200, body = Vec<ProviderKeys>)))]
async fn list_keys(State(state): S) -> ApiResult<Vec<ProviderKeys>> {
    let mut out = Vec::new();
    for pool in &state.keys {
        let cooling = pool.cooling().await.map_err(ApiError::unavailable)?;
        let limits = pool.limit_views().await.map_err(ApiError::unavailable)?;
        out.push(ProviderKeys {
            provider: pool.provider().to_owned(),
            keys: pool.len(),
            cooling,
            limits,
        });
    }
    Ok(Json(out))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// The day the figures are for (YYYY-MM-DD, UTC); today by default.
    #[param(value_type = Option<String>, format = Date)]
    today: Option<chrono::NaiveDate>,
    /// Days of signup cohorts and new users to report (1-90, default 30).
    days: Option<i64>,
}

/// Users: total, active 1/7/30 days, new users per day, D1/D7/D30 retention by signup cohort.
#[utoipa::path(get, path = "/api/stats/users", tag = "users", params(StatsQuery),
    responses((status = 200, description = "User statistics", body = Object), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn user_stats(
    State(state): S,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> ApiResult<serde_json::Value> {
    let store = state.store.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this admin runs without a database",
        )
    })?;
    let days = q.days.unwrap_or(30);
    if !(1..=90).contains(&days) {
        return Err(ApiError::bad_request(format!(
            "days must be 1-90, got {days}"
        )));
    }
    let today = q.today.unwrap_or_else(|| chrono::Utc::now().date_naive());
    let from = today - chrono::Duration::days(days - 1);
    Ok(Json(serde_json::json!({
        "today": today,
        "users": store.user_stats(today).await?,
        "new_users": store.new_users_per_day(from, today).await?,
        "retention": store.retention(from, today).await?,
        "jobs": store.jobs_per_day(from, today).await?,
    })))
}
