//! Elections and their guardians as the election service keeps them.

use async_trait::async_trait;

use super::ballot_box::DeviceRow;
use super::error::StoreError;
use crate::domain::{ElectionRow, ElectionState, GuardianRow};

#[async_trait]
pub trait ElectionStore: Send + Sync + 'static {
    /// Stores a new election with its guardians and the server's own encryption device.
    async fn insert_election(
        &self,
        election: &ElectionRow,
        server_device: &DeviceRow,
        guardians: &[GuardianRow],
    ) -> Result<(), StoreError>;
    async fn election(&self, id: &str) -> Result<Option<ElectionRow>, StoreError>;
    /// The newest elections, at most `limit` of them.
    async fn recent_elections(&self, limit: u64) -> Result<Vec<ElectionRow>, StoreError>;
    async fn set_election_state(
        &self,
        id: &str,
        from: ElectionState,
        to: ElectionState,
    ) -> Result<bool, StoreError>;
    async fn guardians(&self, election_id: &str) -> Result<Vec<GuardianRow>, StoreError>;
    async fn set_decryption_grant(
        &self,
        election_id: &str,
        guardian_id: &str,
        grant: &[u8],
    ) -> Result<(), StoreError>;
}
