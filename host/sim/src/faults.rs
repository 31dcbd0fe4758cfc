//! Injected failures for reliability tests: error rates per verb, slow
//! responses and dropped watches, all drawn from one seeded generator so a
//! run is reproducible.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::errors::ApiError;

/// What to inject.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    pub seed: u64,
    /// Verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`) →
    /// the chance (0..=1) that a request fails, and the status code (500, 429 or 409).
    pub error_rates: BTreeMap<String, (f64, u16)>,
    /// Added to every response (a tokio sleep, so virtual under a paused clock).
    pub latency: Duration,
    /// End every watch after this long (the client re-watches).
    pub drop_watches_after: Option<Duration>,
    /// The chance (0..=1) that a watch resuming from a resourceVersion is
    /// told 410 Gone (the client must list again), as when a real server's
    /// watch cache has moved past it.
    pub gone_on_resume: f64,
}

/// Faults plus their generator state.
#[derive(Debug)]
pub struct FaultState {
    pub faults: Faults,
    rng: u64,
}

impl FaultState {
    pub fn new(faults: Faults) -> Self {
        let rng = faults.seed ^ 0x9e37_79b9_7f4a_7c15;
        FaultState { faults, rng }
    }

    fn next_f64(&mut self) -> f64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Draws whether a watch resuming from a resourceVersion is told 410 Gone.
    pub fn draw_gone(&mut self) -> bool {
        self.faults.gone_on_resume > 0.0 && self.next_f64() < self.faults.gone_on_resume
    }

    /// Draws whether this request of `verb` fails, and how.
    pub fn draw(&mut self, verb: &str) -> Option<ApiError> {
        let (rate, code) = *self.faults.error_rates.get(verb)?;
        if self.next_f64() >= rate {
            return None;
        }
        Some(match code {
            429 => ApiError {
                details: Some(serde_json::json!({"retryAfterSeconds": 1})),
                ..ApiError::new(
                    429,
                    "TooManyRequests",
                    "the server has received too many requests and has asked us to try again later",
                )
            },
            409 => ApiError::new(
                409,
                "Conflict",
                "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again",
            ),
            _ => ApiError::internal("Internal error occurred: injected fault"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(seed: u64) -> Vec<bool> {
        let mut f = Faults {
            seed,
            ..Faults::default()
        };
        f.error_rates.insert("get".into(), (0.5, 500));
        let mut s = FaultState::new(f);
        (0..64).map(|_| s.draw("get").is_some()).collect()
    }

    #[test]
    fn the_same_seed_injects_the_same_failures() {
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
        let hits = draws(7).iter().filter(|b| **b).count();
        assert!((16..48).contains(&hits), "{hits} of 64 at rate 0.5");
    }

    #[test]
    fn gone_on_resume_is_drawn_only_when_set() {
        let mut off = FaultState::new(Faults::default());
        assert!((0..100).all(|_| !off.draw_gone()));
        let mut always = FaultState::new(Faults {
            gone_on_resume: 1.0,
            ..Faults::default()
        });
        assert!((0..100).all(|_| always.draw_gone()));
    }

    #[test]
    fn verbs_without_a_rate_never_fail() {
        let mut s = FaultState::new(Faults::default());
        assert!((0..100).all(|_| s.draw("create").is_none()));
    }
}
