//! `amarvote referendum …`: the referendum pipeline's commands — offline
//! hash generation and loading, the scaled-out roles, registry rebuild and the
//! load generator. `amarvote serve` runs the embedded pipeline through
//! [`embedded::start`].

use std::fs::File;
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use axum::routing::get;
use axum::Router;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub mod embedded;
pub mod loadgen;
pub mod parts;

use super::lifecycle::shutdown_signal;
use super::startup::{broker_unavailable, Unavailable};

use crate::adapters::registry_redis::RedisRegistry;
use crate::adapters::registry_sqlite::SqliteRegistry;
use crate::adapters::sql_db::{is_transient, SqlDbError};
use crate::adapters::vote_queue_amqp::AmqpVoteQueue;
use crate::adapters::vote_tables::VoteTables;
use crate::api::request_metrics::timed;
use crate::api::start_gate::StartGate;
use crate::api::{contract_route, Served};
use crate::domain::voter_hash::ElectionSecret;
use crate::metrics::referendum::ReferendumMetrics;
use crate::metrics::{HttpMetrics, ProcessMetrics};
use crate::ports::voter_registry::{Readiness, VoterRegistry};
use crate::referendum::hashgen::{generate_hashes, read_shards};
use crate::referendum::rebuild::rebuild;
use crate::referendum::VoteLimits;
use loadgen::LoadgenConfig;
use parts::Parts;

/// Hashes per registry load call.
const LOAD_BATCH: usize = 100_000;

#[derive(Subcommand, Debug)]
pub enum ReferendumCommand {
    /// Hash a CSV of nas,code,law_id rows into shard files of voter hashes.
    Hashgen(HashgenArgs),
    /// Load shard files of voter hashes into the registry.
    Load(LoadArgs),
    /// Run the vote API (scaled: PostgreSQL, RabbitMQ, Redis).
    Ingest(IngestArgs),
    /// Run a validation worker (scaled).
    Validate(ValidateArgs),
    /// Run an aggregation worker, with the review consumer (scaled).
    Aggregate(RoleArgs),
    /// Rebuild the registry's voted state and outcomes from vote_audit and
    /// vote_rejections and mark it ready (after a Redis loss, once the hashes are loaded
    /// again; validators also do it by themselves).
    RebuildRegistry(RebuildArgs),
    /// Set up a referendum on a server, drive votes at a rate, reconcile.
    Loadgen(LoadgenArgs),
}

#[derive(Args, Debug)]
pub struct HashgenArgs {
    /// The mailing list: CSV rows nas,code,law_id (header optional).
    #[arg(long)]
    pub input: PathBuf,
    /// Directory for the shard files.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 16)]
    pub shards: u32,
    /// The election secret (64 hex digits); for `serve`, <data>/referendum.secret.
    #[arg(long)]
    pub secret_file: PathBuf,
    /// Exit 0 even if some rows were malformed.
    #[arg(long)]
    pub allow_bad_rows: bool,
}

/// Which registry a command works on.
#[derive(Args, Debug)]
pub struct RegistryArgs {
    /// Redis URL (scaled mode).
    #[arg(long, env = "REDIS_URL", conflicts_with = "data")]
    pub redis_url: Option<String>,
    /// Key prefix in Redis.
    #[arg(long, default_value = "amarvote:")]
    pub prefix: String,
    /// Data directory of `amarvote serve` (embedded mode).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Directory of shard files written by hashgen.
    #[arg(long)]
    pub hashes: PathBuf,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Args, Debug)]
pub struct RebuildArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// The database holding vote_audit (scaled mode; embedded reads <data>/referendum.db).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct RoleArgs {
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    #[arg(long, env = "AMQP_URL")]
    pub amqp_url: String,
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: String,
    /// Key prefix in Redis.
    #[arg(long, default_value = "amarvote:")]
    pub prefix: String,
    /// Address for the API, or for a worker's /health and /metrics.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub start: super::startup::StartArgs,
}

#[derive(Args, Debug)]
pub struct IngestArgs {
    #[command(flatten)]
    pub role: RoleArgs,
    /// The election secret file (64 hex digits), the same for every ingest process.
    #[arg(long, env = "AMARVOTE_REFERENDUM_SECRET_FILE")]
    pub secret_file: PathBuf,
    /// The administrator's bearer token.
    #[arg(long, env = "AMARVOTE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
    #[command(flatten)]
    pub limits: VoteRateArgs,
    /// Reverse proxies (comma-separated addresses) whose X-Forwarded-For names the client.
    #[arg(long, env = "AMARVOTE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

/// How fast one client may call the referendum's routes.
#[derive(Args, Debug, Clone)]
pub struct VoteRateArgs {
    /// Referendum requests per second (with bursts of as many) from one client address;
    /// a polling place, a proxy without X-Forwarded-For or a load test needs more.
    #[arg(long, env = "AMARVOTE_VOTE_RATE_LIMIT", default_value_t = crate::referendum::DEFAULT_PER_CLIENT_RATE)]
    pub vote_rate_limit: u32,
}

/// How many wrong codes lock a NAS out of a law.
#[derive(Args, Debug, Clone)]
pub struct CodeLockArgs {
    #[arg(long, env = "AMARVOTE_MAX_WRONG_CODES", default_value_t = crate::ports::voter_registry::DEFAULT_CODE_ATTEMPTS)]
    pub max_wrong_codes: u32,
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub role: RoleArgs,
    #[command(flatten)]
    pub codes: CodeLockArgs,
}

#[derive(Args, Debug)]
pub struct LoadgenArgs {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// The administrator token; defaults to amarvote-data/admin.token.
    #[arg(long, env = "AMARVOTE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    #[arg(long, default_value_t = 10_000)]
    pub voters: usize,
    /// Votes per second.
    #[arg(long, default_value_t = 1_000.0)]
    pub rate: f64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    #[arg(long, default_value_t = 0.05)]
    pub duplicate_rate: f64,
    #[arg(long, default_value_t = 0.02)]
    pub invalid_rate: f64,
    /// Concurrent HTTP connections.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Seconds to wait for the pipeline to drain.
    #[arg(long, default_value_t = 120)]
    pub drain_timeout: u64,
    /// Seconds between the lines that report the latest window's answers and latency.
    #[arg(long, default_value_t = 60)]
    pub report_every: u64,
}

/// Runs a referendum subcommand.
pub fn run(command: ReferendumCommand) -> Result<()> {
    if let ReferendumCommand::Hashgen(args) = &command {
        return hashgen(args);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_async(command))
}

async fn run_async(command: ReferendumCommand) -> Result<()> {
    match command {
        ReferendumCommand::Hashgen(args) => hashgen(&args),
        ReferendumCommand::Load(args) => load(args).await,
        ReferendumCommand::Ingest(args) => ingest(args).await,
        ReferendumCommand::Validate(args) => validate(args).await,
        ReferendumCommand::Aggregate(args) => aggregate(args).await,
        ReferendumCommand::RebuildRegistry(args) => rebuild_registry(args).await,
        ReferendumCommand::Loadgen(args) => run_loadgen(args).await,
    }
}

fn hashgen(args: &HashgenArgs) -> Result<()> {
    let secret = ElectionSecret::read_file(&args.secret_file)?;
    let file =
        File::open(&args.input).with_context(|| format!("cannot open {}", args.input.display()))?;
    let bar = ProgressBar::new(file.metadata()?.len());
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )?);
    let started = Instant::now();
    let report = generate_hashes(
        BufReader::with_capacity(1 << 20, file),
        &secret,
        &args.out,
        args.shards,
        &|bytes| bar.set_position(bytes),
    )?;
    bar.finish_and_clear();
    for bad in &report.bad_rows {
        eprintln!("{}:{}: {}", args.input.display(), bad.line, bad.reason);
    }
    let unlisted = report.bad_row_count - report.bad_rows.len() as u64;
    if unlisted > 0 {
        eprintln!("… and {unlisted} more bad rows");
    }
    println!(
        "{} rows, {} hashes written to {} shards in {}, {} bad rows ({:.1} s)",
        report.rows,
        report.written,
        args.shards,
        args.out.display(),
        report.bad_row_count,
        started.elapsed().as_secs_f64()
    );
    if report.bad_row_count > 0 && !args.allow_bad_rows {
        bail!(
            "{} malformed rows (pass --allow-bad-rows to accept the output anyway)",
            report.bad_row_count
        );
    }
    Ok(())
}

async fn open_registry(args: &RegistryArgs) -> Result<Arc<dyn VoterRegistry>> {
    match (&args.redis_url, &args.data) {
        (Some(url), None) => Ok(Arc::new(RedisRegistry::connect(url, &args.prefix).await?)),
        (None, Some(data)) => Ok(Arc::new(
            SqliteRegistry::open(&data.join("referendum-registry.db")).await?,
        )),
        _ => bail!("name the registry: --redis-url URL [--prefix P], or --data DIR"),
    }
}

async fn load(args: LoadArgs) -> Result<()> {
    let registry = open_registry(&args.registry).await?;
    let mut shards = read_shards(&args.hashes)?;
    let started = Instant::now();
    let (mut read, mut added) = (0_u64, 0_u64);
    loop {
        let batch = shards.next_batch(LOAD_BATCH)?;
        if batch.is_empty() {
            break;
        }
        read += batch.len() as u64;
        added += registry.load(batch).await?;
    }
    // Marked once the whole list is in: a validator that saw the marker earlier
    // would tell the voters still to come that they are not eligible.
    registry
        .finish_load(registry.eligible_count().await?)
        .await?;
    println!(
        "{read} hashes read, {added} new, {} eligible in total ({:.1} s)",
        registry.eligible_count().await?,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn rebuild_registry(args: RebuildArgs) -> Result<()> {
    let registry = open_registry(&args.registry).await?;
    let url = match (&args.database_url, &args.registry.data) {
        (Some(url), _) => url.clone(),
        (None, Some(data)) => format!("sqlite://{}?mode=rwc", data.join("referendum.db").display()),
        (None, None) => bail!("name the database: --database-url URL, or --data DIR"),
    };
    let tables = VoteTables::connect(&url).await?;
    if registry.state().await?.readiness == Readiness::Missing {
        bail!(
            "the registry has no voters loaded: load the hashes first (amarvote referendum \
             load); the validators then rebuild it by themselves"
        );
    }
    let Some(voters) = rebuild(&*registry, &tables).await? else {
        bail!("another process is rebuilding the registry now (its lease lasts a minute)");
    };
    println!("{voters} audited voters restored as voted, with every logged outcome");
    if registry.state().await?.readiness == Readiness::Ready {
        println!("the registry is ready: validators resume");
    } else {
        println!("the registry was loaded anew meanwhile: validators rebuild it again");
    }
    Ok(())
}

/// A role's routes with its `/health` and `/metrics` (the referendum's metrics, its answers'
/// durations and its resident memory), every answer timed.
fn role_routes(routes: Router, metrics: &ReferendumMetrics) -> Router {
    let timing = HttpMetrics::default();
    let process = ProcessMetrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    timing.register(&mut registry);
    process.register(&mut registry);
    let registry = Arc::new(registry);
    let ready = metrics.registry_ready.clone();
    let routes = routes
        .route(
            "/health",
            get(move || {
                let ready = ready.get();
                async move {
                    if ready == 0 {
                        let body = "degraded: the voter registry is not ready; votes are held";
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, body)
                    } else {
                        (axum::http::StatusCode::OK, "ok")
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                process.refresh();
                async move {
                    let mut text = String::new();
                    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
                    text
                }
            }),
        );
    timed(routes, timing)
}

/// Listens at once, then opens the role's services, waiting for any not up yet.
async fn connect(
    role: &RoleArgs,
    shutdown: &watch::Receiver<bool>,
) -> Result<(Parts, StartGate, JoinHandle<()>)> {
    let (amqp, redis, prefix) = (
        role.amqp_url.as_str(),
        role.redis_url.as_str(),
        role.prefix.as_str(),
    );
    // Malformed URLs are refused before any wait.
    crate::commands::startup::check_amqp_url(amqp)?;
    crate::adapters::registry_redis::client(redis)?;
    let database = role.database_url.as_str();
    let links = [
        ("DATABASE_URL", database),
        ("AMQP_URL", amqp),
        ("REDIS_URL", redis),
    ];
    let (gate, mut deps, http) = role.start.begin(role.listen, &links, shutdown).await?;
    let tables = deps
        .open("PostgreSQL", || async move {
            VoteTables::connect(database)
                .await
                .map_err(tables_unavailable)
        })
        .await?;
    let queue = deps
        .open("RabbitMQ", || async move {
            AmqpVoteQueue::connect(amqp)
                .await
                .map_err(broker_unavailable)
        })
        .await?;
    let registry = deps
        .open("Redis", || async move {
            RedisRegistry::connect(redis, prefix)
                .await
                .map_err(broker_unavailable)
        })
        .await?;
    Ok((Parts::shared(tables, queue, registry), gate, http))
}

/// A database that cannot be reached yet is waited for; one that refuses is not.
fn tables_unavailable(err: SqlDbError) -> Unavailable {
    match &err {
        SqlDbError::Database(e) if is_transient(e) => Unavailable::transient(err),
        _ => Unavailable::refused(err),
    }
}

async fn ingest(args: IngestArgs) -> Result<()> {
    // Secrets are checked before any connection is made.
    crate::sealing::check_admin_token(&args.admin_token).context("AMARVOTE_ADMIN_TOKEN")?;
    let secret = ElectionSecret::read_file(&args.secret_file)?;
    let shutdown = shutdown_signal();
    let (parts, gate, http) = connect(&args.role, &shutdown).await?;
    let metrics = ReferendumMetrics::new();
    let limits = VoteLimits {
        per_client: args.limits.vote_rate_limit,
        trusted_proxies: args.trusted_proxies,
        ..VoteLimits::default()
    };
    gate.open(role_routes(
        parts
            .ingest_router(&secret, args.admin_token, &limits, metrics.clone())
            .merge(contract_route(Served::Referendum)),
        &metrics,
    ));
    tracing::info!(listen = %args.role.listen, "referendum ingest serving");
    http.await?;
    Ok(())
}

async fn validate(args: ValidateArgs) -> Result<()> {
    let shutdown = shutdown_signal();
    let (parts, gate, http) = connect(&args.role, &shutdown).await?;
    let metrics = ReferendumMetrics::new();
    let limits = VoteLimits {
        max_wrong_codes: args.codes.max_wrong_codes,
        ..VoteLimits::default()
    };
    let worker = parts.spawn_validator(&limits, metrics.clone(), shutdown);
    gate.open(role_routes(Router::new(), &metrics));
    http.await?;
    worker.await?;
    Ok(())
}

async fn aggregate(args: RoleArgs) -> Result<()> {
    let shutdown = shutdown_signal();
    let (parts, gate, http) = connect(&args, &shutdown).await?;
    let metrics = ReferendumMetrics::new();
    let workers = parts.spawn_aggregator(metrics.clone(), shutdown);
    gate.open(role_routes(Router::new(), &metrics));
    http.await?;
    for worker in workers {
        worker.await?;
    }
    Ok(())
}

fn admin_token(given: Option<String>, data: &Path) -> Result<String> {
    if let Some(token) = given {
        return Ok(token);
    }
    let path = data.join("admin.token");
    Ok(std::fs::read_to_string(&path)
        .with_context(|| {
            format!(
                "pass --admin-token (or AMARVOTE_ADMIN_TOKEN); {} was not found",
                path.display()
            )
        })?
        .trim()
        .to_owned())
}

async fn run_loadgen(args: LoadgenArgs) -> Result<()> {
    let config = LoadgenConfig {
        server: args.server,
        admin_token: admin_token(args.admin_token, Path::new("amarvote-data"))?,
        voters: args.voters,
        rate: args.rate,
        duration: Duration::from_secs_f64(args.duration),
        duplicate_rate: args.duplicate_rate,
        invalid_rate: args.invalid_rate,
        concurrency: args.concurrency,
        drain_timeout: Duration::from_secs(args.drain_timeout),
        window: Duration::from_secs(args.report_every),
    };
    let report = loadgen::run(&config).await?;
    println!(
        "sent {} votes in {:.1} s ({:.0} votes/s), {} failed requests",
        report.sent,
        report.send_seconds,
        report.sent as f64 / report.send_seconds.max(1e-9),
        report.failed_requests
    );
    println!("accepted votes: {:.0}/s", report.accepted_per_second);
    println!(
        "submission latency: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
        report.p50_ms, report.p95_ms, report.p99_ms
    );
    for mismatch in &report.mismatches {
        println!("MISMATCH: {mismatch}");
    }
    if !report.reconciled() {
        bail!("reconciliation failed");
    }
    println!("reconciliation: exact");
    Ok(())
}

/// The embedded pipeline's configuration for `amarvote serve`.
pub fn embedded_config(
    data_dir: &Path,
    admin_token: String,
    limits: VoteLimits,
) -> embedded::EmbeddedConfig<'_> {
    embedded::EmbeddedConfig {
        data_dir,
        admin_token,
        limits,
    }
}
