//! The election service's roles: `serve` (everything in one process on the embedded
//! store and queue), and `api` / `worker` (separate processes on PostgreSQL + RabbitMQ).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use super::lifecycle::{serve_http, shutdown_signal};
use super::startup::{broker_unavailable, check_amqp_url, Dependencies, StartArgs, Unavailable};
use crate::adapters::embedded_queue::EmbeddedQueue;
use crate::adapters::rabbitmq::RabbitQueue;
use crate::adapters::sql_store::SqlStore;
use crate::api::request_metrics::timed;
use crate::api::{contract_route, Served};
use crate::domain::QueueName;
use crate::ports::{Store, StoreError, WorkQueue};
use crate::sealing::ServerKey;
use crate::service::{App, Settings};

/// How often a role that encrypts ballots returns what its requests freed.
const RETURN_FREED_MEMORY_EVERY: Duration = Duration::from_secs(30);

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Data directory: the SQLite store, the queue file, the server key and the admin token.
    #[arg(long, default_value = "amarvote-data")]
    pub data: PathBuf,
    /// Ballots per tally chunk.
    #[arg(long, default_value_t = 1000)]
    pub chunk_size: u64,
    #[command(flatten)]
    pub limits: BallotLimits,
    #[command(flatten)]
    pub vote_rate: crate::commands::referendum::VoteRateArgs,
    #[command(flatten)]
    pub codes: crate::commands::referendum::CodeLockArgs,
    #[command(flatten)]
    pub tls: super::tls::TlsArgs,
}

/// Limits on what voters' clients may do, as flags or environment variables.
#[derive(Args, Debug, Clone)]
pub struct BallotLimits {
    /// Ballot requests per second (with bursts of as many) from one client address; a
    /// polling place puts many voters behind one address, so raise it there.
    #[arg(long, env = "AMARVOTE_BALLOT_RATE_LIMIT", default_value_t = 200)]
    pub ballot_rate_limit: u32,
    /// Reverse proxies (comma-separated addresses) whose X-Forwarded-For names the client;
    /// from any other peer the header is ignored.
    #[arg(long, env = "AMARVOTE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Ballots one voting credential may challenge (each is decrypted by every guardian).
    #[arg(long, env = "AMARVOTE_MAX_CHALLENGES", default_value_t = 10)]
    pub max_challenges_per_voter: u64,
}

impl BallotLimits {
    pub fn settings(&self, chunk_size: u64) -> Settings {
        Settings {
            chunk_size,
            ballot_rate_limit: self.ballot_rate_limit,
            trusted_proxies: self.trusted_proxies.clone(),
            max_challenges_per_voter: self.max_challenges_per_voter,
            ..Settings::default()
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct ScaledArgs {
    /// PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// RabbitMQ URL.
    #[arg(long, env = "AMQP_URL")]
    pub amqp_url: String,
    /// The server key shared by every process (64 hex digits): it seals guardian secrets.
    #[arg(long, env = "AMARVOTE_SERVER_KEY", hide_env_values = true)]
    pub server_key: String,
    /// Server keys being rotated out (comma-separated, 64 hex digits each): what they
    /// sealed still opens, nothing new is sealed with them.
    #[arg(
        long,
        env = "AMARVOTE_RETIRED_SERVER_KEYS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub retired_server_keys: Vec<String>,
    /// The administrator's bearer token.
    #[arg(long, env = "AMARVOTE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
    /// Address for the API, or for a worker's /health and /metrics.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Ballots per tally chunk.
    #[arg(long, default_value_t = 1000)]
    pub chunk_size: u64,
    #[command(flatten)]
    pub limits: BallotLimits,
    #[command(flatten)]
    pub start: StartArgs,
}

#[derive(Args, Debug, Clone)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub scaled: ScaledArgs,
    /// Queues to consume (comma-separated); all of them by default.
    #[arg(long, value_delimiter = ',')]
    pub queues: Vec<String>,
}

/// The admin token of a data directory, created (mode 0600) on first use; an existing
/// file that others may read, or that holds a weak token, is refused.
pub fn admin_token(data: &Path) -> Result<String> {
    let path = data.join("admin.token");
    if !path.exists() {
        crate::sealing::write_private(&path, crate::service::new_credential().as_bytes())?;
    }
    crate::sealing::refuse_shared_file(&path)?;
    let token = std::fs::read_to_string(&path)?.trim().to_string();
    crate::sealing::check_admin_token(&token)
        .with_context(|| format!("{} holds no usable token", path.display()))?;
    Ok(token)
}

/// The embedded app of a data directory: the directory is private (0700) and so is every
/// file in it (0600) from the moment it is created. Secrets are checked before any
/// database is opened.
pub async fn embedded_app(data: &Path, settings: Settings) -> Result<Arc<App>> {
    crate::sealing::private_dir(data)?;
    let key = ServerKey::load_or_create(&data.join("server.key"))?;
    let admin = admin_token(data)?;
    let (store_file, queue_file) = (data.join("amarvote.db"), data.join("queue.db"));
    crate::sealing::private_file(&store_file)?;
    crate::sealing::private_file(&queue_file)?;
    let url = format!("sqlite://{}?mode=rwc", store_file.display());
    let store: Arc<dyn Store> = Arc::new(SqlStore::connect(&url).await?);
    let queue: Arc<dyn WorkQueue> =
        Arc::new(EmbeddedQueue::open(&queue_file, Duration::from_secs(300)).await?);
    Ok(Arc::new(App::new(store, queue, key, admin, settings)))
}

pub async fn serve(args: ServeArgs) -> Result<()> {
    let app = embedded_app(&args.data, args.limits.settings(args.chunk_size)).await?;
    let shutdown = shutdown_signal();
    let workers = tokio::spawn(crate::workers::run(
        app.clone(),
        QueueName::ALL.to_vec(),
        shutdown.clone(),
    ));
    let reconciler = tokio::spawn(crate::workers::reconciler::run(
        app.clone(),
        Duration::from_secs(2),
        shutdown.clone(),
    ));
    tokio::spawn(crate::memory::keep_returning_freed_memory(
        RETURN_FREED_MEMORY_EVERY,
        shutdown.clone(),
    ));
    println!(
        "amarvote serving on http://{} (data in {})",
        args.listen,
        args.data.display()
    );
    println!(
        "administrator token: in {}",
        args.data.join("admin.token").display()
    );
    let referendum = super::referendum::embedded::start(
        crate::commands::referendum::embedded_config(
            &args.data,
            admin_token(&args.data)?,
            crate::referendum::VoteLimits {
                per_client: args.vote_rate.vote_rate_limit,
                trusted_proxies: args.limits.trusted_proxies.clone(),
                max_wrong_codes: args.codes.max_wrong_codes,
            },
        ),
        app.metrics.referendum.clone(),
        shutdown.clone(),
    )
    .await?;
    let timing = app.metrics.http.clone();
    let router = crate::api::router(app)
        .merge(referendum.router)
        .merge(contract_route(Served::Both));
    let tls = args.tls.server(args.listen)?;
    serve_http(args.listen, timed(router, timing), tls, shutdown).await?;
    let _ = tokio::join!(workers, reconciler);
    for task in referendum.tasks {
        let _ = task.await;
    }
    Ok(())
}

/// The server key, once it and the admin token are found strong and the broker's URL well
/// formed: checked before the role listens or connects, so that a weak secret never reaches
/// a migration and a malformed URL is not waited for.
fn strong_secrets(args: &ScaledArgs) -> Result<ServerKey> {
    let key = server_keys(&args.server_key, &args.retired_server_keys)?;
    crate::sealing::check_admin_token(&args.admin_token).context("AMARVOTE_ADMIN_TOKEN")?;
    check_amqp_url(&args.amqp_url)?;
    Ok(key)
}

/// The current server key with the retired ones it still opens with, each found strong.
fn server_keys(current: &str, retired: &[String]) -> Result<ServerKey> {
    let key = ServerKey::from_hex_strong(current).context("AMARVOTE_SERVER_KEY")?;
    let retired = retired
        .iter()
        .filter(|k| !k.trim().is_empty())
        .map(|k| ServerKey::from_hex_strong(k))
        .collect::<Result<Vec<_>>>()
        .context("AMARVOTE_RETIRED_SERVER_KEYS")?;
    if !retired.is_empty() {
        tracing::info!(
            retired = retired.len(),
            "server key rotation: retired keys open, the current one seals"
        );
    }
    key.retiring(retired)
        .context("AMARVOTE_RETIRED_SERVER_KEYS")
}

/// The links an election role opens, for [`StartArgs::begin`] to check.
fn links(args: &ScaledArgs) -> [(&'static str, &str); 2] {
    [
        ("DATABASE_URL", args.database_url.as_str()),
        ("AMQP_URL", args.amqp_url.as_str()),
    ]
}

async fn scaled_app(
    args: &ScaledArgs,
    key: ServerKey,
    deps: &mut Dependencies,
) -> Result<Arc<App>> {
    let database = args.database_url.as_str();
    let store = deps
        .open("PostgreSQL", || async move {
            SqlStore::connect(database).await.map_err(store_unavailable)
        })
        .await?;
    let amqp = args.amqp_url.as_str();
    let queue = deps
        .open("RabbitMQ", || async move {
            RabbitQueue::connect(amqp).await.map_err(broker_unavailable)
        })
        .await?;
    Ok(Arc::new(App::new(
        Arc::new(store) as Arc<dyn Store>,
        Arc::new(queue) as Arc<dyn WorkQueue>,
        key,
        args.admin_token.clone(),
        args.limits.settings(args.chunk_size),
    )))
}

/// A database that cannot be reached yet is waited for; one that refuses (tables of
/// another version, a malformed URL) is not.
fn store_unavailable(err: StoreError) -> Unavailable {
    match err {
        StoreError::Backend {
            transient: true, ..
        } => Unavailable::transient(err),
        refused => Unavailable::refused(refused),
    }
}

/// The API role: HTTP only, plus the reconciler (any number of API instances may run).
pub async fn api(args: ScaledArgs) -> Result<()> {
    let key = strong_secrets(&args)?;
    let shutdown = shutdown_signal();
    let (gate, mut deps, http) = args
        .start
        .begin(args.listen, &links(&args), &shutdown)
        .await?;
    tracing::info!(listen = %args.listen, "api starting");
    let app = scaled_app(&args, key, &mut deps).await?;
    let reconciler = tokio::spawn(crate::workers::reconciler::run(
        app.clone(),
        Duration::from_secs(2),
        shutdown.clone(),
    ));
    tokio::spawn(crate::memory::keep_returning_freed_memory(
        RETURN_FREED_MEMORY_EVERY,
        shutdown.clone(),
    ));
    let timing = app.metrics.http.clone();
    let router = crate::api::router(app).merge(contract_route(Served::Election));
    gate.open(timed(router, timing));
    tracing::info!(listen = %args.listen, "api serving");
    http.await?;
    let _ = reconciler.await;
    Ok(())
}

/// The worker role: consumes its queues, serving /health and /metrics.
pub async fn worker(args: WorkerArgs) -> Result<()> {
    let queues = if args.queues.is_empty() {
        QueueName::ALL.to_vec()
    } else {
        args.queues
            .iter()
            .map(|q| QueueName::parse(q).with_context(|| format!("unknown queue {q}")))
            .collect::<Result<_>>()?
    };
    let key = strong_secrets(&args.scaled)?;
    let shutdown = shutdown_signal();
    let (gate, mut deps, http) = args
        .scaled
        .start
        .begin(args.scaled.listen, &links(&args.scaled), &shutdown)
        .await?;
    let app = scaled_app(&args.scaled, key, &mut deps).await?;
    let ops = crate::api::operations_routes().with_state(app.clone());
    gate.open(timed(ops, app.metrics.http.clone()));
    crate::workers::run(app, queues, shutdown).await;
    http.await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retired_server_keys_are_checked_like_the_current_one() {
        let current = crate::domain::hex(&std::array::from_fn::<u8, 32, _>(|i| i as u8));
        let old = crate::domain::hex(&std::array::from_fn::<u8, 32, _>(|i| 100 + i as u8));
        assert!(server_keys(&current, &[old.clone(), String::new()]).is_ok());
        let weak = server_keys(&current, &["00".repeat(32)]).unwrap_err();
        assert!(
            format!("{weak:#}").contains("AMARVOTE_RETIRED_SERVER_KEYS"),
            "{weak:#}"
        );
        let same = server_keys(&current, std::slice::from_ref(&current)).unwrap_err();
        assert!(
            format!("{same:#}").contains("is the current one"),
            "{same:#}"
        );
    }
}
