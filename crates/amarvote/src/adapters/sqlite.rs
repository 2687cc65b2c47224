//! The one way every embedded store opens its SQLite file, and what a commit must survive.
//!
//! Every file is in WAL mode (readers never wait for the writer) and waits up to ten
//! seconds for a lock rather than failing at once. What differs is the durability of a
//! commit, chosen by what depends on it:
//!
//! - [`Durability::Acknowledged`] (`synchronous = FULL`): the WAL is synced to disk at every
//!   commit, so a commit survives a power cut. For what was promised to someone outside the
//!   process before it can be recomputed: a ballot with its receipt, a vote with its 202, a
//!   voter's counted attempt.
//! - [`Durability::Recoverable`] (`synchronous = NORMAL`): a commit survives the process
//!   dying, but the last ones may be lost in a power cut. For what a restart rebuilds from
//!   durable state: the election's chunk messages, which the reconciler republishes from
//!   the store's chunk rows.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

/// How long a connection waits for another's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// What a commit must survive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// A power cut: synced at every commit.
    Acknowledged,
    /// The process dying; a restart rebuilds what a power cut loses.
    Recoverable,
}

impl Durability {
    fn synchronous(self) -> SqliteSynchronous {
        match self {
            Durability::Acknowledged => SqliteSynchronous::Full,
            Durability::Recoverable => SqliteSynchronous::Normal,
        }
    }

    fn pragma_value(self) -> &'static str {
        match self {
            Durability::Acknowledged => "FULL",
            Durability::Recoverable => "NORMAL",
        }
    }
}

/// Options for a file opened (and created if missing) with these settings.
pub fn options(path: &Path, durability: Durability) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(durability.synchronous())
        .busy_timeout(BUSY_TIMEOUT)
}

/// The same settings as statements, for a connection opened by URL (the SQL store, which
/// serves SQLite and PostgreSQL through one driver).
pub fn pragmas(durability: Durability) -> String {
    format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous={}; PRAGMA busy_timeout={};",
        durability.pragma_value(),
        BUSY_TIMEOUT.as_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_opens_with_the_settings_its_durability_names() {
        let dir = tempfile::tempdir().unwrap();
        for (durability, level) in [(Durability::Acknowledged, 2), (Durability::Recoverable, 1)] {
            let path = dir.path().join(format!("{durability:?}.db"));
            let pool = sqlx::SqlitePool::connect_with(options(&path, durability))
                .await
                .unwrap();
            let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&pool)
                .await
                .unwrap();
            let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(
                (synchronous, journal.as_str()),
                (level, "wal"),
                "{durability:?}"
            );
        }
        assert!(pragmas(Durability::Acknowledged).contains("synchronous=FULL"));
    }
}
