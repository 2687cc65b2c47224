//! Tally chunks: the homomorphic sum of one range of cast ballots; finalization merges
//! the chunk sums into the one encrypted tally that is decrypted (no plaintext subtotals).

use electionguard::ballot::CiphertextBallot;
use electionguard::tally::CiphertextTally;

use super::pages::BallotPages;
use crate::domain::artifacts::ENCRYPTED_TALLY;
use crate::domain::{BallotState, ElectionState, JobRow};
use crate::domain::{ChunkSpec, Target};
use crate::service::codec::{from_cbor, to_cbor};
use crate::service::App;

pub const TALLY_ID: &str = "election-results";

pub async fn chunk(app: &App, job: &JobRow, spec: &ChunkSpec) -> anyhow::Result<Vec<u8>> {
    let Target::Ballots { offset, limit, .. } = spec.target else {
        anyhow::bail!("a tally chunk covers ballots")
    };
    let election = app.election(&job.election_id).await?;
    let crypto = app.crypto(&election).await?;
    let mut tally = CiphertextTally::empty(TALLY_ID, &crypto.manifest);
    let mut pages = BallotPages::new(app, &job.election_id, BallotState::Cast, offset, limit);
    while let Some(rows) = pages.next().await? {
        tally = tokio::task::spawn_blocking(move || -> anyhow::Result<CiphertextTally> {
            let ballots = rows
                .iter()
                .map(|r| from_cbor::<CiphertextBallot>(&r.body))
                .collect::<anyhow::Result<Vec<_>>>()?;
            tally.append_all(&ballots.iter().collect::<Vec<_>>())?;
            Ok(tally)
        })
        .await??;
    }
    Ok(to_cbor(&tally))
}

pub async fn finalize(app: &App, job: &JobRow) -> anyhow::Result<()> {
    let election = app.election(&job.election_id).await?;
    let crypto = app.crypto(&election).await?;
    let mut total = CiphertextTally::empty(TALLY_ID, &crypto.manifest);
    for (_, bytes) in app.store.chunk_results(&job.id).await? {
        total.merge(&from_cbor(&bytes)?)?;
    }
    app.store
        .put_artifact(&job.election_id, ENCRYPTED_TALLY, &to_cbor(&total))
        .await?;
    app.store
        .set_election_state(
            &job.election_id,
            ElectionState::Closed,
            ElectionState::Tallied,
        )
        .await?;
    Ok(())
}
