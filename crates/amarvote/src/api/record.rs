//! The election record, exported in the reference layout: `GET …/record` lists the files,
//! `GET …/record/{path}` returns one, and `GET …/record.tar` streams them all as one
//! archive, a file at a time, so an export of any size never sits in memory.
//! `amarvote verify` and electionguard-python read the directory they make.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use electionguard::ballot::{CiphertextBallot, EncryptionDevice};
use electionguard::json::{from_json, to_reference_json};
use electionguard::record::{layout, ElectionConstants};
use serde_json::{json, Value};

use super::{tar, ApiError, ApiResult, AppState};
use crate::domain::BallotState;
use crate::service::codec::from_cbor;
use crate::service::ServiceError;
use crate::workers::{COEFFICIENTS, ENCRYPTED_TALLY, PLAINTEXT_TALLY, SPOILED_PREFIX};
use axum::body::Bytes;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/elections/{id}/record", get(list))
        .route("/api/elections/{id}/record.tar", get(archive))
        .route("/api/elections/{id}/record/{*path}", get(file))
}

fn internal(e: impl Into<anyhow::Error>) -> ApiError {
    ServiceError::Internal(e.into()).into()
}

async fn list(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let files = file_names(&app, &id).await?;
    Ok(Json(json!({ "election_id": id, "files": files })))
}

/// Every file of the record, in the reference layout.
async fn file_names(app: &AppState, id: &str) -> ApiResult<Vec<String>> {
    let id = id.to_string();
    let election = app.election(&id).await?;
    let device: EncryptionDevice = from_json(&election.device_json).map_err(internal)?;
    let mut files = vec![
        layout::CONSTANTS.to_string(),
        layout::MANIFEST.to_string(),
        layout::CONTEXT.to_string(),
        layout::device(device.device_id),
    ];
    files.extend(
        app.store
            .guardians(&id)
            .await?
            .iter()
            .map(|g| layout::guardian(&g.guardian_id)),
    );
    for state in [BallotState::Cast, BallotState::Spoiled] {
        let mut page = app.store.ballots_page(&id, state, 0, 1000).await?;
        while let Some(last) = page.last() {
            files.extend(page.iter().map(|b| layout::submitted_ballot(&b.ballot_id)));
            let after = (last.shuffle, last.ballot_id.as_str());
            page = app.store.ballots_after(&id, state, after, 1000).await?;
        }
    }
    for (artifact, name) in [
        (ENCRYPTED_TALLY, layout::ENCRYPTED_TALLY),
        (COEFFICIENTS, layout::COEFFICIENTS),
        (PLAINTEXT_TALLY, layout::TALLY),
    ] {
        if app.store.artifact(&id, artifact).await?.is_some() {
            files.push(name.to_string());
        }
    }
    for name in app.store.artifact_names(&id, SPOILED_PREFIX).await? {
        files.push(layout::spoiled_ballot(&name[SPOILED_PREFIX.len()..]));
    }
    Ok(files)
}

fn json_file(body: String) -> axum::response::Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn file(
    State(app): State<AppState>,
    Path((id, path)): Path<(String, String)>,
) -> ApiResult<axum::response::Response> {
    let election = app.election(&id).await?;
    Ok(json_file(file_body(&app, &id, &election, &path).await?))
}

/// The whole record as one tar archive, streamed a file at a time.
async fn archive(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<axum::response::Response> {
    let election = app.election(&id).await?;
    let files = file_names(&app, &id).await?;
    let mtime = u64::try_from(election.created_at / 1000).unwrap_or(0);
    let state = (app, id.clone(), election, files.into_iter(), false);
    let stream = futures_util::stream::unfold(
        state,
        move |(app, id, election, mut files, ended)| async move {
            if ended {
                return None;
            }
            let Some(name) = files.next() else {
                return Some((
                    Ok(Bytes::from(tar::end())),
                    (app, id, election, files, true),
                ));
            };
            let entry = match file_body(&app, &id, &election, &name).await {
                Ok(body) => tar::header(&name, body.len(), mtime)
                    .map(|header| {
                        [&header[..], body.as_bytes(), &tar::padding(body.len())].concat()
                    })
                    .map_err(std::io::Error::other),
                Err(e) => Err(std::io::Error::other(e.message)),
            };
            let ended = entry.is_err();
            Some((entry.map(Bytes::from), (app, id, election, files, ended)))
        },
    );
    let disposition = format!("attachment; filename=\"{id}-record.tar\"");
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

/// One file of the record, as reference JSON.
async fn file_body(
    app: &AppState,
    id: &str,
    election: &crate::domain::ElectionRow,
    path: &str,
) -> ApiResult<String> {
    let (app, id, election) = (app.clone(), id.to_string(), election.clone());
    let not_found = || ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!("no record file {path}"),
    };
    let artifact = |name: String| {
        let app = app.clone();
        let id = id.clone();
        async move { app.store.artifact(&id, &name).await }
    };
    let body = match path {
        layout::CONSTANTS => to_reference_json(&ElectionConstants::standard()),
        layout::MANIFEST => election.manifest_json,
        layout::CONTEXT => election.context_json,
        layout::ENCRYPTED_TALLY => {
            let bytes = artifact(ENCRYPTED_TALLY.into())
                .await?
                .ok_or_else(not_found)?;
            to_reference_json(
                &from_cbor::<electionguard::tally::CiphertextTally>(&bytes).map_err(internal)?,
            )
        }
        layout::COEFFICIENTS => {
            String::from_utf8(artifact(COEFFICIENTS.into()).await?.ok_or_else(not_found)?)
                .map_err(internal)?
        }
        layout::TALLY => String::from_utf8(
            artifact(PLAINTEXT_TALLY.into())
                .await?
                .ok_or_else(not_found)?,
        )
        .map_err(internal)?,
        other => {
            return dynamic_file(&app, &id, &election.device_json, other)
                .await?
                .ok_or_else(not_found)
        }
    };
    Ok(body)
}

/// Devices, guardians, submitted and spoiled ballots: files named after an object.
async fn dynamic_file(
    app: &AppState,
    id: &str,
    device_json: &str,
    path: &str,
) -> ApiResult<Option<String>> {
    let name = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(".json"))
            .map(str::to_string)
    };
    if let Some(ballot_id) = name(&format!(
        "{}/submitted_ballot_",
        layout::SUBMITTED_BALLOTS_DIR
    )) {
        let Some(row) = app.store.ballot(id, &ballot_id).await? else {
            return Ok(None);
        };
        if row.state == BallotState::Pending {
            return Ok(None);
        }
        return Ok(Some(to_reference_json(
            &from_cbor::<CiphertextBallot>(&row.body).map_err(internal)?,
        )));
    }
    if let Some(ballot_id) = name(&format!("{}/spoiled_ballot_", layout::SPOILED_BALLOTS_DIR)) {
        let bytes = app
            .store
            .artifact(id, &format!("{SPOILED_PREFIX}{ballot_id}"))
            .await?;
        return bytes
            .map(|b| String::from_utf8(b).map_err(internal))
            .transpose();
    }
    if let Some(guardian_id) = name(&format!("{}/guardian_", layout::GUARDIANS_DIR)) {
        return Ok(app
            .store
            .guardians(id)
            .await?
            .into_iter()
            .find(|g| g.guardian_id == guardian_id)
            .map(|g| g.public_json));
    }
    if name(&format!("{}/device_", layout::DEVICES_DIR)).is_some() {
        return Ok(Some(device_json.to_string()));
    }
    Ok(None)
}
