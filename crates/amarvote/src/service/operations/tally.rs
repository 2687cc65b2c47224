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
    let election = app.election(&job.election_id).await?;
    let crypto = app.crypto(&election).await?;
    let tally = CiphertextTally::empty(TALLY_ID, &crypto.manifest);
    let tally = match spec.target {
        Target::Shards { first, count } => of_shards(app, job, tally, first, count).await?,
        Target::Ballots { offset, limit, .. } => of_ballots(app, job, tally, offset, limit).await?,
        Target::Tally => anyhow::bail!("a tally chunk covers shards or ballots"),
    };
    Ok(to_cbor(&tally))
}

/// The product of running products kept at cast time: what each shard holds is already
/// the product of its cast ballots.
async fn of_shards(
    app: &App,
    job: &JobRow,
    mut tally: CiphertextTally,
    first: u64,
    count: u64,
) -> anyhow::Result<CiphertextTally> {
    let shards = app
        .store
        .tally_shards(&job.election_id, first, count)
        .await?;
    tokio::task::spawn_blocking(move || {
        let products: Vec<&[u8]> = shards.iter().map(|s| s.product.as_slice()).collect();
        tally.append_inputs(&products)?;
        Ok(tally)
    })
    .await?
}

/// The product of whole stored ballots, page by page: for a ballot box cast before
/// running products were kept.
async fn of_ballots(
    app: &App,
    job: &JobRow,
    mut tally: CiphertextTally,
    offset: u64,
    limit: u64,
) -> anyhow::Result<CiphertextTally> {
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
    Ok(tally)
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
