//! Giving freed memory back to the operating system.
//!
//! glibc's malloc keeps freed memory in its arenas unless the top of a heap happens to be free, so
//! after a burst (a large apply, a compile, a full sync to many proxies) a long-running control
//! plane would keep its peak RSS for good. Large allocations are mapped on their own ([`tune`]) and
//! the rest is trimmed once changes settle ([`release_freed`]).

/// Serves large allocations (update buffers, encoded configs) from their own mappings, which go
/// back to the system as soon as they are freed, instead of from arenas they would fragment.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called once at start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Returns freed heap memory to the system (a no-op where the allocator is not glibc's).
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}
