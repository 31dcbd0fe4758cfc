//! Where plugin calls run when the caller drives a tokio runtime.
//!
//! wasmtime-wasi's blocking stream calls (a plugin flushing stdout or
//! stderr, as `println!` and every Rust panic message do) enter tokio with
//! `Handle::block_on`, which panics on a thread that is driving a runtime.
//! So a plugin call never runs on such a thread. Two ways around it:
//!
//! - [`off_runtime`]: an async caller hands a whole batch of work (the
//!   controller's plan, with all its decisions) to tokio's blocking pool
//!   and awaits it; the runtime thread serves other tasks meanwhile, and
//!   the plugin calls inside run in place. Under a paused test clock tokio
//!   does not jump time forward while the batch runs.
//! - otherwise a call made on a runtime thread is handed to one of a few
//!   kept threads outside the runtime ([`pool`]) and the caller blocks for
//!   it.

use std::cell::Cell;
use std::sync::OnceLock;

thread_local! {
    /// Set while [`off_runtime`] work runs on this thread: plugin calls may
    /// run in place although a runtime handle is entered.
    static IN_PLACE: Cell<bool> = const { Cell::new(false) };
}

/// Whether a plugin call on this thread can run where it is.
pub(crate) fn in_place() -> bool {
    IN_PLACE.get() || tokio::runtime::Handle::try_current().is_err()
}

/// The work given to [`off_runtime`] panicked; the panic message, if any.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the work handed off the async runtime failed: {0}")]
pub struct OffRuntimeError(pub String);

/// Runs `work` (which may call plugins) without blocking the async runtime
/// the caller is on: on tokio's blocking pool when there is a runtime, in
/// place when there is none. A panic in `work` comes back as an error.
pub async fn off_runtime<R, F>(work: F) -> Result<R, OffRuntimeError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return Ok(work());
    };
    let dispatch = tracing::dispatcher::get_default(|d| d.clone());
    let span = tracing::Span::current();
    handle
        .spawn_blocking(move || {
            let _in_place = InPlace::enter();
            tracing::dispatcher::with_default(&dispatch, || span.in_scope(work))
        })
        .await
        .map_err(|e| {
            OffRuntimeError(match e.try_into_panic() {
                Ok(panic) => panic_message(panic.as_ref()),
                Err(e) => e.to_string(),
            })
        })
}

/// Marks the thread for [`in_place`] until dropped (also on unwinding, so
/// a blocking-pool thread reused for other work is not left marked).
struct InPlace;

impl InPlace {
    fn enter() -> InPlace {
        IN_PLACE.set(true);
        InPlace
    }
}

impl Drop for InPlace {
    fn drop(&mut self) {
        IN_PLACE.set(false);
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panicked".to_string())
}

/// The threads that run single plugin calls for callers on a tokio runtime
/// thread: as many as the machine runs at once (at least two), started
/// once. `None` if they could not be started; calls then start a thread
/// each.
pub(crate) fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("jobset-policy-{i}"))
            .build()
            .map_err(|e| tracing::warn!(error = %e, "no plugin thread pool; a thread per call"))
            .ok()
    })
    .as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_runtime_work_runs_in_place() {
        let here = std::thread::current().id();
        let ran_on = futures_lite_block_on(off_runtime(move || std::thread::current().id()));
        assert_eq!(ran_on, Ok(here));
        assert!(in_place());
    }

    #[test]
    fn on_a_runtime_work_leaves_the_runtime_thread_and_is_marked_in_place() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        rt.block_on(async {
            assert!(
                !in_place(),
                "a runtime thread is not a place for plugin calls"
            );
            let here = std::thread::current().id();
            let (ran_on, marked) = off_runtime(|| (std::thread::current().id(), in_place()))
                .await
                .expect("runs");
            assert_ne!(ran_on, here);
            assert!(marked);
            // The blocking thread is unmarked afterwards, even after a panic.
            let err = off_runtime(|| -> () { panic!("plan exploded") })
                .await
                .expect_err("the panic comes back");
            assert_eq!(err.0, "plan exploded");
            let after = tokio::task::spawn_blocking(|| IN_PLACE.get())
                .await
                .expect("runs");
            assert!(!after);
        });
    }

    /// Drives a future that never waits on I/O to completion.
    fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }
}
