//! The work queue on RabbitMQ.
//!
//! Topology (declared idempotently by every process): one direct exchange `amarvote`;
//! per operation a durable queue (message TTL 1 h, at most 100,000 messages, dead letters
//! to `<queue>.dead` through the `amarvote.dlx` exchange) and a `<queue>.retry` queue whose
//! expired messages flow back to the operation's queue — the backoff. Messages are
//! persistent and every publish waits for the broker's confirm. Each consumer has its own
//! channel with prefetch 1 and acknowledges by hand. A lost connection is reopened on
//! the next call, so workers ride out a broker restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Consumer, ExchangeKind};
use tokio::sync::Mutex;

use crate::adapters::amqp_link::{AmqpLink, Outgoing};
use crate::domain::QueueName;
use crate::ports::queue::{Delivery, Published, QueueError, Settle, WorkQueue};

const EXCHANGE: &str = "amarvote";
const DEAD_EXCHANGE: &str = "amarvote.dlx";
const MESSAGE_TTL_MS: u32 = 3_600_000;
const MAX_LENGTH: u32 = 100_000;
const ATTEMPT_HEADER: &str = "x-amarvote-attempt";

fn broker(e: lapin::Error) -> QueueError {
    QueueError::Broker(e.to_string())
}

#[derive(Clone)]
pub struct RabbitQueue(Arc<Broker>);

struct Broker {
    link: AmqpLink,
    /// One consumer per queue, each behind its own lock so queues are consumed independently.
    consumers: HashMap<QueueName, Mutex<Option<(Channel, Consumer)>>>,
}

impl RabbitQueue {
    /// Connects and declares the topology; fails at once if the broker is unreachable.
    pub async fn connect(url: &str) -> Result<RabbitQueue, QueueError> {
        let consumers = QueueName::ALL
            .into_iter()
            .map(|q| (q, Mutex::new(None)))
            .collect();
        let broker = Broker {
            link: AmqpLink::new(url).map_err(QueueError::Broker)?,
            consumers,
        };
        broker.publisher().await?;
        Ok(RabbitQueue(Arc::new(broker)))
    }
}

impl Broker {
    /// The confirming publisher channel, reconnecting if the link is down.
    async fn publisher(&self) -> Result<Channel, QueueError> {
        self.link.publisher(declare_topology).await.map_err(broker)
    }

    async fn forget_link(&self) {
        self.link.forget().await;
    }

    /// Sends one message and awaits its confirm.
    async fn send(&self, message: Outgoing<'_>) -> Result<(), QueueError> {
        match self.send_all(std::iter::once(message)).await.error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Sends every message before awaiting any confirm: one round trip for the batch.
    async fn send_all<'a>(&self, messages: impl Iterator<Item = Outgoing<'a>>) -> Published {
        let confirmed = self
            .link
            .publish_confirmed(declare_topology, messages)
            .await;
        Published {
            stored: confirmed.stored,
            error: confirmed.error.map(|e| QueueError::Broker(e.to_string())),
        }
    }

    async fn consumer_channel(&self, queue: QueueName) -> Result<(Channel, Consumer), QueueError> {
        self.link
            .consume(declare_topology, queue.as_str(), 1)
            .await
            .map_err(broker)
    }

    async fn passive_count(&self, name: &str) -> Result<u64, QueueError> {
        self.link
            .message_count(declare_topology, name)
            .await
            .map_err(broker)
    }
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
}

async fn declare_topology(channel: Channel) -> Result<(), lapin::Error> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    for exchange in [EXCHANGE, DEAD_EXCHANGE] {
        channel
            .exchange_declare(
                exchange.into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await?;
    }
    for queue in QueueName::ALL {
        let name = queue.as_str();
        let dead = format!("{name}.dead");
        let retry = format!("{name}.retry");
        let main_args = table(&[
            ("x-message-ttl", AMQPValue::LongUInt(MESSAGE_TTL_MS)),
            ("x-max-length", AMQPValue::LongUInt(MAX_LENGTH)),
            ("x-dead-letter-exchange", text(DEAD_EXCHANGE)),
            ("x-dead-letter-routing-key", text(&dead)),
        ]);
        let retry_args = table(&[
            ("x-dead-letter-exchange", text(EXCHANGE)),
            ("x-dead-letter-routing-key", text(name)),
        ]);
        for (queue_name, args, exchange) in [
            (name.to_string(), main_args, EXCHANGE),
            (retry.clone(), retry_args, EXCHANGE),
            (dead.clone(), FieldTable::default(), DEAD_EXCHANGE),
        ] {
            channel
                .queue_declare(
                    queue_name.as_str().into(),
                    QueueDeclareOptions::durable(),
                    args,
                )
                .await?;
            channel
                .queue_bind(
                    queue_name.as_str().into(),
                    exchange.into(),
                    queue_name.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
    }
    Ok(())
}

impl<'a> Outgoing<'a> {
    /// A first attempt of a work message.
    fn work(queue: QueueName, body: &'a [u8]) -> Self {
        Outgoing {
            exchange: EXCHANGE,
            routing_key: queue.as_str(),
            body,
            properties: persistent(1),
        }
    }
}

fn persistent(attempt: u32) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(table(&[(ATTEMPT_HEADER, AMQPValue::LongUInt(attempt))]))
}

fn attempt_of(properties: &BasicProperties) -> u32 {
    let header = properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(&ShortString::from(ATTEMPT_HEADER)).cloned());
    match header {
        Some(AMQPValue::LongUInt(n)) => n,
        Some(AMQPValue::LongLongInt(n)) => n as u32,
        Some(AMQPValue::LongInt(n)) => n as u32,
        _ => 1,
    }
}

#[async_trait]
impl WorkQueue for RabbitQueue {
    async fn publish(&self, queue: QueueName, body: &[u8]) -> Result<(), QueueError> {
        self.0.send(Outgoing::work(queue, body)).await
    }

    async fn publish_many(&self, messages: &[(QueueName, Vec<u8>)]) -> Published {
        let outgoing = messages
            .iter()
            .map(|(queue, body)| Outgoing::work(*queue, body));
        self.0.send_all(outgoing).await
    }

    async fn next(&self, queue: QueueName) -> Result<Option<Delivery>, QueueError> {
        let mut slot = self.0.consumers[&queue].lock().await;
        loop {
            if !slot.as_ref().is_some_and(|(c, _)| c.status().connected()) {
                *slot = Some(self.0.consumer_channel(queue).await?);
            }
            let (_, consumer) = slot.as_mut().expect("just opened");
            match consumer.next().await {
                Some(Ok(delivery)) => {
                    // A message the broker redelivers after a crash counts one more attempt.
                    let attempt =
                        attempt_of(&delivery.properties) + u32::from(delivery.redelivered);
                    let settle = Box::new(RabbitSettle {
                        broker: self.0.clone(),
                        queue,
                        body: delivery.data.clone(),
                        attempt,
                        acker: delivery.acker,
                    });
                    return Ok(Some(Delivery {
                        body: delivery.data,
                        attempt,
                        settle,
                    }));
                }
                Some(Err(e)) => {
                    *slot = None;
                    self.0.forget_link().await;
                    return Err(broker(e));
                }
                None => {
                    *slot = None;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    async fn depth(&self, queue: QueueName) -> Result<u64, QueueError> {
        self.0.passive_count(queue.as_str()).await
    }

    async fn dead_letters(&self, queue: QueueName) -> Result<u64, QueueError> {
        self.0
            .passive_count(&format!("{}.dead", queue.as_str()))
            .await
    }
}

struct RabbitSettle {
    broker: Arc<Broker>,
    queue: QueueName,
    body: Vec<u8>,
    attempt: u32,
    acker: lapin::Acker,
}

impl RabbitSettle {
    async fn ack_original(&self) -> Result<(), QueueError> {
        self.acker
            .ack(BasicAckOptions::default())
            .await
            .map(|_| ())
            .map_err(broker)
    }
}

#[async_trait]
impl Settle for RabbitSettle {
    async fn ack(self: Box<Self>) -> Result<(), QueueError> {
        self.ack_original().await
    }

    /// Parks a copy in the retry queue (confirmed) before acknowledging the original, so
    /// a crash in between leaves a duplicate, never a loss.
    async fn retry(self: Box<Self>, delay: Duration) -> Result<(), QueueError> {
        let properties =
            persistent(self.attempt + 1).with_expiration(delay.as_millis().to_string().into());
        self.broker
            .send(Outgoing {
                exchange: EXCHANGE,
                routing_key: &format!("{}.retry", self.queue.as_str()),
                body: &self.body,
                properties,
            })
            .await?;
        self.ack_original().await
    }

    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), QueueError> {
        let mut headers = table(&[
            (ATTEMPT_HEADER, AMQPValue::LongUInt(self.attempt)),
            ("x-amarvote-reason", text(reason)),
        ]);
        headers.insert("x-original-queue".into(), text(self.queue.as_str()));
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(headers);
        self.broker
            .send(Outgoing {
                exchange: DEAD_EXCHANGE,
                routing_key: &format!("{}.dead", self.queue.as_str()),
                body: &self.body,
                properties,
            })
            .await?;
        self.ack_original().await
    }
}
