//! The workers: one consumer per queue, one chunk at a time (prefetch 1). A chunk's
//! result is committed before its message is acknowledged; failures are retried with
//! exponential backoff and then dead-lettered; unreadable messages are dead-lettered at
//! once. On shutdown a worker finishes its current chunk, then stops taking new ones.
//!
//! The chunk work itself is a use case ([`crate::service::operations`]); [`reconciler`] republishes
//! what a crash left unpublished and finalizes jobs whose finalizer died.

pub mod reconciler;

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use crate::domain::{ChunkState, ChunkTask, JobKind, JobState, QueueName};
use crate::ports::queue::{backoff, Delivery, MAX_ATTEMPTS};
use crate::service::operations::{do_chunk, maybe_finalize};
use crate::service::App;

/// Consumes the given queues until `shutdown` turns true.
pub async fn run(app: Arc<App>, queues: Vec<QueueName>, shutdown: watch::Receiver<bool>) {
    let consumers: Vec<_> = queues
        .into_iter()
        .map(|q| tokio::spawn(consume(app.clone(), q, shutdown.clone())))
        .collect();
    for consumer in consumers {
        let _ = consumer.await;
    }
}

async fn consume(app: Arc<App>, queue: QueueName, mut shutdown: watch::Receiver<bool>) {
    tracing::info!(queue = queue.as_str(), "worker consuming");
    while !*shutdown.borrow() {
        let next = tokio::select! {
            next = app.queue.next(queue) => next,
            _ = shutdown.changed() => break,
        };
        match next {
            Ok(Some(delivery)) => handle(&app, queue, delivery).await,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(queue = queue.as_str(), error = %e, "queue unavailable; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
    tracing::info!(queue = queue.as_str(), "worker stopped");
}

/// Why a chunk was not done.
enum Failure {
    /// The message itself is unusable: no retry can help.
    Poison(String),
    /// The work failed; it may succeed on another try.
    Transient(anyhow::Error),
}

async fn handle(app: &App, queue: QueueName, delivery: Delivery) {
    let started = Instant::now();
    // Parsed once: a message that is not a chunk task (or names no possible job) is poison.
    let settled = match serde_json::from_slice::<ChunkTask>(&delivery.body) {
        Ok(task) => match process_task(app, &task).await {
            Ok(Some(kind)) => {
                app.metrics.chunk_done(kind, started.elapsed());
                crate::memory::return_freed_memory();
                delivery.settle.ack().await
            }
            Ok(None) => delivery.settle.ack().await,
            Err(Failure::Poison(reason)) => bury(app, queue, &reason, delivery.settle).await,
            Err(Failure::Transient(error)) => {
                retry_or_bury(app, queue, &task, delivery.attempt, error, delivery.settle).await
            }
        },
        Err(e) => {
            let reason = format!("malformed chunk message: {e}");
            bury(app, queue, &reason, delivery.settle).await
        }
    };
    if let Err(e) = settled {
        // The message comes back (visibility timeout or broker redelivery); the result, if any, is already stored.
        tracing::warn!(queue = queue.as_str(), error = %e, "could not settle a message");
    }
}

async fn bury(
    app: &App,
    queue: QueueName,
    reason: &str,
    settle: Box<dyn crate::ports::queue::Settle>,
) -> Result<(), crate::ports::queue::QueueError> {
    tracing::warn!(queue = queue.as_str(), %reason, "dead-lettering a message");
    app.metrics.chunk_failed(queue, "poison");
    settle.dead_letter(reason).await
}

async fn retry_or_bury(
    app: &App,
    queue: QueueName,
    task: &ChunkTask,
    attempt: u32,
    error: anyhow::Error,
    settle: Box<dyn crate::ports::queue::Settle>,
) -> Result<(), crate::ports::queue::QueueError> {
    let message = format!("{error:#}");
    tracing::warn!(job = %task.job_id, chunk = task.chunk, attempt, error = %message, "chunk failed");
    app.metrics.chunk_failed(queue, "error");
    if attempt >= MAX_ATTEMPTS {
        let _ = app
            .store
            .fail_chunk(&task.job_id, task.chunk, &message, ChunkState::Dead)
            .await;
        if let Ok(Some(job)) = app.store.job(&task.job_id).await {
            let _ = maybe_finalize(app, &job).await;
        }
        settle.dead_letter(&message).await
    } else {
        let _ = app
            .store
            .fail_chunk(&task.job_id, task.chunk, &message, ChunkState::Pending)
            .await;
        settle.retry(backoff(attempt)).await
    }
}

/// Does the chunk unless it is already done or its job is not running; returns the
/// job kind when work was done.
async fn process_task(app: &App, task: &ChunkTask) -> Result<Option<JobKind>, Failure> {
    // Corrupt stored data will not mend by itself: such a chunk is poison at once.
    let transient = |e: crate::ports::StoreError| match e {
        crate::ports::StoreError::Corrupt(what) => Failure::Poison(what),
        other => Failure::Transient(other.into()),
    };
    let job = app
        .store
        .job(&task.job_id)
        .await
        .map_err(transient)?
        .ok_or_else(|| Failure::Poison(format!("no job {}", task.job_id)))?;
    let chunk = app
        .store
        .chunk(&task.job_id, task.chunk)
        .await
        .map_err(transient)?
        .ok_or_else(|| {
            Failure::Poison(format!("job {} has no chunk {}", task.job_id, task.chunk))
        })?;
    if job.state != JobState::Running || chunk.state != ChunkState::Pending {
        return Ok(None);
    }
    app.store
        .start_chunk(&job.id, chunk.index)
        .await
        .map_err(transient)?;
    let result = do_chunk(app, &job, &chunk.spec)
        .await
        .map_err(Failure::Transient)?;
    if app
        .store
        .complete_chunk(&job.id, chunk.index, &result)
        .await
        .map_err(transient)?
    {
        maybe_finalize(app, &job)
            .await
            .map_err(Failure::Transient)?;
    }
    Ok(Some(job.kind))
}
