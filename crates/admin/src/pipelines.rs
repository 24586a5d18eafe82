//! Pipelines in the admin: counts and lists by state, one in full (its stage
//! timeline), answering a gate, cancelling.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, State},
};
use genq_pipeline::{
    PipelineCancel, PipelineClient, PipelineCounts, PipelineError, PipelineState, PipelineSummary,
    PipelineView,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    AdminState,
    error::{ApiError, ApiJson, ApiQuery, ErrorBody},
};

type S = State<Arc<AdminState>>;
type ApiResult<T> = Result<Json<T>, ApiError>;

pub(crate) fn routes(router: OpenApiRouter<Arc<AdminState>>) -> OpenApiRouter<Arc<AdminState>> {
    router
        .routes(routes!(list_pipelines))
        .routes(routes!(get_pipeline))
        .routes(routes!(signal_pipeline))
        .routes(routes!(cancel_pipeline))
}

impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::BadInput(_) => ApiError::bad_request(e.to_string()),
            PipelineError::UnknownPipeline(_) | PipelineError::UnknownType(_) => {
                ApiError::not_found(e.to_string())
            }
            PipelineError::Queue(q) => q.into(),
            other => ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                other.to_string(),
            ),
        }
    }
}

fn client(state: &AdminState) -> PipelineClient {
    PipelineClient::new(state.queue.clone())
}

fn valid_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 64 || id.contains([':', '{', '}', ' ']) {
        return Err(ApiError::bad_request(format!(
            "'{id}' is not a pipeline id (1-64 characters without ':', braces or spaces)"
        )));
    }
    Ok(())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// queued, active, parked or finished; counts of each when absent.
    state: Option<String>,
    /// At most this many (1-1000, default 50).
    limit: Option<usize>,
}

/// Pipelines in a state, newest first (with their counts).
#[derive(Debug, Serialize, ToSchema)]
pub struct PipelineList {
    #[schema(value_type = Object)]
    counts: PipelineCounts,
    state: Option<String>,
    #[schema(value_type = Vec<Object>)]
    pipelines: Vec<PipelineSummary>,
}

/// Pipelines by state.
#[utoipa::path(get, path = "/api/pipelines", tag = "pipelines", params(ListQuery),
    responses((status = 200, body = PipelineList), (status = 400, body = ErrorBody)))]
async fn list_pipelines(
    State(state): S,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<PipelineList> {
    let c = client(&state);
    let counts = c.counts().await?;
    let pipelines = match &q.state {
        Some(s) => {
            let st: PipelineState = s.parse().map_err(ApiError::bad_request)?;
            c.list(st, q.limit.unwrap_or(50)).await?
        }
        None => Vec::new(),
    };
    Ok(Json(PipelineList {
        counts,
        state: q.state,
        pipelines,
    }))
}

/// A pipeline in full.
#[derive(Debug, Serialize, ToSchema)]
pub struct PipelineDetail {
    #[schema(value_type = Object)]
    pipeline: PipelineView,
}

/// One pipeline: its stages with their times, each job's status, progress and
/// attempts, the open gate and its deadline, outputs so far.
#[utoipa::path(get, path = "/api/pipelines/{id}", tag = "pipelines", params(("id" = String, Path)),
    responses((status = 200, body = PipelineDetail), (status = 404, body = ErrorBody)))]
async fn get_pipeline(State(state): S, Path(id): Path<String>) -> ApiResult<PipelineDetail> {
    valid_id(&id)?;
    match client(&state).view(&id).await? {
        Some(pipeline) => Ok(Json(PipelineDetail { pipeline })),
        None => Err(ApiError::not_found(format!(
            "no pipeline {id} (unknown, or its data expired)"
        ))),
    }
}

/// An answer to a gate.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalRequest {
    /// The gate's name.
    gate: String,
    /// One of the gate's choices (`approve`, `cancel`, …).
    choice: String,
    /// A small JSON body passed on to the next stage.
    #[serde(default)]
    #[schema(value_type = Object)]
    body: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignalAnswer {
    accepted: bool,
    choice: String,
    waited_ms: u64,
}

/// Answers a gate. Idempotent: the first answer wins; a gate that is not open
/// answers 409 with the reason (not reached yet, already answered, ended), an
/// unknown gate or choice 422, an unknown pipeline 404.
#[utoipa::path(post, path = "/api/pipelines/{id}/signal", tag = "pipelines", params(("id" = String, Path)),
    request_body = SignalRequest,
    responses((status = 200, body = SignalAnswer), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn signal_pipeline(
    State(state): S,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<SignalRequest>,
) -> ApiResult<SignalAnswer> {
    use genq_pipeline::SignalRefused as R;
    valid_id(&id)?;
    match client(&state)
        .signal(&id, &req.gate, &req.choice, &req.body)
        .await?
    {
        Ok(a) => Ok(Json(SignalAnswer {
            accepted: true,
            choice: a.choice,
            waited_ms: a.waited_ms,
        })),
        Err(refused) => Err(match &refused {
            R::UnknownPipeline => ApiError::not_found(refused.to_string()),
            R::NoSuchGate | R::BadChoice { .. } => ApiError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                refused.to_string(),
            ),
            R::NotOpenYet | R::AlreadyDecided { .. } | R::Finished { .. } => {
                ApiError::conflict(refused.to_string())
            }
        }),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Cancelled {
    ok: bool,
    message: String,
}

/// Cancels a pipeline: its running jobs are stopped; a paid one is refunded once.
#[utoipa::path(post, path = "/api/pipelines/{id}/cancel", tag = "pipelines", params(("id" = String, Path)),
    responses((status = 200, body = Cancelled), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn cancel_pipeline(State(state): S, Path(id): Path<String>) -> ApiResult<Cancelled> {
    valid_id(&id)?;
    match client(&state)
        .cancel(&id, "cancelled by an operator (admin)")
        .await?
    {
        PipelineCancel::Cancelled => Ok(Json(Cancelled {
            ok: true,
            message: format!("pipeline {id} cancelled"),
        })),
        PipelineCancel::Missing => Err(ApiError::not_found(format!("no pipeline {id}"))),
        PipelineCancel::AlreadyEnded(o) => Err(ApiError::conflict(format!(
            "pipeline {id} had already ended: {o}"
        ))),
    }
}
