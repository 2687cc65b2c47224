//! Guardian-side decryption: a guardian that consented with `remote: true` keeps its
//! secret on its own machine. The decryption job leaves that guardian's chunks off the
//! queues (state `remote`); `amarvote guardian decrypt` fetches each chunk's ciphertexts,
//! computes the shares with proofs, and uploads them. The server checks every proof
//! against the guardian's announced key (or the recovery key, for compensated shares)
//! before it records the chunk, exactly as a worker's result is recorded.

use electionguard::decrypt::{
    verify_compensated_share, verify_decryption_share, ContestCiphertexts,
};
use serde::{Deserialize, Serialize};

use super::codec::to_cbor;
use super::guardians::authorize_guardian;
use super::operations::decrypt::{chunk_inputs, public_key, targets, Shares};
use super::{App, ServiceError, ServiceResult};
use crate::domain::{ChunkRow, ChunkSpec, ChunkState, JobRow, JobState, Target};

/// A chunk waiting for a guardian's own machine.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RemoteChunk {
    pub index: u64,
    #[serde(flatten)]
    pub spec: ChunkSpec,
}

fn internal(e: impl Into<anyhow::Error>) -> ServiceError {
    ServiceError::Internal(e.into())
}

async fn running_job(app: &App, job_id: &str) -> ServiceResult<JobRow> {
    let job = app
        .store
        .job(job_id)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no job {job_id}")))?;
    if job.state != JobState::Running {
        return Err(ServiceError::Conflict(format!("the job is {}", job.state)));
    }
    Ok(job)
}

/// The chunks of a job still waiting for this guardian.
pub async fn waiting_chunks(
    app: &App,
    job_id: &str,
    guardian_id: &str,
    token: &str,
) -> ServiceResult<Vec<RemoteChunk>> {
    let job = running_job(app, job_id).await?;
    authorize_guardian(app, &job.election_id, guardian_id, token).await?;
    let mut waiting = Vec::new();
    for chunk in app.store.chunks(job_id).await? {
        if chunk.state == ChunkState::Remote && chunk.spec.guardian.as_deref() == Some(guardian_id)
        {
            waiting.push(RemoteChunk {
                index: chunk.index,
                spec: chunk.spec,
            });
        }
    }
    Ok(waiting)
}

/// A waiting chunk, once the token is checked to be its guardian's.
async fn guardian_chunk(
    app: &App,
    job_id: &str,
    index: u64,
    token: &str,
) -> ServiceResult<(JobRow, ChunkRow)> {
    let job = running_job(app, job_id).await?;
    let chunk = app
        .store
        .chunk(job_id, index)
        .await?
        .filter(|c| c.state == ChunkState::Remote)
        .ok_or_else(|| {
            ServiceError::NotFound(format!(
                "no chunk {index} waiting for a guardian in {job_id}"
            ))
        })?;
    let guardian = chunk.spec.guardian.clone().unwrap_or_default();
    authorize_guardian(app, &job.election_id, &guardian, token).await?;
    Ok((job, chunk))
}

/// What the guardian decrypts for a chunk: each object's contest ciphertexts.
pub async fn chunk_ciphertexts(
    app: &App,
    job_id: &str,
    index: u64,
    token: &str,
) -> ServiceResult<Vec<(String, Vec<ContestCiphertexts>)>> {
    let (job, chunk) = guardian_chunk(app, job_id, index, token).await?;
    targets(app, &job.election_id, &chunk.spec.target)
        .await
        .map_err(internal)
}

/// Records a guardian's uploaded shares for a chunk once every proof verifies.
pub async fn upload_shares(
    app: &App,
    job_id: &str,
    index: u64,
    token: &str,
    shares: Shares,
) -> ServiceResult<()> {
    let (job, chunk) = guardian_chunk(app, job_id, index, token).await?;
    let inputs = chunk_inputs(app, &job.election_id, &chunk.spec)
        .await
        .map_err(internal)?;
    let available = public_key(&inputs.guardian).map_err(internal)?;
    let missing = inputs
        .missing
        .as_ref()
        .map(public_key)
        .transpose()
        .map_err(internal)?;
    let (objects, qbar) = (inputs.objects, inputs.extended_base_hash);
    let checked = tokio::task::spawn_blocking(move || {
        check_shares(&shares, &objects, &available, missing.as_ref(), &qbar).map(|()| shares)
    })
    .await
    .map_err(internal)?
    .map_err(ServiceError::BadRequest)?;
    if app
        .store
        .complete_chunk(&job.id, index, &to_cbor(&checked))
        .await?
    {
        super::operations::maybe_finalize(app, &job)
            .await
            .map_err(internal)?;
    }
    Ok(())
}

/// One share per object of the chunk, of the kind the chunk needs, every proof valid.
fn check_shares(
    shares: &Shares,
    objects: &[(String, Vec<ContestCiphertexts>)],
    available: &electionguard::key_ceremony::ElectionPublicKey,
    missing: Option<&electionguard::key_ceremony::ElectionPublicKey>,
    qbar: &electionguard::group::ElementModQ,
) -> Result<(), String> {
    let count = match shares {
        Shares::Direct(list) => list.len(),
        Shares::Compensated(list) => list.len(),
    };
    if count != objects.len() {
        return Err(format!(
            "{} objects to decrypt, {count} shares",
            objects.len()
        ));
    }
    for (k, (id, contests)) in objects.iter().enumerate() {
        match (shares, missing) {
            (Shares::Direct(list), None) => {
                verify_decryption_share(&list[k], id, available, contests, qbar)?
            }
            (Shares::Compensated(list), Some(missing)) => {
                verify_compensated_share(&list[k], id, available, missing, contests, qbar)?
            }
            (Shares::Direct(_), Some(_)) => {
                return Err("this chunk needs Compensated shares".into())
            }
            (Shares::Compensated(_), None) => return Err("this chunk needs Direct shares".into()),
        }
    }
    Ok(())
}

/// What a chunk's target is, for a guardian's progress line.
pub fn describe(target: &Target) -> String {
    match target {
        Target::Tally => "the tally".into(),
        Target::Ballots { offset, limit, .. } => {
            format!("challenged ballots {offset}..{}", offset + limit)
        }
        Target::Shards { first, count } => format!("tally shards {first}..{}", first + count),
    }
}
