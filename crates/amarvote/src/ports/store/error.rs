//! The one error of every store operation: the backend's failure, opaque.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed; `transient` when trying again later may succeed (it was
    /// unreachable, busy, or aborted the transaction).
    #[error("database error: {message}")]
    Backend { message: String, transient: bool },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}
