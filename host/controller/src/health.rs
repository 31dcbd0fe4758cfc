//! What `/healthz` and `/readyz` answer: whether the controller's watches
//! have listed everything once, and where this process stands in the
//! leader election. Holds state only; `http_server` serves it.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Where this process stands in the leader election.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leadership {
    /// No leader election: the process always acts.
    NotElecting,
    /// Electing, but no answer from the API server yet.
    Starting,
    /// This process holds the Lease and runs the controller.
    Leading,
    /// Another process holds the Lease; `healthy` while this one still
    /// reads the Lease successfully (it could take over).
    Standby { healthy: bool },
}

#[derive(Debug)]
struct State {
    watches: BTreeMap<&'static str, bool>,
    leadership: Leadership,
}

/// Readiness of one controller process.
///
/// Ready means: without leader election, every watch of the controller has
/// finished its first list; with it, either this process leads and its
/// watches have synced, or it is a standby whose last look at the Lease
/// succeeded (a healthy standby is ready to take over, so a rollout that
/// waits for readiness does not stall on it).
#[derive(Debug)]
pub struct Health {
    state: Mutex<State>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            state: Mutex::new(State {
                watches: BTreeMap::new(),
                leadership: Leadership::NotElecting,
            }),
        }
    }
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A watch started: the process is not ready until it syncs.
    pub fn watch_started(&self, name: &'static str) {
        self.lock().watches.insert(name, false);
    }

    /// A watch finished its first (or a fresh) list.
    pub fn watch_synced(&self, name: &'static str) {
        self.lock().watches.insert(name, true);
    }

    /// The controller stopped: its watches no longer count.
    pub fn watches_stopped(&self) {
        self.lock().watches.clear();
    }

    /// Records the process's place in the leader election.
    pub fn set_leadership(&self, l: Leadership) {
        self.lock().leadership = l;
    }

    /// The process's place in the leader election.
    pub fn leadership(&self) -> Leadership {
        self.lock().leadership
    }

    /// `Ok` when ready, else why not (for the `/readyz` body).
    pub fn ready(&self) -> Result<(), String> {
        let s = self.lock();
        let synced = || {
            let waiting: Vec<&str> = s
                .watches
                .iter()
                .filter(|(_, ok)| !**ok)
                .map(|(n, _)| *n)
                .collect();
            if s.watches.is_empty() {
                Err("the controller has not started its watches".to_string())
            } else if waiting.is_empty() {
                Ok(())
            } else {
                Err(format!("watches not synced yet: {}", waiting.join(", ")))
            }
        };
        match s.leadership {
            Leadership::NotElecting | Leadership::Leading => synced(),
            Leadership::Starting => Err("leader election: no answer yet".to_string()),
            Leadership::Standby { healthy: true } => Ok(()),
            Leadership::Standby { healthy: false } => {
                Err("standby: cannot read the leader Lease".to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_controller_is_ready_only_once_every_watch_has_synced() {
        let h = Health::default();
        assert!(h.ready().is_err(), "nothing started yet");
        h.watch_started("jobs");
        h.watch_started("jobsets");
        h.watch_synced("jobs");
        let why = h.ready().expect_err("jobsets still listing");
        assert!(why.contains("jobsets"), "{why}");
        h.watch_synced("jobsets");
        assert_eq!(h.ready(), Ok(()));
        h.watches_stopped();
        assert!(h.ready().is_err());
    }

    #[test]
    fn a_healthy_standby_is_ready_and_a_leader_needs_synced_watches() {
        let h = Health::default();
        h.set_leadership(Leadership::Starting);
        assert!(h.ready().is_err());
        h.set_leadership(Leadership::Standby { healthy: true });
        assert_eq!(h.ready(), Ok(()));
        h.set_leadership(Leadership::Standby { healthy: false });
        assert!(h.ready().is_err());
        h.set_leadership(Leadership::Leading);
        assert!(h.ready().is_err(), "leading without synced watches");
        h.watch_started("jobs");
        h.watch_synced("jobs");
        assert_eq!(h.ready(), Ok(()));
    }
}
