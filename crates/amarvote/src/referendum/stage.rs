//! What the consuming stages (validate, aggregate, review) share: building a
//! batch from a stream by size or age, and the loop that stops cleanly on
//! shutdown.
//!
//! The queue hands back whatever is ready; a stage that wants "100 messages or
//! one second" keeps asking until either holds. Shutdown is checked between
//! short consume calls rather than by cancelling one, so a batch being built
//! when SIGTERM arrives is processed and settled, never dropped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::metrics::referendum::{ReferendumMetrics, StreamLabel};
use crate::ports::vote_queue::{
    BatchPolicy, Receipt, Stream, VoteDelivery, VoteQueue, VoteQueueError,
};
use crate::ports::vote_store::VoteStoreError;
use crate::ports::voter_registry::RegistryError;

/// Why a stage left a batch unsettled: it is requeued (or, if the queue itself failed,
/// redelivered) and decided again. Each port's failure keeps its own name.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Queue(#[from] VoteQueueError),
    #[error("voter registry: {0}")]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] VoteStoreError),
}

/// The longest single consume call, so shutdown is seen promptly.
const CONSUME_SLICE: Duration = Duration::from_millis(100);
/// The pause after a failed queue call, so a broker outage is not a busy loop.
pub const ERROR_PAUSE: Duration = Duration::from_millis(500);

/// Collects one batch: returns when it is full, when its first message is
/// `max_age` old, or (possibly empty) when shutdown is requested or the
/// stream stays empty for a consume slice.
pub async fn next_batch(
    queue: &dyn VoteQueue,
    stream: Stream,
    policy: BatchPolicy,
    shutdown: &watch::Receiver<bool>,
) -> Result<Vec<VoteDelivery>, VoteQueueError> {
    let mut batch = Vec::new();
    let mut started: Option<Instant> = None;
    loop {
        let wait = match started {
            None => CONSUME_SLICE,
            Some(at) => policy
                .max_age
                .saturating_sub(at.elapsed())
                .min(CONSUME_SLICE),
        };
        let more = queue
            .consume(stream, policy.max_batch - batch.len(), wait)
            .await?;
        if started.is_none() && !more.is_empty() {
            started = Some(Instant::now());
        }
        batch.extend(more);
        let aged = started.is_some_and(|at| at.elapsed() >= policy.max_age);
        let idle = started.is_none();
        if batch.len() >= policy.max_batch || aged || idle || *shutdown.borrow() {
            return Ok(batch);
        }
    }
}

/// Receipts of a set of deliveries, consuming them.
pub fn receipts(deliveries: Vec<VoteDelivery>) -> Vec<Receipt> {
    deliveries.into_iter().map(|d| d.receipt).collect()
}

/// Refreshes the queue-depth gauge every `every` until shutdown.
pub async fn watch_queue_depth(
    queue: Arc<dyn VoteQueue>,
    metrics: Arc<ReferendumMetrics>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    while !*shutdown.borrow() {
        for stream in Stream::ALL {
            if let Ok(depth) = queue.depth(stream).await {
                let label = StreamLabel {
                    queue: stream.queue_name().to_owned(),
                };
                metrics
                    .queue_depth
                    .get_or_create(&label)
                    .set(i64::try_from(depth).unwrap_or(i64::MAX));
            }
        }
        let _ = tokio::time::timeout(every, shutdown.changed()).await;
    }
}
