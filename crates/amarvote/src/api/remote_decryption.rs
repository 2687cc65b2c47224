//! Guardian-side decryption over HTTP: the chunks waiting for a guardian, their
//! ciphertexts, and the upload of its shares (reference JSON), each with the guardian's token.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{reference_body, require_bearer, ApiResult, AppState};
use crate::service::operations::decrypt::Shares;
use crate::service::remote_decryption::{self, RemoteChunk};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/jobs/{job}/guardians/{guardian}/chunks", get(waiting))
        .route(
            "/api/jobs/{job}/chunks/{index}/ciphertexts",
            get(ciphertexts),
        )
        .route("/api/jobs/{job}/chunks/{index}/shares", post(upload))
}

async fn waiting(
    State(app): State<AppState>,
    Path((job, guardian)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<RemoteChunk>>> {
    let token = require_bearer(&headers)?;
    Ok(Json(
        remote_decryption::waiting_chunks(&app, &job, &guardian, token).await?,
    ))
}

async fn ciphertexts(
    State(app): State<AppState>,
    Path((job, index)): Path<(String, u64)>,
    headers: HeaderMap,
) -> ApiResult<([(HeaderName, &'static str); 1], String)> {
    let token = require_bearer(&headers)?;
    let objects = remote_decryption::chunk_ciphertexts(&app, &job, index, token).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        electionguard::json::to_reference_json(&objects),
    ))
}

async fn upload(
    State(app): State<AppState>,
    Path((job, index)): Path<(String, u64)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let token = require_bearer(&headers)?;
    let shares: Shares = reference_body(&body)?;
    remote_decryption::upload_shares(&app, &job, index, token, shares).await?;
    Ok(Json(
        json!({ "job_id": job, "chunk": index, "state": "done" }),
    ))
}
