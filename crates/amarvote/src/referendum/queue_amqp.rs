//! The vote queue on RabbitMQ, for the scaled-out roles.
//!
//! Topology, declared idempotently by every process: durable queues
//! `votes.validation`, `votes.aggregation` and `votes.review`, each
//! dead-lettering (through the default exchange) to its own durable
//! `<name>.dead` queue. Messages are persistent and published with publisher
//! confirms; a batch's publishes are all sent first and their confirms
//! awaited afterwards, so a batch costs one round trip, not one per vote.
//!
//! Each stream has its own consumer channel whose prefetch is the stage's
//! batch size, so a whole batch can be held unacknowledged. Settling uses each
//! delivery's acker: ack, nack with requeue, or reject (which the queue's
//! dead-letter settings route to `<name>.dead`). A dropped connection or
//! channel is reopened on the next call, so the stages ride out a broker
//! restart; deliveries that were unacknowledged when it went down are
//! redelivered by the broker.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Consumer};
use tokio::sync::Mutex;

use super::aggregate::AGGREGATE_POLICY;
use super::queue::{Receipt, Stream, VoteDelivery, VoteQueue, VoteQueueError};
use super::review::REVIEW_POLICY;
use super::validate::VALIDATE_POLICY;
use crate::adapters::amqp_link::AmqpLink;

const PERSISTENT: u8 = 2;

fn broker(err: lapin::Error) -> VoteQueueError {
    VoteQueueError::Broker(err.to_string())
}

/// Unacknowledged deliveries a stream's consumer may hold: its stage's batch.
pub fn prefetch(stream: Stream) -> u16 {
    let batch = match stream {
        Stream::Validation => VALIDATE_POLICY.max_batch,
        Stream::Aggregation => AGGREGATE_POLICY.max_batch,
        Stream::Review => REVIEW_POLICY.max_batch,
    };
    u16::try_from(batch).unwrap_or(u16::MAX)
}

fn dead_queue(stream: Stream) -> String {
    format!("{}.dead", stream.queue_name())
}

#[derive(Clone)]
pub struct AmqpVoteQueue(Arc<Broker>);

struct Broker {
    link: AmqpLink,
    consumers: HashMap<Stream, Mutex<Option<Consumer>>>,
}

impl AmqpVoteQueue {
    /// Connects and declares the topology; fails at once if the broker is unreachable.
    pub async fn connect(url: &str) -> Result<Self, VoteQueueError> {
        let broker = Broker {
            link: AmqpLink::new(url),
            consumers: Stream::ALL
                .into_iter()
                .map(|s| (s, Mutex::new(None)))
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

    async fn new_channel(&self) -> Result<Channel, VoteQueueError> {
        self.link
            .new_channel(declare_topology)
            .await
            .map_err(broker)
    }

    async fn forget_link(&self) {
        self.link.forget().await;
    }

    async fn open_consumer(&self, stream: Stream) -> Result<Consumer, VoteQueueError> {
        let channel = self.new_channel().await?;
        channel
            .basic_qos(prefetch(stream), BasicQosOptions::default())
            .await
            .map_err(broker)?;
        channel
            .basic_consume(
                stream.queue_name().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker)
    }

    /// Sends every body, then awaits every confirm.
    async fn publish_all(&self, stream: Stream, bodies: &[Vec<u8>]) -> Result<(), VoteQueueError> {
        let channel = self.publisher().await?;
        let properties = BasicProperties::default().with_delivery_mode(PERSISTENT);
        let mut confirms = Vec::with_capacity(bodies.len());
        for body in bodies {
            let confirm = channel
                .basic_publish(
                    "".into(),
                    stream.queue_name().into(),
                    BasicPublishOptions::default(),
                    body,
                    properties.clone(),
                )
                .await
                .map_err(broker)?;
            confirms.push(confirm);
        }
        let mut refused = 0;
        for confirm in confirms {
            if !confirm.await.map_err(broker)?.is_ack() {
                refused += 1;
            }
        }
        if refused > 0 {
            return Err(VoteQueueError::Refused(refused));
        }
        Ok(())
    }

    async fn passive_count(&self, name: &str) -> Result<u64, VoteQueueError> {
        let channel = self.new_channel().await?;
        let declared = channel
            .queue_declare(
                name.into(),
                QueueDeclareOptions::default().passive(),
                FieldTable::default(),
            )
            .await;
        let _ = channel.close(200, "done".into()).await;
        Ok(u64::from(declared.map_err(broker)?.message_count()))
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

fn delivery(message: lapin::message::Delivery) -> VoteDelivery {
    VoteDelivery {
        body: message.data,
        redelivered: message.redelivered,
        receipt: Receipt::Amqp(message.acker),
    }
}

/// The broker's ackers among `receipts`; the RabbitMQ queue only settles its own.
fn ackers(receipts: Vec<Receipt>) -> impl Iterator<Item = lapin::Acker> {
    receipts.into_iter().filter_map(|receipt| match receipt {
        Receipt::Amqp(acker) => Some(acker),
        Receipt::Row(_) => None,
    })
}

#[async_trait]
impl VoteQueue for AmqpVoteQueue {
    async fn publish(&self, stream: Stream, bodies: &[Vec<u8>]) -> Result<(), VoteQueueError> {
        if bodies.is_empty() {
            return Ok(());
        }
        if let Err(err) = self.0.publish_all(stream, bodies).await {
            self.0.forget_link().await;
            return Err(err);
        }
        Ok(())
    }

    async fn consume(
        &self,
        stream: Stream,
        max_batch: usize,
        max_wait: Duration,
    ) -> Result<Vec<VoteDelivery>, VoteQueueError> {
        let mut slot = self.0.consumers[&stream].lock().await;
        if slot.is_none() {
            *slot = Some(self.0.open_consumer(stream).await?);
        }
        let consumer = slot.as_mut().expect("just opened");
        let mut batch = Vec::new();
        let first = match tokio::time::timeout(max_wait, consumer.next()).await {
            Err(_) => return Ok(batch),
            Ok(first) => first,
        };
        let mut next = first;
        loop {
            match next {
                Some(Ok(message)) => batch.push(delivery(message)),
                Some(Err(err)) => {
                    *slot = None;
                    self.0.forget_link().await;
                    return if batch.is_empty() {
                        Err(broker(err))
                    } else {
                        Ok(batch)
                    };
                }
                None => {
                    *slot = None;
                    return Ok(batch);
                }
            }
            if batch.len() >= max_batch {
                return Ok(batch);
            }
            match consumer.next().now_or_never() {
                Some(more) => next = more,
                None => return Ok(batch),
            }
        }
    }

    async fn ack(&self, _stream: Stream, receipts: Vec<Receipt>) -> Result<(), VoteQueueError> {
        for acker in ackers(receipts) {
            acker
                .ack(BasicAckOptions::default())
                .await
                .map_err(broker)?;
        }
        Ok(())
    }

    async fn requeue(&self, _stream: Stream, receipts: Vec<Receipt>) -> Result<(), VoteQueueError> {
        let requeue = BasicNackOptions {
            requeue: true,
            ..Default::default()
        };
        for acker in ackers(receipts) {
            acker.nack(requeue).await.map_err(broker)?;
        }
        Ok(())
    }

    async fn dead_letter(
        &self,
        _stream: Stream,
        receipts: Vec<Receipt>,
        _reason: &str,
    ) -> Result<(), VoteQueueError> {
        for acker in ackers(receipts) {
            acker
                .reject(BasicRejectOptions { requeue: false })
                .await
                .map_err(broker)?;
        }
        Ok(())
    }

    async fn depth(&self, stream: Stream) -> Result<u64, VoteQueueError> {
        self.0.passive_count(stream.queue_name()).await
    }

    async fn dead_letters(&self, stream: Stream) -> Result<u64, VoteQueueError> {
        self.0.passive_count(&dead_queue(stream)).await
    }
}
