//! The guardian-run key ceremony: announcements, backups, verdicts and answered challenges.

use async_trait::async_trait;

use super::error::StoreError;
use crate::domain::{KeyBackupRow, KeyChallengeRow};

#[async_trait]
pub trait CeremonyStore: Send + Sync + 'static {
    /// Records a guardian's public key record, once; false if it already had one.
    async fn announce_guardian(
        &self,
        election_id: &str,
        guardian_id: &str,
        public_json: &str,
    ) -> Result<bool, StoreError>;
    /// Stores a sender's backups, all or none; false if the sender had sent them already.
    async fn insert_key_backups(
        &self,
        election_id: &str,
        backups: &[KeyBackupRow],
    ) -> Result<bool, StoreError>;
    /// The election's backups: all of them, or those sent to one recipient.
    async fn key_backups(
        &self,
        election_id: &str,
        recipient: Option<&str>,
    ) -> Result<Vec<KeyBackupRow>, StoreError>;
    /// Records a recipient's verdict, unless an answered challenge settled that backup.
    async fn set_key_backup_verified(
        &self,
        election_id: &str,
        sender: &str,
        recipient: &str,
        verified: bool,
    ) -> Result<(), StoreError>;
    /// Stores a sender's answer to a rejected backup (the coordinate in clear, checked by
    /// the caller) unless one is stored, and marks the backup verified, in one transaction.
    async fn answer_key_backup_challenge(
        &self,
        election_id: &str,
        answer: &KeyChallengeRow,
    ) -> Result<(), StoreError>;
    /// The answered challenges: all of them, or those for backups to one recipient.
    async fn key_backup_challenges(
        &self,
        election_id: &str,
        recipient: Option<&str>,
    ) -> Result<Vec<KeyChallengeRow>, StoreError>;
    /// Ends a key ceremony: stores the context and opens voting, once.
    async fn open_after_ceremony(
        &self,
        election_id: &str,
        context_json: &str,
    ) -> Result<bool, StoreError>;
}
