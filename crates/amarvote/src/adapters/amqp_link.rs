//! One AMQP connection and its confirming publisher channel, opened on first use and
//! reopened after a failure: what the work queue and the referendum's vote queue share.

use std::future::Future;

use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::Mutex;

struct Link {
    connection: Connection,
    publisher: Channel,
}

pub struct AmqpLink {
    url: String,
    link: Mutex<Option<Link>>,
}

impl AmqpLink {
    pub fn new(url: &str) -> AmqpLink {
        AmqpLink {
            url: url.to_owned(),
            link: Mutex::new(None),
        }
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
    pub async fn new_channel<F, Fut>(&self, declare: F) -> Result<Channel, lapin::Error>
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

    /// Drops the link after a failure: the next call reconnects.
    pub async fn forget(&self) {
        *self.link.lock().await = None;
    }
}

/// The live link in `slot`, connecting first if there is none or it went down.
async fn open<'a, F, Fut>(
    url: &str,
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
        let connection = Connection::connect(url, ConnectionProperties::default()).await?;
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
