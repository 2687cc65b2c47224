//! Jobs: start (202 + job id), status, a server-sent event stream of progress, stop and
//! resume (which also retries dead-lettered chunks).

use std::convert::Infallible;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::Stream;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{parse_body, require_admin, ApiError, ApiResult, AppState};
use crate::domain::JobKind;
use crate::service::jobs::{self, JobStatus};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/elections/{id}/jobs", post(start).get(list))
        .route("/api/jobs/{job}", get(status))
        .route("/api/jobs/{job}/events", get(events))
        .route("/api/jobs/{job}/stop", post(stop))
        .route("/api/jobs/{job}/resume", post(resume))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartJob {
    kind: String,
}

async fn start(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_admin(&app, &headers)?;
    let body: StartJob = parse_body(&body)?;
    let kind = JobKind::parse(&body.kind)
        .ok_or_else(|| ApiError::bad_request("kind: must be tally, decrypt, combine or verify"))?;
    let job = jobs::start(&app, &id, kind).await?;
    let url = format!("/api/jobs/{}", job.id);
    Ok((
        StatusCode::ACCEPTED,
        Json(
            json!({ "job_id": job.id, "kind": kind, "total_chunks": job.total_chunks, "status_url": url }),
        ),
    ))
}

/// The election's jobs, newest first, with their progress.
async fn list(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    app.election(&id).await?;
    let mut list = Vec::new();
    for job in app.store.election_jobs(&id).await? {
        list.push(jobs::status(&app, &job.id, false).await?);
    }
    Ok(Json(json!({ "election_id": id, "jobs": list })))
}

#[derive(Deserialize)]
struct StatusQuery {
    #[serde(default)]
    chunks: bool,
}

async fn status(
    State(app): State<AppState>,
    Path(job): Path<String>,
    Query(q): Query<StatusQuery>,
) -> ApiResult<Json<JobStatus>> {
    Ok(Json(jobs::status(&app, &job, q.chunks).await?))
}

/// One `progress` event whenever the job's counts change, and a last one when it ends.
/// Every stream of a job reads one shared poller (see [`jobs::follow`]).
async fn events(
    State(app): State<AppState>,
    Path(job): Path<String>,
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

async fn stop(
    State(app): State<AppState>,
    Path(job): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    require_admin(&app, &headers)?;
    jobs::stop(&app, &job).await?;
    Ok(Json(json!({ "job_id": job, "state": "stopped" })))
}

async fn resume(
    State(app): State<AppState>,
    Path(job): Path<String>,
    headers: HeaderMap,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_admin(&app, &headers)?;
    jobs::resume(&app, &job).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "job_id": job, "state": "running" })),
    ))
}
