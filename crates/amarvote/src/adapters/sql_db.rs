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
use sqlx::{AnyPool, Connection, Executor};

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
        "this database's {system} tables were made by another amarvote version ({found}; \
         this one needs version {needed}): start on a new data directory or database (an \
         election's record can be exported first: amarvote record)"
    )]
    OtherVersion {
        system: &'static str,
        /// "version N", or "no version recorded" for tables that hold data.
        found: String,
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
    /// Raised with every change to `sql`: a database already at this version is given
    /// none of its statements (see [`SqlDb::apply`]).
    pub version: i64,
    /// Older versions whose tables `sql` brings to this version by adding to them (new
    /// tables only): such a database is restamped instead of refused.
    pub upgrades_from: &'static [i64],
    /// A table whose rows mean the system holds data: a database with data but no
    /// recorded version is refused, unless `adopt` recognises it.
    pub data_table: &'static str,
    /// How a database made before these tables had a version of their own is recognised.
    pub adopt: Option<Adopted>,
}

/// Tables made before they had a version of their own, recognised by another system's
/// version marker in the same database: they are stamped `as_version` (and refused if
/// that is not the version this build reads).
pub struct Adopted {
    pub marker_table: &'static str,
    /// The versions of the marker that mean these tables' shape.
    pub marker_versions: &'static [i64],
    pub as_version: i64,
}

/// A pool and the database it reaches.
#[derive(Clone)]
pub struct SqlDb {
    pub pool: AnyPool,
    pub backend: Backend,
}

impl SqlDb {
    /// Opens a pool; SQLite files get the settings `durability` names (see [`sqlite`]).
    pub async fn connect(url: &str, durability: Durability) -> Result<SqlDb, SqlDbError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(url)?;
        let options = AnyConnectOptions::from_str(url)?;
        // SQLite has one writer per file; PostgreSQL serves many.
        let connections = match backend {
            Backend::Sqlite => 4,
            Backend::Postgres => 16,
        };
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
        if backend == Backend::Postgres {
            // One attempt first: an unreachable server fails now, with its reason, where the
            // pool would try again until its acquire timeout and then only say "timed out".
            let probe = sqlx::AnyConnection::connect_with(&options).await?;
            let _ = probe.close().await;
        }
        let pool = pool.connect_with(options).await?;
        Ok(SqlDb { pool, backend })
    }

    /// Creates what is missing of `schema` and checks its version, in one transaction
    /// serialized with every other amarvote process's. A database already at this version
    /// gets no DDL: PostgreSQL's `CREATE INDEX IF NOT EXISTS` locks its table against
    /// writes until the transaction ends, even when the index exists.
    pub async fn apply(&self, schema: &Schema) -> Result<(), SqlDbError> {
        let mut tx = match self.backend {
            // The write lock from the start: two processes stamping one file cannot both
            // read an empty version table.
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        if self.backend == Backend::Postgres {
            // A bigint result: the Any driver cannot decode `void`.
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock($1)) AS l",
            )
            .bind(SCHEMA_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        }
        let current = self.versions(&mut tx, schema.version_table).await?;
        if current.as_deref() != Some(&[schema.version]) {
            for statement in self.statements(schema) {
                tx.execute(statement.as_str()).await?;
            }
            // A table the statements just made records nothing yet.
            self.check_version(&mut tx, schema, current.unwrap_or_default())
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The versions a table records, or `None` when there is no such table.
    async fn versions(&self, tx: &mut Tx<'_>, table: &str) -> Result<Option<Vec<i64>>, SqlDbError> {
        let exists = match self.backend {
            Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1"
            }
            Backend::Postgres => {
                "SELECT COUNT(*) FROM pg_catalog.pg_tables \
                 WHERE schemaname = current_schema() AND tablename = $1"
            }
        };
        let tables: i64 = sqlx::query_scalar(exists)
            .bind(table)
            .fetch_one(&mut **tx)
            .await?;
        if tables == 0 {
            return Ok(None);
        }
        let found = sqlx::query_scalar(&format!("SELECT version FROM {table}"))
            .fetch_all(&mut **tx)
            .await?;
        Ok(Some(found))
    }

    /// Given the versions recorded before the statements ran, stamps new tables with the
    /// schema's version (or adopted ones with theirs), or refuses tables another build
    /// made: better a clear message at start than failing queries later.
    async fn check_version(
        &self,
        tx: &mut Tx<'_>,
        schema: &Schema,
        mut found: Vec<i64>,
    ) -> Result<(), SqlDbError> {
        let table = schema.version_table;
        if found.is_empty() {
            let stamp = match self.holds_data(tx, schema).await? {
                false => Some(schema.version),
                true => self.adopted_version(tx, schema).await?,
            };
            if let Some(version) = stamp {
                sqlx::query(&format!("INSERT INTO {table} (version) VALUES ($1)"))
                    .bind(version)
                    .execute(&mut **tx)
                    .await?;
                found.push(version);
            }
        }
        if !found.is_empty() && found.iter().all(|v| schema.upgrades_from.contains(v)) {
            sqlx::query(&format!("UPDATE {table} SET version = $1"))
                .bind(schema.version)
                .execute(&mut **tx)
                .await?;
            found = vec![schema.version];
        }
        match found.as_slice() {
            [] => Err(other_version(schema, "no version recorded".into())),
            [first, ..] if found.iter().all(|v| v == first) && *first == schema.version => Ok(()),
            [.., last] => Err(other_version(schema, format!("version {last}"))),
        }
    }

    async fn holds_data(&self, tx: &mut Tx<'_>, schema: &Schema) -> Result<bool, SqlDbError> {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {}", schema.data_table))
            .fetch_one(&mut **tx)
            .await?;
        Ok(rows > 0)
    }

    /// The version unversioned tables with data are taken to have, if `schema.adopt`
    /// recognises the database by its marker.
    async fn adopted_version(
        &self,
        tx: &mut Tx<'_>,
        schema: &Schema,
    ) -> Result<Option<i64>, SqlDbError> {
        let Some(adopt) = &schema.adopt else {
            return Ok(None);
        };
        let marker = self.versions(tx, adopt.marker_table).await?;
        Ok(marker
            .filter(|found| {
                !found.is_empty() && found.iter().all(|v| adopt.marker_versions.contains(v))
            })
            .map(|_| adopt.as_version))
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

type Tx<'c> = sqlx::Transaction<'c, sqlx::Any>;

fn other_version(schema: &Schema, found: String) -> SqlDbError {
    SqlDbError::OtherVersion {
        system: schema.system,
        found,
        needed: schema.version,
    }
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
        upgrades_from: &[],
        data_table: "toys",
        adopt: None,
    };

    async fn sqlite(dir: &tempfile::TempDir) -> SqlDb {
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        SqlDb::connect(&url, Durability::Acknowledged)
            .await
            .unwrap()
    }

    async fn run(db: &SqlDb, sql: &str) {
        sqlx::query(sql).execute(&db.pool).await.unwrap();
    }

    fn refused_as(result: Result<(), SqlDbError>, expected: &str) {
        match result {
            Err(SqlDbError::OtherVersion { found, .. }) => assert_eq!(found, expected),
            other => panic!("not refused as {expected}: {other:?}"),
        }
    }

    #[test]
    fn only_database_urls_it_can_open_are_taken() {
        assert_eq!(Backend::of("sqlite://x.db").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::of("postgresql://h/db").unwrap(), Backend::Postgres);
        assert!(matches!(
            Backend::of("mysql://u:secret@h/db"),
            Err(SqlDbError::UnsupportedUrl)
        ));
    }

    #[tokio::test]
    async fn a_schema_applies_twice_and_refuses_another_version() {
        let dir = tempfile::tempdir().unwrap();
        let db = sqlite(&dir).await;
        db.apply(&TOY).await.unwrap();
        db.apply(&TOY).await.unwrap();
        refused_as(db.apply(&Schema { version: 3, ..TOY }).await, "version 2");
    }

    #[tokio::test]
    async fn tables_of_a_version_it_upgrades_from_are_restamped_and_others_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = sqlite(&dir).await;
        db.apply(&Schema { version: 1, ..TOY }).await.unwrap();
        run(&db, "INSERT INTO toys (id, body) VALUES ('a', x'00')").await;
        refused_as(
            db.apply(&Schema {
                version: 3,
                upgrades_from: &[2],
                ..TOY
            })
            .await,
            "version 1",
        );
        db.apply(&Schema {
            upgrades_from: &[1],
            ..TOY
        })
        .await
        .unwrap();
        db.apply(&TOY).await.unwrap();
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM toys")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(rows, 1, "an upgrade keeps what the tables hold");
    }

    #[tokio::test]
    async fn unversioned_tables_with_data_are_adopted_only_when_their_marker_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let db = sqlite(&dir).await;
        run(
            &db,
            "CREATE TABLE toys (id TEXT PRIMARY KEY, body BLOB NOT NULL)",
        )
        .await;
        run(&db, "INSERT INTO toys (id, body) VALUES ('a', x'00')").await;
        refused_as(db.apply(&TOY).await, "no version recorded");

        let adopting = |marker_versions, as_version| Schema {
            adopt: Some(Adopted {
                marker_table: "other_version",
                marker_versions,
                as_version,
            }),
            ..TOY
        };
        // No marker: made by a build older than the shape adoption assumes.
        refused_as(db.apply(&adopting(&[3], 2)).await, "no version recorded");
        run(&db, "CREATE TABLE other_version (version BIGINT NOT NULL)").await;
        run(&db, "INSERT INTO other_version (version) VALUES (2)").await;
        refused_as(db.apply(&adopting(&[3], 2)).await, "no version recorded");
        // The marker names the build: adopted as the version that build made, refused if
        // that is not this one (and nothing of the refused start is kept).
        refused_as(db.apply(&adopting(&[2], 1)).await, "version 1");
        db.apply(&adopting(&[3, 2], 2)).await.unwrap();
        db.apply(&TOY).await.unwrap();
    }

    #[test]
    fn only_failures_worth_retrying_are_transient() {
        for code in [
            "08006", "40001", "40P01", "53300", "57P01", "55P03", "5", "517", "773", "6", "262",
        ] {
            assert!(transient_code(code), "{code}");
        }
        // Unique and foreign-key violations, an unknown table, bad text, SQLite's
        // constraint (plain and UNIQUE) and generic errors.
        for code in [
            "23505", "23503", "42P01", "22P02", "22001", "19", "2067", "1", "11",
        ] {
            assert!(!transient_code(code), "{code}");
        }
    }
}
