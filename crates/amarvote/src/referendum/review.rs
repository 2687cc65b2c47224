//! The review stage: keeps `duplicate_attempts` (hash, count, first, last)
//! from the review stream, for fraud monitoring.
//!
//! Each duplicate's message carries the registry's cumulative attempt count,
//! so the upsert keeps the highest count seen and the widest time window; a
//! redelivered batch changes nothing. Ineligible attempts are only counted in
//! the metrics (their hash matches no voter, so there is no one to track).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::messages::{ReviewMessage, ReviewReason};
use super::metrics::ReferendumMetrics;
use super::queue::{Stream, VoteDelivery, VoteQueue, VoteQueueError};
use super::stage::{next_batch, receipts, BatchPolicy, ERROR_PAUSE};
use super::tables::{merge_duplicates, VoteTables};

pub const REVIEW_POLICY: BatchPolicy = BatchPolicy {
    max_batch: 200,
    max_age: Duration::from_millis(500),
};

pub struct Reviewer {
    pub queue: Arc<dyn VoteQueue>,
    pub tables: VoteTables,
    pub metrics: Arc<ReferendumMetrics>,
}

impl Reviewer {
    /// Consumes the review stream until shutdown.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            let batch = next_batch(&*self.queue, Stream::Review, REVIEW_POLICY, &shutdown).await;
            let settled = match batch {
                Ok(batch) if batch.is_empty() => Ok(()),
                Ok(batch) => self.process(batch).await,
                Err(err) => Err(err),
            };
            if let Err(err) = settled {
                tracing::warn!(%err, "review batch not settled; it will be redelivered");
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
    }

    pub async fn process(&self, batch: Vec<VoteDelivery>) -> Result<(), VoteQueueError> {
        let started = Instant::now();
        let size = batch.len();
        let mut duplicates = Vec::new();
        let mut readable = Vec::with_capacity(batch.len());
        let mut malformed = Vec::new();
        for delivery in batch {
            match serde_json::from_slice::<ReviewMessage>(&delivery.body) {
                Ok(review) => {
                    if review.reason == ReviewReason::Duplicate {
                        duplicates.push((review.voter_hash, review.attempts, review.received_at));
                    }
                    readable.push(delivery);
                }
                Err(_) => malformed.push(delivery),
            }
        }
        if !malformed.is_empty() {
            self.queue
                .dead_letter(Stream::Review, receipts(malformed), "not a review message")
                .await?;
        }
        if let Err(err) = self
            .tables
            .record_duplicates(&merge_duplicates(duplicates))
            .await
        {
            self.queue
                .requeue(Stream::Review, receipts(readable))
                .await?;
            return Err(VoteQueueError::Store(err));
        }
        self.queue.ack(Stream::Review, receipts(readable)).await?;
        self.metrics
            .observe_batch("review", size, started.elapsed().as_secs_f64());
        Ok(())
    }
}
