//! Job artifacts on SQL.

use async_trait::async_trait;

use super::*;

#[async_trait]
impl ArtifactStore for SqlStore {
    async fn put_artifact(
        &self,
        election_id: &str,
        name: &str,
        body: &[u8],
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO artifacts (election_id, name, body) VALUES ($1, $2, $3)
             ON CONFLICT (election_id, name) DO UPDATE SET body = $3",
        )
        .bind(election_id)
        .bind(name)
        .bind(body)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn artifact(&self, election_id: &str, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT body FROM artifacts WHERE election_id = $1 AND name = $2")
                .bind(election_id)
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn artifact_names(
        &self,
        election_id: &str,
        prefix: &str,
    ) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT name FROM artifacts WHERE election_id = $1 AND name LIKE $2 ORDER BY name",
        )
        .bind(election_id)
        .bind(format!("{prefix}%"))
        .fetch_all(&self.pool)
        .await?)
    }
}
