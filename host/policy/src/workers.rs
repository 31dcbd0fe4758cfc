//! Threads outside any tokio runtime that run plugin calls for callers on a
//! runtime thread: wasmtime-wasi's blocking stream calls (a plugin flushing
//! stdout or stderr, as `println!` and every Rust panic message do) enter
//! tokio with `block_on`, which panics on a thread already driving a
//! runtime. Threads are kept and reused, so a decision does not pay for
//! starting one; there are only ever as many as calls ran at once.

use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, Sender};

type Job = Box<dyn FnOnce() + Send>;

/// An idle worker: where to send its next job.
struct Worker {
    jobs: Sender<Job>,
}

/// The pool of idle workers.
#[derive(Default)]
pub(crate) struct Workers {
    idle: Mutex<Vec<Worker>>,
}

impl Workers {
    /// Runs `f` on an idle worker (started if none is idle) and waits for
    /// its result; `None` if the worker could not be started or died while
    /// running `f` (a host panic), in which case it is not reused.
    pub(crate) fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Option<R> {
        let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
        let worker = match idle {
            Some(w) => w,
            None => spawn()?,
        };
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        worker.jobs.send(job).ok()?;
        let result = rx.recv().ok()?;
        if let Ok(mut v) = self.idle.lock() {
            v.push(worker);
        }
        Some(result)
    }

    /// How many workers are idle (for tests).
    #[cfg(test)]
    fn idle(&self) -> usize {
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
    }
}

fn spawn() -> Option<Worker> {
    let (tx, rx): (Sender<Job>, Receiver<Job>) = mpsc::channel();
    std::thread::Builder::new()
        .name("jobset-policy".into())
        .spawn(move || {
            // Ends when the pool (and so the sender) is dropped.
            while let Ok(job) = rx.recv() {
                job();
            }
        })
        .ok()?;
    Some(Worker { jobs: tx })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_is_reused_and_runs_off_the_callers_thread() {
        let pool = Workers::default();
        let caller = std::thread::current().id();
        let first = pool.run(|| std::thread::current().id()).expect("runs");
        let second = pool.run(|| std::thread::current().id()).expect("runs");
        assert_ne!(first, caller);
        assert_eq!(first, second, "the idle worker is reused");
        assert_eq!(pool.idle(), 1);
    }

    #[test]
    fn a_job_that_panics_gives_none_and_its_worker_is_not_reused() {
        let pool = Workers::default();
        assert_eq!(pool.run(|| 7), Some(7));
        let failed: Option<()> = pool.run(|| panic!("host bug"));
        assert_eq!(failed, None);
        assert_eq!(pool.idle(), 0);
        assert_eq!(pool.run(|| 8), Some(8), "a new worker takes over");
    }

    #[test]
    fn concurrent_callers_get_a_worker_each() {
        let pool = std::sync::Arc::new(Workers::default());
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(3));
        let handles: Vec<_> = (0..3)
            .map(|i| {
                let (pool, barrier) = (pool.clone(), barrier.clone());
                std::thread::spawn(move || {
                    pool.run(move || {
                        // All three jobs run at once or this never returns.
                        barrier.wait();
                        i * 2
                    })
                })
            })
            .collect();
        let mut got: Vec<i32> = handles
            .into_iter()
            .map(|h| h.join().expect("joins").expect("runs"))
            .collect();
        got.sort();
        assert_eq!(got, [0, 2, 4]);
        assert_eq!(pool.idle(), 3);
    }
}
