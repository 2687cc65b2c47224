//! The whole referendum pipeline in one process, on files in the data
//! directory: what `amarvote serve` runs.
//!
//! Every piece is durable, so a crash loses no vote that was answered 202:
//! `referendum-queue.db` (the streams), `referendum-registry.db` (eligible
//! voters, votes cast, request outcomes), `referendum.db` (results, audit,
//! duplicates, laws; the store's schema) and `referendum.secret` (the voter
//! hash key, created on first start). They are separate SQLite files because
//! SQLite has one writer per file, and the stages write concurrently.
//!
//! One process owns a data directory's pipeline (an exclusive lock on
//! `referendum.lock`), so at start every claim on the queue is a dead process's:
//! they are released at once and the votes in flight at a crash are decided
//! within moments of the restart.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use axum::Router;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::adapters::registry_sqlite::SqliteRegistry;
use crate::adapters::sql_store::SqlStore;
use crate::adapters::vote_queue_sqlite::SqliteVoteQueue;
use crate::adapters::vote_tables::VoteTables;
use crate::api::referendum::{router, IngestState};
use crate::domain::voter_hash::{ElectionSecret, VoterHasher};
use crate::metrics::referendum::ReferendumMetrics;
use crate::ports::vote_queue::Stream;
use crate::ports::vote_queue::VoteQueue;
use crate::ports::vote_store::VoteStore;
use crate::ports::voter_registry::VoterRegistry;
use crate::referendum::aggregate::Aggregator;
use crate::referendum::review::Reviewer;
use crate::referendum::stage::watch_queue_depth;
use crate::referendum::validate::Validator;
use crate::referendum::VoteLimits;

/// How long a claimed message stays hidden before it is redelivered.
pub const VISIBILITY: Duration = Duration::from_secs(30);
const DEPTH_EVERY: Duration = Duration::from_secs(5);

/// What the embedded mode needs from `amarvote serve`.
pub struct EmbeddedConfig<'a> {
    pub data_dir: &'a Path,
    pub admin_token: String,
    pub limits: VoteLimits,
}

/// A running pipeline: the routes to serve and the stage tasks, which end
/// after the shutdown signal once their current batches are settled.
pub struct Pipeline {
    pub router: Router,
    pub tasks: Vec<JoinHandle<()>>,
    /// The adapters, holding the data directory's lock for as long as they live.
    pub parts: EmbeddedParts,
}

/// The embedded adapters of a data directory.
pub struct EmbeddedParts {
    pub queue: Arc<dyn VoteQueue>,
    pub registry: Arc<dyn VoterRegistry>,
    pub tables: Arc<dyn VoteStore>,
    pub secret: ElectionSecret,
    /// Held while the parts live: the data directory's exclusive lock.
    _owner: std::fs::File,
}

/// Takes the data directory's exclusive lock, or says who holds it.
fn own(data_dir: &Path) -> Result<std::fs::File> {
    let path = data_dir.join("referendum.lock");
    crate::sealing::private_file(&path)?;
    let file = std::fs::OpenOptions::new().write(true).open(&path)?;
    file.try_lock().map_err(|_| {
        anyhow::anyhow!(
            "another amarvote process is running the referendum on {}",
            data_dir.display()
        )
    })?;
    Ok(file)
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
    let owner = own(data_dir)?;
    let queue = SqliteVoteQueue::open(&files[0], VISIBILITY).await?;
    let released = queue.release_claims().await?;
    if released > 0 {
        tracing::info!(
            released,
            "votes in flight at the last stop are decided again"
        );
    }
    let registry = SqliteRegistry::open(&files[1]).await?;
    let url = format!("sqlite://{}?mode=rwc", files[2].display());
    let store = SqlStore::connect(&url).await?;
    Ok(EmbeddedParts {
        queue: Arc::new(queue),
        registry: Arc::new(registry),
        tables: Arc::new(VoteTables::new(&store).await?),
        secret: ElectionSecret::load_or_create(&data_dir.join("referendum.secret"))?,
        _owner: owner,
    })
}

/// Starts every stage on the data directory's files and returns the routes.
pub async fn start(
    config: EmbeddedConfig<'_>,
    metrics: Arc<ReferendumMetrics>,
    shutdown: watch::Receiver<bool>,
) -> Result<Pipeline> {
    let parts = open_parts(config.data_dir).await?;
    let tasks = spawn_workers(&parts, &config.limits, &metrics, &shutdown);
    let state = IngestState::new(
        VoterHasher::new(&parts.secret),
        parts.tables.clone(),
        parts.registry.clone(),
        parts.queue.clone(),
        metrics,
        &config.limits,
        config.admin_token,
        true,
    );
    Ok(Pipeline {
        router: router(Arc::new(state)),
        tasks,
        parts,
    })
}

/// The validator, aggregator, reviewer and depth gauge, as tasks.
pub fn spawn_workers(
    parts: &EmbeddedParts,
    limits: &VoteLimits,
    metrics: &Arc<ReferendumMetrics>,
    shutdown: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let validator = Validator {
        queue: parts.queue.clone(),
        registry: parts.registry.clone(),
        tables: parts.tables.clone(),
        metrics: metrics.clone(),
        max_wrong_codes: limits.max_wrong_codes,
    };
    let aggregator = Aggregator {
        queue: parts.queue.clone(),
        registry: parts.registry.clone(),
        tables: parts.tables.clone(),
        metrics: metrics.clone(),
        policy: Stream::Aggregation.batch_policy(),
    };
    let reviewer = Reviewer {
        queue: parts.queue.clone(),
        registry: parts.registry.clone(),
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
