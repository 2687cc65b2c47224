//! The reconciler: what makes "committed" imply "processed". Every few seconds it
//! publishes the pending chunks of running jobs that no queue was given (the process
//! that planned them died before publishing, or the broker was down) and finalizes jobs
//! whose chunks are all settled but whose finalizer died, and removes pending ballots
//! that their voters never cast or challenged. Every step is idempotent, so any number of
//! processes may run it.

use std::time::Duration;

use tokio::sync::watch;

use crate::domain::{now_ms, JobState};
use crate::service::jobs::publish;
use crate::service::App;

/// Messages older than the queue's TTL (1 h) may have expired: publish those chunks again.
const REPUBLISH_AFTER_MS: i64 = 65 * 60 * 1000;
/// A job's starter publishes its chunks right after answering; one never published this
/// long after (a crash between commit and publish, the queue down) is the reconciler's.
const FIRST_PUBLISH_MS: i64 = 5_000;
/// A job left finalizing this long lost its finalizer.
const STALLED_FINALIZE_MS: i64 = 30_000;

pub async fn run(app: std::sync::Arc<App>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut last_sweep: Option<std::time::Instant> = None;
    loop {
        if let Err(e) = pass(&app).await {
            tracing::warn!(error = %e, "reconciler pass failed");
        }
        // The sweep scans the pending ballots: once a minute is enough for a one-hour TTL.
        if last_sweep.is_none_or(|at| at.elapsed() >= SWEEP_EVERY) {
            last_sweep = Some(std::time::Instant::now());
            if let Err(e) = expire_pending_ballots(&app).await {
                tracing::warn!(error = %e, "expiring pending ballots failed");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Removes ballots encrypted on the server that their voters neither cast nor challenged
/// within the pending-ballot TTL; returns how many.
pub async fn expire_pending_ballots(app: &App) -> anyhow::Result<u64> {
    let ttl = app.settings.pending_ballot_ttl.as_millis() as i64;
    let expired = app.store.expire_pending_ballots(now_ms() - ttl).await?;
    if expired > 0 {
        tracing::info!(
            ballots = expired,
            "removed pending ballots nobody cast or challenged in time"
        );
    }
    Ok(expired)
}

/// One pass; returns how many chunks it published.
pub async fn pass(app: &App) -> anyhow::Result<usize> {
    let orphans = app
        .store
        .unpublished_chunks(now_ms() - REPUBLISH_AFTER_MS, now_ms() - FIRST_PUBLISH_MS)
        .await?;
    if !orphans.is_empty() {
        tracing::info!(chunks = orphans.len(), "publishing chunks no queue has");
        publish(app, &orphans).await;
    }
    for job in app.store.jobs_in_state(JobState::Running).await? {
        crate::service::operations::maybe_finalize(app, &job).await?;
    }
    for job in app.store.jobs_in_state(JobState::Finalizing).await? {
        let last = app
            .store
            .chunks(&job.id)
            .await?
            .iter()
            .filter_map(|c| c.finished_at)
            .max()
            .unwrap_or(job.created_at);
        if now_ms() - last > STALLED_FINALIZE_MS {
            crate::service::operations::finalize(app, &job).await?;
        }
    }
    Ok(orphans.len())
}
