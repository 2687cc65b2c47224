//! Ballots: server-side encryption, cast, Benaloh challenge, client-encrypted
//! submission, "verify my vote", and the list of tracking codes.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use electionguard::ballot::{CiphertextBallot, EncryptionDevice};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{reference_body, require_bearer, ApiError, ApiJson, ApiResult, AppState};
use crate::service::ballots::{self, BallotStatus, Choices, EncryptedBallot, Receipt};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/elections/{id}/ballots", post(submit).get(codes))
        .route("/api/elections/{id}/ballots/encrypt", post(encrypt))
        .route("/api/elections/{id}/ballots/{ballot}/cast", post(cast))
        .route(
            "/api/elections/{id}/ballots/{ballot}/challenge",
            post(challenge),
        )
        .route("/api/elections/{id}/tracking/{code}", get(lookup))
        .route("/api/elections/{id}/devices", post(register_device))
}

/// A voter's own encryption device, declared before its first ballot (reference JSON
/// `EncryptionDevice`): 201 when new, 200 when the same device was declared already.
async fn register_device(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let credential = require_bearer(&headers)?;
    let device: EncryptionDevice = reference_body(&body)?;
    let hash = device.hash().to_hex();
    let device_id = device.device_id;
    let new = ballots::register_device(&app, &id, credential, device).await?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({ "device_id": device_id, "device_hash": hash })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EncryptRequest {
    choices: Choices,
}

async fn encrypt(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<EncryptRequest>,
) -> ApiResult<(StatusCode, Json<EncryptedBallot>)> {
    let credential = require_bearer(&headers)?;
    Ok((
        StatusCode::CREATED,
        Json(ballots::encrypt(&app, &id, credential, body.choices).await?),
    ))
}

async fn cast(
    State(app): State<AppState>,
    Path((id, ballot)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Receipt>> {
    Ok(Json(
        ballots::cast(&app, &id, &ballot, require_bearer(&headers)?).await?,
    ))
}

async fn challenge(
    State(app): State<AppState>,
    Path((id, ballot)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Receipt>> {
    Ok(Json(
        ballots::challenge(&app, &id, &ballot, require_bearer(&headers)?).await?,
    ))
}

#[derive(Deserialize)]
struct SubmitQuery {
    #[serde(default)]
    action: Option<String>,
}

/// A ballot encrypted by the voter's device, as reference JSON; `?action=spoil` challenges it.
async fn submit(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<SubmitQuery>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<Receipt>)> {
    let credential = require_bearer(&headers)?;
    let spoil = match query.action.as_deref() {
        None | Some("cast") => false,
        Some("spoil") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "action must be cast or spoil, not {other}"
            )))
        }
    };
    let text =
        std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
    let ballot: CiphertextBallot = electionguard::json::from_json(text).map_err(|e| {
        app.metrics.ballot_rejected("malformed");
        ApiError::bad_request(format!("ballot: {e}"))
    })?;
    Ok((
        StatusCode::CREATED,
        Json(ballots::submit(&app, &id, credential, ballot, spoil).await?),
    ))
}

async fn lookup(
    State(app): State<AppState>,
    Path((id, code)): Path<(String, String)>,
) -> ApiResult<Json<BallotStatus>> {
    Ok(Json(ballots::lookup(&app, &id, &code).await?))
}

async fn codes(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    app.election(&id).await?;
    let codes: Vec<Value> = app
        .store
        .ballot_codes(&id)
        .await?
        .into_iter()
        .map(|(code, state)| json!({ "tracking_code": code, "state": state }))
        .collect();
    Ok(Json(json!({ "election_id": id, "ballots": codes })))
}
