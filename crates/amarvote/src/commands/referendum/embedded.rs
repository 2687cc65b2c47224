//! The whole referendum pipeline in one process, on files in the data directory: what
//! `amarvote serve` runs (the files are [`Parts::embedded`]'s).

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use axum::Router;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::parts::Parts;
use crate::domain::voter_hash::ElectionSecret;
use crate::metrics::referendum::ReferendumMetrics;
use crate::referendum::VoteLimits;

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
    pub parts: Parts,
}

/// Starts every stage on the data directory's files and returns the routes; the voter
/// hash key (`referendum.secret`) is created on first start.
pub async fn start(
    config: EmbeddedConfig<'_>,
    metrics: Arc<ReferendumMetrics>,
    shutdown: watch::Receiver<bool>,
) -> Result<Pipeline> {
    let parts = Parts::embedded(config.data_dir).await?;
    let secret = ElectionSecret::load_or_create(&config.data_dir.join("referendum.secret"))?;
    let tasks = spawn_workers(&parts, &config.limits, &metrics, &shutdown);
    let router = parts.ingest_router(&secret, config.admin_token, &config.limits, metrics);
    Ok(Pipeline {
        router,
        tasks,
        parts,
    })
}

/// The validator, aggregator, reviewer and depth gauge, as tasks.
pub fn spawn_workers(
    parts: &Parts,
    limits: &VoteLimits,
    metrics: &Arc<ReferendumMetrics>,
    shutdown: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = vec![parts.spawn_validator(limits, metrics.clone(), shutdown.clone())];
    tasks.extend(parts.spawn_aggregator(metrics.clone(), shutdown.clone()));
    tasks.push(parts.spawn_depth_gauge(metrics.clone(), shutdown.clone()));
    tasks
}
