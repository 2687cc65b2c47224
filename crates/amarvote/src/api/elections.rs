//! Elections: creation with the key ceremony, voters, guardians' consent, closing, results.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use axum::body::Bytes;

use super::{parse_body, require_admin, require_bearer, ApiError, ApiResult, AppState};
use crate::domain::BallotState;
use crate::service::elections::{self, Consent, CreatedElection, NewElection};
use crate::service::guardians::{authorize_guardian, GuardianSecret};
use electionguard::key_ceremony::GuardianRecord;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/elections", post(create).get(list))
        .route("/api/elections/{id}", get(summary))
        .route("/api/elections/{id}/manifest", get(manifest))
        .route("/api/admin", get(admin_session))
        .route("/api/elections/{id}/voters", post(add_voters))
        .route("/api/elections/{id}/voters/me", get(voter_session))
        .route("/api/elections/{id}/close", post(close))
        .route("/api/elections/{id}/guardians", get(guardians))
        .route(
            "/api/elections/{id}/guardians/{guardian}/decryption-consent",
            post(consent),
        )
        .route("/api/elections/{id}/results", get(results))
        .route("/api/elections/{id}/verification", get(verification))
}

async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<CreatedElection>)> {
    require_admin(&app, &headers)?;
    let request: NewElection = parse_body(&body)?;
    Ok((
        StatusCode::CREATED,
        Json(elections::create(&app, request).await?),
    ))
}

/// The newest elections: public, as every published election is.
async fn list(State(app): State<AppState>) -> ApiResult<Json<Value>> {
    let elections: Vec<Value> = app
        .store
        .recent_elections(200)
        .await?
        .iter()
        .map(|e| json!({ "election_id": e.id, "title": e.title, "state": e.state, "guardians": e.guardians, "quorum": e.quorum, "created_at": e.created_at }))
        .collect();
    Ok(Json(json!({ "elections": elections })))
}

async fn summary(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let e = app.election(&id).await?;
    let cast = app.store.count_ballots(&id, BallotState::Cast).await?;
    let spoiled = app.store.count_ballots(&id, BallotState::Spoiled).await?;
    // Empty until a guardian-run key ceremony publishes the joint key.
    let context: Value = serde_json::from_str(&e.context_json).unwrap_or(Value::Null);
    Ok(Json(json!({
        "election_id": e.id, "title": e.title, "state": e.state, "guardians": e.guardians, "quorum": e.quorum,
        "cast_ballots": cast, "spoiled_ballots": spoiled,
        "manifest_hash": manifest_hash(&e)?, "joint_public_key": context["elgamal_public_key"],
    })))
}

fn manifest_hash(election: &crate::domain::ElectionRow) -> ApiResult<String> {
    let manifest: electionguard::manifest::Manifest =
        electionguard::json::from_json(&election.manifest_json)
            .map_err(|e| crate::service::ServiceError::Internal(e.into()))?;
    Ok(manifest.crypto_hash().to_hex())
}

async fn manifest(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<([(axum::http::HeaderName, &'static str); 1], String)> {
    let e = app.election(&id).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        e.manifest_json,
    ))
}

/// Either a number of anonymous credentials or a voter list: one credential per
/// entry, handed back beside its entry (the list itself is not stored).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VoterRequest {
    #[serde(default)]
    count: Option<u32>,
    #[serde(default)]
    voters: Option<Vec<String>>,
}

async fn add_voters(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_admin(&app, &headers)?;
    let request: VoterRequest = parse_body(&body)?;
    let count = match (&request.count, &request.voters) {
        (Some(count), None) => *count,
        (None, Some(voters)) => u32::try_from(voters.len()).unwrap_or(u32::MAX),
        _ => return Err(ApiError::bad_request("give either count or voters")),
    };
    let credentials = elections::add_voters(&app, &id, count).await?;
    let mut answer = json!({ "credentials": credentials });
    if let Some(voters) = request.voters {
        answer["voters"] = voters
            .iter()
            .zip(&credentials)
            .map(|(voter, credential)| json!({ "voter": voter, "credential": credential }))
            .collect();
    }
    Ok((StatusCode::CREATED, Json(answer)))
}

/// Lets a page check the administrator token before showing the administrator's pages.
async fn admin_session(State(app): State<AppState>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    require_admin(&app, &headers)?;
    Ok(Json(json!({ "role": "administrator" })))
}

/// Lets a voter's page check the credential before the voter marks a ballot.
async fn voter_session(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let credential = require_bearer(&headers)?;
    let (_, status) = crate::service::ballots::eligible_voter(&app, &id, credential).await?;
    // The voter learns at sign-in, not at the last step, that this credential has cast.
    Ok(Json(
        json!({ "election_id": id, "eligible": true, "cast": status.cast_ballot.is_some() }),
    ))
}

async fn close(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    require_admin(&app, &headers)?;
    elections::close(&app, &id).await?;
    Ok(Json(json!({ "election_id": id, "state": "closed" })))
}

async fn guardians(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let election = app.election(&id).await?;
    let list: Vec<Value> = app
        .store
        .guardians(&id)
        .await?
        .iter()
        .map(guardian_status)
        .collect();
    let present = list
        .iter()
        .filter(|g| g["consented_to_decrypt"] == true)
        .count();
    Ok(Json(
        json!({ "quorum": election.quorum, "present": present, "quorum_met": present as u32 >= election.quorum, "guardians": list }),
    ))
}

/// A guardian's part of the key ceremony as anyone can check it: its public key, and
/// whether every Schnorr proof of its coefficients verifies against its commitments.
fn guardian_status(guardian: &crate::domain::GuardianRow) -> Value {
    let record: Option<GuardianRecord> = electionguard::json::from_json(&guardian.public_json).ok();
    let proofs_verified =
        record.as_ref().is_some_and(|r| {
            r.election_proofs.len() == r.election_commitments.len()
                && r.election_proofs.iter().zip(&r.election_commitments).all(
                    |(proof, commitment)| proof.public_key == *commitment && proof.verify().is_ok(),
                )
        });
    let public_key = record
        .map(|r| r.election_public_key.to_hex())
        .unwrap_or_default();
    json!({
        "guardian_id": guardian.guardian_id,
        "sequence_order": guardian.sequence_order,
        "announced": !guardian.public_json.is_empty(),
        "public_key_fingerprint": public_key.get(..16).unwrap_or(&public_key),
        "proofs_verified": proofs_verified,
        "consented_to_decrypt": guardian.decryption_grant.is_some(),
        "decrypts_on_own_machine": guardian.decryption_grant.as_deref() == Some(&[]),
    })
}

/// Either the passphrase (server-run ceremony) or the key share (guardian-run ceremony).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsentRequest {
    #[serde(default)]
    passphrase: Option<String>,
    #[serde(default)]
    key_share: Option<GuardianSecret>,
    /// True: the guardian decrypts on its own machine and uploads its shares.
    #[serde(default)]
    remote: bool,
}

async fn consent(
    State(app): State<AppState>,
    Path((id, guardian)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let token = require_bearer(&headers)?;
    authorize_guardian(&app, &id, &guardian, token).await?;
    let request: ConsentRequest = parse_body(&body)?;
    let consent = match (request.passphrase, request.key_share, request.remote) {
        (Some(passphrase), None, false) => Consent::Passphrase(passphrase),
        (None, Some(secret), false) => Consent::KeyShare(secret),
        (None, None, true) => Consent::Remote,
        _ => {
            return Err(ApiError::bad_request(
                "give one of passphrase, key_share or remote: true",
            ))
        }
    };
    elections::grant_decryption(&app, &id, &guardian, token, consent).await?;
    Ok(Json(
        json!({ "guardian_id": guardian, "consented_to_decrypt": true }),
    ))
}

/// The decrypted counts per contest and selection, once the results are published.
async fn results(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    app.election(&id).await?;
    let bytes = app
        .store
        .artifact(&id, crate::domain::artifacts::PLAINTEXT_TALLY)
        .await?
        .ok_or_else(|| ApiError {
            status: StatusCode::NOT_FOUND,
            retry_after: None,
            message: "the results are not published yet".into(),
            field: None,
        })?;
    let tally: electionguard::decrypt::PlaintextTally =
        electionguard::json::from_json(std::str::from_utf8(&bytes).unwrap_or_default())
            .map_err(|e| crate::service::ServiceError::Internal(e.into()))?;
    let contests: Vec<Value> = tally
        .contests
        .values()
        .map(|c| json!({ "contest_id": c.object_id, "selections": c.selections.values().map(|s| json!({ "selection_id": s.object_id, "votes": s.tally })).collect::<Vec<_>>() }))
        .collect();
    Ok(Json(json!({ "election_id": id, "contests": contests })))
}

/// The summary of the latest verification job: ballots checked and every failure.
async fn verification(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    app.election(&id).await?;
    let bytes = app
        .store
        .artifact(&id, crate::domain::artifacts::VERIFICATION)
        .await?
        .ok_or_else(|| ApiError {
            status: StatusCode::NOT_FOUND,
            retry_after: None,
            message: "no verification job has finished for this election".into(),
            field: None,
        })?;
    Ok(Json(serde_json::from_slice(&bytes).map_err(|e| {
        crate::service::ServiceError::Internal(e.into())
    })?))
}
