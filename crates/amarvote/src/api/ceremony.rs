//! The guardian-run key ceremony: status for everyone; announcements, backups, backup
//! verdicts and answers to challenges from each guardian with its token. Bodies are
//! reference JSON (`GuardianRecord`, `ElectionPartialKeyBackup`,
//! `ElectionPartialKeyChallenge`), as `amarvote guardian ceremony` sends.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use electionguard::key_ceremony::{
    ElectionPartialKeyBackup, ElectionPartialKeyChallenge, GuardianRecord,
};
use serde_json::{json, Value};

use super::{reference_body, require_bearer, ApiResult, AppState};
use crate::service::ceremony::{self, BackupVerdict, CeremonyStatus};
use crate::service::guardians::authorize_guardian;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/elections/{id}/ceremony", get(status))
        .route(
            "/api/elections/{id}/guardians/{guardian}/announcement",
            post(announce),
        )
        .route(
            "/api/elections/{id}/guardians/{guardian}/backups",
            post(send_backups).get(backups),
        )
        .route(
            "/api/elections/{id}/guardians/{guardian}/backup-verdicts",
            post(verdicts),
        )
        .route(
            "/api/elections/{id}/guardians/{guardian}/challenge-answers",
            post(answer_challenge).get(challenge_answers),
        )
}

/// The guardian's token, checked before its body is read: a stranger's body is never parsed.
async fn authorized_guardian<'h>(
    app: &AppState,
    election: &str,
    guardian: &str,
    headers: &'h HeaderMap,
) -> ApiResult<&'h str> {
    let token = require_bearer(headers)?;
    authorize_guardian(app, election, guardian, token).await?;
    Ok(token)
}

async fn status(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<CeremonyStatus>> {
    Ok(Json(ceremony::status(&app, &id).await?))
}

async fn announce(
    State(app): State<AppState>,
    Path((id, guardian)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let token = authorized_guardian(&app, &id, &guardian, &headers).await?;
    let record: GuardianRecord = reference_body(&body)?;
    ceremony::announce(&app, &id, &guardian, token, record).await?;
    Ok(Json(json!({ "guardian_id": guardian, "announced": true })))
}

async fn send_backups(
    State(app): State<AppState>,
    Path((id, guardian)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let token = authorized_guardian(&app, &id, &guardian, &headers).await?;
    let backups: Vec<ElectionPartialKeyBackup> = reference_body(&body)?;
    ceremony::send_backups(&app, &id, &guardian, token, backups).await?;
    Ok(Json(
        json!({ "guardian_id": guardian, "backups_sent": true }),
    ))
}

async fn backups(
    State(app): State<AppState>,
    Path((id, guardian)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<ReferenceJson> {
    let token = require_bearer(&headers)?;
    let backups = ceremony::backups_for(&app, &id, &guardian, token).await?;
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

/// The guardian in the path is the sender answering a rejection of its backup.
async fn answer_challenge(
    State(app): State<AppState>,
    Path((id, guardian)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let token = authorized_guardian(&app, &id, &guardian, &headers).await?;
    let answer: ElectionPartialKeyChallenge = reference_body(&body)?;
    let recipient = answer.designated_id.clone();
    ceremony::answer_challenge(&app, &id, &guardian, token, answer).await?;
    Ok(Json(
        json!({ "guardian_id": guardian, "answered": recipient, "verified": true }),
    ))
}

/// The guardian in the path is the recipient, collecting the coordinates it was owed.
async fn challenge_answers(
    State(app): State<AppState>,
    Path((id, guardian)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<ReferenceJson> {
    let token = require_bearer(&headers)?;
    let answers = ceremony::challenges_for(&app, &id, &guardian, token).await?;
    Ok(reference_json(&answers))
}

async fn verdicts(
    State(app): State<AppState>,
    Path((id, guardian)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let token = authorized_guardian(&app, &id, &guardian, &headers).await?;
    let verdicts: Vec<BackupVerdict> = super::parse_body(&body)?;
    ceremony::report_verdicts(&app, &id, &guardian, token, verdicts).await?;
    Ok(Json(
        json!({ "guardian_id": guardian, "verdicts": "recorded" }),
    ))
}
