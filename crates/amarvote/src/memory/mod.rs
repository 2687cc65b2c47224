//! Where the process's large allocations come from and how freed memory goes back to the
//! system: glibc keeps freed pages in per-thread arenas, which a long-running role must
//! work with to stay flat.

pub mod table_thread;
mod trim;

pub use trim::{keep_returning_freed_memory, return_freed_memory};
