//! What jobs produce (the encrypted tally, the results, the verification report), by name.

use async_trait::async_trait;

use super::error::StoreError;

#[async_trait]
pub trait ArtifactStore: Send + Sync + 'static {
    async fn put_artifact(
        &self,
        election_id: &str,
        name: &str,
        body: &[u8],
    ) -> Result<(), StoreError>;
    async fn artifact(&self, election_id: &str, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    async fn artifact_names(
        &self,
        election_id: &str,
        prefix: &str,
    ) -> Result<Vec<String>, StoreError>;
}
