//! The circuit breaker: after `threshold` consecutive failures a plugin is
//! not called for `cooldown`; then one call is let through, and its result
//! closes or re-opens the circuit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When to stop calling a failing plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the circuit.
    pub threshold: u32,
    /// How long an open circuit stays open.
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            threshold: 5,
            cooldown: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct State {
    failures: u32,
    opened_at: Option<Instant>,
}

/// Per-plugin failure counts (keyed by `name@sha256-prefix`, so a new
/// version starts closed).
#[derive(Debug, Default)]
pub(crate) struct Breakers {
    config: BreakerConfig,
    states: Mutex<HashMap<String, State>>,
}

impl Breakers {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        Breakers {
            config,
            states: Mutex::new(HashMap::new()),
        }
    }

    /// `Err((failures, retry_in))` while the circuit is open.
    pub(crate) fn check(&self, plugin: &str) -> Result<(), (u32, Duration)> {
        let Ok(states) = self.states.lock() else {
            return Ok(());
        };
        match states.get(plugin) {
            Some(State {
                failures,
                opened_at: Some(at),
            }) => {
                let elapsed = at.elapsed();
                if elapsed < self.config.cooldown {
                    Err((*failures, self.config.cooldown - elapsed))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// Closes the circuit of `plugin`: a ConfigMap put a new version or a
    /// new configuration in force, so its past failures say nothing now.
    pub(crate) fn reset(&self, plugin: &str) {
        if let Ok(mut states) = self.states.lock() {
            states.remove(plugin);
        }
    }

    pub(crate) fn record(&self, plugin: &str, ok: bool) {
        let Ok(mut states) = self.states.lock() else {
            return;
        };
        if ok {
            states.remove(plugin);
            return;
        }
        let state = states.entry(plugin.to_string()).or_default();
        state.failures += 1;
        if state.failures >= self.config.threshold {
            state.opened_at = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circuit_opens_after_the_threshold_and_a_success_closes_it() {
        let b = Breakers::new(BreakerConfig {
            threshold: 2,
            cooldown: Duration::from_secs(60),
        });
        b.record("p@1", false);
        assert!(b.check("p@1").is_ok());
        b.record("p@1", false);
        assert_eq!(b.check("p@1").map_err(|e| e.0), Err(2));
        assert!(b.check("other@2").is_ok());
        b.record("p@1", true);
        assert!(b.check("p@1").is_ok());
    }

    #[test]
    fn a_reset_closes_an_open_circuit_at_once() {
        let b = Breakers::new(BreakerConfig {
            threshold: 1,
            cooldown: Duration::from_secs(3600),
        });
        b.record("p@1", false);
        assert!(b.check("p@1").is_err());
        b.reset("p@1");
        assert!(b.check("p@1").is_ok());
    }

    #[test]
    fn circuit_lets_a_call_through_after_the_cooldown() {
        let b = Breakers::new(BreakerConfig {
            threshold: 1,
            cooldown: Duration::ZERO,
        });
        b.record("p@1", false);
        assert!(b.check("p@1").is_ok());
    }
}
