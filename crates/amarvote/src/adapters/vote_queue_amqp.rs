//! The vote queue on RabbitMQ, for the scaled-out roles.
//!
//! Topology, declared idempotently by every process: durable queues
//! `votes.validation`, `votes.aggregation` and `votes.review`, each with its
//! own durable `<name>.dead` queue (also their dead-letter route for messages
//! another tool rejects). Messages are persistent and published with
//! publisher confirms; a publish call's messages are all sent first and their
//! confirms awaited afterwards, so it costs one round trip.
//!
//! A publish call packs its votes into [`envelope`]s of up to
//! [`MAX_PARTS`], so the broker's work is per batch, not per vote; consuming
//! unpacks them into one delivery per part. An envelope is acked once all its
//! parts are, and requeued whole if any part is requeued; a part that is dead
//! lettered is published on its own to `<name>.dead` (so, should the rest of
//! its envelope be requeued, its redelivery is dead-lettered a second time).
//!
//! Each stream has its own consumer channel, whose prefetch (in envelopes) is
//! the stage's batch size, so a batch can fill even from the one-vote
//! envelopes of a quiet hour; parts beyond a batch wait for the next consume
//! call. The price: under load one consumer may hold up to prefetch × 500
//! votes unacknowledged, though the API's envelopes hold only the votes that
//! arrived during one broker round trip. A dropped connection
//! or channel is reopened on the next call, so the stages ride out a broker
//! restart; envelopes unacknowledged when it went down are redelivered.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{FutureExt, StreamExt};
use lapin::options::{BasicAckOptions, BasicNackOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Consumer};
use tokio::sync::Mutex;

use super::amqp_link::{AmqpLink, Outgoing};
use super::vote_envelope::{self as envelope, MAX_PARTS};
use crate::ports::vote_queue::{Receipt, Stream, VoteDelivery, VoteQueue, VoteQueueError};

const PERSISTENT: u8 = 2;
/// The content type that marks an envelope; any other message is one part.
const ENVELOPE_TYPE: &str = "application/vnd.amarvote.vote-envelope";

fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(PERSISTENT)
}

fn broker(err: lapin::Error) -> VoteQueueError {
    VoteQueueError::Broker(err.to_string())
}

/// Unacknowledged deliveries a stream's consumer may hold: its stage's batch.
pub fn prefetch(stream: Stream) -> u16 {
    u16::try_from(stream.batch_policy().max_batch).unwrap_or(u16::MAX)
}

fn dead_queue(stream: Stream) -> String {
    format!("{}.dead", stream.queue_name())
}

#[derive(Clone)]
pub struct AmqpVoteQueue(Arc<Broker>);

struct Broker {
    link: AmqpLink,
    consumers: HashMap<Stream, Mutex<ConsumerSlot>>,
}

/// A stream's consumer and the parts it received that no batch took yet.
#[derive(Default)]
struct ConsumerSlot {
    consumer: Option<Consumer>,
    unclaimed: VecDeque<VoteDelivery>,
}

impl ConsumerSlot {
    /// Moves unclaimed parts into `batch`, up to `max_batch` in all.
    fn claim(&mut self, max_batch: usize, mut batch: Vec<VoteDelivery>) -> Vec<VoteDelivery> {
        let room = max_batch
            .saturating_sub(batch.len())
            .min(self.unclaimed.len());
        batch.extend(self.unclaimed.drain(..room));
        batch
    }
}

impl AmqpVoteQueue {
    /// Connects and declares the topology; fails at once if the broker is unreachable.
    pub async fn connect(url: &str) -> Result<Self, VoteQueueError> {
        let broker = Broker {
            link: AmqpLink::new(url).map_err(VoteQueueError::Broker)?,
            consumers: Stream::ALL
                .into_iter()
                .map(|s| (s, Mutex::new(ConsumerSlot::default())))
                .collect(),
        };
        broker.publisher().await?;
        Ok(AmqpVoteQueue(Arc::new(broker)))
    }
}

impl Broker {
    /// The confirming publisher channel, reconnecting if the link is down.
    async fn publisher(&self) -> Result<Channel, VoteQueueError> {
        self.link.publisher(declare_topology).await.map_err(broker)
    }

    async fn forget_link(&self) {
        self.link.forget().await;
    }

    async fn open_consumer(&self, stream: Stream) -> Result<Consumer, VoteQueueError> {
        let (_, consumer) = self
            .link
            .consume(declare_topology, stream.queue_name(), prefetch(stream))
            .await
            .map_err(broker)?;
        Ok(consumer)
    }

    /// Sends every message to `queue`, then awaits every confirm.
    async fn publish_all(
        &self,
        queue: &str,
        messages: &[Vec<u8>],
        properties: BasicProperties,
    ) -> Result<(), VoteQueueError> {
        if messages.is_empty() {
            return Ok(());
        }
        let outgoing = messages.iter().map(|body| Outgoing {
            exchange: "",
            routing_key: queue,
            body,
            properties: properties.clone(),
        });
        match self
            .link
            .publish_confirmed(declare_topology, outgoing)
            .await
            .error
        {
            Some(err) => Err(VoteQueueError::Broker(err.to_string())),
            None => Ok(()),
        }
    }

    async fn passive_count(&self, name: &str) -> Result<u64, VoteQueueError> {
        self.link
            .message_count(declare_topology, name)
            .await
            .map_err(broker)
    }
}

async fn declare_topology(channel: Channel) -> Result<(), lapin::Error> {
    for stream in Stream::ALL {
        let dead = dead_queue(stream);
        let mut arguments = FieldTable::default();
        arguments.insert(
            ShortString::from("x-dead-letter-exchange"),
            AMQPValue::LongString("".into()),
        );
        arguments.insert(
            ShortString::from("x-dead-letter-routing-key"),
            AMQPValue::LongString(dead.as_str().into()),
        );
        for (name, arguments) in [
            (dead.as_str(), FieldTable::default()),
            (stream.queue_name(), arguments),
        ] {
            channel
                .queue_declare(name.into(), QueueDeclareOptions::durable(), arguments)
                .await?;
        }
    }
    Ok(())
}

/// A broker message being consumed part by part. It is acked once every
/// part is settled, or requeued whole if any part was requeued or dropped
/// unsettled: requeueing parts already processed is harmless, as every stage
/// is idempotent.
struct Envelope {
    acker: lapin::Acker,
    body: Vec<u8>,
    spans: Vec<Range<usize>>,
    unsettled: AtomicUsize,
    requeue: AtomicBool,
}

impl Envelope {
    /// Records one part's settlement; the envelope's last part tells the broker.
    async fn settle_part(&self, requeue: bool) -> Result<(), lapin::Error> {
        if requeue {
            self.requeue.store(true, Ordering::SeqCst);
        }
        if self.unsettled.fetch_sub(1, Ordering::SeqCst) != 1 {
            return Ok(());
        }
        if self.requeue.load(Ordering::SeqCst) {
            let requeue = BasicNackOptions {
                requeue: true,
                ..Default::default()
            };
            self.acker.nack(requeue).await?;
        } else {
            self.acker.ack(BasicAckOptions::default()).await?;
        }
        // An acker already used or poisoned (its channel closed) answers
        // false: the broker redelivers the envelope, and the stages are idempotent.
        Ok(())
    }
}

/// One part of a consumed envelope.
pub struct AmqpReceipt {
    envelope: Arc<Envelope>,
    part: usize,
    settled: bool,
}

impl AmqpReceipt {
    fn body(&self) -> &[u8] {
        &self.envelope.body[self.envelope.spans[self.part].clone()]
    }

    async fn settle(mut self, requeue: bool) -> Result<(), lapin::Error> {
        self.settled = true;
        self.envelope.settle_part(requeue).await
    }
}

impl Drop for AmqpReceipt {
    /// A part dropped unsettled (its stage failed half-way) counts as
    /// requeued, so its envelope is not held unacknowledged until the channel
    /// closes. Outside a runtime, the channel's closing redelivers it.
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let envelope = self.envelope.clone();
            runtime.spawn(async move {
                if let Err(err) = envelope.settle_part(true).await {
                    tracing::debug!(%err, "requeueing an abandoned envelope failed");
                }
            });
        }
    }
}

/// The parts of a received message: an envelope's parts, or the whole body
/// for a plain message or a damaged envelope (its stage then finds it
/// malformed and dead-letters it).
fn unpack(message: lapin::message::Delivery) -> Vec<VoteDelivery> {
    let is_envelope = message
        .properties
        .content_type()
        .as_ref()
        .is_some_and(|t| t.as_str() == ENVELOPE_TYPE);
    let spans = match is_envelope.then(|| envelope::spans(&message.data)) {
        Some(Ok(spans)) if !spans.is_empty() => spans,
        _ => std::iter::once(0..message.data.len()).collect(),
    };
    let redelivered = message.redelivered;
    let envelope = Arc::new(Envelope {
        acker: message.acker,
        unsettled: AtomicUsize::new(spans.len()),
        requeue: AtomicBool::new(false),
        body: message.data,
        spans,
    });
    (0..envelope.spans.len())
        .map(|part| {
            let receipt = AmqpReceipt {
                envelope: envelope.clone(),
                part,
                settled: false,
            };
            VoteDelivery {
                body: receipt.body().to_vec(),
                redelivered,
                receipt: Receipt::new(receipt),
            }
        })
        .collect()
}

/// The broker's parts among `receipts`; the RabbitMQ queue only settles its own.
fn amqp_parts(receipts: Vec<Receipt>) -> impl Iterator<Item = AmqpReceipt> {
    receipts
        .into_iter()
        .filter_map(Receipt::into_inner::<AmqpReceipt>)
}

async fn settle_all(
    parts: impl IntoIterator<Item = AmqpReceipt>,
    requeue: bool,
) -> Result<(), VoteQueueError> {
    for part in parts {
        part.settle(requeue).await.map_err(broker)?;
    }
    Ok(())
}

#[async_trait]
impl VoteQueue for AmqpVoteQueue {
    async fn publish(&self, stream: Stream, bodies: &[Vec<u8>]) -> Result<(), VoteQueueError> {
        let envelopes: Vec<Vec<u8>> = bodies.chunks(MAX_PARTS).map(envelope::pack).collect();
        let properties = persistent().with_content_type(ENVELOPE_TYPE.into());
        self.0
            .publish_all(stream.queue_name(), &envelopes, properties)
            .await
    }

    async fn consume(
        &self,
        stream: Stream,
        max_batch: usize,
        max_wait: Duration,
    ) -> Result<Vec<VoteDelivery>, VoteQueueError> {
        let mut slot = self.0.consumers[&stream].lock().await;
        if slot.consumer.is_none() {
            slot.consumer = Some(self.0.open_consumer(stream).await?);
        }
        let mut batch = slot.claim(max_batch, Vec::new());
        let mut wait = batch.is_empty().then_some(max_wait);
        while batch.len() < max_batch {
            let consumer = slot.consumer.as_mut().expect("opened above");
            let next = match wait.take() {
                Some(wait) => match tokio::time::timeout(wait, consumer.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                },
                None => match consumer.next().now_or_never() {
                    Some(next) => next,
                    None => break,
                },
            };
            match next {
                Some(Ok(message)) => {
                    slot.unclaimed.extend(unpack(message));
                    batch = slot.claim(max_batch, batch);
                }
                Some(Err(err)) => {
                    *slot = ConsumerSlot::default();
                    self.0.forget_link().await;
                    if batch.is_empty() {
                        return Err(broker(err));
                    }
                    break;
                }
                None => {
                    *slot = ConsumerSlot::default();
                    break;
                }
            }
        }
        Ok(batch)
    }

    async fn ack(&self, _stream: Stream, receipts: Vec<Receipt>) -> Result<(), VoteQueueError> {
        settle_all(amqp_parts(receipts), false).await
    }

    async fn requeue(&self, _stream: Stream, receipts: Vec<Receipt>) -> Result<(), VoteQueueError> {
        settle_all(amqp_parts(receipts), true).await
    }

    /// Publishes each part on its own to `<name>.dead`, with the reason in an
    /// `x-amarvote-reason` header, then settles it; if that publish fails the
    /// parts are requeued.
    async fn dead_letter(
        &self,
        stream: Stream,
        receipts: Vec<Receipt>,
        reason: &str,
    ) -> Result<(), VoteQueueError> {
        let parts: Vec<AmqpReceipt> = amqp_parts(receipts).collect();
        let bodies: Vec<Vec<u8>> = parts.iter().map(|p| p.body().to_vec()).collect();
        let mut headers = FieldTable::default();
        headers.insert(
            ShortString::from("x-amarvote-reason"),
            AMQPValue::LongString(reason.into()),
        );
        self.0
            .publish_all(
                &dead_queue(stream),
                &bodies,
                persistent().with_headers(headers),
            )
            .await?;
        settle_all(parts, false).await
    }

    async fn depth(&self, stream: Stream) -> Result<u64, VoteQueueError> {
        self.0.passive_count(stream.queue_name()).await
    }

    async fn dead_letters(&self, stream: Stream) -> Result<u64, VoteQueueError> {
        self.0.passive_count(&dead_queue(stream)).await
    }
}
