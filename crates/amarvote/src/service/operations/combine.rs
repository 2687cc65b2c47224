//! Combine chunks: for the tally or a range of spoiled ballots, rebuild each missing
//! guardian's share from the compensated shares (Lagrange), combine all shares, and
//! take the discrete logs. The tally is decrypted once, as a whole.

use std::collections::HashMap;

use electionguard::decrypt::{
    combine_shares, lagrange_coefficients, reconstruct_share, CompensatedDecryptionShare,
    DecryptionShare, LagrangeCoefficientsRecord, PlaintextTally,
};
use electionguard::json::to_reference_json;
use electionguard::key_ceremony::ElectionPublicKey;

use super::decrypt::{public_key, targets, Shares};
use crate::domain::artifacts::{COEFFICIENTS, PLAINTEXT_TALLY, SPOILED_PREFIX};
use crate::domain::{ChunkSpec, Target};
use crate::domain::{ElectionState, JobRow};
use crate::service::codec::{from_cbor, to_cbor};
use crate::service::App;

/// Every share the decryption job produced for `target`, by object id.
async fn shares_for(
    app: &App,
    decrypt_job: &str,
    target: &Target,
) -> anyhow::Result<(
    HashMap<String, Vec<DecryptionShare>>,
    HashMap<String, Vec<CompensatedDecryptionShare>>,
)> {
    let mut direct: HashMap<String, Vec<DecryptionShare>> = HashMap::new();
    let mut compensated: HashMap<String, Vec<CompensatedDecryptionShare>> = HashMap::new();
    for c in app.store.chunks(decrypt_job).await? {
        if &c.spec.target != target {
            continue;
        }
        let bytes = app
            .store
            .chunk_result(decrypt_job, c.index)
            .await?
            .ok_or_else(|| anyhow::anyhow!("decryption chunk {} has no result", c.index))?;
        match from_cbor::<Shares>(&bytes)? {
            Shares::Direct(shares) => shares
                .into_iter()
                .for_each(|s| direct.entry(s.object_id.clone()).or_default().push(s)),
            Shares::Compensated(shares) => shares
                .into_iter()
                .for_each(|s| compensated.entry(s.object_id.clone()).or_default().push(s)),
        }
    }
    Ok((direct, compensated))
}

pub async fn chunk(app: &App, job: &JobRow, spec: &ChunkSpec) -> anyhow::Result<Vec<u8>> {
    let params = job.params.clone();
    let decrypt_job = params
        .decrypt_job
        .clone()
        .ok_or_else(|| anyhow::anyhow!("combine job without its decryption job"))?;
    let election = app.election(&job.election_id).await?;
    let crypto = app.crypto(&election).await?;
    let guardians = app.store.guardians(&job.election_id).await?;
    let keys: HashMap<String, ElectionPublicKey> = guardians
        .iter()
        .map(|g| Ok((g.guardian_id.clone(), public_key(g)?)))
        .collect::<anyhow::Result<_>>()?;
    let objects = targets(app, &job.election_id, &spec.target).await?;
    let (mut direct, mut compensated) = shares_for(app, &decrypt_job, &spec.target).await?;
    let plaintexts = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<PlaintextTally>> {
        let available: Vec<ElectionPublicKey> =
            params.available.iter().map(|id| keys[id].clone()).collect();
        let coefficients = lagrange_coefficients(&available);
        objects
            .iter()
            .map(|(id, contests)| {
                let mut shares = direct.remove(id).unwrap_or_default();
                let parts = compensated.remove(id).unwrap_or_default();
                for missing in &params.missing {
                    let mine: Vec<CompensatedDecryptionShare> = parts
                        .iter()
                        .filter(|p| &p.missing_guardian_id == missing)
                        .cloned()
                        .collect();
                    shares.push(reconstruct_share(
                        &keys[missing],
                        contests,
                        &mine,
                        &coefficients,
                    )?);
                }
                Ok(combine_shares(id, contests, &shares, &crypto.manifest)?)
            })
            .collect()
    })
    .await??;
    for tally in &plaintexts {
        let name = if spec.target == Target::Tally {
            PLAINTEXT_TALLY.to_string()
        } else {
            format!("{SPOILED_PREFIX}{}", tally.object_id)
        };
        app.store
            .put_artifact(&job.election_id, &name, to_reference_json(tally).as_bytes())
            .await?;
    }
    Ok(to_cbor(&(plaintexts.len() as u64)))
}

pub async fn finalize(app: &App, job: &JobRow) -> anyhow::Result<()> {
    let params = &job.params;
    let guardians = app.store.guardians(&job.election_id).await?;
    let available: Vec<ElectionPublicKey> = guardians
        .iter()
        .filter(|g| params.available.contains(&g.guardian_id))
        .map(public_key)
        .collect::<anyhow::Result<_>>()?;
    let record = LagrangeCoefficientsRecord {
        coefficients: lagrange_coefficients(&available),
    };
    app.store
        .put_artifact(
            &job.election_id,
            COEFFICIENTS,
            to_reference_json(&record).as_bytes(),
        )
        .await?;
    app.store
        .set_election_state(
            &job.election_id,
            ElectionState::Decrypted,
            ElectionState::Published,
        )
        .await?;
    Ok(())
}
