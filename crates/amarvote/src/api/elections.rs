//! Elections: creation with the key ceremony, voters, guardians' consent, closing, results.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use electionguard::key_ceremony::GuardianRecord;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::edge::{parse_body, Admin, ApiError, ApiResult, AppState, Bearer};
use super::openapi::ErrorBody;
use super::params::{ElectionId, GuardianPath};
use crate::domain::{BallotState, ElectionState};
use crate::service::elections::{self, Consent, CreatedElection, NewElection};
use crate::service::guardians::{authorize_guardian, GuardianSecret};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list_elections))
        .routes(routes!(election))
        .routes(routes!(manifest))
        .routes(routes!(admin_session))
        .routes(routes!(add_voters))
        .routes(routes!(voter_session))
        .routes(routes!(close))
        .routes(routes!(guardians))
        .routes(routes!(consent))
        .routes(routes!(election_results))
        .routes(routes!(verification))
}

/// Creates an election and runs (or opens) its key ceremony. Administrator only. The
/// answer carries each guardian's token (and passphrase, for a server-run ceremony):
/// it is given once.
#[utoipa::path(post, path = "/api/elections", tag = "elections",
    request_body = NewElection, security(("bearer" = [])),
    responses((status = 201, description = "Created", body = CreatedElection)))]
async fn create(
    State(app): State<AppState>,
    _admin: Admin,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<CreatedElection>)> {
    let request: NewElection = parse_body(&body)?;
    Ok((
        StatusCode::CREATED,
        Json(elections::create(&app, request).await?),
    ))
}

#[derive(Serialize, ToSchema)]
struct ElectionList {
    elections: Vec<ElectionListing>,
}

#[derive(Serialize, ToSchema)]
struct ElectionListing {
    election_id: String,
    title: String,
    state: ElectionState,
    guardians: u32,
    quorum: u32,
    /// Milliseconds since the Unix epoch.
    created_at: i64,
}

/// The newest elections (up to 200): public, as every published election is.
#[utoipa::path(get, path = "/api/elections", tag = "elections",
    responses((status = 200, description = "The newest elections", body = ElectionList)))]
async fn list_elections(State(app): State<AppState>) -> ApiResult<Json<ElectionList>> {
    let elections = app
        .store
        .recent_elections(200)
        .await?
        .into_iter()
        .map(|e| ElectionListing {
            election_id: e.id.into(),
            title: e.title,
            state: e.state,
            guardians: e.guardians,
            quorum: e.quorum,
            created_at: e.created_at,
        })
        .collect();
    Ok(Json(ElectionList { elections }))
}

#[derive(Serialize, ToSchema)]
struct ElectionSummary {
    election_id: String,
    title: String,
    state: ElectionState,
    guardians: u32,
    quorum: u32,
    cast_ballots: u64,
    spoiled_ballots: u64,
    /// The manifest's crypto hash, hex.
    manifest_hash: String,
    /// The joint election key K, hex; null until the key ceremony publishes it.
    joint_public_key: Option<String>,
}

/// One election: its state, ballot counts and hashes.
#[utoipa::path(get, path = "/api/elections/{id}", tag = "elections", params(ElectionId),
    responses((status = 200, description = "The election", body = ElectionSummary)))]
async fn election(
    State(app): State<AppState>,
    Path(ElectionId { id }): Path<ElectionId>,
) -> ApiResult<Json<ElectionSummary>> {
    let e = app.election(&id).await?;
    let cast_ballots = app.store.count_ballots(&id, BallotState::Cast).await?;
    let spoiled_ballots = app.store.count_ballots(&id, BallotState::Spoiled).await?;
    // Empty until a guardian-run key ceremony publishes the joint key.
    let context: Value = serde_json::from_str(&e.context_json).unwrap_or(Value::Null);
    Ok(Json(ElectionSummary {
        manifest_hash: manifest_hash(&e)?,
        joint_public_key: context["elgamal_public_key"].as_str().map(str::to_owned),
        election_id: e.id.into(),
        title: e.title,
        state: e.state,
        guardians: e.guardians,
        quorum: e.quorum,
        cast_ballots,
        spoiled_ballots,
    }))
}

fn manifest_hash(election: &crate::domain::ElectionRow) -> ApiResult<String> {
    let manifest: electionguard::manifest::Manifest =
        electionguard::json::from_json(&election.manifest_json)
            .map_err(|e| crate::service::ServiceError::Internal(e.into()))?;
    Ok(manifest.crypto_hash().to_hex())
}

/// The election's manifest, as the reference library writes it.
#[utoipa::path(get, path = "/api/elections/{id}/manifest", tag = "elections", params(ElectionId),
    responses((status = 200, description = "An ElectionGuard 1.0 manifest", body = Object)))]
async fn manifest(
    State(app): State<AppState>,
    Path(ElectionId { id }): Path<ElectionId>,
) -> ApiResult<([(axum::http::HeaderName, &'static str); 1], String)> {
    let e = app.election(&id).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        e.manifest_json,
    ))
}

/// Either a number of anonymous credentials or a voter list: one credential per
/// entry, handed back beside its entry (the list itself is not stored).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoterRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100_000)]
    pub count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 100_000)]
    pub voters: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct VoterCredentials {
    /// One-time voting credentials; only their hashes are stored.
    pub credentials: Vec<String>,
    /// For a voter list: each entry beside its credential.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voters: Option<Vec<NamedCredential>>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct NamedCredential {
    pub voter: String,
    pub credential: String,
}

/// Issues voting credentials. Administrator only.
#[utoipa::path(post, path = "/api/elections/{id}/voters", tag = "elections", params(ElectionId),
    request_body = VoterRequest, security(("bearer" = [])),
    responses((status = 201, description = "Credentials issued", body = VoterCredentials),
        (status = 409, description = "The election does not take voters now", body = ErrorBody)))]
async fn add_voters(
    State(app): State<AppState>,
    Path(ElectionId { id }): Path<ElectionId>,
    _admin: Admin,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<VoterCredentials>)> {
    let request: VoterRequest = parse_body(&body)?;
    let count = match (&request.count, &request.voters) {
        (Some(count), None) => *count,
        (None, Some(voters)) => u32::try_from(voters.len()).unwrap_or(u32::MAX),
        _ => return Err(ApiError::bad_request("give either count or voters")),
    };
    let credentials = elections::add_voters(&app, &id, count).await?;
    let voters = request.voters.map(|voters| {
        voters
            .into_iter()
            .zip(&credentials)
            .map(|(voter, credential)| NamedCredential {
                voter,
                credential: credential.clone(),
            })
            .collect()
    });
    Ok((
        StatusCode::CREATED,
        Json(VoterCredentials {
            credentials,
            voters,
        }),
    ))
}

#[derive(Serialize, ToSchema)]
struct AdminSession {
    /// Always `administrator`.
    role: String,
}

/// Lets a page check the administrator token before showing the administrator's pages.
#[utoipa::path(get, path = "/api/admin", tag = "elections", security(("bearer" = [])),
    responses((status = 200, description = "The token is the administrator's", body = AdminSession)))]
async fn admin_session(_admin: Admin) -> ApiResult<Json<AdminSession>> {
    Ok(Json(AdminSession {
        role: "administrator".into(),
    }))
}

#[derive(Serialize, ToSchema)]
struct VoterSession {
    election_id: String,
    /// Always true: an unknown credential is answered 401.
    eligible: bool,
    /// Whether this credential has already cast its ballot.
    cast: bool,
}

/// Lets a voter's page check the credential (the bearer token) before the voter marks a
/// ballot, and learn at sign-in whether it has already cast.
#[utoipa::path(get, path = "/api/elections/{id}/voters/me", tag = "elections", params(ElectionId),
    security(("bearer" = [])),
    responses((status = 200, description = "The credential is eligible", body = VoterSession)))]
async fn voter_session(
    State(app): State<AppState>,
    Path(ElectionId { id }): Path<ElectionId>,
    Bearer(credential): Bearer,
) -> ApiResult<Json<VoterSession>> {
    let (_, status) = crate::service::ballots::eligible_voter(&app, &id, &credential).await?;
    Ok(Json(VoterSession {
        election_id: id,
        eligible: true,
        cast: status.cast_ballot.is_some(),
    }))
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ElectionStateChange {
    pub election_id: String,
    pub state: ElectionState,
}

/// Closes voting; the ballot box's record is published. Administrator only.
#[utoipa::path(post, path = "/api/elections/{id}/close", tag = "elections", params(ElectionId),
    security(("bearer" = [])),
    responses((status = 200, description = "Voting is closed", body = ElectionStateChange),
        (status = 409, description = "The election is not open", body = ErrorBody)))]
async fn close(
    State(app): State<AppState>,
    Path(ElectionId { id }): Path<ElectionId>,
    _admin: Admin,
) -> ApiResult<Json<ElectionStateChange>> {
    elections::close(&app, &id).await?;
    Ok(Json(ElectionStateChange {
        election_id: id,
        state: ElectionState::Closed,
    }))
}

#[derive(Serialize, ToSchema)]
struct GuardianList {
    quorum: u32,
    /// Guardians who consented to decrypt.
    present: usize,
    quorum_met: bool,
    guardians: Vec<GuardianStatus>,
}

/// A guardian's part of the key ceremony as anyone can check it.
#[derive(Serialize, ToSchema)]
struct GuardianStatus {
    guardian_id: String,
    sequence_order: u64,
    announced: bool,
    /// The first 16 hex digits of the guardian's public key.
    public_key_fingerprint: String,
    /// Whether every Schnorr proof of its coefficients verifies against its commitments.
    proofs_verified: bool,
    consented_to_decrypt: bool,
    decrypts_on_own_machine: bool,
}

/// The election's guardians: who is present, who is missing, whether the quorum is met.
#[utoipa::path(get, path = "/api/elections/{id}/guardians", tag = "elections", params(ElectionId),
    responses((status = 200, description = "The guardians", body = GuardianList)))]
async fn guardians(
    State(app): State<AppState>,
    Path(ElectionId { id }): Path<ElectionId>,
) -> ApiResult<Json<GuardianList>> {
    let election = app.election(&id).await?;
    let guardians: Vec<GuardianStatus> = app
        .store
        .guardians(&id)
        .await?
        .iter()
        .map(guardian_status)
        .collect();
    let present = guardians.iter().filter(|g| g.consented_to_decrypt).count();
    Ok(Json(GuardianList {
        quorum: election.quorum,
        present,
        quorum_met: present as u32 >= election.quorum,
        guardians,
    }))
}

fn guardian_status(guardian: &crate::domain::GuardianRow) -> GuardianStatus {
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
    GuardianStatus {
        guardian_id: guardian.guardian_id.clone(),
        sequence_order: guardian.sequence_order,
        announced: !guardian.public_json.is_empty(),
        public_key_fingerprint: public_key.get(..16).unwrap_or(&public_key).to_string(),
        proofs_verified,
        consented_to_decrypt: guardian.decryption_grant.is_some(),
        decrypts_on_own_machine: guardian.decryption_grant.as_deref() == Some(&[]),
    }
}

/// Either the passphrase (server-run ceremony) or the key share (guardian-run ceremony),
/// or `remote: true` (the guardian decrypts on its own machine).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ConsentRequest {
    #[serde(default)]
    passphrase: Option<String>,
    /// The guardian's key share from its keystore, as reference JSON.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    key_share: Option<GuardianSecret>,
    /// True: the guardian decrypts on its own machine and uploads its shares.
    #[serde(default)]
    remote: bool,
}

#[derive(Serialize, ToSchema)]
struct Consented {
    guardian_id: String,
    consented_to_decrypt: bool,
}

/// A guardian consents to decrypt. Guardian token only.
#[utoipa::path(post, path = "/api/elections/{id}/guardians/{guardian}/decryption-consent",
    tag = "elections", params(GuardianPath), request_body = ConsentRequest,
    security(("bearer" = [])),
    responses((status = 200, description = "Consent recorded", body = Consented),
        (status = 409, description = "Not now (the key ceremony is not done)", body = ErrorBody)))]
async fn consent(
    State(app): State<AppState>,
    Path(GuardianPath { id, guardian }): Path<GuardianPath>,
    Bearer(token): Bearer,
    body: Bytes,
) -> ApiResult<Json<Consented>> {
    authorize_guardian(&app, &id, &guardian, &token).await?;
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
    elections::grant_decryption(&app, &id, &guardian, &token, consent).await?;
    Ok(Json(Consented {
        guardian_id: guardian,
        consented_to_decrypt: true,
    }))
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Results {
    pub election_id: String,
    pub contests: Vec<ContestResult>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ContestResult {
    pub contest_id: String,
    pub selections: Vec<SelectionResult>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct SelectionResult {
    pub selection_id: String,
    pub votes: u64,
}

/// The decrypted counts per contest and selection, once the results are published.
#[utoipa::path(get, path = "/api/elections/{id}/results", tag = "elections", params(ElectionId),
    responses((status = 200, description = "The published results", body = Results)))]
async fn election_results(
    State(app): State<AppState>,
    Path(ElectionId { id }): Path<ElectionId>,
) -> ApiResult<Json<Results>> {
    app.election(&id).await?;
    let bytes = app
        .store
        .artifact(&id, crate::domain::artifacts::PLAINTEXT_TALLY)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "the results are not published yet"))?;
    let tally: electionguard::decrypt::PlaintextTally =
        electionguard::json::from_json(std::str::from_utf8(&bytes).unwrap_or_default())
            .map_err(|e| crate::service::ServiceError::Internal(e.into()))?;
    let contests = tally
        .contests
        .values()
        .map(|c| ContestResult {
            contest_id: c.object_id.clone(),
            selections: c
                .selections
                .values()
                .map(|s| SelectionResult {
                    selection_id: s.object_id.clone(),
                    votes: s.tally,
                })
                .collect(),
        })
        .collect();
    Ok(Json(Results {
        election_id: id,
        contests,
    }))
}

/// The report of the latest verification job: ballots checked and every failure.
#[utoipa::path(get, path = "/api/elections/{id}/verification", tag = "elections",
    params(ElectionId),
    responses((status = 200, description = "The verification report", body = Object)))]
async fn verification(
    State(app): State<AppState>,
    Path(ElectionId { id }): Path<ElectionId>,
) -> ApiResult<Json<Value>> {
    app.election(&id).await?;
    let bytes = app
        .store
        .artifact(&id, crate::domain::artifacts::VERIFICATION)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no verification job has finished for this election",
            )
        })?;
    Ok(Json(serde_json::from_slice(&bytes).map_err(|e| {
        crate::service::ServiceError::Internal(e.into())
    })?))
}
