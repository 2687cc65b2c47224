//! The referendum's adapters, one type for both deployments, and the builder of every
//! role on them: the ingestion routes, the validator, the aggregator with the reviewer,
//! and the queue-depth gauge.
//!
//! - [`Parts::embedded`]: files in a data directory (`amarvote serve`). Every piece is
//!   durable, so a crash loses no vote that was answered 202: `referendum-queue.db` (the
//!   streams), `referendum-registry.db` (eligible voters, votes cast, request outcomes) and
//!   `referendum.db` (results, audit, duplicates, laws). They are separate SQLite files
//!   because SQLite has one writer per file, and the stages write concurrently. One process
//!   owns a data directory's pipeline (an exclusive lock on `referendum.lock`), so at start
//!   every claim on the queue is a dead process's: they are released at once.
//! - [`Parts::scaled`]: PostgreSQL, RabbitMQ and Redis, shared by any number of processes
//!   of each role (`amarvote referendum ingest|validate|aggregate`): the queue hands each
//!   message to one consumer, the Redis registry decides each vote atomically, and the
//!   aggregator's audit key absorbs redeliveries.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::adapters::registry_redis::RedisRegistry;
use crate::adapters::registry_sqlite::SqliteRegistry;
use crate::adapters::vote_queue_amqp::AmqpVoteQueue;
use crate::adapters::vote_queue_sqlite::SqliteVoteQueue;
use crate::adapters::vote_tables::VoteTables;
use crate::api::referendum::{router, IngestState};
use crate::domain::voter_hash::{ElectionSecret, VoterHasher};
use crate::metrics::referendum::ReferendumMetrics;
use crate::ports::vote_queue::{Stream, VoteQueue};
use crate::ports::vote_store::VoteStore;
use crate::ports::voter_registry::VoterRegistry;
use crate::referendum::aggregate::Aggregator;
use crate::referendum::review::Reviewer;
use crate::referendum::stage::watch_queue_depth;
use crate::referendum::validate::Validator;
use crate::referendum::VoteLimits;

/// How long a claimed message of the embedded queue stays hidden before it is redelivered.
const VISIBILITY: Duration = Duration::from_secs(30);
/// How often the queue-depth gauge is refreshed.
const DEPTH_EVERY: Duration = Duration::from_secs(5);

/// The referendum's adapters.
pub struct Parts {
    pub queue: Arc<dyn VoteQueue>,
    pub registry: Arc<dyn VoterRegistry>,
    pub tables: Arc<dyn VoteStore>,
    /// For the embedded files: the data directory's exclusive lock, held while the parts
    /// live. Its holder is the only process publishing votes to them.
    owner: Option<std::fs::File>,
}

impl Parts {
    /// Opens (creating as needed) the embedded adapters in `data_dir`.
    pub async fn embedded(data_dir: &Path) -> Result<Parts> {
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
        let tables = VoteTables::connect(&url).await?;
        Ok(Parts {
            queue: Arc::new(queue),
            registry: Arc::new(registry),
            tables: Arc::new(tables),
            owner: Some(owner),
        })
    }

    /// Connects to the scaled deployment's services, each tried once.
    pub async fn scaled(
        database_url: &str,
        amqp_url: &str,
        redis_url: &str,
        redis_prefix: &str,
    ) -> Result<Parts> {
        let tables = VoteTables::connect(database_url)
            .await
            .context("cannot open the database")?;
        let queue = AmqpVoteQueue::connect(amqp_url)
            .await
            .context("cannot reach RabbitMQ")?;
        let registry = RedisRegistry::connect(redis_url, redis_prefix)
            .await
            .context("cannot reach Redis")?;
        Ok(Parts::shared(tables, queue, registry))
    }

    /// The scaled deployment's services, opened by a role that waits for them.
    pub fn shared(tables: VoteTables, queue: AmqpVoteQueue, registry: RedisRegistry) -> Parts {
        Parts {
            queue: Arc::new(queue),
            registry: Arc::new(registry),
            tables: Arc::new(tables),
            owner: None,
        }
    }

    /// The ingestion routes.
    pub fn ingest_router(
        &self,
        secret: &ElectionSecret,
        admin_token: String,
        limits: &VoteLimits,
        metrics: Arc<ReferendumMetrics>,
    ) -> Router {
        let state = IngestState::new(
            VoterHasher::new(secret),
            self.tables.clone(),
            self.registry.clone(),
            self.queue.clone(),
            metrics,
            limits,
            admin_token,
            self.owner.is_some(),
        );
        router(Arc::new(state))
    }

    /// The validation stage's consumer.
    pub fn spawn_validator(
        &self,
        limits: &VoteLimits,
        metrics: Arc<ReferendumMetrics>,
        shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let validator = Validator {
            queue: self.queue.clone(),
            registry: self.registry.clone(),
            tables: self.tables.clone(),
            metrics,
            max_wrong_codes: limits.max_wrong_codes,
        };
        tokio::spawn(validator.run(shutdown))
    }

    /// The aggregation stage's consumers: votes, and the review stream.
    pub fn spawn_aggregator(
        &self,
        metrics: Arc<ReferendumMetrics>,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        let aggregator = Aggregator {
            queue: self.queue.clone(),
            registry: self.registry.clone(),
            tables: self.tables.clone(),
            metrics: metrics.clone(),
            policy: Stream::Aggregation.batch_policy(),
        };
        let reviewer = Reviewer {
            queue: self.queue.clone(),
            registry: self.registry.clone(),
            tables: self.tables.clone(),
            metrics,
        };
        vec![
            tokio::spawn(aggregator.run(shutdown.clone())),
            tokio::spawn(reviewer.run(shutdown)),
        ]
    }

    /// The queue-depth gauge, refreshed until shutdown.
    pub fn spawn_depth_gauge(
        &self,
        metrics: Arc<ReferendumMetrics>,
        shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        tokio::spawn(watch_queue_depth(
            self.queue.clone(),
            metrics,
            DEPTH_EVERY,
            shutdown,
        ))
    }
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
