//! The vote-queue port: durable, at-least-once, batched streams between the
//! pipeline's stages.
//!
//! The referendum moves small messages at thousands per second, so every
//! operation works on batches: a publish is one confirmed round trip for many
//! votes, a consume hands back up to `max_batch` deliveries, and settling
//! (ack, requeue, dead letter) takes a whole slice. A delivery stays owned by
//! its consumer until settled; one that is never settled (its consumer died)
//! comes back, so every stage must be idempotent.
//!
//! The adapters are `adapters::vote_queue_sqlite` (the embedded, single-process
//! mode) and `adapters::vote_queue_amqp` (RabbitMQ). A [`Receipt`] is opaque to the
//! stages: only the adapter that made it reads it back.

use std::any::Any;
use std::time::Duration;

use async_trait::async_trait;

/// The pipeline's streams, in the order a vote flows through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Accepted submissions, waiting for the eligibility check.
    Validation,
    /// Accepted votes, waiting to be counted.
    Aggregation,
    /// Duplicate and ineligible attempts, for fraud review.
    Review,
}

impl Stream {
    pub const ALL: [Stream; 3] = [Stream::Validation, Stream::Aggregation, Stream::Review];

    /// How the stream's consuming stage batches it (and so the consumer's prefetch).
    pub fn batch_policy(self) -> BatchPolicy {
        match self {
            // Large (one registry round trip each) and short-lived, since a voter is
            // waiting to see the outcome.
            Stream::Validation => BatchPolicy {
                max_batch: 500,
                max_age: Duration::from_millis(10),
            },
            // 100 votes or one second, whichever comes first.
            Stream::Aggregation => BatchPolicy {
                max_batch: 100,
                max_age: Duration::from_secs(1),
            },
            Stream::Review => BatchPolicy {
                max_batch: 200,
                max_age: Duration::from_millis(500),
            },
        }
    }

    /// The broker queue name; its dead letters go to `<name>.dead`.
    pub fn queue_name(self) -> &'static str {
        match self {
            Stream::Validation => "votes.validation",
            Stream::Aggregation => "votes.aggregation",
            Stream::Review => "votes.review",
        }
    }
}

/// How a stage batches its stream.
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    /// Most messages per batch (and the consumer's prefetch).
    pub max_batch: usize,
    /// Longest a batch waits for more messages after its first.
    pub max_age: Duration,
}

/// A failure of the queue itself, its detail opaque to the stages.
#[derive(Debug, thiserror::Error)]
pub enum VoteQueueError {
    /// The broker (RabbitMQ) failed or was unreachable.
    #[error("vote queue broker: {0}")]
    Broker(String),
    /// The embedded queue's own file failed.
    #[error("vote queue store: {0}")]
    Store(String),
}

/// How the adapter that produced a delivery finds it again to settle it: what is
/// inside is the adapter's own (a row id, a part of a broker delivery).
pub struct Receipt(Box<dyn Any + Send>);

impl Receipt {
    pub fn new<T: Any + Send>(inner: T) -> Receipt {
        Receipt(Box::new(inner))
    }

    /// The adapter's own receipt, or `None` for another adapter's.
    pub fn into_inner<T: Any>(self) -> Option<T> {
        self.0.downcast::<T>().ok().map(|inner| *inner)
    }
}

/// One message handed to a consumer.
pub struct VoteDelivery {
    pub body: Vec<u8>,
    /// True when the message was delivered before and not settled.
    pub redelivered: bool,
    pub receipt: Receipt,
}

#[async_trait]
pub trait VoteQueue: Send + Sync + 'static {
    /// Publishes every body durably: when this returns `Ok`, all of them are
    /// stored (on disk, or confirmed by the broker).
    async fn publish(&self, stream: Stream, bodies: &[Vec<u8>]) -> Result<(), VoteQueueError>;

    /// Returns up to `max_batch` messages as soon as any are ready, or none
    /// after `max_wait`. Each stays invisible to other consumers until it is
    /// settled, or is redelivered if its consumer goes away. Stages build
    /// larger batches by calling again.
    async fn consume(
        &self,
        stream: Stream,
        max_batch: usize,
        max_wait: Duration,
    ) -> Result<Vec<VoteDelivery>, VoteQueueError>;

    /// Removes the messages for good.
    async fn ack(&self, stream: Stream, receipts: Vec<Receipt>) -> Result<(), VoteQueueError>;

    /// Makes the messages available again, to be redelivered.
    async fn requeue(&self, stream: Stream, receipts: Vec<Receipt>) -> Result<(), VoteQueueError>;

    /// Moves unreadable messages aside, out of the stream, for an operator.
    async fn dead_letter(
        &self,
        stream: Stream,
        receipts: Vec<Receipt>,
        reason: &str,
    ) -> Result<(), VoteQueueError>;

    /// Messages waiting in the stream (not counting ones being processed): votes
    /// on the embedded queue, envelopes of up to 500 votes on RabbitMQ.
    async fn depth(&self, stream: Stream) -> Result<u64, VoteQueueError>;

    /// Messages set aside as dead letters.
    async fn dead_letters(&self, stream: Stream) -> Result<u64, VoteQueueError>;
}
