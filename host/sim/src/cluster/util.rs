//! Small shared pieces of the cluster: a seeded generator, object keys and
//! JSON accessors, and a timer queue on tokio time. Nothing here talks to the
//! API server.

use std::collections::BTreeMap;

use serde_json::Value;
use tokio::time::Instant;

/// A xorshift64* generator: tiny, seeded, and the same on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x2545_f491_4f6c_dd1d | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 when n is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Five characters from the alphabet Kubernetes uses for generated names.
    pub fn name_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        (0..5)
            .map(|_| ALPHABET[self.below(ALPHABET.len() as u64) as usize] as char)
            .collect()
    }
}

/// `namespace/name` of an object.
pub fn key_of(obj: &Value) -> String {
    format!("{}/{}", meta(obj, "namespace"), meta(obj, "name"))
}

/// A string field of `metadata`, or "".
pub fn meta<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// A label value.
pub fn label<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.pointer("/metadata/labels")
        .and_then(|l| l.get(key))
        .and_then(Value::as_str)
}

/// An annotation value.
pub fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.pointer("/metadata/annotations")
        .and_then(|l| l.get(key))
        .and_then(Value::as_str)
}

/// A string at a JSON pointer, or "".
pub fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The resourceVersion as a number (0 when absent).
pub fn rv_of(obj: &Value) -> u64 {
    meta(obj, "resourceVersion").parse().unwrap_or(0)
}

pub fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

/// `status.phase` of a pod.
pub fn phase(pod: &Value) -> &str {
    str_at(pod, "/status/phase")
}

pub fn is_terminal(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// The status of a condition of `type` in `status.conditions`.
pub fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

pub fn condition_true(obj: &Value, kind: &str) -> bool {
    condition(obj, kind).is_some_and(|c| c.get("status").and_then(Value::as_str) == Some("True"))
}

/// The UID of the object's controller owner of `kind`.
pub fn controller_uid<'a>(obj: &'a Value, kind: &str) -> Option<&'a str> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|r| {
            r.get("controller").and_then(Value::as_bool) == Some(true)
                && r.get("kind").and_then(Value::as_str) == Some(kind)
        })
        .and_then(|r| r.get("uid").and_then(Value::as_str))
}

/// Timers on tokio time, fired in (deadline, insertion) order so runs repeat.
#[derive(Debug)]
pub struct Timers<T> {
    queue: BTreeMap<(Instant, u64), T>,
    seq: u64,
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Timers {
            queue: BTreeMap::new(),
            seq: 0,
        }
    }
}

impl<T> Timers<T> {
    pub fn at(&mut self, when: Instant, item: T) {
        self.seq += 1;
        self.queue.insert((when, self.seq), item);
    }

    /// The earliest deadline, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.queue.keys().next().map(|(t, _)| *t)
    }

    /// Removes and returns every item due at `now`.
    pub fn due(&mut self, now: Instant) -> Vec<T> {
        let mut out = Vec::new();
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > now {
                break;
            }
            out.push(entry.remove());
        }
        out
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// Sleeps until `deadline`, or forever when there is none.
pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_names() {
        let a: Vec<String> = {
            let mut r = Rng::new(3);
            (0..4).map(|_| r.name_suffix()).collect()
        };
        let mut r = Rng::new(3);
        let b: Vec<String> = (0..4).map(|_| r.name_suffix()).collect();
        assert_eq!(a, b);
        assert_ne!(a[0], a[1]);
        assert!(a.iter().all(|s| s.len() == 5));
    }

    #[tokio::test(start_paused = true)]
    async fn timers_fire_in_deadline_then_insertion_order() {
        let now = Instant::now();
        let mut t = Timers::default();
        t.at(now + std::time::Duration::from_secs(2), "late");
        t.at(now + std::time::Duration::from_secs(1), "a");
        t.at(now + std::time::Duration::from_secs(1), "b");
        assert_eq!(
            t.due(now + std::time::Duration::from_secs(1)),
            vec!["a", "b"]
        );
        assert_eq!(t.len(), 1);
    }
}
