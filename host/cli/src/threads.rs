//! The async runtime of the long-running commands (`jobset controller`,
//! `jobset sim serve`): a multi-thread tokio runtime, one worker per CPU
//! core unless `--worker-threads` says otherwise, so that watches,
//! reconciles and (in process) the simulator use every core they are given.
//! Plugin decisions run on tokio's blocking threads either way.

use crate::outcome::{Failure, bad_input};

/// The worker count for `--worker-threads N`: N itself, or one per CPU
/// core when N is 0.
pub fn worker_count(requested: usize) -> usize {
    match requested {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// Builds the runtime for `--worker-threads N`.
pub fn server_runtime(requested: usize) -> Result<tokio::runtime::Runtime, Failure> {
    if requested > MAX_WORKERS {
        return Err(bad_input(format!(
            "--worker-threads {requested} is more than {MAX_WORKERS}"
        )));
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_count(requested))
        .thread_name("jobset-worker")
        .enable_all()
        .build()
        .map_err(|e| Failure::Internal(format!("starting the async runtime: {e}")))
}

/// More workers than this is a typo, not a machine.
pub const MAX_WORKERS: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_means_one_worker_per_core() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(worker_count(0), cores);
        assert_eq!(worker_count(3), 3);
    }

    #[test]
    fn the_runtime_has_the_requested_workers() {
        let rt = server_runtime(3).expect("a runtime");
        assert_eq!(rt.metrics().num_workers(), 3);
    }

    #[test]
    fn an_absurd_worker_count_names_the_flag() {
        let Err(Failure::BadInput(message)) = server_runtime(MAX_WORKERS + 1) else {
            panic!("accepted {} workers", MAX_WORKERS + 1);
        };
        assert!(message.contains("--worker-threads"), "{message}");
    }
}
