//! The review stage: logs every rejected attempt by request id in
//! `vote_rejections` (so its status survives the loss of the registry) and keeps
//! `duplicate_attempts` (hash, count, first, last) for fraud monitoring.
//!
//! Each duplicate's message carries the registry's cumulative attempt count,
//! so the upsert keeps the highest count seen and the widest time window; a
//! redelivered batch changes nothing. After the commit the outcomes are
//! confirmed to the registry where it has none (it lost them).

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use super::stage::{next_batch, receipts, StageError, ERROR_PAUSE};
use crate::domain::vote_messages::{ReviewMessage, ReviewReason};
use crate::domain::voter_hash::VoterHash;
use crate::metrics::referendum::ReferendumMetrics;
use crate::ports::vote_queue::{Stream, VoteDelivery, VoteQueue};
use crate::ports::vote_store::{merge_duplicates, VoteStore, VoteStoreError};
use crate::ports::voter_registry::{MarkOutcome, VoterRegistry};

pub struct Reviewer {
    pub queue: Arc<dyn VoteQueue>,
    pub registry: Arc<dyn VoterRegistry>,
    pub tables: Arc<dyn VoteStore>,
    pub metrics: Arc<ReferendumMetrics>,
}

impl Reviewer {
    /// Consumes the review stream until shutdown.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            let batch = next_batch(
                &*self.queue,
                Stream::Review,
                Stream::Review.batch_policy(),
                &shutdown,
            )
            .await;
            let settled = match batch {
                Ok(batch) if batch.is_empty() => Ok(()),
                Ok(batch) => self.process(batch).await,
                Err(err) => Err(err.into()),
            };
            if let Err(err) = settled {
                tracing::warn!(%err, "review batch not settled; it will be redelivered");
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
    }

    pub async fn process(&self, batch: Vec<VoteDelivery>) -> Result<(), StageError> {
        let started = Instant::now();
        let size = batch.len();
        let mut duplicates = Vec::new();
        let mut reviews = Vec::with_capacity(batch.len());
        let mut readable = Vec::with_capacity(batch.len());
        let mut malformed = Vec::new();
        for delivery in batch {
            match serde_json::from_slice::<ReviewMessage>(&delivery.body) {
                Ok(review) => {
                    if review.reason == ReviewReason::Duplicate {
                        duplicates.push((review.voter_hash, review.attempts, review.received_at));
                    }
                    reviews.push(review);
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
        if let Err(err) = self.record(&reviews, duplicates).await {
            self.queue
                .requeue(Stream::Review, receipts(readable))
                .await?;
            return Err(err.into());
        }
        self.queue.ack(Stream::Review, receipts(readable)).await?;
        let outcomes = reviews
            .into_iter()
            .map(|r| (r.request_id, MarkOutcome::of_review(r.reason, r.attempts)))
            .collect();
        if let Err(err) = self.registry.restore_outcomes(outcomes).await {
            tracing::warn!(%err, "rejections not confirmed to the registry");
        }
        self.metrics
            .observe_batch("review", size, started.elapsed().as_secs_f64());
        Ok(())
    }

    async fn record(
        &self,
        reviews: &[ReviewMessage],
        duplicates: Vec<(VoterHash, u64, i64)>,
    ) -> Result<(), VoteStoreError> {
        self.tables.record_rejections(reviews).await?;
        self.tables
            .record_duplicates(&merge_duplicates(duplicates))
            .await
    }
}
