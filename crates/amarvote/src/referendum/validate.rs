//! The validation stage: decides each submitted vote against the registry and
//! routes it on.
//!
//! Accepted votes go to the aggregation stream; duplicates and ineligible
//! attempts go to the review stream. The registry decides a batch atomically
//! per vote and remembers each request's outcome, and the batch is acked only
//! after both downstream publishes are confirmed. A crash at any point thus
//! leads to a redelivery that reproduces the same decisions: a vote can be
//! passed on twice (the aggregator's audit key absorbs that) but never lost.
//! Which of a voter's attempts counts does not depend on the order batches are
//! decided in (see [`crate::ports::voter_registry`]), so any number of validators may run.
//!
//! When the registry is not ready (Redis came back empty, or voters were loaded
//! but the voted state is not rebuilt), the batch is requeued untouched, the
//! `voter_registry_ready` gauge drops to 0, and the validator waits. If the
//! registry is loaded but not rebuilt, the validator rebuilds it from the audit
//! log itself (one process at a time, under the registry's lease) and resumes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::rebuild::rebuild;
use super::stage::{next_batch, receipts, StageError, ERROR_PAUSE};
use crate::domain::vote_messages::{encode, ReviewMessage, ReviewReason, VoteMessage};
use crate::metrics::referendum::ReferendumMetrics;
use crate::ports::vote_queue::{Stream, VoteDelivery, VoteQueue};
use crate::ports::vote_store::VoteStore;
use crate::ports::voter_registry::{Attempt, MarkOutcome, Readiness, RegistryError, VoterRegistry};

/// How long a validator waits before looking at a registry that was not ready again.
const NOT_READY_PAUSE: Duration = Duration::from_secs(1);
/// How often an idle validator looks at the registry's state.
const IDLE_LOOK: Duration = Duration::from_secs(2);

pub struct Validator {
    pub queue: Arc<dyn VoteQueue>,
    pub registry: Arc<dyn VoterRegistry>,
    /// The audit log, to rebuild the registry from.
    pub tables: Arc<dyn VoteStore>,
    pub metrics: Arc<ReferendumMetrics>,
    /// Wrong codes that lock a NAS out of a law.
    pub max_wrong_codes: u32,
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
            MarkOutcome::Locked => self.review.push(encode(&review(ReviewReason::Locked, 0))),
        }
    }
}

/// The status name of an outcome, as the API and metrics report it.
pub fn status_name(outcome: MarkOutcome) -> &'static str {
    match outcome {
        MarkOutcome::Accepted => "accepted",
        MarkOutcome::Duplicate { .. } => "duplicate",
        MarkOutcome::NotEligible => "not_eligible",
        MarkOutcome::Locked => "locked",
    }
}

impl Validator {
    /// Consumes the validation stream until shutdown.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let mut looked = Instant::now();
        while !*shutdown.borrow() {
            match self.step(&shutdown).await {
                Ok(true) => {}
                Ok(false) if looked.elapsed() >= IDLE_LOOK => {
                    self.watch_registry().await;
                    looked = Instant::now();
                }
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(%err, "validation batch failed; it will be redelivered");
                    tokio::time::sleep(ERROR_PAUSE).await;
                }
            }
        }
    }

    /// One batch; false if there was none.
    async fn step(&self, shutdown: &watch::Receiver<bool>) -> Result<bool, StageError> {
        let batch = next_batch(
            &*self.queue,
            Stream::Validation,
            Stream::Validation.batch_policy(),
            shutdown,
        )
        .await?;
        if batch.is_empty() {
            return Ok(false);
        }
        self.process(batch).await.map(|()| true)
    }

    /// Decides, routes and settles one batch.
    pub async fn process(&self, batch: Vec<VoteDelivery>) -> Result<(), StageError> {
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
                self.metrics.registry_ready.set(1);
                self.queue
                    .ack(Stream::Validation, receipts(deliveries))
                    .await?
            }
            Err(StageError::Registry(RegistryError::NotReady)) => {
                self.queue
                    .requeue(Stream::Validation, receipts(deliveries))
                    .await?;
                self.registry_not_ready().await;
                return Ok(());
            }
            Err(err) => {
                self.queue
                    .requeue(Stream::Validation, receipts(deliveries))
                    .await?;
                return Err(err);
            }
        }
        self.metrics
            .observe_batch("validate", size, started.elapsed().as_secs_f64());
        Ok(())
    }

    async fn decide_and_route(&self, votes: &[VoteMessage]) -> Result<(), StageError> {
        if votes.is_empty() {
            return Ok(());
        }
        let attempts = votes.iter().map(Attempt::from).collect();
        let outcomes = self.registry.decide(attempts, self.max_wrong_codes).await?;
        let mut routed = Routed::default();
        for (vote, outcome) in votes.iter().zip(&outcomes) {
            routed.route(vote, *outcome);
        }
        self.queue
            .publish(Stream::Aggregation, &routed.aggregation)
            .await?;
        self.queue.publish(Stream::Review, &routed.review).await?;
        self.count(votes, &outcomes);
        Ok(())
    }

    fn count(&self, votes: &[VoteMessage], outcomes: &[MarkOutcome]) {
        let now = crate::domain::now_ms();
        for vote in votes {
            let waited_ms = (now - vote.received_at).max(0);
            self.metrics
                .validation_seconds
                .observe(waited_ms as f64 / 1000.0);
        }
        for outcome in outcomes {
            self.metrics.validated(status_name(*outcome)).inc();
            if matches!(outcome, MarkOutcome::Duplicate { .. }) {
                self.metrics.duplicate_attempts.inc();
            }
        }
    }

    /// Holds off while the registry is not ready, rebuilding it when it has been
    /// loaded and this process gets the lease.
    async fn registry_not_ready(&self) {
        self.metrics.registry_ready.set(0);
        match self.registry.state().await {
            Ok(state) if state.readiness == Readiness::Loaded => self.try_rebuild().await,
            Ok(state) if state.readiness == Readiness::Missing => tracing::warn!(
                "the voter registry is missing (lost, or never loaded): votes stay queued until \
                 the voter hashes are loaded (amarvote referendum load)"
            ),
            Ok(_) => {}
            Err(err) => tracing::warn!(%err, "cannot read the voter registry's state"),
        }
        tokio::time::sleep(NOT_READY_PAUSE).await;
    }

    async fn try_rebuild(&self) {
        match rebuild(&*self.registry, &*self.tables).await {
            Ok(Some(voters)) => tracing::info!(voters, "voter registry rebuilt from the audit log"),
            Ok(None) => tracing::info!("another process is rebuilding the voter registry"),
            Err(err) => tracing::error!(%err, "rebuilding the voter registry failed"),
        }
    }

    /// While idle, looks at the registry now and then, so a loss shows on
    /// `/health` and `/metrics` before the next vote arrives.
    async fn watch_registry(&self) {
        match self.registry.state().await {
            Ok(state) if state.readiness == Readiness::Ready => {
                self.metrics.registry_ready.set(1);
            }
            // Quietly: a referendum not set up yet is no alarm until votes wait.
            Ok(state) if state.readiness == Readiness::Missing => {
                self.metrics.registry_ready.set(0);
            }
            Ok(_) => self.registry_not_ready().await,
            Err(err) => tracing::warn!(%err, "cannot read the voter registry's state"),
        }
    }
}
