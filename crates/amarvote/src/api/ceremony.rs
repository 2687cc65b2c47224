//! The guardian-run key ceremony: status for everyone; announcements, backups, backup
//! verdicts and answers to challenges from each guardian with its token. Bodies are
//! reference JSON (`GuardianRecord`, `ElectionPartialKeyBackup`,
//! `ElectionPartialKeyChallenge`), as `amarvote guardian ceremony` sends.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use electionguard::key_ceremony::{
    ElectionPartialKeyBackup, ElectionPartialKeyChallenge, GuardianRecord,
};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::edge::{reference_body, ApiResult, AppState, Bearer};
use super::openapi::ErrorBody;
use super::params::{ElectionId, GuardianPath};
use crate::service::ceremony::{self, BackupVerdict, CeremonyStatus};
use crate::service::guardians::authorize_guardian;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ceremony_status))
        .routes(routes!(announce))
        .routes(routes!(send_backups, backups))
        .routes(routes!(verdicts))
        .routes(routes!(answer_challenge, challenge_answers))
}

/// Where the key ceremony stands, as anyone may see it.
#[utoipa::path(get, path = "/api/elections/{id}/ceremony", tag = "ceremony", params(ElectionId),
    responses((status = 200, description = "The ceremony", body = CeremonyStatus)))]
async fn ceremony_status(
    State(app): State<AppState>,
    Path(ElectionId { id }): Path<ElectionId>,
) -> ApiResult<Json<CeremonyStatus>> {
    Ok(Json(ceremony::status(&app, &id).await?))
}

/// What a guardian's step changed.
#[derive(Serialize, ToSchema)]
struct CeremonyStep {
    guardian_id: String,
    /// The step taken: `announced`, `backups_sent`, `verdicts_recorded` or `answered`.
    step: String,
    /// For an answer: the recipient whose rejection it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    answered: Option<String>,
}

impl CeremonyStep {
    fn new(guardian_id: String, step: &str) -> Json<CeremonyStep> {
        Json(CeremonyStep {
            guardian_id,
            step: step.into(),
            answered: None,
        })
    }
}

/// A guardian announces its public record (`GuardianRecord`, reference JSON) with the
/// Schnorr proofs of its coefficients. Guardian token only.
#[utoipa::path(post, path = "/api/elections/{id}/guardians/{guardian}/announcement",
    tag = "ceremony", params(GuardianPath),
    request_body(content = Object, description = "An ElectionGuard 1.0 GuardianRecord"),
    security(("bearer" = [])),
    responses((status = 200, description = "Announced", body = CeremonyStep),
        (status = 409, description = "The ceremony is over", body = ErrorBody)))]
async fn announce(
    State(app): State<AppState>,
    Path(GuardianPath { id, guardian }): Path<GuardianPath>,
    Bearer(token): Bearer,
    body: Bytes,
) -> ApiResult<Json<CeremonyStep>> {
    // The guardian's token is checked before its body is read: a stranger's is never parsed.
    authorize_guardian(&app, &id, &guardian, &token).await?;
    let record: GuardianRecord = reference_body(&body)?;
    ceremony::announce(&app, &id, &guardian, &token, record).await?;
    Ok(CeremonyStep::new(guardian, "announced"))
}

/// A guardian sends its backups, each encrypted to its recipient
/// (`ElectionPartialKeyBackup` list, reference JSON). Guardian token only.
#[utoipa::path(post, path = "/api/elections/{id}/guardians/{guardian}/backups",
    tag = "ceremony", params(GuardianPath),
    request_body(content = Vec<Object>, description = "ElectionGuard 1.0 ElectionPartialKeyBackups"),
    security(("bearer" = [])),
    responses((status = 200, description = "Sent", body = CeremonyStep),
        (status = 409, description = "The ceremony is over, or announcements are missing", body = ErrorBody)))]
async fn send_backups(
    State(app): State<AppState>,
    Path(GuardianPath { id, guardian }): Path<GuardianPath>,
    Bearer(token): Bearer,
    body: Bytes,
) -> ApiResult<Json<CeremonyStep>> {
    // The guardian's token is checked before its body is read: a stranger's is never parsed.
    authorize_guardian(&app, &id, &guardian, &token).await?;
    let backups: Vec<ElectionPartialKeyBackup> = reference_body(&body)?;
    ceremony::send_backups(&app, &id, &guardian, &token, backups).await?;
    Ok(CeremonyStep::new(guardian, "backups_sent"))
}

/// The backups sent to this guardian (reference JSON). Guardian token only.
#[utoipa::path(get, path = "/api/elections/{id}/guardians/{guardian}/backups",
    tag = "ceremony", params(GuardianPath), security(("bearer" = [])),
    responses((status = 200, description = "ElectionGuard 1.0 ElectionPartialKeyBackups", body = Vec<Object>)))]
async fn backups(
    State(app): State<AppState>,
    Path(GuardianPath { id, guardian }): Path<GuardianPath>,
    Bearer(token): Bearer,
) -> ApiResult<ReferenceJson> {
    let backups = ceremony::backups_for(&app, &id, &guardian, &token).await?;
    Ok(reference_json(&backups))
}

type ReferenceJson = ([(axum::http::HeaderName, &'static str); 1], String);

/// A body in the reference library's JSON, as guardians' tools read it.
fn reference_json<T: serde::Serialize>(value: &T) -> ReferenceJson {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        electionguard::json::to_reference_json(value),
    )
}

/// The guardian in the path is the sender answering a rejection of its backup with the
/// coordinate in clear (`ElectionPartialKeyChallenge`, reference JSON). Guardian token only.
#[utoipa::path(post, path = "/api/elections/{id}/guardians/{guardian}/challenge-answers",
    tag = "ceremony", params(GuardianPath),
    request_body(content = Object, description = "An ElectionGuard 1.0 ElectionPartialKeyChallenge"),
    security(("bearer" = [])),
    responses((status = 200, description = "Answered and verified", body = CeremonyStep),
        (status = 409, description = "No rejection of this backup waits for an answer", body = ErrorBody)))]
async fn answer_challenge(
    State(app): State<AppState>,
    Path(GuardianPath { id, guardian }): Path<GuardianPath>,
    Bearer(token): Bearer,
    body: Bytes,
) -> ApiResult<Json<CeremonyStep>> {
    // The guardian's token is checked before its body is read: a stranger's is never parsed.
    authorize_guardian(&app, &id, &guardian, &token).await?;
    let answer: ElectionPartialKeyChallenge = reference_body(&body)?;
    let recipient = answer.designated_id.clone();
    ceremony::answer_challenge(&app, &id, &guardian, &token, answer).await?;
    Ok(Json(CeremonyStep {
        guardian_id: guardian,
        step: "answered".into(),
        answered: Some(recipient),
    }))
}

/// The guardian in the path is the recipient, collecting the coordinates it was owed
/// (reference JSON). Guardian token only.
#[utoipa::path(get, path = "/api/elections/{id}/guardians/{guardian}/challenge-answers",
    tag = "ceremony", params(GuardianPath), security(("bearer" = [])),
    responses((status = 200, description = "ElectionGuard 1.0 ElectionPartialKeyChallenges", body = Vec<Object>)))]
async fn challenge_answers(
    State(app): State<AppState>,
    Path(GuardianPath { id, guardian }): Path<GuardianPath>,
    Bearer(token): Bearer,
) -> ApiResult<ReferenceJson> {
    let answers = ceremony::challenges_for(&app, &id, &guardian, &token).await?;
    Ok(reference_json(&answers))
}

/// A recipient's verdicts on the backups it received. Guardian token only.
#[utoipa::path(post, path = "/api/elections/{id}/guardians/{guardian}/backup-verdicts",
    tag = "ceremony", params(GuardianPath), request_body = Vec<BackupVerdict>,
    security(("bearer" = [])),
    responses((status = 200, description = "Recorded", body = CeremonyStep),
        (status = 409, description = "The ceremony is over, or a verdict names no backup", body = ErrorBody)))]
async fn verdicts(
    State(app): State<AppState>,
    Path(GuardianPath { id, guardian }): Path<GuardianPath>,
    Bearer(token): Bearer,
    body: Bytes,
) -> ApiResult<Json<CeremonyStep>> {
    // The guardian's token is checked before its body is read: a stranger's is never parsed.
    authorize_guardian(&app, &id, &guardian, &token).await?;
    let verdicts: Vec<BackupVerdict> = super::edge::parse_body(&body)?;
    ceremony::report_verdicts(&app, &id, &guardian, &token, verdicts).await?;
    Ok(CeremonyStep::new(guardian, "verdicts_recorded"))
}
