//! Elections and their guardians on SQL.

use async_trait::async_trait;

use super::*;

#[async_trait]
impl ElectionStore for SqlStore {
    async fn insert_election(
        &self,
        e: &ElectionRow,
        server_device: &DeviceRow,
        guardians: &[GuardianRow],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO elections (id, title, state, guardians, quorum, manifest, context, device, shuffle_key, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(e.id.as_str())
        .bind(&e.title)
        .bind(e.state.as_str())
        .bind(i64::from(e.guardians))
        .bind(i64::from(e.quorum))
        .bind(&e.manifest_json)
        .bind(&e.context_json)
        .bind(&e.device_json)
        .bind(&e.shuffle_key)
        .bind(e.created_at)
        .execute(&mut *tx)
        .await?;
        insert_device(&mut tx, &e.id, server_device).await?;
        for g in guardians {
            sqlx::query(
                "INSERT INTO guardians (election_id, guardian_id, sequence_order, public_record, sealed_secret, token_hash)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(g.election_id.as_str())
            .bind(&g.guardian_id)
            .bind(g.sequence_order as i64)
            .bind(&g.public_json)
            .bind(&g.sealed_secret)
            .bind(&g.token_hash)
            .execute(&mut *tx)
            .await?;
        }
        // Counted as ballots are cast, so that planning a job never counts the ballot table.
        for state in [BallotState::Cast, BallotState::Spoiled] {
            sqlx::query("INSERT INTO ballot_counts (election_id, state, n) VALUES ($1, $2, 0)")
                .bind(e.id.as_str())
                .bind(state.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn election(&self, id: &str) -> Result<Option<ElectionRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM elections WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(election_row).transpose()
    }

    async fn recent_elections(&self, limit: u64) -> Result<Vec<ElectionRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM elections ORDER BY created_at DESC, id LIMIT $1")
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(election_row).collect()
    }

    async fn set_election_state(
        &self,
        id: &str,
        from: ElectionState,
        to: ElectionState,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE elections SET state = $1 WHERE id = $2 AND state = $3")
            .bind(to.as_str())
            .bind(id)
            .bind(from.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn guardians(&self, election_id: &str) -> Result<Vec<GuardianRow>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM guardians WHERE election_id = $1 ORDER BY sequence_order")
                .bind(election_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(guardian_row).collect()
    }

    async fn set_decryption_grant(
        &self,
        election_id: &str,
        guardian_id: &str,
        grant: &[u8],
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE guardians SET decryption_grant = $1 WHERE election_id = $2 AND guardian_id = $3")
            .bind(grant)
            .bind(election_id)
            .bind(guardian_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
