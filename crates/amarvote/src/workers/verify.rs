//! Verification chunks: every proof and hash of a range of stored ballots, and each
//! ballot's code; finalization writes the summary the API and the web pages show.

use electionguard::ballot::CiphertextBallot;
use serde::{Deserialize, Serialize};

use crate::domain::JobRow;
use crate::service::codec::{from_cbor, to_cbor};
use crate::service::jobs::{ChunkSpec, Target};
use crate::service::App;

pub const VERIFICATION: &str = "verification";

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct BallotVerification {
    pub checked: u64,
    pub failures: Vec<String>,
}

pub async fn chunk(app: &App, job: &JobRow, spec: &ChunkSpec) -> anyhow::Result<Vec<u8>> {
    let Target::Ballots {
        state,
        offset,
        limit,
    } = spec.target
    else {
        anyhow::bail!("a verification chunk covers ballots")
    };
    let election = app.election(&job.election_id).await?;
    let crypto = app.crypto(&election).await?;
    let rows = app
        .store
        .ballots_page(&job.election_id, state, offset, limit)
        .await?;
    let report = tokio::task::spawn_blocking(move || -> anyhow::Result<BallotVerification> {
        let mut report = BallotVerification::default();
        for row in &rows {
            let ballot: CiphertextBallot = from_cbor(&row.body)?;
            report.checked += 1;
            let code = CiphertextBallot::compute_code(
                &ballot.code_seed,
                ballot.timestamp,
                &ballot.crypto_hash,
            );
            if row.code.as_deref() != Some(code.to_hex().as_str()) || code != ballot.code {
                report
                    .failures
                    .push(format!("ballot {}: code does not match", ballot.object_id));
            }
            if let Err(e) = electionguard::verify::verify_submission(
                &ballot,
                &crypto.manifest,
                &crypto.context,
                &crypto.key,
            ) {
                report.failures.push(e);
            }
        }
        Ok(report)
    })
    .await??;
    Ok(to_cbor(&report))
}

pub async fn finalize(app: &App, job: &JobRow) -> anyhow::Result<()> {
    let mut total = BallotVerification::default();
    for (_, bytes) in app.store.chunk_results(&job.id).await? {
        let part: BallotVerification = from_cbor(&bytes)?;
        total.checked += part.checked;
        total.failures.extend(part.failures);
    }
    app.store
        .put_artifact(&job.election_id, VERIFICATION, &serde_json::to_vec(&total)?)
        .await?;
    Ok(())
}
