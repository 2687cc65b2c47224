//! The validation stage: decides each submitted vote against the registry and
//! routes it on.
//!
//! Accepted votes go to the aggregation stream; duplicates and ineligible
//! attempts go to the review stream. The registry decides a batch atomically
//! per vote and remembers each request's outcome, and the batch is acked only
//! after both downstream publishes are confirmed. A crash at any point thus
//! leads to a redelivery that reproduces the same decisions: a vote can be
//! passed on twice (the aggregator's audit key absorbs that) but never lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::messages::{encode, ReviewMessage, ReviewReason, VoteMessage};
use super::metrics::ReferendumMetrics;
use super::queue::{Stream, VoteDelivery, VoteQueue, VoteQueueError};
use super::registry::{MarkOutcome, RegistryError, VoterRegistry};
use super::stage::{next_batch, receipts, BatchPolicy, ERROR_PAUSE};

/// Validation batches: large (one registry round trip each) and short-lived,
/// since a voter is waiting to see the outcome.
pub const VALIDATE_POLICY: BatchPolicy = BatchPolicy {
    max_batch: 500,
    max_age: Duration::from_millis(10),
};

#[derive(Debug, thiserror::Error)]
enum ValidateError {
    #[error(transparent)]
    Queue(#[from] VoteQueueError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

pub struct Validator {
    pub queue: Arc<dyn VoteQueue>,
    pub registry: Arc<dyn VoterRegistry>,
    pub metrics: Arc<ReferendumMetrics>,
}

/// A batch split into readable votes and unreadable messages.
struct Parsed {
    votes: Vec<(VoteMessage, VoteDelivery)>,
    malformed: Vec<VoteDelivery>,
}

fn parse(batch: Vec<VoteDelivery>) -> Parsed {
    let mut parsed = Parsed {
        votes: Vec::with_capacity(batch.len()),
        malformed: Vec::new(),
    };
    for delivery in batch {
        match serde_json::from_slice::<VoteMessage>(&delivery.body) {
            Ok(vote) => parsed.votes.push((vote, delivery)),
            Err(_) => parsed.malformed.push(delivery),
        }
    }
    parsed
}

/// Where each decided vote goes next.
#[derive(Default)]
struct Routed {
    aggregation: Vec<Vec<u8>>,
    review: Vec<Vec<u8>>,
}

impl Routed {
    fn route(&mut self, vote: &VoteMessage, outcome: MarkOutcome) {
        let review = |reason, attempts| ReviewMessage {
            request_id: vote.request_id.clone(),
            voter_hash: vote.voter_hash,
            law_id: vote.law_id.clone(),
            reason,
            attempts,
            received_at: vote.received_at,
        };
        match outcome {
            MarkOutcome::Accepted => self.aggregation.push(encode(vote)),
            MarkOutcome::Duplicate { attempts } => self
                .review
                .push(encode(&review(ReviewReason::Duplicate, attempts))),
            MarkOutcome::NotEligible => self
                .review
                .push(encode(&review(ReviewReason::NotEligible, 0))),
        }
    }
}

/// The status name of an outcome, as the API and metrics report it.
pub fn status_name(outcome: MarkOutcome) -> &'static str {
    match outcome {
        MarkOutcome::Accepted => "accepted",
        MarkOutcome::Duplicate { .. } => "duplicate",
        MarkOutcome::NotEligible => "not_eligible",
    }
}

impl Validator {
    /// Consumes the validation stream until shutdown.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            if let Err(err) = self.step(&shutdown).await {
                tracing::warn!(%err, "validation batch failed; it will be redelivered");
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
    }

    async fn step(&self, shutdown: &watch::Receiver<bool>) -> Result<(), VoteQueueError> {
        let batch = next_batch(&*self.queue, Stream::Validation, VALIDATE_POLICY, shutdown).await?;
        if batch.is_empty() {
            return Ok(());
        }
        self.process(batch).await
    }

    /// Decides, routes and settles one batch.
    pub async fn process(&self, batch: Vec<VoteDelivery>) -> Result<(), VoteQueueError> {
        let started = Instant::now();
        let size = batch.len();
        let Parsed { votes, malformed } = parse(batch);
        if !malformed.is_empty() {
            self.queue
                .dead_letter(
                    Stream::Validation,
                    receipts(malformed),
                    "not a vote message",
                )
                .await?;
        }
        let (messages, deliveries): (Vec<_>, Vec<_>) = votes.into_iter().unzip();
        match self.decide_and_route(&messages).await {
            Ok(()) => {
                self.queue
                    .ack(Stream::Validation, receipts(deliveries))
                    .await?
            }
            Err(err) => {
                self.queue
                    .requeue(Stream::Validation, receipts(deliveries))
                    .await?;
                return Err(VoteQueueError::Broker(err.to_string()));
            }
        }
        self.metrics
            .observe_batch("validate", size, started.elapsed().as_secs_f64());
        Ok(())
    }

    async fn decide_and_route(&self, votes: &[VoteMessage]) -> Result<(), ValidateError> {
        if votes.is_empty() {
            return Ok(());
        }
        let requests = votes
            .iter()
            .map(|v| (v.request_id.clone(), v.voter_hash))
            .collect();
        let outcomes = self.registry.decide(requests).await?;
        let mut routed = Routed::default();
        for (vote, outcome) in votes.iter().zip(&outcomes) {
            routed.route(vote, *outcome);
        }
        self.queue
            .publish(Stream::Aggregation, &routed.aggregation)
            .await?;
        self.queue.publish(Stream::Review, &routed.review).await?;
        self.count(&outcomes);
        Ok(())
    }

    fn count(&self, outcomes: &[MarkOutcome]) {
        for outcome in outcomes {
            self.metrics.validated(status_name(*outcome)).inc();
            if matches!(outcome, MarkOutcome::Duplicate { .. }) {
                self.metrics.duplicate_attempts.inc();
            }
        }
    }
}
