//! The whole referendum pipeline in one process, on files in the data
//! directory: what `amarvote serve` runs.
//!
//! Every piece is durable, so a crash loses no vote that was answered 202:
//! `referendum-queue.db` (the streams), `referendum-registry.db` (eligible
//! voters, votes cast, request outcomes), `referendum.db` (results, audit,
//! duplicates, laws; the store's schema) and `referendum.secret` (the voter
//! hash key, created on first start). They are separate SQLite files because
//! SQLite has one writer per file, and the stages write concurrently.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use axum::Router;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::aggregate::{Aggregator, AGGREGATE_POLICY};
use super::ingest::{router, IngestState, Publisher};
use super::laws::Laws;
use super::metrics::{watch_queue_depth, ReferendumMetrics};
use super::queue::{Stream, VoteQueue};
use super::queue_sqlite::SqliteVoteQueue;
use super::rate_limit::{RateLimit, RateLimiter};
use super::registry::VoterRegistry;
use super::registry_sqlite::SqliteRegistry;
use super::review::Reviewer;
use super::tables::VoteTables;
use super::validate::Validator;
use super::voter_hash::{ElectionSecret, VoterHasher};
use crate::adapters::sql_store::SqlStore;

/// How long a claimed message stays hidden before it is redelivered.
pub const VISIBILITY: Duration = Duration::from_secs(30);
const DEPTH_EVERY: Duration = Duration::from_secs(5);

/// What the embedded mode needs from `amarvote serve`.
pub struct EmbeddedConfig<'a> {
    pub data_dir: &'a Path,
    pub admin_token: String,
    pub rate_limit: RateLimit,
}

/// A running pipeline: the routes to serve and the stage tasks, which end
/// after the shutdown signal once their current batches are settled.
pub struct Pipeline {
    pub router: Router,
    pub tasks: Vec<JoinHandle<()>>,
    pub registry: Arc<dyn VoterRegistry>,
    pub tables: VoteTables,
}

/// The embedded adapters of a data directory.
pub struct EmbeddedParts {
    pub queue: Arc<dyn VoteQueue>,
    pub registry: Arc<dyn VoterRegistry>,
    pub tables: VoteTables,
    pub secret: ElectionSecret,
}

/// Opens (creating as needed) the embedded adapters in `data_dir`.
pub async fn open_parts(data_dir: &Path) -> Result<EmbeddedParts> {
    crate::sealing::private_dir(data_dir)?;
    let files = [
        "referendum-queue.db",
        "referendum-registry.db",
        "referendum.db",
    ]
    .map(|f| data_dir.join(f));
    for file in &files {
        crate::sealing::private_file(file)?;
    }
    let queue = SqliteVoteQueue::open(&files[0], VISIBILITY).await?;
    let registry = SqliteRegistry::open(&files[1]).await?;
    let url = format!("sqlite://{}?mode=rwc", files[2].display());
    let store = SqlStore::connect(&url).await?;
    Ok(EmbeddedParts {
        queue: Arc::new(queue),
        registry: Arc::new(registry),
        tables: VoteTables::new(&store).await?,
        secret: ElectionSecret::load_or_create(&data_dir.join("referendum.secret"))?,
    })
}

/// Starts every stage on the data directory's files and returns the routes.
pub async fn start(
    config: EmbeddedConfig<'_>,
    metrics: Arc<ReferendumMetrics>,
    shutdown: watch::Receiver<bool>,
) -> Result<Pipeline> {
    let parts = open_parts(config.data_dir).await?;
    let tasks = spawn_workers(&parts, &metrics, &shutdown);
    let state = IngestState {
        hasher: VoterHasher::new(&parts.secret),
        laws: Laws::new(parts.tables.clone()),
        tables: parts.tables.clone(),
        registry: parts.registry.clone(),
        queue: parts.queue.clone(),
        publisher: Publisher::spawn(parts.queue.clone(), Stream::Validation),
        metrics,
        limiter: RateLimiter::new(config.rate_limit),
        admin_token: config.admin_token,
    };
    Ok(Pipeline {
        router: router(Arc::new(state)),
        tasks,
        registry: parts.registry,
        tables: parts.tables,
    })
}

/// The validator, aggregator, reviewer and depth gauge, as tasks.
pub fn spawn_workers(
    parts: &EmbeddedParts,
    metrics: &Arc<ReferendumMetrics>,
    shutdown: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let validator = Validator {
        queue: parts.queue.clone(),
        registry: parts.registry.clone(),
        metrics: metrics.clone(),
    };
    let aggregator = Aggregator {
        queue: parts.queue.clone(),
        tables: parts.tables.clone(),
        metrics: metrics.clone(),
        policy: AGGREGATE_POLICY,
    };
    let reviewer = Reviewer {
        queue: parts.queue.clone(),
        tables: parts.tables.clone(),
        metrics: metrics.clone(),
    };
    vec![
        tokio::spawn(validator.run(shutdown.clone())),
        tokio::spawn(aggregator.run(shutdown.clone())),
        tokio::spawn(reviewer.run(shutdown.clone())),
        tokio::spawn(watch_queue_depth(
            parts.queue.clone(),
            metrics.clone(),
            DEPTH_EVERY,
            shutdown.clone(),
        )),
    ]
}
