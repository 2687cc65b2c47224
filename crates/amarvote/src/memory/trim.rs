//! The one place the service crate calls into C: giving freed memory back to the system.
//! `unsafe` is denied everywhere else in the workspace (see `[workspace.lints]`), except in
//! the cryptography crate's `bignum` module.
#![allow(unsafe_code)]

/// Hands the memory a chunk freed back to the system. glibc keeps freed pages in the
/// arena of whichever thread freed them, so without this a worker's resident size drifts
/// up with the chunks it has done instead of staying at one chunk's peak.
pub fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers; it only walks glibc's own allocator state.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Returns freed memory every `period` until shutdown. An HTTP role frees its requests'
/// working memory on many threads, and glibc keeps each arena's freed pages below a trim
/// threshold that grows with the largest block freed (to 64 MB): eight minutes of
/// elections left an API 740 MB resident with 320 MB in use, ten arenas holding 25–65 MB
/// of free pages each.
pub async fn keep_returning_freed_memory(
    period: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.changed() => return,
        }
        let started = std::time::Instant::now();
        let _ = tokio::task::spawn_blocking(return_freed_memory).await;
        tracing::debug!(took = ?started.elapsed(), "freed memory returned");
    }
}
