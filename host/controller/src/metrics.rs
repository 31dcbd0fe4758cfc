//! Controller metrics in the Prometheus text format: upstream's
//! `jobset_completed_total` / `jobset_failed_total`, reconcile counts,
//! errors and durations, and per plugin and slot a decision-duration
//! histogram and an error counter by kind.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the reconcile duration buckets.
const RECONCILE_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];
/// Upper bounds (seconds) of the plugin decision buckets.
const DECISION_BUCKETS: [f64; 9] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.01, 0.05,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], v: f64) {
        if self.counts.len() != bounds.len() {
            self.counts = vec![0; bounds.len()];
        }
        for (i, b) in bounds.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64]) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in bounds.iter().enumerate() {
            let c = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braced = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braced} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braced} {}", self.count);
    }
}

#[derive(Default)]
struct Inner {
    completed: BTreeMap<(String, String), u64>,
    failed: BTreeMap<(String, String), u64>,
    reconciles: u64,
    reconcile_errors: BTreeMap<String, u64>,
    reconcile_duration: Histogram,
    decisions: BTreeMap<(String, String), Histogram>,
    plugin_errors: BTreeMap<(String, String, String), u64>,
}

/// The metrics registry of one controller.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn jobset_completed(&self, namespace: &str, name: &str) {
        *self
            .lock()
            .completed
            .entry((namespace.into(), name.into()))
            .or_default() += 1;
    }

    pub fn jobset_failed(&self, namespace: &str, name: &str) {
        *self
            .lock()
            .failed
            .entry((namespace.into(), name.into()))
            .or_default() += 1;
    }

    pub fn reconciled(&self, took: Duration, error: Option<&str>) {
        let mut inner = self.lock();
        inner.reconciles += 1;
        inner
            .reconcile_duration
            .observe(&RECONCILE_BUCKETS, took.as_secs_f64());
        if let Some(kind) = error {
            *inner.reconcile_errors.entry(kind.to_string()).or_default() += 1;
        }
    }

    /// One plugin decision, with its error kind when it failed.
    pub fn decision(&self, plugin: &str, slot: &str, took: Duration, error: Option<&str>) {
        let mut inner = self.lock();
        inner
            .decisions
            .entry((plugin.to_string(), slot.to_string()))
            .or_default()
            .observe(&DECISION_BUCKETS, took.as_secs_f64());
        if let Some(kind) = error {
            *inner
                .plugin_errors
                .entry((plugin.to_string(), slot.to_string(), kind.to_string()))
                .or_default() += 1;
        }
    }

    /// The number of reconciles so far.
    pub fn reconcile_count(&self) -> u64 {
        self.lock().reconciles
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let inner = self.lock();
        let mut out = String::new();
        for (name, map, help) in [
            (
                "jobset_completed_total",
                &inner.completed,
                "JobSets that completed",
            ),
            ("jobset_failed_total", &inner.failed, "JobSets that failed"),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for ((ns, js), v) in map {
                let _ = writeln!(
                    out,
                    "{name}{{jobset_name=\"{}\",namespace=\"{}\"}} {v}",
                    escape(js),
                    escape(ns)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP jobset_reconcile_total Reconciles run\n# TYPE jobset_reconcile_total counter\njobset_reconcile_total {}",
            inner.reconciles
        );
        let _ = writeln!(
            out,
            "# HELP jobset_reconcile_errors_total Reconciles that failed, by error kind\n# TYPE jobset_reconcile_errors_total counter"
        );
        for (kind, v) in &inner.reconcile_errors {
            let _ = writeln!(
                out,
                "jobset_reconcile_errors_total{{kind=\"{}\"}} {v}",
                escape(kind)
            );
        }
        let _ = writeln!(
            out,
            "# HELP jobset_reconcile_duration_seconds Time per reconcile\n# TYPE jobset_reconcile_duration_seconds histogram"
        );
        inner.reconcile_duration.render(
            &mut out,
            "jobset_reconcile_duration_seconds",
            "",
            &RECONCILE_BUCKETS,
        );
        let _ = writeln!(
            out,
            "# HELP jobset_policy_decision_duration_seconds Time per plugin decision\n# TYPE jobset_policy_decision_duration_seconds histogram"
        );
        for ((plugin, slot), h) in &inner.decisions {
            let labels = format!("plugin=\"{}\",slot=\"{}\"", escape(plugin), escape(slot));
            h.render(
                &mut out,
                "jobset_policy_decision_duration_seconds",
                &labels,
                &DECISION_BUCKETS,
            );
        }
        let _ = writeln!(
            out,
            "# HELP jobset_policy_errors_total Plugin decisions that failed, by kind\n# TYPE jobset_policy_errors_total counter"
        );
        for ((plugin, slot, kind), v) in &inner.plugin_errors {
            let _ = writeln!(
                out,
                "jobset_policy_errors_total{{plugin=\"{}\",slot=\"{}\",kind=\"{}\"}} {v}",
                escape(plugin),
                escape(slot),
                escape(kind)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_with_upstream_names_and_labels() {
        let m = Metrics::default();
        m.jobset_completed("ns", "a");
        m.jobset_completed("ns", "a");
        m.jobset_failed("ns", "b");
        let text = m.render();
        assert!(
            text.contains("jobset_completed_total{jobset_name=\"a\",namespace=\"ns\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("jobset_failed_total{jobset_name=\"b\",namespace=\"ns\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn histograms_are_cumulative() {
        let m = Metrics::default();
        m.reconciled(Duration::from_millis(3), None);
        m.reconciled(Duration::from_millis(30), Some("api"));
        m.decision(
            "default-outcome@abc",
            "outcome",
            Duration::from_micros(20),
            Some("timeout"),
        );
        let text = m.render();
        assert!(
            text.contains("jobset_reconcile_duration_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("jobset_reconcile_duration_seconds_bucket{le=\"0.05\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("jobset_reconcile_errors_total{kind=\"api\"} 1"),
            "{text}"
        );
        assert!(text.contains(
            "jobset_policy_errors_total{plugin=\"default-outcome@abc\",slot=\"outcome\",kind=\"timeout\"} 1"
        ));
        assert!(text.contains("jobset_policy_decision_duration_seconds_count{plugin=\"default-outcome@abc\",slot=\"outcome\"} 1"));
    }
}
