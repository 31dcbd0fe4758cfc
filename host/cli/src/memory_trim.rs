//! Handing freed heap memory back to the operating system.
//!
//! glibc's allocator keeps what a program frees for reuse and returns to
//! the system on its own only the free memory at the top of each heap. The
//! controller frees memory in bursts (each Job arrives whole from its watch
//! and is then slimmed; compiling a plugin allocates and frees tens of
//! MiB), so pages nothing uses stay resident in the middle of its heaps.
//! [`trim`] asks glibc to give back every whole free page; the controller
//! calls it on a timer (`jobset controller --memory-trim-interval-s`).
//! Elsewhere than glibc (the static musl image returns memory on its own)
//! it does nothing.
#![allow(unsafe_code)]

use std::time::Duration;

/// Returns free heap pages to the operating system; true when any were.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes no pointer and touches only the
        // allocator's own free lists, under the allocator's locks, so it
        // may run beside any allocation on any thread.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Calls [`trim`] every `interval`, on a blocking thread (it holds each
/// arena's lock while it walks it), until the task is dropped.
pub async fn every(interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let released = tokio::task::spawn_blocking(trim).await.unwrap_or(false);
        tracing::trace!(released, "freed heap handed back");
    }
}
