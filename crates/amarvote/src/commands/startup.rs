//! Coming up whatever the order of the others: a scaled role listens at once (its
//! [`StartGate`]), waits with backoff for each service it needs (PostgreSQL, RabbitMQ,
//! Redis) and says on every path, `/health` included, which one it is waiting for, until
//! its routes are ready.
//!
//! An orchestrator starts every role and service together; a role that exited when the
//! database was not up yet would be restarted in a loop, and one that raced another's
//! schema creation would fail (schemas are applied under an advisory lock, see
//! `adapters::sql_db`). A refusal that trying again cannot cure (a schema of another
//! version, a malformed URL) ends the wait at once.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use clap::Args;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::start_gate::StartGate;

/// The first pause between tries, doubled after each failure up to [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const LONGEST_PAUSE: Duration = Duration::from_secs(5);
/// The longest one try to open a service may take.
const LONGEST_ATTEMPT: Duration = Duration::from_secs(15);

/// How a scaled role starts beside services that may not be up yet.
#[derive(Args, Debug, Clone)]
pub struct StartArgs {
    /// Seconds a role waits at start, trying again with backoff, for PostgreSQL, RabbitMQ
    /// or Redis that is not reachable yet; it answers 503 on every path meanwhile.
    #[arg(long, env = "AMARVOTE_DEPENDENCY_WAIT", default_value_t = 300)]
    pub dependency_wait: u64,
    #[command(flatten)]
    pub tls: super::tls::TlsArgs,
}

impl StartArgs {
    /// Listens on `listen` at once (503 until the gate opens) and makes the waiter that
    /// opens the role's services; an address that cannot be bound, or a link (`(its
    /// variable, its URL)`) that would carry plain text beyond loopback, fails here, not
    /// after the wait.
    pub async fn begin(
        &self,
        listen: SocketAddr,
        links: &[(&str, &str)],
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(StartGate, Dependencies, JoinHandle<()>)> {
        self.tls.check_links(links)?;
        let tls = self.tls.server(listen)?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let gate = StartGate::default();
        let http = tokio::spawn(crate::api::http_server::serve_with(
            listener,
            gate.router(),
            Default::default(),
            tls,
            shutdown.clone(),
        ));
        let wait = Duration::from_secs(self.dependency_wait);
        let deps = Dependencies::new(&gate, wait, shutdown);
        Ok((gate, deps, http))
    }
}

/// Why a service could not be opened, and whether trying again may help.
pub struct Unavailable {
    error: anyhow::Error,
    transient: bool,
}

impl Unavailable {
    /// The service is not there (yet): unreachable, starting, refusing connections.
    pub fn transient(error: impl Into<anyhow::Error>) -> Unavailable {
        Unavailable {
            error: error.into(),
            transient: true,
        }
    }

    /// A refusal that no wait cures.
    pub fn refused(error: impl Into<anyhow::Error>) -> Unavailable {
        Unavailable {
            error: error.into(),
            transient: false,
        }
    }
}

/// A malformed AMQP URL, or an authority file it names that cannot be read, is refused
/// before any wait (no broker will ever answer it).
pub fn check_amqp_url(url: &str) -> Result<()> {
    crate::adapters::amqp_link::AmqpLink::new(url)
        .map(drop)
        .map_err(|e| anyhow!(e))
}

/// A broker that refuses the login, the virtual host or the queues' arguments will refuse
/// them again: refused at once. Anything else (unreachable, starting, closing) is waited
/// for. AMQP names its refusals (`ACCESS_REFUSED`, `NOT_ALLOWED`, `PRECONDITION_FAILED`) and
/// Redis its (`WRONGPASS`, `NOAUTH`) in the error's text, which is all the adapters keep.
pub fn broker_unavailable(error: impl std::fmt::Display) -> Unavailable {
    const REFUSALS: [&str; 6] = [
        "ACCESS-REFUSED",
        "NOT-ALLOWED",
        "PRECONDITION-FAILED",
        "WRONGPASS",
        "NOAUTH",
        "AUTHENTICATION FAILED",
    ];
    let text = error.to_string();
    let said = text.to_uppercase().replace('_', "-");
    if REFUSALS.iter().any(|refusal| said.contains(refusal)) {
        Unavailable::refused(anyhow!(text))
    } else {
        Unavailable::transient(anyhow!(text))
    }
}

/// Opens a role's services, each tried again with backoff while it is not there, for at
/// most `patience` in all; shutdown ends the wait.
pub struct Dependencies {
    gate: StartGate,
    patience: Duration,
    started: Instant,
    shutdown: watch::Receiver<bool>,
}

impl Dependencies {
    pub fn new(gate: &StartGate, patience: Duration, shutdown: &watch::Receiver<bool>) -> Self {
        Dependencies {
            gate: gate.clone(),
            patience,
            started: Instant::now(),
            shutdown: shutdown.clone(),
        }
    }

    /// `connect` until it succeeds, it is refused, patience runs out or shutdown comes.
    pub async fn open<T, F, Fut>(&mut self, service: &'static str, mut connect: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Unavailable>>,
    {
        self.gate.waiting_for(service);
        let mut pause = FIRST_PAUSE;
        loop {
            let failure = match self.attempt(connect()).await? {
                Ok(opened) => {
                    tracing::info!(service, "connected");
                    return Ok(opened);
                }
                Err(failure) => failure,
            };
            let error = failure.error.context(format!("cannot open {service}"));
            if !failure.transient {
                return Err(error);
            }
            let waited = self.started.elapsed();
            let Some(left) = self.patience.checked_sub(waited).filter(|l| !l.is_zero()) else {
                return Err(error.context(format!(
                    "gave up after waiting {} s (--dependency-wait)",
                    waited.as_secs()
                )));
            };
            let pause_now = pause.min(left);
            tracing::warn!(service, error = %format!("{error:#}"), retry_in_ms = pause_now.as_millis() as u64, "waiting");
            self.pause(pause_now).await?;
            pause = next_pause(pause);
        }
    }

    /// One try, within [`LONGEST_ATTEMPT`] and what is left of the patience: a service that
    /// accepts the connection and then says nothing (a half-open link, a host cut off) is a
    /// failed try, not a wait without end. Shutdown ends it.
    async fn attempt<T>(
        &mut self,
        connecting: impl std::future::Future<Output = Result<T, Unavailable>>,
    ) -> Result<Result<T, Unavailable>> {
        let left = self.patience.saturating_sub(self.started.elapsed());
        let limit = LONGEST_ATTEMPT.min(left).max(Duration::from_millis(100));
        tokio::select! {
            tried = tokio::time::timeout(limit, connecting) => Ok(tried.unwrap_or_else(|_| {
                Err(Unavailable::transient(anyhow!("no answer within {} ms", limit.as_millis())))
            })),
            _ = self.shutdown.wait_for(|stop| *stop) => Err(stopped()),
        }
    }

    async fn pause(&mut self, pause: Duration) -> Result<()> {
        tokio::select! {
            _ = tokio::time::sleep(pause) => Ok(()),
            _ = self.shutdown.wait_for(|stop| *stop) => Err(stopped()),
        }
    }
}

fn stopped() -> anyhow::Error {
    anyhow!("stopped before its services were reached")
}

/// Doubled, up to [`LONGEST_PAUSE`], with up to a quarter more so that roles restarted
/// together do not knock together.
fn next_pause(pause: Duration) -> Duration {
    let doubled = (pause * 2).min(LONGEST_PAUSE);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    doubled + doubled.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_to_a_bound() {
        let mut pause = FIRST_PAUSE;
        for _ in 0..20 {
            let next = next_pause(pause);
            assert!(next >= pause.min(LONGEST_PAUSE), "{next:?} after {pause:?}");
            assert!(next <= LONGEST_PAUSE.mul_f64(1.25), "{next:?}");
            pause = next;
        }
        assert!(pause >= LONGEST_PAUSE);
    }

    #[tokio::test]
    async fn a_refusal_ends_the_wait_at_once_and_a_transient_failure_is_tried_again() {
        let gate = StartGate::default();
        let (_tx, rx) = watch::channel(false);
        let mut deps = Dependencies::new(&gate, Duration::from_secs(30), &rx);
        let mut tries = 0;
        let refused: Result<()> = deps
            .open("PostgreSQL", || {
                tries += 1;
                async { Err(Unavailable::refused(anyhow!("another version"))) }
            })
            .await;
        assert_eq!(tries, 1);
        assert!(format!("{:#}", refused.unwrap_err()).contains("another version"));

        let mut tries = 0;
        let opened = deps
            .open("RabbitMQ", || {
                tries += 1;
                let now = tries;
                async move {
                    if now < 3 {
                        Err(Unavailable::transient(anyhow!("connection refused")))
                    } else {
                        Ok(now)
                    }
                }
            })
            .await
            .unwrap();
        assert_eq!(opened, 3);
    }

    #[test]
    fn a_broker_that_refuses_the_login_is_not_waited_for() {
        for refused in [
            "protocol error: ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN",
            "AMQP soft error: NOT-ALLOWED: vhost amarvote not found",
            "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'tally'",
            "WRONGPASS: invalid username-password pair or user is disabled.",
        ] {
            assert!(!broker_unavailable(refused).transient, "{refused}");
        }
        for late in [
            "Connection refused (os error 111)",
            "connection closed by the broker",
        ] {
            assert!(broker_unavailable(late).transient, "{late}");
        }
    }

    #[tokio::test]
    async fn a_try_that_never_answers_is_cut_off_by_the_patience() {
        let gate = StartGate::default();
        let (_tx, rx) = watch::channel(false);
        let mut deps = Dependencies::new(&gate, Duration::from_millis(300), &rx);
        let started = Instant::now();
        let hangs = || std::future::pending::<Result<(), Unavailable>>();
        let gave_up = deps.open("RabbitMQ", hangs).await.unwrap_err();
        assert!(format!("{gave_up:#}").contains("no answer"), "{gave_up:#}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn patience_and_shutdown_end_the_wait() {
        let gate = StartGate::default();
        let (tx, rx) = watch::channel(false);
        let mut deps = Dependencies::new(&gate, Duration::from_millis(600), &rx);
        let never = || async { Err::<(), _>(Unavailable::transient(anyhow!("refused"))) };
        let gave_up = deps.open("Redis", never).await.unwrap_err();
        assert!(format!("{gave_up:#}").contains("gave up"), "{gave_up:#}");

        let mut deps = Dependencies::new(&gate, Duration::from_secs(600), &rx);
        tx.send(true).unwrap();
        let stopped = deps.open("Redis", never).await.unwrap_err();
        assert!(stopped.to_string().contains("stopped"), "{stopped:#}");
    }
}
