//! The controller's notion of now. On a real cluster it is the wall clock;
//! in-process with the simulator it is the simulator's virtual clock, so
//! conditions, TTLs and plugin snapshots agree with the simulated cluster.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;

/// A source of the current time.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> Timestamp + Send + Sync>);

impl Clock {
    /// The wall clock.
    pub fn wall() -> Self {
        Clock(Arc::new(Timestamp::now))
    }

    /// Any time source, e.g. a virtual clock.
    pub fn from_fn(f: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        Clock(Arc::new(f))
    }

    /// Now, as precise as the source (for Lease `MicroTime`s).
    pub fn now_precise(&self) -> Timestamp {
        (self.0)()
    }

    /// Now, to the second (as Kubernetes stores condition times).
    pub fn now(&self) -> Timestamp {
        let t = (self.0)();
        Timestamp::from_second(t.as_second()).unwrap_or(t)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::wall()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}
