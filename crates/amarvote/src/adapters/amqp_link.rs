//! One AMQP connection and its confirming publisher channel, opened on first use and
//! reopened after a failure; pipelined confirmed publishing, consumers and queue counts on
//! it: what the work queue and the referendum's vote queue share. Each queue adapter
//! brings only its topology (the `declare` function every new connection runs).
//!
//! An `amqps://` URL gets TLS, the broker's certificate checked against the public roots
//! and the authority its `cacertfile` names (see [`super::link_tls`]).

use std::future::Future;

use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::tcp::OwnedTLSConfig;
use lapin::types::FieldTable;
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Connect, Connection, ConnectionProperties, Consumer};
use tokio::sync::Mutex;

use super::link_tls::LinkUrl;

/// A message to publish with a confirm.
pub struct Outgoing<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub body: &'a [u8],
    pub properties: BasicProperties,
}

/// What [`AmqpLink::publish_confirmed`] achieved: how many messages, counted from the
/// first, the broker confirmed, and what stopped the rest.
pub struct Confirmed {
    pub stored: usize,
    pub error: Option<PublishError>,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Broker(#[from] lapin::Error),
    #[error("the broker refused a message for {0}")]
    Refused(String),
}

struct Link {
    connection: Connection,
    publisher: Channel,
}

pub struct AmqpLink {
    url: AmqpUrl,
    link: Mutex<Option<Link>>,
}

/// A broker URL read once: its AMQP fields (a heartbeat added where it names none) and
/// the authority its `cacertfile` names.
#[derive(Clone)]
struct AmqpUrl {
    uri: AMQPUri,
    ca_pem: Option<String>,
}

impl AmqpLink {
    /// A link to the broker at `url`, not connected yet; a URL that is not one is refused
    /// with a message that never quotes it (it holds a password).
    pub fn new(url: &str) -> Result<AmqpLink, String> {
        let link = LinkUrl::parse(url).map_err(|e| format!("AMQP_URL: {e}"))?;
        let uri = with_link_defaults(&link.url)
            .ok_or("AMQP_URL: not an AMQP URL (amqp[s]://USER:PASSWORD@HOST:PORT/VHOST)")?;
        Ok(AmqpLink {
            url: AmqpUrl {
                uri,
                ca_pem: link.ca_pem,
            },
            link: Mutex::new(None),
        })
    }

    /// The confirming publisher channel. A new connection first declares the topology
    /// with `declare`, so a restarted broker gets its queues back.
    pub async fn publisher<F, Fut>(&self, declare: F) -> Result<Channel, lapin::Error>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: Future<Output = Result<(), lapin::Error>>,
    {
        let mut link = self.link.lock().await;
        Ok(open(&self.url, &mut link, declare).await?.publisher.clone())
    }

    /// A channel of its own on the link, for a consumer.
    async fn new_channel<F, Fut>(&self, declare: F) -> Result<Channel, lapin::Error>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: Future<Output = Result<(), lapin::Error>>,
    {
        let mut link = self.link.lock().await;
        open(&self.url, &mut link, declare)
            .await?
            .connection
            .create_channel()
            .await
    }

    /// A channel of its own consuming `queue`, with at most `prefetch` deliveries
    /// unacknowledged at a time.
    pub async fn consume<F, Fut>(
        &self,
        declare: F,
        queue: &str,
        prefetch: u16,
    ) -> Result<(Channel, Consumer), lapin::Error>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: Future<Output = Result<(), lapin::Error>>,
    {
        let channel = self.new_channel(declare).await?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok((channel, consumer))
    }

    /// How many messages `queue` holds: a passive declare on a channel of its own.
    pub async fn message_count<F, Fut>(&self, declare: F, queue: &str) -> Result<u64, lapin::Error>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: Future<Output = Result<(), lapin::Error>>,
    {
        let channel = self.new_channel(declare).await?;
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions::default().passive(),
                FieldTable::default(),
            )
            .await;
        let _ = channel.close(200, "done".into()).await;
        Ok(u64::from(declared?.message_count()))
    }

    /// Sends every message before awaiting any confirm: one round trip for the batch.
    /// After a failure or a refusal the link is dropped, so the next call reconnects.
    pub async fn publish_confirmed<'m, F, Fut>(
        &self,
        declare: F,
        messages: impl Iterator<Item = Outgoing<'m>>,
    ) -> Confirmed
    where
        F: FnOnce(Channel) -> Fut,
        Fut: Future<Output = Result<(), lapin::Error>>,
    {
        let confirmed = match self.publisher(declare).await {
            Ok(channel) => send_then_confirm(&channel, messages).await,
            Err(e) => Confirmed {
                stored: 0,
                error: Some(e.into()),
            },
        };
        if confirmed.error.is_some() {
            self.forget().await;
        }
        confirmed
    }

    /// Drops the link after a failure: the next call reconnects.
    pub async fn forget(&self) {
        *self.link.lock().await = None;
    }
}

/// The live link in `slot`, connecting first if there is none or it went down.
async fn open<'a, F, Fut>(
    url: &AmqpUrl,
    slot: &'a mut Option<Link>,
    declare: F,
) -> Result<&'a Link, lapin::Error>
where
    F: FnOnce(Channel) -> Fut,
    Fut: Future<Output = Result<(), lapin::Error>>,
{
    let live = slot
        .as_ref()
        .is_some_and(|l| l.connection.status().connected() && l.publisher.status().connected());
    if !live {
        let connection = connect(url).await?;
        let publisher = connection.create_channel().await?;
        declare(publisher.clone()).await?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        *slot = Some(Link {
            connection,
            publisher,
        });
    }
    Ok(slot.as_ref().expect("opened above"))
}

/// A new connection to the broker, over TLS for `amqps://`, trusting the URL's authority.
async fn connect(url: &AmqpUrl) -> Result<Connection, lapin::Error> {
    let tls = OwnedTLSConfig {
        identity: None,
        cert_chain: url.ca_pem.clone(),
    };
    let runtime = lapin::runtime::default_runtime()?;
    url.uri
        .clone()
        .connect_with_config(ConnectionProperties::default(), tls, runtime)
        .await
}

/// Seconds between heartbeats where the URL names none: a broker that goes silent (a
/// partition, a half-open connection) is noticed within two of them, and the deliveries
/// this link held are redelivered to another consumer.
const HEARTBEAT_SECONDS: u16 = 10;

/// `url` with [`HEARTBEAT_SECONDS`] where it names no heartbeat; `None` for a URL lapin
/// cannot read (its own connect then says why).
fn with_link_defaults(url: &str) -> Option<AMQPUri> {
    let mut uri: AMQPUri = url.parse().ok()?;
    uri.query.heartbeat.get_or_insert(HEARTBEAT_SECONDS);
    Some(uri)
}

async fn send_then_confirm<'m>(
    channel: &Channel,
    messages: impl Iterator<Item = Outgoing<'m>>,
) -> Confirmed {
    let mut confirms = Vec::with_capacity(messages.size_hint().0);
    let mut send_error = None;
    for message in messages {
        let sent = channel
            .basic_publish(
                message.exchange.into(),
                message.routing_key.into(),
                BasicPublishOptions::default(),
                message.body,
                message.properties,
            )
            .await;
        match sent {
            Ok(confirm) => confirms.push((message.routing_key, confirm)),
            Err(e) => {
                send_error = Some(e.into());
                break;
            }
        }
    }
    let (mut stored, mut error) = (0, None);
    for (routing_key, confirm) in confirms {
        match confirm.await {
            Ok(c) if c.is_ack() => stored += usize::from(error.is_none()),
            Ok(_) => {
                error.get_or_insert(PublishError::Refused(routing_key.to_owned()));
            }
            Err(e) => {
                error.get_or_insert(e.into());
            }
        }
    }
    Confirmed {
        stored,
        error: error.or(send_error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_has_heartbeats_unless_its_url_says_otherwise() {
        let plain = with_link_defaults("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap();
        assert_eq!(plain.query.heartbeat, Some(HEARTBEAT_SECONDS));
        let chosen = with_link_defaults("amqp://127.0.0.1:5672/v?heartbeat=30").unwrap();
        assert_eq!(chosen.query.heartbeat, Some(30));
        assert_eq!(chosen.vhost, "v");
        assert!(with_link_defaults("amqp://127.0.0.1:port/").is_none());
    }
}
