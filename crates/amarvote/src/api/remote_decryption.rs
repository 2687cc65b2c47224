//! Guardian-side decryption over HTTP: the chunks waiting for a guardian, their
//! ciphertexts, and the upload of its shares (reference JSON), each with the guardian's token.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderName};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::edge::{reference_body, ApiResult, AppState, Bearer};
use super::openapi::ErrorBody;
use super::params::{ChunkPath, JobGuardianPath};
use crate::domain::ChunkState;
use crate::service::operations::decrypt::Shares;
use crate::service::remote_decryption::{self, RemoteChunk};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(waiting))
        .routes(routes!(ciphertexts))
        .routes(routes!(upload))
}

/// The chunks of a decryption job waiting for this guardian's own machine. Guardian
/// token only.
#[utoipa::path(get, path = "/api/jobs/{job}/guardians/{guardian}/chunks", tag = "decryption",
    params(JobGuardianPath), security(("bearer" = [])),
    responses((status = 200, description = "Waiting chunks", body = Vec<RemoteChunk>),
        (status = 409, description = "The job is not a running decryption", body = ErrorBody)))]
async fn waiting(
    State(app): State<AppState>,
    Path(JobGuardianPath { job, guardian }): Path<JobGuardianPath>,
    Bearer(token): Bearer,
) -> ApiResult<Json<Vec<RemoteChunk>>> {
    Ok(Json(
        remote_decryption::waiting_chunks(&app, &job, &guardian, &token).await?,
    ))
}

/// The ciphertexts a waiting chunk covers (reference JSON). Its guardian's token only.
#[utoipa::path(get, path = "/api/jobs/{job}/chunks/{index}/ciphertexts", tag = "decryption",
    params(ChunkPath), security(("bearer" = [])),
    responses((status = 200, description = "Object ids with their contests' ciphertexts", body = Vec<Object>),
        (status = 409, description = "The chunk is not waiting for a guardian", body = ErrorBody)))]
async fn ciphertexts(
    State(app): State<AppState>,
    Path(ChunkPath { job, index }): Path<ChunkPath>,
    Bearer(token): Bearer,
) -> ApiResult<([(HeaderName, &'static str); 1], String)> {
    let objects = remote_decryption::chunk_ciphertexts(&app, &job, index, &token).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        electionguard::json::to_reference_json(&objects),
    ))
}

#[derive(Serialize, ToSchema)]
struct UploadedShares {
    job_id: String,
    chunk: u64,
    state: ChunkState,
}

/// A guardian uploads a chunk's shares with their proofs (reference JSON), checked before
/// they are stored. Its guardian's token only.
#[utoipa::path(post, path = "/api/jobs/{job}/chunks/{index}/shares", tag = "decryption",
    params(ChunkPath),
    request_body(content = Object, description = "Decryption shares (or compensated shares) with Chaum-Pedersen proofs"),
    security(("bearer" = [])),
    responses((status = 200, description = "Checked and stored", body = UploadedShares),
        (status = 409, description = "The chunk is not waiting, or a proof does not verify", body = ErrorBody)))]
async fn upload(
    State(app): State<AppState>,
    Path(ChunkPath { job, index }): Path<ChunkPath>,
    Bearer(token): Bearer,
    body: Bytes,
) -> ApiResult<Json<UploadedShares>> {
    let shares: Shares = reference_body(&body)?;
    remote_decryption::upload_shares(&app, &job, index, &token, shares).await?;
    Ok(Json(UploadedShares {
        job_id: job,
        chunk: index,
        state: ChunkState::Done,
    }))
}
