//! Jobs: start (202 + job id), status, a server-sent event stream of progress, stop and
//! resume (which also retries dead-lettered chunks).

use std::convert::Infallible;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures_util::stream::Stream;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::edge::{parse_body, Admin, ApiResult, AppState};
use super::openapi::ErrorBody;
use super::params::{ElectionId, JobId};
use crate::domain::{JobKind, JobState};
use crate::service::jobs::{self, JobStatus};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start, list_jobs))
        .routes(routes!(job_status))
        .routes(routes!(events))
        .routes(routes!(stop))
        .routes(routes!(resume))
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartJob {
    pub kind: JobKind,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct StartedJob {
    pub job_id: String,
    pub kind: JobKind,
    pub total_chunks: u64,
    /// Where to follow it.
    pub status_url: String,
}

/// Starts a job: planned and queued at once, done by the workers chunk by chunk.
/// Administrator only.
#[utoipa::path(post, path = "/api/elections/{id}/jobs", tag = "jobs", params(ElectionId),
    request_body = StartJob, security(("bearer" = [])),
    responses((status = 202, description = "Started", body = StartedJob),
        (status = 409, description = "The election is not at this step, or such a job runs", body = ErrorBody)))]
async fn start(
    State(app): State<AppState>,
    Path(ElectionId { id }): Path<ElectionId>,
    _admin: Admin,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<StartedJob>)> {
    let StartJob { kind } = parse_body(&body)?;
    let job = jobs::start(&app, &id, kind).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(StartedJob {
            status_url: format!("/api/jobs/{}", job.id),
            job_id: job.id.into(),
            kind,
            total_chunks: job.total_chunks,
        }),
    ))
}

#[derive(Serialize, ToSchema)]
struct JobList {
    election_id: String,
    /// Newest first.
    jobs: Vec<JobStatus>,
}

/// The election's jobs, newest first, with their progress.
#[utoipa::path(get, path = "/api/elections/{id}/jobs", tag = "jobs", params(ElectionId),
    responses((status = 200, description = "The jobs", body = JobList)))]
async fn list_jobs(
    State(app): State<AppState>,
    Path(ElectionId { id }): Path<ElectionId>,
) -> ApiResult<Json<JobList>> {
    app.election(&id).await?;
    let mut list = Vec::new();
    for job in app.store.election_jobs(&id).await? {
        list.push(jobs::status(&app, &job.id, false).await?);
    }
    Ok(Json(JobList {
        election_id: id,
        jobs: list,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct StatusQuery {
    /// Also list every chunk with its state.
    #[serde(default)]
    chunks: bool,
}

/// A job's progress.
#[utoipa::path(get, path = "/api/jobs/{job}", tag = "jobs", params(JobId, StatusQuery),
    responses((status = 200, description = "The job", body = JobStatus)))]
async fn job_status(
    State(app): State<AppState>,
    Path(JobId { job }): Path<JobId>,
    Query(q): Query<StatusQuery>,
) -> ApiResult<Json<JobStatus>> {
    Ok(Json(jobs::status(&app, &job, q.chunks).await?))
}

/// A server-sent event stream: one `progress` event (a `JobStatus`) whenever the job's
/// counts change, and a last one when it ends. Every stream of a job reads one shared
/// poller (see [`jobs::follow`]).
#[utoipa::path(get, path = "/api/jobs/{job}/events", tag = "jobs", params(JobId),
    responses((status = 200, description = "`progress` events, each a JobStatus", content_type = "text/event-stream", body = String),
        (status = 429, description = "Too many streams are open; poll instead", body = ErrorBody)))]
async fn events(
    State(app): State<AppState>,
    Path(JobId { job }): Path<JobId>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let follower = jobs::follow(&app, &job).await?;
    let stream =
        futures_util::stream::unfold((follower, true), |(mut follower, first)| async move {
            if !first && follower.updates.changed().await.is_err() {
                return None;
            }
            let text = loop {
                if let Some(text) = follower.updates.borrow_and_update().clone() {
                    break text;
                }
                follower.updates.changed().await.ok()?;
            };
            let event = Event::default().event("progress").data(text);
            Some((Ok(event), (follower, false)))
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct JobStateChange {
    pub job_id: String,
    pub state: JobState,
}

/// Stops a running job: chunks in progress finish, no new ones start. Administrator only.
#[utoipa::path(post, path = "/api/jobs/{job}/stop", tag = "jobs", params(JobId),
    security(("bearer" = [])),
    responses((status = 200, description = "Stopped", body = JobStateChange),
        (status = 409, description = "The job is not running", body = ErrorBody)))]
async fn stop(
    State(app): State<AppState>,
    Path(JobId { job }): Path<JobId>,
    _admin: Admin,
) -> ApiResult<Json<JobStateChange>> {
    jobs::stop(&app, &job).await?;
    Ok(Json(JobStateChange {
        job_id: job,
        state: JobState::Stopped,
    }))
}

/// Resumes a stopped or failed job, retrying its dead-lettered chunks. Administrator only.
#[utoipa::path(post, path = "/api/jobs/{job}/resume", tag = "jobs", params(JobId),
    security(("bearer" = [])),
    responses((status = 202, description = "Running again", body = JobStateChange),
        (status = 409, description = "The job is running or done", body = ErrorBody)))]
async fn resume(
    State(app): State<AppState>,
    Path(JobId { job }): Path<JobId>,
    _admin: Admin,
) -> ApiResult<(StatusCode, Json<JobStateChange>)> {
    jobs::resume(&app, &job).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(JobStateChange {
            job_id: job,
            state: JobState::Running,
        }),
    ))
}
