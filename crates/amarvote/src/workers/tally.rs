//! Tally chunks: the homomorphic sum of one range of cast ballots; finalization merges
//! the chunk sums into the one encrypted tally that is decrypted (no plaintext subtotals).

use electionguard::ballot::CiphertextBallot;
use electionguard::tally::CiphertextTally;

use crate::domain::{BallotState, ElectionState, JobRow};
use crate::service::codec::{from_cbor, to_cbor};
use crate::service::jobs::{ChunkSpec, Target};
use crate::service::App;

pub const TALLY_ID: &str = "election-results";
pub const ENCRYPTED_TALLY: &str = "encrypted_tally";
/// Ballots read from the store at a time: a chunk never holds more than this many.
pub const PAGE: u64 = 200;

pub async fn chunk(app: &App, job: &JobRow, spec: &ChunkSpec) -> anyhow::Result<Vec<u8>> {
    let Target::Ballots { offset, limit, .. } = spec.target else {
        anyhow::bail!("a tally chunk covers ballots")
    };
    let election = app.election(&job.election_id).await?;
    let crypto = app.crypto(&election).await?;
    let mut tally = CiphertextTally::empty(TALLY_ID, &crypto.manifest);
    let mut done = 0;
    let mut last: Option<(i64, String)> = None;
    while done < limit {
        let page = PAGE.min(limit - done);
        // Only the first page skips to the chunk's offset; the next ones continue from the
        // last ballot read, so a chunk's cost does not grow with its place in the election.
        let rows = match &last {
            None => {
                app.store
                    .ballots_page(&job.election_id, BallotState::Cast, offset, page)
                    .await?
            }
            Some((shuffle, id)) => {
                app.store
                    .ballots_after(&job.election_id, BallotState::Cast, (*shuffle, id), page)
                    .await?
            }
        };
        anyhow::ensure!(
            !rows.is_empty(),
            "ballots {offset}+{done} are missing: the ballot set changed after voting closed"
        );
        done += rows.len() as u64;
        last = rows.last().map(|r| (r.shuffle, r.ballot_id.clone()));
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
