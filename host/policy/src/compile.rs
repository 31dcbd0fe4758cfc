//! Compiling plugins off the caller's thread: one compile at a time, each
//! with a deadline. Cranelift cannot be interrupted, so a compile past its
//! deadline is abandoned (reported as failed at once, its result dropped)
//! but keeps its thread until it ends; the next compile waits for it, so
//! compiles never take more than one thread between them however many
//! are abandoned.

use crate::plugin::WasmPlugin;
use crate::runtime::Runtime;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One plugin to compile, and whom to tell.
pub(crate) struct Job {
    pub(crate) name: String,
    pub(crate) bytes: Arc<[u8]>,
    pub(crate) config: String,
    /// Called when the compile starts (the queue before it is empty).
    pub(crate) started: Box<dyn FnOnce() + Send>,
    /// Called once with the plugin, or why there is none.
    pub(crate) done: Box<dyn FnOnce(Result<WasmPlugin, String>) + Send>,
}

/// The compile queue and its worker thread (started on first use).
pub(crate) struct Compiler {
    runtime: Runtime,
    deadline: Duration,
    queue: Mutex<Option<mpsc::Sender<Job>>>,
    abandoned: Arc<AtomicU64>,
}

impl Compiler {
    pub(crate) fn new(runtime: Runtime, deadline: Duration) -> Compiler {
        Compiler {
            runtime,
            deadline,
            queue: Mutex::new(None),
            abandoned: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Compiles that ran past the deadline so far.
    pub(crate) fn abandoned(&self) -> u64 {
        self.abandoned.load(Ordering::Relaxed)
    }

    /// Queues a compile. When the worker thread cannot be started, the job
    /// fails at once with that reason.
    pub(crate) fn submit(&self, job: Job) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.is_none() {
            let (tx, rx) = mpsc::channel::<Job>();
            let runtime = self.runtime.clone();
            let deadline = self.deadline;
            let abandoned = self.abandoned.clone();
            let spawned = std::thread::Builder::new()
                .name("plugin-compiles".to_string())
                .spawn(move || {
                    for job in rx {
                        run(&runtime, deadline, &abandoned, job);
                    }
                });
            match spawned {
                Ok(_) => *queue = Some(tx),
                Err(e) => {
                    (job.done)(Err(format!("no thread to compile on: {e}")));
                    return;
                }
            }
        }
        if let Some(tx) = queue.as_ref()
            && let Err(mpsc::SendError(job)) = tx.send(job)
        {
            *queue = None;
            (job.done)(Err("the compile thread stopped".to_string()));
        }
    }
}

/// Compiles one job on a thread of its own and waits for it at most
/// `deadline`; past that the job is told it failed, and the thread is
/// still waited for before the next job starts.
fn run(runtime: &Runtime, deadline: Duration, abandoned: &AtomicU64, job: Job) {
    (job.started)();
    let (tx, rx) = mpsc::channel();
    let runtime = runtime.clone();
    let (name, bytes, config) = (job.name, job.bytes, job.config);
    let spawned = std::thread::Builder::new()
        .name(format!("compile-{name}"))
        .spawn(move || {
            let result = runtime
                .load(&name, &bytes)
                .and_then(|plugin| {
                    plugin.validate_config(&config)?;
                    Ok(plugin)
                })
                .map_err(|e| e.to_string());
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        (job.done)(Err(format!("no thread to compile on: {e}")));
        return;
    }
    match rx.recv_timeout(deadline) {
        Ok(result) => (job.done)(result),
        Err(RecvTimeoutError::Timeout) => {
            abandoned.fetch_add(1, Ordering::Relaxed);
            (job.done)(Err(format!(
                "compiling took longer than the {deadline:?} deadline and was abandoned \
                 (--plugin-compile-deadline-ms)"
            )));
            let _ = rx.recv();
        }
        Err(RecvTimeoutError::Disconnected) => {
            (job.done)(Err("the compiler panicked on this component".to_string()));
        }
    }
}
