//! The work-queue port: durable, at-least-once delivery of chunk tasks.
//!
//! A consumer holds one message at a time (prefetch 1). It acknowledges only after the
//! chunk's result is committed; a failure asks for a redelivery after a backoff, and a
//! message that keeps failing, or cannot be read at all, goes to the dead letters.

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::QueueName;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue broker error: {0}")]
    Broker(String),
    #[error("queue store error: {0}")]
    Store(String),
}

/// How often a chunk is tried before it is dead-lettered.
pub const MAX_ATTEMPTS: u32 = 5;

/// Exponential backoff: 1 s, 2 s, 4 s … capped at one minute.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

/// One delivered message and the means to settle it.
pub struct Delivery {
    pub body: Vec<u8>,
    /// 1 on the first delivery, counting redeliveries after failures and crashes.
    pub attempt: u32,
    pub settle: Box<dyn Settle>,
}

#[async_trait]
pub trait Settle: Send + Sync {
    async fn ack(self: Box<Self>) -> Result<(), QueueError>;
    /// Deliver again after `delay` with the attempt count raised.
    async fn retry(self: Box<Self>, delay: Duration) -> Result<(), QueueError>;
    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), QueueError>;
}

/// What [`WorkQueue::publish_many`] achieved.
#[derive(Debug)]
pub struct Published {
    pub stored: usize,
    pub error: Option<QueueError>,
}

#[async_trait]
pub trait WorkQueue: Send + Sync + 'static {
    /// Publishes durably: when this returns, the broker has the message on disk.
    async fn publish(&self, queue: QueueName, body: &[u8]) -> Result<(), QueueError>;
    /// Publishes several messages durably, pipelined where the queue allows it. Returns how
    /// many, counted from the first, are certainly stored, and the error that stopped the rest.
    async fn publish_many(&self, messages: &[(QueueName, Vec<u8>)]) -> Published {
        for (i, (queue, body)) in messages.iter().enumerate() {
            if let Err(e) = self.publish(*queue, body).await {
                return Published {
                    stored: i,
                    error: Some(e),
                };
            }
        }
        Published {
            stored: messages.len(),
            error: None,
        }
    }
    /// The next message of `queue`, waiting for one; `None` once the consumer is closed.
    async fn next(&self, queue: QueueName) -> Result<Option<Delivery>, QueueError>;
    /// Messages waiting (ready, not yet delivered) in `queue`.
    async fn depth(&self, queue: QueueName) -> Result<u64, QueueError>;
    async fn dead_letters(&self, queue: QueueName) -> Result<u64, QueueError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(30), Duration::from_secs(60));
    }
}
