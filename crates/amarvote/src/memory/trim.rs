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
