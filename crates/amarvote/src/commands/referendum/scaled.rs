//! The pipeline's stages as separate roles on PostgreSQL, RabbitMQ and Redis
//! (`amarvote referendum ingest|validate|aggregate`).
//!
//! Every role connects to the same three services; any number of processes of
//! each role may run, since the queue hands each message to one consumer, the
//! Redis registry decides each vote atomically, and the aggregator's audit key
//! absorbs redeliveries.

use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::adapters::registry_redis::RedisRegistry;
use crate::adapters::sql_store::SqlStore;
use crate::adapters::vote_queue_amqp::AmqpVoteQueue;
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
use crate::referendum::validate::Validator;
use crate::referendum::VoteLimits;

/// The shared services of a scaled deployment.
pub struct ScaledParts {
    pub queue: Arc<dyn VoteQueue>,
    pub registry: Arc<dyn VoterRegistry>,
    pub tables: Arc<dyn VoteStore>,
}

impl ScaledParts {
    pub async fn connect(
        database_url: &str,
        amqp_url: &str,
        redis_url: &str,
        redis_prefix: &str,
    ) -> Result<Self> {
        let store = SqlStore::connect(database_url)
            .await
            .context("cannot open the database")?;
        let queue = AmqpVoteQueue::connect(amqp_url)
            .await
            .context("cannot reach RabbitMQ")?;
        let registry = RedisRegistry::connect(redis_url, redis_prefix)
            .await
            .context("cannot reach Redis")?;
        Ok(ScaledParts {
            queue: Arc::new(queue),
            registry: Arc::new(registry),
            tables: Arc::new(VoteTables::new(&store).await?),
        })
    }

    /// The ingestion role's routes.
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
            false,
        );
        router(Arc::new(state))
    }

    /// The validation role's consumer.
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

    /// The aggregation role's consumers: votes and the review stream.
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
}
