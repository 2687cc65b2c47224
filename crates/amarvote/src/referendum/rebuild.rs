//! Rebuilding a registry that lost its data, from the vote store's audit and rejection
//! logs: the step that makes a reloaded registry ready again.

use crate::ports::vote_store::{VoteStore, VoteStoreError};
use crate::ports::voter_registry::{MarkOutcome, RegistryError, VoterRegistry};

/// Rebuilds the registry's voted state and remembered outcomes from the audit
/// log and the rejection log, then marks it ready. Idempotent, and safe while
/// votes are being counted (the earliest-wins rule merges). Returns the audited
/// voters restored, or `None` if another process holds the rebuild lease (or
/// nothing is loaded).
pub async fn rebuild(
    registry: &dyn VoterRegistry,
    tables: &dyn VoteStore,
) -> Result<Option<u64>, RebuildError> {
    if !registry.begin_rebuild().await? {
        return Ok(None);
    }
    let mut restored = 0;
    let mut after: Option<String> = None;
    loop {
        let page = tables.audited_after(after.as_deref()).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.voter_hash.to_hex());
        restored += page.len() as u64;
        let outcomes = page
            .iter()
            .map(|counted| (counted.request_id.clone(), MarkOutcome::Accepted))
            .collect();
        registry.restore(page).await?;
        registry.restore_outcomes(outcomes).await?;
    }
    let mut after: Option<String> = None;
    loop {
        let page = tables.rejections_after(after.as_deref()).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        registry.restore_outcomes(page).await?;
    }
    registry.mark_ready().await?;
    Ok(Some(restored))
}

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("audit log: {0}")]
    Store(#[from] VoteStoreError),
}
