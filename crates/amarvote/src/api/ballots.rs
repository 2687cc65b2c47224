//! Ballots: server-side encryption, cast, Benaloh challenge, client-encrypted
//! submission, "verify my vote", and the list of tracking codes.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use electionguard::ballot::{CiphertextBallot, EncryptionDevice};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::edge::{reference_body, ApiError, ApiJson, ApiResult, AppState, Bearer};
use super::openapi::ErrorBody;
use super::params::{BallotPath, ElectionId, TrackingPath};
use crate::domain::BallotState;
use crate::service::ballots::{self, BallotStatus, Choices, EncryptedBallot, Receipt};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(submit_ballot, codes))
        .routes(routes!(encrypt))
        .routes(routes!(cast))
        .routes(routes!(challenge))
        .routes(routes!(lookup))
        .routes(routes!(register_device))
}

#[derive(Serialize, ToSchema)]
struct RegisteredDevice {
    device_id: u64,
    /// The device's hash, hex: the start of its ballots' code chain.
    device_hash: String,
}

/// A voter's own encryption device, declared before its first ballot (reference JSON
/// `EncryptionDevice`): 201 when new, 200 when the same device was declared already.
/// Voter credential only.
#[utoipa::path(post, path = "/api/elections/{id}/devices", tag = "ballots", params(ElectionId),
    request_body(content = Object, description = "An ElectionGuard 1.0 EncryptionDevice"),
    security(("bearer" = [])),
    responses((status = 201, description = "Registered", body = RegisteredDevice),
        (status = 200, description = "Registered before", body = RegisteredDevice),
        (status = 409, description = "The device is another voter's, or voting is not open", body = ErrorBody)))]
async fn register_device(
    State(app): State<AppState>,
    Path(ElectionId { id }): Path<ElectionId>,
    Bearer(credential): Bearer,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<RegisteredDevice>)> {
    let device: EncryptionDevice = reference_body(&body)?;
    let device_hash = device.hash().to_hex();
    let device_id = device.device_id;
    let new = ballots::register_device(&app, &id, &credential, device).await?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(RegisteredDevice {
            device_id,
            device_hash,
        }),
    ))
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EncryptRequest {
    /// For each contest id, the selection ids chosen.
    #[schema(value_type = std::collections::HashMap<String, Vec<String>>)]
    pub choices: Choices,
}

/// Encrypts a ballot on the server for a voter; it stays pending until cast or challenged.
/// Voter credential only.
#[utoipa::path(post, path = "/api/elections/{id}/ballots/encrypt", tag = "ballots",
    params(ElectionId), request_body = EncryptRequest, security(("bearer" = [])),
    responses((status = 201, description = "Encrypted, pending", body = EncryptedBallot),
        (status = 409, description = "Voting is not open, or the credential has voted", body = ErrorBody)))]
async fn encrypt(
    State(app): State<AppState>,
    Path(ElectionId { id }): Path<ElectionId>,
    Bearer(credential): Bearer,
    ApiJson(body): ApiJson<EncryptRequest>,
) -> ApiResult<(StatusCode, Json<EncryptedBallot>)> {
    Ok((
        StatusCode::CREATED,
        Json(ballots::encrypt(&app, &id, &credential, body.choices).await?),
    ))
}

/// Casts a pending ballot. Voter credential only.
#[utoipa::path(post, path = "/api/elections/{id}/ballots/{ballot}/cast", tag = "ballots",
    params(BallotPath), security(("bearer" = [])),
    responses((status = 200, description = "Cast", body = Receipt),
        (status = 409, description = "Not pending for this credential, or voting closed", body = ErrorBody)))]
async fn cast(
    State(app): State<AppState>,
    Path(BallotPath { id, ballot }): Path<BallotPath>,
    Bearer(token): Bearer,
) -> ApiResult<Json<Receipt>> {
    Ok(Json(ballots::cast(&app, &id, &ballot, &token).await?))
}

/// Challenges a pending ballot (Benaloh): it is opened and proved, never counted.
/// Voter credential only.
#[utoipa::path(post, path = "/api/elections/{id}/ballots/{ballot}/challenge", tag = "ballots",
    params(BallotPath), security(("bearer" = [])),
    responses((status = 200, description = "Challenged and opened", body = Receipt),
        (status = 409, description = "Not pending for this credential, or too many challenges", body = ErrorBody)))]
async fn challenge(
    State(app): State<AppState>,
    Path(BallotPath { id, ballot }): Path<BallotPath>,
    Bearer(token): Bearer,
) -> ApiResult<Json<Receipt>> {
    Ok(Json(ballots::challenge(&app, &id, &ballot, &token).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct SubmitQuery {
    /// `cast` (the default) or `spoil` (a Benaloh challenge).
    #[serde(default)]
    #[param(pattern = "^(cast|spoil)$")]
    action: Option<String>,
}

/// A ballot encrypted by the voter's device, as reference JSON (`CiphertextBallot`);
/// `?action=spoil` challenges it. Voter credential only.
#[utoipa::path(post, path = "/api/elections/{id}/ballots", tag = "ballots",
    params(ElectionId, SubmitQuery),
    request_body(content = Object, description = "An ElectionGuard 1.0 CiphertextBallot"),
    security(("bearer" = [])),
    responses((status = 201, description = "Recorded", body = Receipt),
        (status = 409, description = "Refused: voted already, copied, off-chain, or voting closed", body = ErrorBody)))]
async fn submit_ballot(
    State(app): State<AppState>,
    Path(ElectionId { id }): Path<ElectionId>,
    Query(query): Query<SubmitQuery>,
    Bearer(credential): Bearer,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Receipt>)> {
    let spoil = match query.action.as_deref() {
        None | Some("cast") => false,
        Some("spoil") => true,
        Some(other) => {
            return Err(ApiError::bad_field(
                "action",
                format!("action must be cast or spoil, not {other}"),
            ))
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
        Json(ballots::submit(&app, &id, &credential, ballot, spoil).await?),
    ))
}

/// "Verify my vote": what the ballot box holds under a tracking code.
#[utoipa::path(get, path = "/api/elections/{id}/tracking/{code}", tag = "ballots",
    params(TrackingPath),
    responses((status = 200, description = "The ballot under this code", body = BallotStatus)))]
async fn lookup(
    State(app): State<AppState>,
    Path(TrackingPath { id, code }): Path<TrackingPath>,
) -> ApiResult<Json<BallotStatus>> {
    Ok(Json(ballots::lookup(&app, &id, &code).await?))
}

#[derive(Serialize, ToSchema)]
struct TrackingCodes {
    election_id: String,
    ballots: Vec<TrackingCode>,
}

#[derive(Serialize, ToSchema)]
struct TrackingCode {
    tracking_code: String,
    #[schema(value_type = BallotState)]
    state: String,
}

/// Every tracking code in the ballot box with its ballot's state.
#[utoipa::path(get, path = "/api/elections/{id}/ballots", tag = "ballots", params(ElectionId),
    responses((status = 200, description = "The tracking codes", body = TrackingCodes)))]
async fn codes(
    State(app): State<AppState>,
    Path(ElectionId { id }): Path<ElectionId>,
) -> ApiResult<Json<TrackingCodes>> {
    app.election(&id).await?;
    let ballots = app
        .store
        .ballot_codes(&id)
        .await?
        .into_iter()
        .map(|(tracking_code, state)| TrackingCode {
            tracking_code,
            state,
        })
        .collect();
    Ok(Json(TrackingCodes {
        election_id: id,
        ballots,
    }))
}
