//! One SQL database for both deployment scales, as the election's store and the
//! referendum's vote tables open it: a pool over sqlx's `Any` driver (SQLite, the embedded
//! default, or PostgreSQL) and each system's schema, applied under a lock.
//!
//! Each system owns its schema and its version: the election's tables
//! (`sql_store/schema.sql`, version in `schema_version`) and the referendum's
//! (`vote_tables.sql`, version in `referendum_schema_version`). Both may live in one
//! PostgreSQL database or in separate files.
//!
//! Roles of both systems start in any order, several at once: on PostgreSQL a schema is
//! applied in one transaction that first takes a transaction-level advisory lock, so
//! concurrent `CREATE … IF NOT EXISTS` statements cannot race inside the catalog (they
//! did: `duplicate key value violates unique constraint "pg_type_typname_nsp_index"`),
//! and a failure leaves nothing half made.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use super::sqlite::{self, Durability};

/// The advisory lock every amarvote schema is applied under (the bytes of "amarvote").
const SCHEMA_LOCK: i64 = 0x616d_6172_766f_7465;

/// Which database a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of(url: &str) -> Result<Backend, SqlDbError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else {
            Err(SqlDbError::UnsupportedUrl)
        }
    }
}

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SqlDbError {
    #[error("unsupported database URL (sqlite: or postgres:)")]
    UnsupportedUrl,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(
        "this database's {system} tables were made by another amarvote version (schema \
         {found:?}, this one needs {needed}); export its records and start on a new data \
         directory or database"
    )]
    OtherVersion {
        system: &'static str,
        found: Vec<i64>,
        needed: i64,
    },
}

/// A system's tables: what makes them, and which version of them this build reads.
pub struct Schema {
    /// Named in messages: "election", "referendum".
    pub system: &'static str,
    /// `;`-separated statements in the dialect both databases share; ` BLOB` columns
    /// become `BYTEA` on PostgreSQL.
    pub sql: &'static str,
    /// Statements for PostgreSQL alone (sequences).
    pub postgres_only: &'static [&'static str],
    /// The one-column table that records the version (made by `sql`).
    pub version_table: &'static str,
    pub version: i64,
    /// A table whose rows mean the system holds data: a database with data but no
    /// recorded version is refused unless `adopt_unversioned`.
    pub data_table: &'static str,
    /// True when the tables were unversioned before with this version's shape, so such a
    /// database is stamped rather than refused.
    pub adopt_unversioned: bool,
}

/// A pool and the database it reaches.
#[derive(Clone)]
pub struct SqlDb {
    pub pool: AnyPool,
    pub backend: Backend,
}

impl SqlDb {
    /// Opens a pool of at most `connections`; SQLite files get the settings `durability`
    /// names (see [`sqlite`]).
    pub async fn connect(
        url: &str,
        durability: Durability,
        connections: u32,
    ) -> Result<SqlDb, SqlDbError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(url)?;
        let options = AnyConnectOptions::from_str(url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(Duration::from_secs(30));
        let pool = match backend {
            Backend::Sqlite => pool.after_connect(move |conn, _| {
                Box::pin(async move {
                    conn.execute(sqlite::pragmas(durability).as_str()).await?;
                    Ok(())
                })
            }),
            Backend::Postgres => pool,
        };
        let pool = pool.connect_with(options).await?;
        Ok(SqlDb { pool, backend })
    }

    /// Creates what is missing of `schema` and checks its version, in one transaction
    /// serialized with every other amarvote process's.
    pub async fn apply(&self, schema: &Schema) -> Result<(), SqlDbError> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            // A bigint result: the Any driver cannot decode `void`.
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock($1)) AS l",
            )
            .bind(SCHEMA_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        }
        for statement in self.statements(schema) {
            tx.execute(statement.as_str()).await?;
        }
        check_version(&mut tx, schema).await?;
        tx.commit().await?;
        Ok(())
    }

    fn statements(&self, schema: &Schema) -> Vec<String> {
        let blob = match self.backend {
            Backend::Postgres => " BYTEA",
            Backend::Sqlite => " BLOB",
        };
        let common = schema
            .sql
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let own = match self.backend {
            Backend::Postgres => schema.postgres_only,
            Backend::Sqlite => &[],
        };
        common
            .chain(own.iter().copied())
            .map(|s| s.replace(" BLOB", blob))
            .collect()
    }
}

/// Stamps a new database with the schema's version, or refuses one another build made:
/// better a clear message at start than failing queries later.
async fn check_version(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    schema: &Schema,
) -> Result<(), SqlDbError> {
    let table = schema.version_table;
    let found: Vec<i64> = sqlx::query_scalar(&format!("SELECT version FROM {table}"))
        .fetch_all(&mut **tx)
        .await?;
    if found.is_empty() {
        let holds_data: bool =
            sqlx::query_scalar::<_, i64>(&format!("SELECT COUNT(*) FROM {}", schema.data_table))
                .fetch_one(&mut **tx)
                .await?
                > 0;
        if !holds_data || schema.adopt_unversioned {
            sqlx::query(&format!("INSERT INTO {table} (version) VALUES ($1)"))
                .bind(schema.version)
                .execute(&mut **tx)
                .await?;
            return Ok(());
        }
    }
    if !found.is_empty() && found.iter().all(|v| *v == schema.version) {
        return Ok(());
    }
    Err(SqlDbError::OtherVersion {
        system: schema.system,
        found,
        needed: schema.version,
    })
}

/// Connection loss, a busy or locked database, and aborted transactions (serialization
/// failures, deadlocks, a server shutting down or starting) may pass; anything else is a
/// refusal that will not. Codes: PostgreSQL SQLSTATE classes 08 (connection), 40
/// (transaction rollback), 53 (insufficient resources), 57P (operator intervention) and
/// 55P03 (lock not available); SQLite's BUSY and LOCKED, whatever their extended code.
pub fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| transient_code(&code)),
        _ => false,
    }
}

fn transient_code(code: &str) -> bool {
    // A SQLSTATE is always five characters (often all digits); SQLite's codes are shorter.
    if code.len() == 5 {
        return ["08", "40", "53", "57P"]
            .iter()
            .any(|class| code.starts_with(class))
            || code == "55P03";
    }
    const BUSY: i64 = 5;
    const LOCKED: i64 = 6;
    code.parse::<i64>()
        .is_ok_and(|sqlite| matches!(sqlite & 0xff, BUSY | LOCKED))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOY: Schema = Schema {
        system: "toy",
        sql: "CREATE TABLE IF NOT EXISTS toy_version (version BIGINT NOT NULL);
              CREATE TABLE IF NOT EXISTS toys (id TEXT PRIMARY KEY, body BLOB NOT NULL)",
        postgres_only: &[],
        version_table: "toy_version",
        version: 2,
        data_table: "toys",
        adopt_unversioned: false,
    };

    async fn sqlite(dir: &tempfile::TempDir) -> SqlDb {
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        SqlDb::connect(&url, Durability::Acknowledged, 2)
            .await
            .unwrap()
    }

    #[test]
    fn only_database_urls_it_can_open_are_taken() {
        assert_eq!(Backend::of("sqlite://x.db").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::of("postgresql://h/db").unwrap(), Backend::Postgres);
        assert!(matches!(
            Backend::of("mysql://h/db"),
            Err(SqlDbError::UnsupportedUrl)
        ));
    }

    #[tokio::test]
    async fn a_schema_applies_twice_and_refuses_another_version_or_unversioned_data() {
        let dir = tempfile::tempdir().unwrap();
        let db = sqlite(&dir).await;
        db.apply(&TOY).await.unwrap();
        db.apply(&TOY).await.unwrap();
        let newer = Schema { version: 3, ..TOY };
        let refused = db.apply(&newer).await.unwrap_err();
        assert!(
            matches!(&refused, SqlDbError::OtherVersion { found, needed: 3, .. } if found == &[2]),
            "{refused}"
        );

        sqlx::query("DELETE FROM toy_version")
            .execute(&db.pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO toys (id, body) VALUES ('a', x'00')")
            .execute(&db.pool)
            .await
            .unwrap();
        assert!(matches!(
            db.apply(&TOY).await,
            Err(SqlDbError::OtherVersion { .. })
        ));
        let adopting = Schema {
            adopt_unversioned: true,
            ..TOY
        };
        db.apply(&adopting).await.unwrap();
        db.apply(&TOY).await.unwrap();
    }

    #[test]
    fn only_failures_worth_retrying_are_transient() {
        for code in [
            "08006", "40001", "40P01", "53300", "57P01", "55P03", "5", "517", "6", "262",
        ] {
            assert!(transient_code(code), "{code}");
        }
        for code in ["23505", "42P01", "22001", "19", "2067", "1", "11"] {
            assert!(!transient_code(code), "{code}");
        }
    }
}
