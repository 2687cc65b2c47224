//! The guardian-run key ceremony on SQL.

use async_trait::async_trait;

use super::*;

#[async_trait]
impl CeremonyStore for SqlStore {
    async fn announce_guardian(
        &self,
        election_id: &str,
        guardian_id: &str,
        public_json: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE guardians SET public_record = $1 WHERE election_id = $2 AND guardian_id = $3 AND public_record = ''",
        )
        .bind(public_json)
        .bind(election_id)
        .bind(guardian_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_key_backups(
        &self,
        election_id: &str,
        backups: &[KeyBackupRow],
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        for backup in backups {
            let done = sqlx::query(
                "INSERT INTO key_backups (election_id, sender, recipient, body, verified) VALUES ($1, $2, $3, $4, NULL)
                 ON CONFLICT (election_id, sender, recipient) DO NOTHING",
            )
            .bind(election_id)
            .bind(&backup.sender)
            .bind(&backup.recipient)
            .bind(&backup.body)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn key_backups(
        &self,
        election_id: &str,
        recipient: Option<&str>,
    ) -> Result<Vec<KeyBackupRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT sender, recipient, body, verified FROM key_backups
             WHERE election_id = $1 AND ($2 = '' OR recipient = $2) ORDER BY sender, recipient",
        )
        .bind(election_id)
        .bind(recipient.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(KeyBackupRow {
                    sender: row.try_get("sender")?,
                    recipient: row.try_get("recipient")?,
                    body: row.try_get("body")?,
                    verified: row.try_get::<Option<i64>, _>("verified")?.map(|v| v == 1),
                })
            })
            .collect()
    }

    async fn set_key_backup_verified(
        &self,
        election_id: &str,
        sender: &str,
        recipient: &str,
        verified: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE key_backups SET verified = $1 WHERE election_id = $2 AND sender = $3 AND recipient = $4
             AND NOT EXISTS (SELECT 1 FROM key_backup_challenges c WHERE c.election_id = $2 AND c.sender = $3 AND c.recipient = $4)",
        )
        .bind(i64::from(verified))
        .bind(election_id)
        .bind(sender)
        .bind(recipient)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn answer_key_backup_challenge(
        &self,
        election_id: &str,
        answer: &KeyChallengeRow,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO key_backup_challenges (election_id, sender, recipient, body) VALUES ($1, $2, $3, $4)
             ON CONFLICT (election_id, sender, recipient) DO NOTHING",
        )
        .bind(election_id)
        .bind(&answer.sender)
        .bind(&answer.recipient)
        .bind(&answer.body)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE key_backups SET verified = 1 WHERE election_id = $1 AND sender = $2 AND recipient = $3",
        )
        .bind(election_id)
        .bind(&answer.sender)
        .bind(&answer.recipient)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn key_backup_challenges(
        &self,
        election_id: &str,
        recipient: Option<&str>,
    ) -> Result<Vec<KeyChallengeRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT sender, recipient, body FROM key_backup_challenges
             WHERE election_id = $1 AND ($2 = '' OR recipient = $2) ORDER BY sender, recipient",
        )
        .bind(election_id)
        .bind(recipient.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(KeyChallengeRow {
                    sender: row.try_get("sender")?,
                    recipient: row.try_get("recipient")?,
                    body: row.try_get("body")?,
                })
            })
            .collect()
    }

    async fn open_after_ceremony(
        &self,
        election_id: &str,
        context_json: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE elections SET context = $1, state = $2 WHERE id = $3 AND state = $4",
        )
        .bind(context_json)
        .bind(ElectionState::Open.as_str())
        .bind(election_id)
        .bind(ElectionState::KeyCeremony.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
