//! What each job operation does: the work of one chunk, and the merge when a job's last
//! chunk is settled. The worker role calls these for chunks it takes off a queue; guardians'
//! uploaded shares (remote decryption) settle chunks through the same finalization.

mod combine;
pub mod decrypt;
mod pages;
mod tally;
mod verify;

use crate::domain::ChunkSpec;
use crate::domain::{JobKind, JobRow, JobState};
use crate::ports::queue::MAX_ATTEMPTS;
use crate::service::App;

/// The work of one chunk; its result is what the chunk stores.
pub async fn do_chunk(app: &App, job: &JobRow, spec: &ChunkSpec) -> anyhow::Result<Vec<u8>> {
    match job.kind {
        JobKind::Tally => tally::chunk(app, job, spec).await,
        JobKind::Decrypt => decrypt::chunk(app, job, spec).await,
        JobKind::Combine => combine::chunk(app, job, spec).await,
        JobKind::Verify => verify::chunk(app, job, spec).await,
    }
}

/// When every chunk is settled: a job with dead chunks fails; otherwise exactly one
/// caller wins the move to finalizing and finalizes.
pub async fn maybe_finalize(app: &App, job: &JobRow) -> anyhow::Result<()> {
    let counts = app.store.chunk_counts(&job.id).await?;
    if counts.done + counts.dead < counts.total {
        return Ok(());
    }
    if counts.dead > 0 {
        let message = format!(
            "{} of {} chunks failed after {MAX_ATTEMPTS} attempts",
            counts.dead, counts.total
        );
        app.store
            .set_job_state(
                &job.id,
                &[JobState::Running],
                JobState::Failed,
                Some(&message),
            )
            .await?;
        return Ok(());
    }
    if app
        .store
        .set_job_state(&job.id, &[JobState::Running], JobState::Finalizing, None)
        .await?
    {
        finalize(app, job).await?;
    }
    Ok(())
}

/// Merges a finished job's chunk results into what it produces; idempotent.
pub async fn finalize(app: &App, job: &JobRow) -> anyhow::Result<()> {
    match job.kind {
        JobKind::Tally => tally::finalize(app, job).await?,
        JobKind::Decrypt => decrypt::finalize(app, job).await?,
        JobKind::Combine => combine::finalize(app, job).await?,
        JobKind::Verify => verify::finalize(app, job).await?,
    }
    app.store
        .set_job_state(&job.id, &[JobState::Finalizing], JobState::Done, None)
        .await?;
    app.metrics.job_finished(job.kind, job.created_at);
    Ok(())
}
