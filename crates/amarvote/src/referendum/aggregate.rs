//! The aggregation stage: counts accepted votes into `vote_results`, with one
//! `vote_audit` row per voter, in one transaction per batch.
//!
//! The audit row's primary key (the voter hash) is what makes redelivery
//! harmless, and its sequence what makes order irrelevant: a batch upserts its
//! audit rows keeping each voter's earliest attempt (`ON CONFLICT … WHERE
//! EXCLUDED.sequence < vote_audit.sequence RETURNING`), and only the rows that
//! changed move the results, an overturned later attempt's choice subtracted.
//! After the commit, the attempts that now stand are confirmed to the registry,
//! so it agrees with the audit even if it decided them in another order or lost
//! them. The batch is acked after the commit; a crash in between redelivers
//! votes that then change nothing. Database errors are retried with
//! exponential backoff ([`DB_TRIES`] tries) before the batch is requeued;
//! unreadable messages are dead-lettered; on shutdown the batch being built
//! is written and acked before the loop ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::stage::{next_batch, receipts, StageError, ERROR_PAUSE};
use crate::domain::vote_messages::VoteMessage;
use crate::metrics::referendum::{LawChoiceLabel, ReferendumMetrics};
use crate::ports::vote_queue::{BatchPolicy, Stream, VoteDelivery, VoteQueue};
use crate::ports::vote_store::VoteStore;
use crate::ports::voter_registry::{Counted, VoterRegistry};

/// Tries of one batch's transaction before it is requeued.
pub const DB_TRIES: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

pub struct Aggregator {
    pub queue: Arc<dyn VoteQueue>,
    pub registry: Arc<dyn VoterRegistry>,
    pub tables: Arc<dyn VoteStore>,
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
                Err(err) => Err(err.into()),
            };
            if let Err(err) = settled {
                tracing::warn!(%err, "aggregation batch not settled; it will be redelivered");
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
    }

    /// Counts, commits and settles one batch.
    pub async fn process(&self, batch: Vec<VoteDelivery>) -> Result<(), StageError> {
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
                return Err(err);
            }
        }
        self.metrics
            .observe_batch("aggregate", size, started.elapsed().as_secs_f64());
        Ok(())
    }

    async fn write_with_retries(&self, votes: &[VoteMessage]) -> Result<(), StageError> {
        let mut backoff = FIRST_BACKOFF;
        let mut tries = 0;
        loop {
            tries += 1;
            match self.tables.record_votes(votes).await {
                Ok(recorded) => {
                    self.count(&recorded.counted);
                    return self.confirm(recorded.standing).await;
                }
                Err(err) if err.transient && tries < DB_TRIES => {
                    tracing::warn!(%err, tries, "aggregation transaction failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Err(err) => return Err(err.into()),
            }
        }
    }

    fn count(
        &self,
        counted: &std::collections::BTreeMap<(String, crate::domain::voter_hash::Choice), i64>,
    ) {
        for ((law_id, choice), n) in counted {
            let label = LawChoiceLabel {
                law_id: law_id.clone(),
                choice: choice.as_str().to_owned(),
            };
            let counter = self.metrics.votes_aggregated.get_or_create(&label);
            counter.inc_by(n.max(&0).unsigned_abs());
        }
    }

    /// Tells the registry which attempt stands for each voter of the batch. A
    /// failure fails the batch: its redelivery changes nothing in the tables and
    /// confirms again, so registry and audit cannot stay apart.
    async fn confirm(&self, standing: Vec<Counted>) -> Result<(), StageError> {
        self.registry.restore(standing).await.map_err(|err| {
            tracing::warn!(%err, "counted votes not confirmed to the registry");
            StageError::Registry(err)
        })
    }
}

/// A batch split into its votes, their deliveries, and the unreadable messages.
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
