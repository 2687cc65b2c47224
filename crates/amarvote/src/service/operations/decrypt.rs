//! Decryption chunks: one guardian's shares (with proofs) of the tally or of a range of
//! spoiled ballots — its own, or compensated shares standing in for a missing guardian.
//! The guardian's secret is opened from its grant for this chunk only and zeroized on drop.

use electionguard::ballot::CiphertextBallot;
use electionguard::decrypt::{
    ballot_ciphertexts, compute_compensated_share, compute_decryption_share, tally_ciphertexts,
    CompensatedDecryptionShare, ContestCiphertexts, DecryptionShare,
};
use electionguard::group::ElementModQ;
use electionguard::json::from_json;
use electionguard::key_ceremony::{ElectionPublicKey, GuardianRecord};
use electionguard::tally::CiphertextTally;
use serde::{Deserialize, Serialize};

use super::tally::TALLY_ID;
use crate::domain::artifacts::ENCRYPTED_TALLY;
use crate::domain::{ChunkSpec, Target};
use crate::domain::{ElectionState, GuardianRow, JobRow};
use crate::service::codec::{from_cbor, to_cbor};
use crate::service::guardians::open_grant;
use crate::service::App;

/// What a decryption chunk stores.
#[derive(Serialize, Deserialize)]
pub enum Shares {
    Direct(Vec<DecryptionShare>),
    Compensated(Vec<CompensatedDecryptionShare>),
}

/// The ciphertexts a target covers, each with its object id.
pub async fn targets(
    app: &App,
    election_id: &str,
    target: &Target,
) -> anyhow::Result<Vec<(String, Vec<ContestCiphertexts>)>> {
    match target {
        Target::Tally => {
            let bytes = app
                .store
                .artifact(election_id, ENCRYPTED_TALLY)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no encrypted tally"))?;
            let tally: CiphertextTally = from_cbor(&bytes)?;
            Ok(vec![(TALLY_ID.to_string(), tally_ciphertexts(&tally))])
        }
        Target::Shards { .. } => anyhow::bail!("shards are tallied, not decrypted"),
        Target::Ballots {
            state,
            offset,
            limit,
        } => {
            let rows = app
                .store
                .ballots_page(election_id, *state, *offset, *limit)
                .await?;
            anyhow::ensure!(
                rows.len() as u64 == *limit,
                "spoiled ballots changed after the tally"
            );
            rows.iter()
                .map(|r| {
                    let ballot: CiphertextBallot = from_cbor(&r.body)?;
                    Ok((ballot.object_id.clone(), ballot_ciphertexts(&ballot)))
                })
                .collect()
        }
    }
}

pub fn public_key(row: &GuardianRow) -> anyhow::Result<ElectionPublicKey> {
    let record: GuardianRecord = from_json(&row.public_json)?;
    Ok(ElectionPublicKey::from(&record))
}

fn find<'a>(guardians: &'a [GuardianRow], id: &str) -> anyhow::Result<&'a GuardianRow> {
    guardians
        .iter()
        .find(|g| g.guardian_id == id)
        .ok_or_else(|| anyhow::anyhow!("no guardian {id}"))
}

/// What computing or checking one decryption chunk's shares needs.
pub struct ChunkInputs {
    pub extended_base_hash: ElementModQ,
    /// The guardian whose shares the chunk holds.
    pub guardian: GuardianRow,
    /// For compensated shares, the missing guardian they stand in for.
    pub missing: Option<GuardianRow>,
    pub objects: Vec<(String, Vec<ContestCiphertexts>)>,
}

pub async fn chunk_inputs(
    app: &App,
    election_id: &str,
    spec: &ChunkSpec,
) -> anyhow::Result<ChunkInputs> {
    let election = app.election(election_id).await?;
    let crypto = app.crypto(&election).await?;
    let guardians = app.store.guardians(election_id).await?;
    let guardian = find(&guardians, spec.guardian.as_deref().unwrap_or_default())?.clone();
    let missing = spec
        .missing
        .as_deref()
        .map(|m| find(&guardians, m).cloned())
        .transpose()?;
    Ok(ChunkInputs {
        extended_base_hash: crypto.context.crypto_extended_base_hash.clone(),
        guardian,
        missing,
        objects: targets(app, election_id, &spec.target).await?,
    })
}

pub async fn chunk(app: &App, job: &JobRow, spec: &ChunkSpec) -> anyhow::Result<Vec<u8>> {
    let ChunkInputs {
        extended_base_hash: qbar,
        guardian,
        missing,
        objects,
    } = chunk_inputs(app, &job.election_id, spec).await?;
    let secret = open_grant(app, &guardian)?;
    let shares = tokio::task::spawn_blocking(move || -> anyhow::Result<Shares> {
        match missing {
            None => Ok(Shares::Direct(
                objects
                    .iter()
                    .map(|(id, contests)| {
                        compute_decryption_share(id, &secret.key_pair, contests, &qbar)
                    })
                    .collect(),
            )),
            Some(missing) => {
                let (available, absent) = (public_key(&guardian)?, public_key(&missing)?);
                let (_, coordinate) = secret
                    .received
                    .iter()
                    .find(|(from, _)| *from == missing.guardian_id)
                    .ok_or_else(|| anyhow::anyhow!("no backup from {}", missing.guardian_id))?;
                Ok(Shares::Compensated(
                    objects
                        .iter()
                        .map(|(id, contests)| {
                            compute_compensated_share(
                                id, coordinate, &available, &absent, contests, &qbar,
                            )
                        })
                        .collect(),
                ))
            }
        }
    })
    .await??;
    Ok(to_cbor(&shares))
}

pub async fn finalize(app: &App, job: &JobRow) -> anyhow::Result<()> {
    app.store
        .set_election_state(
            &job.election_id,
            ElectionState::Tallied,
            ElectionState::Decrypted,
        )
        .await?;
    Ok(())
}
