//! Controller metrics in the Prometheus text format: upstream's
//! `jobset_completed_total` / `jobset_failed_total` and the
//! `controller_runtime_*` reconcile family its dashboards read (controller
//! `jobset`), and ours in addition: reconcile counts, errors by kind and
//! durations, and per plugin and slot a decision-duration histogram and an
//! error counter by kind.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the reconcile duration buckets.
const RECONCILE_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];
/// Upper bounds (seconds) of controller-runtime's reconcile time buckets.
const RUNTIME_BUCKETS: [f64; 40] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9,
    1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 15.0, 20.0,
    25.0, 30.0, 40.0, 50.0, 60.0,
];
/// The controller label of the controller-runtime metrics, as upstream's.
const CONTROLLER: &str = "jobset";
/// How a reconcile ended, in controller-runtime's words.
const RESULTS: [&str; 4] = ["error", "requeue", "requeue_after", "success"];
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
    /// Reconciles by controller-runtime result (index into `RESULTS`).
    results: [u64; 4],
    runtime_duration: Histogram,
    max_concurrent: u64,
    active: u64,
    decisions: BTreeMap<(String, String), Histogram>,
    plugin_errors: BTreeMap<(String, String, String), u64>,
    /// Pod watches running (one per JobSet restarting in place).
    pod_watches: u64,
    /// Pods those watches keep.
    watched_pods: u64,
    /// Failed pods' facts held for outcome plugins that asked.
    pod_facts_held: u64,
    /// Lists of a failed Job's pods, by result ("ok", "failed").
    pod_facts_lists: [u64; 2],
    plugins: crate::policy::PluginStats,
    /// Shadow decisions by (slot, active plugin, shadow plugin, result).
    shadow: BTreeMap<(String, String, String, String), u64>,
}

/// Counts one reconcile as active while it lives.
pub struct ActiveWorker(std::sync::Arc<Metrics>);

impl Drop for ActiveWorker {
    fn drop(&mut self) {
        let mut inner = self.0.lock();
        inner.active = inner.active.saturating_sub(1);
    }
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

    /// One reconcile ended: how long it took, its error kind if it failed,
    /// and whether it asked to be run again after a delay.
    pub fn reconciled(&self, took: Duration, error: Option<&str>, requeue_after: bool) {
        let mut inner = self.lock();
        inner.reconciles += 1;
        let secs = took.as_secs_f64();
        inner.reconcile_duration.observe(&RECONCILE_BUCKETS, secs);
        inner.runtime_duration.observe(&RUNTIME_BUCKETS, secs);
        let result = match (error, requeue_after) {
            (Some(_), _) => "error",
            (None, true) => "requeue_after",
            (None, false) => "success",
        };
        if let Some(i) = RESULTS.iter().position(|r| *r == result) {
            inner.results[i] += 1;
        }
        if let Some(kind) = error {
            *inner.reconcile_errors.entry(kind.to_string()).or_default() += 1;
        }
    }

    /// The most reconciles run at once.
    pub fn set_max_concurrent(&self, n: u16) {
        self.lock().max_concurrent = u64::from(n);
    }

    /// A reconcile started; returns a guard that counts it as active
    /// until it is dropped.
    pub fn worker(self: &std::sync::Arc<Self>) -> ActiveWorker {
        self.lock().active += 1;
        ActiveWorker(std::sync::Arc::clone(self))
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

    /// Counts one shadow decision.
    pub fn shadow(&self, slot: &str, active: &str, shadow: &str, result: &str) {
        *self
            .lock()
            .shadow
            .entry((slot.into(), active.into(), shadow.into(), result.into()))
            .or_default() += 1;
    }

    /// The number of reconciles so far.
    pub fn reconcile_count(&self) -> u64 {
        self.lock().reconciles
    }

    /// Renders every metric in the Prometheus text format.
    /// The pod watches of in-place JobSets: how many run, and the pods
    /// they keep.
    pub fn set_pod_watches(&self, watches: usize, pods: usize) {
        let mut inner = self.lock();
        inner.pod_watches = watches as u64;
        inner.watched_pods = pods as u64;
    }

    /// The pods the pod watches keep (their number is unchanged).
    pub fn set_watched_pods(&self, pods: usize) {
        self.lock().watched_pods = pods as u64;
    }

    /// Counts one list of a failed Job's pods for pod facts.
    pub fn pod_facts_listed(&self, ok: bool) {
        self.lock().pod_facts_lists[usize::from(!ok)] += 1;
    }

    /// The failed pods whose facts are held now.
    pub fn set_pod_facts_held(&self, pods: usize) {
        self.lock().pod_facts_held = pods as u64;
    }

    /// Lists of failed Jobs' pods so far: (succeeded, failed).
    pub fn pod_facts_lists(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.pod_facts_lists[0], inner.pod_facts_lists[1])
    }

    /// What the plugins cost, as last reported.
    pub fn set_plugins(&self, stats: crate::policy::PluginStats) {
        self.lock().plugins = stats;
    }

    /// The pod watches running and the pods they keep, as last set.
    pub fn pod_watches(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.pod_watches, inner.watched_pods)
    }

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
        render_controller_runtime(&inner, &mut out);
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
            "# HELP jobset_pod_watches Pod watches running, one per JobSet that restarts in place\n# TYPE jobset_pod_watches gauge\njobset_pod_watches {}",
            inner.pod_watches
        );
        let _ = writeln!(
            out,
            "# HELP jobset_watched_pods Pods kept for in-place restart\n# TYPE jobset_watched_pods gauge\njobset_watched_pods {}",
            inner.watched_pods
        );
        let _ = writeln!(
            out,
            "# HELP jobset_pod_facts_held Failed pods whose facts are held for outcome plugins that asked for pod-facts\n# TYPE jobset_pod_facts_held gauge\njobset_pod_facts_held {}",
            inner.pod_facts_held
        );
        let _ = writeln!(
            out,
            "# HELP jobset_pod_facts_lists_total Lists of a failed Job's pods for pod facts, by result\n# TYPE jobset_pod_facts_lists_total counter"
        );
        for (result, n) in ["ok", "failed"].iter().zip(inner.pod_facts_lists) {
            let _ = writeln!(
                out,
                "jobset_pod_facts_lists_total{{result=\"{result}\"}} {n}"
            );
        }
        let p = inner.plugins;
        for (name, help, value) in [
            (
                "jobset_plugins_in_force",
                "Plugins from ConfigMaps in force",
                p.in_force,
            ),
            (
                "jobset_compiled_plugins",
                "Compiled plugin components kept for reuse",
                p.compiled,
            ),
            (
                "jobset_compiled_plugin_bytes",
                "Machine code of those components",
                p.compiled_bytes,
            ),
            (
                "jobset_plugin_limit_per_namespace",
                "Most plugins one namespace may put in force",
                p.max_per_namespace,
            ),
            (
                "jobset_compiled_plugins_limit",
                "Most compiled components kept",
                p.max_compiled,
            ),
            (
                "jobset_compiled_plugin_bytes_limit",
                "Most bytes of compiled code kept",
                p.max_compiled_bytes,
            ),
            (
                "jobset_plugins_pending",
                "Plugins verified and compiled only when a JobSet selects one",
                p.pending,
            ),
            (
                "jobset_plugins_compiling",
                "Plugins queued for or being compiled",
                p.compiling,
            ),
            (
                "jobset_plugins_failed",
                "Plugins whose compile failed or was abandoned",
                p.failed,
            ),
            (
                "jobset_plugin_compile_deadline_milliseconds",
                "How long one plugin compile may run before it is abandoned",
                p.compile_deadline_ms as usize,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP jobset_plugin_compiles_abandoned_total Plugin compiles abandoned at the deadline\n# TYPE jobset_plugin_compiles_abandoned_total counter\njobset_plugin_compiles_abandoned_total {}",
            p.abandoned
        );
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
        let _ = writeln!(
            out,
            "# HELP jobset_shadow_decisions_total Shadow plugin decisions compared with the active plugin's: agree, diverge or shadow_failed\n# TYPE jobset_shadow_decisions_total counter"
        );
        for ((slot, active, shadow, result), v) in &inner.shadow {
            let _ = writeln!(
                out,
                "jobset_shadow_decisions_total{{slot=\"{}\",active=\"{}\",shadow=\"{}\",result=\"{}\"}} {v}",
                escape(slot),
                escape(active),
                escape(shadow),
                escape(result)
            );
        }
        out
    }
}

/// controller-runtime's reconcile metrics, by the names, help texts,
/// labels and buckets upstream's controller exposes.
fn render_controller_runtime(inner: &Inner, out: &mut String) {
    let c = format!("controller=\"{CONTROLLER}\"");
    let head = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    head(
        out,
        "controller_runtime_reconcile_total",
        "counter",
        "Total number of reconciliations per controller",
    );
    for (result, n) in RESULTS.iter().zip(inner.results) {
        let _ = writeln!(
            out,
            "controller_runtime_reconcile_total{{{c},result=\"{result}\"}} {n}"
        );
    }
    let errors = inner.results[0];
    for (name, help, value) in [
        (
            "controller_runtime_reconcile_errors_total",
            "Total number of reconciliation errors per controller",
            errors,
        ),
        (
            "controller_runtime_terminal_reconcile_errors_total",
            "Total number of terminal reconciliation errors per controller",
            0,
        ),
        (
            "controller_runtime_reconcile_panics_total",
            "Total number of reconciliation panics per controller",
            0,
        ),
    ] {
        head(out, name, "counter", help);
        let _ = writeln!(out, "{name}{{{c}}} {value}");
    }
    head(
        out,
        "controller_runtime_reconcile_time_seconds",
        "histogram",
        "Length of time per reconciliation per controller",
    );
    inner.runtime_duration.render(
        out,
        "controller_runtime_reconcile_time_seconds",
        &c,
        &RUNTIME_BUCKETS,
    );
    for (name, help, value) in [
        (
            "controller_runtime_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller",
            inner.max_concurrent,
        ),
        (
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            inner.active,
        ),
    ] {
        head(out, name, "gauge", help);
        let _ = writeln!(out, "{name}{{{c}}} {value}");
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
        m.reconciled(Duration::from_millis(3), None, false);
        m.reconciled(Duration::from_millis(30), Some("api"), false);
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

    #[test]
    fn controller_runtime_metrics_carry_upstreams_names_labels_and_results() {
        let m = std::sync::Arc::new(Metrics::default());
        m.set_max_concurrent(16);
        let busy = m.worker();
        let also = m.worker();
        drop(also);
        m.reconciled(Duration::from_millis(3), None, false);
        m.reconciled(Duration::from_millis(300), None, true);
        m.reconciled(Duration::from_secs(2), Some("api"), false);
        let text = m.render();
        for line in [
            "# TYPE controller_runtime_reconcile_total counter",
            "controller_runtime_reconcile_total{controller=\"jobset\",result=\"success\"} 1",
            "controller_runtime_reconcile_total{controller=\"jobset\",result=\"requeue_after\"} 1",
            "controller_runtime_reconcile_total{controller=\"jobset\",result=\"error\"} 1",
            "controller_runtime_reconcile_total{controller=\"jobset\",result=\"requeue\"} 0",
            "controller_runtime_reconcile_errors_total{controller=\"jobset\"} 1",
            "controller_runtime_terminal_reconcile_errors_total{controller=\"jobset\"} 0",
            "controller_runtime_reconcile_panics_total{controller=\"jobset\"} 0",
            "# TYPE controller_runtime_reconcile_time_seconds histogram",
            "controller_runtime_reconcile_time_seconds_bucket{controller=\"jobset\",le=\"0.005\"} 1",
            "controller_runtime_reconcile_time_seconds_bucket{controller=\"jobset\",le=\"0.3\"} 2",
            "controller_runtime_reconcile_time_seconds_bucket{controller=\"jobset\",le=\"60\"} 3",
            "controller_runtime_reconcile_time_seconds_count{controller=\"jobset\"} 3",
            "controller_runtime_max_concurrent_reconciles{controller=\"jobset\"} 16",
            "controller_runtime_active_workers{controller=\"jobset\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?}\n{text}");
        }
        drop(busy);
        assert!(
            m.render()
                .contains("controller_runtime_active_workers{controller=\"jobset\"} 0")
        );
    }
}
