//! The aggregation stage: counts accepted votes into `vote_results`, with one
//! `vote_audit` row per voter, in one transaction per batch.
//!
//! The audit row's primary key (the voter hash) is what makes redelivery
//! harmless: a batch inserts its audit rows with `ON CONFLICT DO NOTHING
//! RETURNING`, and only the rows actually inserted are added to the results.
//! The batch is acked after the commit; a crash in between redelivers votes
//! that are then found already audited. Database errors are retried with
//! exponential backoff ([`DB_TRIES`] tries) before the batch is requeued;
//! unreadable messages are dead-lettered; on shutdown the batch being built
//! is written and acked before the loop ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::messages::VoteMessage;
use super::metrics::{LawChoiceLabel, ReferendumMetrics};
use super::queue::{Stream, VoteDelivery, VoteQueue, VoteQueueError};
use super::stage::{next_batch, receipts, BatchPolicy, ERROR_PAUSE};
use super::tables::VoteTables;

/// 100 votes or one second, whichever comes first.
pub const AGGREGATE_POLICY: BatchPolicy = BatchPolicy {
    max_batch: 100,
    max_age: Duration::from_secs(1),
};
/// Tries of one batch's transaction before it is requeued.
pub const DB_TRIES: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

pub struct Aggregator {
    pub queue: Arc<dyn VoteQueue>,
    pub tables: VoteTables,
    pub metrics: Arc<ReferendumMetrics>,
    pub policy: BatchPolicy,
}

impl Aggregator {
    /// Consumes the aggregation stream until shutdown, flushing the last batch.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            let batch = next_batch(&*self.queue, Stream::Aggregation, self.policy, &shutdown).await;
            let settled = match batch {
                Ok(batch) if batch.is_empty() => Ok(()),
                Ok(batch) => self.process(batch).await,
                Err(err) => Err(err),
            };
            if let Err(err) = settled {
                tracing::warn!(%err, "aggregation batch not settled; it will be redelivered");
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
    }

    /// Counts, commits and settles one batch.
    pub async fn process(&self, batch: Vec<VoteDelivery>) -> Result<(), VoteQueueError> {
        let started = Instant::now();
        let size = batch.len();
        let (votes, deliveries, malformed) = parse(batch);
        if !malformed.is_empty() {
            self.queue
                .dead_letter(
                    Stream::Aggregation,
                    receipts(malformed),
                    "not a vote message",
                )
                .await?;
        }
        match self.write_with_retries(&votes).await {
            Ok(()) => {
                self.queue
                    .ack(Stream::Aggregation, receipts(deliveries))
                    .await?
            }
            Err(err) => {
                self.queue
                    .requeue(Stream::Aggregation, receipts(deliveries))
                    .await?;
                return Err(VoteQueueError::Store(err));
            }
        }
        self.metrics
            .observe_batch("aggregate", size, started.elapsed().as_secs_f64());
        Ok(())
    }

    async fn write_with_retries(&self, votes: &[VoteMessage]) -> Result<(), sqlx::Error> {
        let mut backoff = FIRST_BACKOFF;
        let mut tries = 0;
        loop {
            tries += 1;
            match self.tables.record_votes(votes).await {
                Ok(counted) => {
                    for ((law_id, choice), n) in counted {
                        let label = LawChoiceLabel {
                            law_id,
                            choice: choice.as_str().to_owned(),
                        };
                        self.metrics
                            .votes_aggregated
                            .get_or_create(&label)
                            .inc_by(n);
                    }
                    return Ok(());
                }
                Err(err) if tries < DB_TRIES => {
                    tracing::warn!(%err, tries, "aggregation transaction failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Err(err) => return Err(err),
            }
        }
    }
}

fn parse(batch: Vec<VoteDelivery>) -> (Vec<VoteMessage>, Vec<VoteDelivery>, Vec<VoteDelivery>) {
    let mut votes = Vec::with_capacity(batch.len());
    let mut deliveries = Vec::with_capacity(batch.len());
    let mut malformed = Vec::new();
    for delivery in batch {
        match serde_json::from_slice::<VoteMessage>(&delivery.body) {
            Ok(vote) => {
                votes.push(vote);
                deliveries.push(delivery);
            }
            Err(_) => malformed.push(delivery),
        }
    }
    (votes, deliveries, malformed)
}
