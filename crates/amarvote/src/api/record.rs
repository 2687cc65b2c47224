//! The election record, exported in the reference layout: `GET …/record` lists the files,
//! `GET …/record/{path}` returns one, and `GET …/record.tar` streams them all as one
//! archive, a file at a time, so an export of any size never sits in memory.
//! `amarvote verify` and electionguard-python read the directory they make.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use electionguard::ballot::CiphertextBallot;
use electionguard::group::ElementModQ;
use electionguard::json::to_reference_json;
use electionguard::record::{layout, BallotBox, DeviceChain, ElectionConstants};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, Path as _, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::edge::{ApiError, ApiResult, AppState};
use super::openapi::ErrorBody;
use super::params::ElectionId;
use super::tar::ArchiveWriter;
use crate::domain::artifacts::{COEFFICIENTS, ENCRYPTED_TALLY, PLAINTEXT_TALLY, SPOILED_PREFIX};
use crate::domain::{BallotState, ElectionRow, ElectionState};
use crate::service::codec::from_cbor;
use crate::service::ServiceError;
use axum::body::Bytes;

pub fn routes() -> OpenApiRouter<AppState> {
    // A file's path has slashes: axum takes it as a catch-all, the contract as a parameter.
    let mut router = OpenApiRouter::new()
        .routes(routes!(list_record))
        .routes(routes!(archive))
        .route(
            "/api/elections/{id}/record/{*path}",
            axum::routing::get(file),
        );
    router.get_openapi_mut().paths.add_path_operation(
        __path_file::path(),
        __path_file::methods(),
        __path_file::operation(),
    );
    router
}

fn internal(e: impl Into<anyhow::Error>) -> ApiError {
    ServiceError::Internal(e.into()).into()
}

#[derive(Serialize, ToSchema)]
struct RecordListing {
    election_id: String,
    /// Each file's path in the reference layout.
    files: Vec<String>,
}

/// The files of the election record, in the reference layout.
#[utoipa::path(get, path = "/api/elections/{id}/record", tag = "record", params(ElectionId),
    responses((status = 200, description = "The record's files", body = RecordListing),
        (status = 409, description = "Voting has not closed", body = ErrorBody)))]
async fn list_record(
    State(app): State<AppState>,
    Path(ElectionId { id }): Path<ElectionId>,
) -> ApiResult<Json<RecordListing>> {
    let files = file_names(&app, &id).await?;
    Ok(Json(RecordListing {
        election_id: id,
        files,
    }))
}

/// The ballots, and so the record as a whole, are published once voting has closed: a
/// listing or an archive made while ballots still arrive would disagree with itself
/// (`ballot_box.json` counts what was cast when it was read). What voters' devices need
/// before then (constants, manifest, context, guardians, devices) is served at any time.
fn require_closed(election: &ElectionRow) -> ApiResult<()> {
    if matches!(
        election.state,
        ElectionState::KeyCeremony | ElectionState::Open
    ) {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            retry_after: None,
            message: "the ballots and the whole record are published once voting closes".into(),
            field: None,
        });
    }
    Ok(())
}

/// Whether a file describes the election rather than its ballots.
fn describes_the_election(path: &str) -> bool {
    [layout::CONSTANTS, layout::MANIFEST, layout::CONTEXT].contains(&path)
        || path.starts_with(&format!("{}/", layout::GUARDIANS_DIR))
        || path.starts_with(&format!("{}/", layout::DEVICES_DIR))
}

/// Every file of the record, in the reference layout.
async fn file_names(app: &AppState, id: &str) -> ApiResult<Vec<String>> {
    let id = id.to_string();
    require_closed(&app.election(&id).await?)?;
    let mut files = vec![
        layout::CONSTANTS.to_string(),
        layout::MANIFEST.to_string(),
        layout::CONTEXT.to_string(),
        layout::BALLOT_BOX.to_string(),
    ];
    files.extend(
        app.store
            .devices(&id)
            .await?
            .iter()
            .map(|d| layout::device(d.device_id)),
    );
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
    // Ids are checked where they enter; this refuses, before anything is sent, a record
    // that holds one from before those checks.
    for name in &files {
        crate::record_io::check_record_path(name).map_err(internal_message)?;
    }
    Ok(files)
}

fn internal_message(message: String) -> ApiError {
    internal(anyhow::anyhow!(message))
}

/// The ballot box's declaration of what it holds: counts, and each device's chain.
async fn ballot_box(app: &AppState, id: &str) -> ApiResult<BallotBox> {
    let devices = app.store.devices(id).await?;
    let devices = devices
        .into_iter()
        .map(|d| {
            let last_code = d
                .last_code
                .as_deref()
                .map(ElementModQ::from_hex)
                .transpose()
                .map_err(|e| internal_message(format!("device {}: {e}", d.device_id)))?;
            Ok(DeviceChain {
                device_id: d.device_id,
                ballots: d.ballots,
                last_code,
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(BallotBox {
        cast: app.store.count_ballots(id, BallotState::Cast).await?,
        spoiled: app.store.count_ballots(id, BallotState::Spoiled).await?,
        devices,
    })
}

fn json_file(body: String) -> axum::response::Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A file of the record.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct RecordFile {
    /// The election's id.
    #[param(max_length = 64)]
    id: String,
    /// The file's path in the reference layout, as the listing names it.
    #[param(max_length = 256)]
    path: String,
}

/// One file of the record (the election's description at any time; ballots and results
/// once voting has closed).
#[utoipa::path(get, path = "/api/elections/{id}/record/{path}", tag = "record", params(RecordFile),
    responses((status = 200, description = "The file, as the reference library writes it", body = Object),
        (status = 409, description = "Voting has not closed", body = ErrorBody)))]
async fn file(
    State(app): State<AppState>,
    Path(RecordFile { id, path }): Path<RecordFile>,
) -> ApiResult<axum::response::Response> {
    let election = app.election(&id).await?;
    if !describes_the_election(&path) {
        require_closed(&election)?;
    }
    Ok(json_file(file_body(&app, &id, &election, &path).await?))
}

/// The whole record as one tar archive, streamed a file at a time.
#[utoipa::path(get, path = "/api/elections/{id}/record.tar", tag = "record", params(ElectionId),
    responses((status = 200, description = "A tar archive of the record", content_type = "application/x-tar", body = Vec<u8>),
        (status = 409, description = "Voting has not closed", body = ErrorBody)))]
async fn archive(
    State(app): State<AppState>,
    Path(ElectionId { id }): Path<ElectionId>,
) -> ApiResult<axum::response::Response> {
    let election = app.election(&id).await?;
    let files = file_names(&app, &id).await?;
    let mtime = u64::try_from(election.created_at / 1000).unwrap_or(0);
    let writer = Some(ArchiveWriter::new(mtime));
    let state = (app, id.clone(), election, files.into_iter(), writer);
    let stream = futures_util::stream::unfold(
        state,
        move |(app, id, election, mut files, writer)| async move {
            let mut writer = writer?;
            let Some(name) = files.next() else {
                let end = writer.finish().map(Bytes::from);
                return Some((end, (app, id, election, files, None)));
            };
            let entry = match file_body(&app, &id, &election, &name).await {
                Ok(body) => writer.entry(&name, body.as_bytes()),
                Err(e) => Err(std::io::Error::other(e.message)),
            };
            let writer = entry.is_ok().then_some(writer);
            Some((entry.map(Bytes::from), (app, id, election, files, writer)))
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
    election: &ElectionRow,
    path: &str,
) -> ApiResult<String> {
    let (app, id, election) = (app.clone(), id.to_string(), election.clone());
    let not_found = || ApiError {
        status: StatusCode::NOT_FOUND,
        retry_after: None,
        message: format!("no record file {path}"),
        field: None,
    };
    let artifact = |name: String| {
        let app = app.clone();
        let id = id.clone();
        async move { app.store.artifact(&id, &name).await }
    };
    let body = match path {
        layout::CONSTANTS => to_reference_json(&ElectionConstants::standard()),
        layout::MANIFEST => election.manifest_json,
        layout::BALLOT_BOX => to_reference_json(&ballot_box(&app, &id).await?),
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
        other => return dynamic_file(&app, &id, other).await?.ok_or_else(not_found),
    };
    Ok(body)
}

/// Devices, guardians, submitted and spoiled ballots: files named after an object.
async fn dynamic_file(app: &AppState, id: &str, path: &str) -> ApiResult<Option<String>> {
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
    if let Some(device_id) = name(&format!("{}/device_", layout::DEVICES_DIR)) {
        return Ok(app
            .store
            .devices(id)
            .await?
            .into_iter()
            .find(|d| d.device_id.to_string() == device_id)
            .map(|d| d.body));
    }
    Ok(None)
}
