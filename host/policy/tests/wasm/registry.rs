//! The registry: live swaps from ConfigMaps, rejected updates keep the last
//! good version, selection by annotation and namespace, failure modes and
//! the circuit breaker.

use crate::common::{runtime, snap};
use jobset_policy::builtin;
use jobset_policy::registry::{CONFIG_ANNOTATION, PLUGIN_LABEL, SHA256_ANNOTATION, WASM_KEY};
use jobset_policy::snapshot::Action;
use jobset_policy::{
    BreakerConfig, ErrorKind, FailureMode, LoadError, PolicyEngine, Registry, RegistryConfig, Slot,
    sha256_hex,
};
use jobset_policy_sdk::harness::SnapshotBuilder;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;
use std::time::Duration;

fn configmap(ns: &str, plugin: &str, bytes: &[u8], config: Option<&str>) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(format!("plugin-{plugin}")),
            namespace: Some(ns.to_string()),
            labels: Some(BTreeMap::from([(
                PLUGIN_LABEL.to_string(),
                plugin.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        binary_data: Some(BTreeMap::from([(
            WASM_KEY.to_string(),
            ByteString(bytes.to_vec()),
        )])),
        data: config.map(|c| BTreeMap::from([("config.json".to_string(), c.to_string())])),
        ..ConfigMap::default()
    }
}

/// The example plugin as `custom` in the controller's namespace.
fn custom(bytes: &[u8]) -> ConfigMap {
    configmap("jobset-system", "custom", bytes, None)
}

fn registry(config: RegistryConfig) -> Registry {
    Registry::new(runtime().clone(), config).expect("registry starts")
}

/// A JobSet in `ns` whose first worker failed with a preemption message,
/// using plugin `custom` for the outcome slot.
fn preempted(ns: &str) -> jobset_policy::snapshot::Snapshot {
    let mut s = snap(
        SnapshotBuilder::new("js")
            .annotation("policy.jobset.dev/outcome", "custom")
            .rjob("workers", 2)
            .max_restarts(0)
            .failed("workers", 0, "PodFailurePolicy", "pod was preempted", 5),
    );
    s.jobset.namespace = ns.to_string();
    s
}

#[test]
fn a_swapped_configmap_makes_the_next_decision_with_the_new_version() {
    let reg = registry(RegistryConfig::new("jobset-system"));
    let v1 = reg
        .apply_configmap(&custom(builtin::DEFAULT_OUTCOME))
        .expect("v1 accepted");
    let d1 = reg
        .decide_outcome(&preempted("team"), &[])
        .expect("decides");
    assert_eq!(d1.plugin, v1.id);
    assert!(matches!(d1.verdict.action, Action::Fail(ref t) if t.reason == "ReachedMaxRestarts"));

    let v2 = reg
        .apply_configmap(&custom(builtin::EXAMPLE_PREEMPTION_AWARE))
        .expect("v2 accepted");
    assert_ne!(v1.id, v2.id);
    let d2 = reg
        .decide_outcome(&preempted("team"), &[])
        .expect("decides");
    assert_eq!(d2.plugin, v2.id);
    assert!(matches!(d2.verdict.action, Action::RestartJobset(ref r) if !r.count_towards_max));
}

#[test]
fn a_rejected_update_keeps_the_last_good_version() {
    let reg = registry(RegistryConfig::new("jobset-system"));
    let good = reg
        .apply_configmap(&custom(builtin::EXAMPLE_PREEMPTION_AWARE))
        .expect("accepted");

    let garbage = reg.apply_configmap(&configmap("jobset-system", "custom", b"not wasm", None));
    assert!(
        matches!(garbage, Err(LoadError::Compile { .. })),
        "{garbage:?}"
    );

    let bad_config = reg.apply_configmap(&configmap(
        "jobset-system",
        "custom",
        builtin::EXAMPLE_PREEMPTION_AWARE,
        Some("{\"maxApplicationFailures\": -1}"),
    ));
    let err = bad_config.expect_err("config rejected");
    assert!(err.to_string().contains("maxApplicationFailures"), "{err}");

    let mut pinned = custom(builtin::DEFAULT_OUTCOME);
    pinned.metadata.annotations = Some(BTreeMap::from([(
        SHA256_ANNOTATION.to_string(),
        sha256_hex(b"something else"),
    )]));
    assert!(matches!(
        reg.apply_configmap(&pinned),
        Err(LoadError::PinMismatch { .. })
    ));

    let d = reg
        .decide_outcome(&preempted("team"), &[])
        .expect("decides");
    assert_eq!(d.plugin, good.id);
}

#[test]
fn a_namespace_plugin_serves_only_its_namespace_and_can_be_turned_off() {
    let reg = registry(RegistryConfig::new("jobset-system"));
    let local = reg
        .apply_configmap(&configmap(
            "team-a",
            "custom",
            builtin::EXAMPLE_PREEMPTION_AWARE,
            None,
        ))
        .expect("accepted");
    assert_eq!(local.scope.as_deref(), Some("team-a"));
    assert_eq!(
        reg.decide_outcome(&preempted("team-a"), &[])
            .expect("decides")
            .plugin,
        local.id
    );
    let err = reg
        .decide_outcome(&preempted("team-b"), &[])
        .expect_err("unknown elsewhere");
    assert!(matches!(err.kind, ErrorKind::UnknownPlugin { .. }), "{err}");

    let mut config = RegistryConfig::new("jobset-system");
    config.namespace_plugins = false;
    let strict = registry(config);
    assert!(
        strict
            .apply_configmap(&configmap(
                "team-a",
                "custom",
                builtin::DEFAULT_OUTCOME,
                None
            ))
            .is_err()
    );
}

#[test]
fn deleting_the_configmap_removes_the_plugin() {
    let reg = registry(RegistryConfig::new("jobset-system"));
    reg.apply_configmap(&custom(builtin::DEFAULT_OUTCOME))
        .expect("accepted");
    reg.delete_configmap("jobset-system", "plugin-custom");
    assert!(reg.decide_outcome(&preempted("team"), &[]).is_err());
}

#[test]
fn without_annotations_the_builtin_defaults_decide() {
    let reg = registry(RegistryConfig::new("jobset-system"));
    let mut s = preempted("team");
    s.jobset.annotations.clear();
    let d = reg.decide_outcome(&s, &[]).expect("decides");
    assert!(d.plugin.starts_with("default-outcome@"), "{}", d.plugin);
}

fn hostile_jobset(reg: &Registry, mode: &str) -> jobset_policy::snapshot::Snapshot {
    reg.apply_configmap(&configmap(
        "jobset-system",
        "hostile",
        builtin::EXAMPLE_HOSTILE,
        None,
    ))
    .expect("accepted");
    let mut s = snap(
        SnapshotBuilder::new("js")
            .annotation("policy.jobset.dev/outcome", "hostile")
            .annotation(CONFIG_ANNOTATION, mode)
            .rjob("workers", 1)
            .failed("workers", 0, "BackoffLimitExceeded", "x", 5),
    );
    s.jobset.namespace = "team".to_string();
    s
}

#[test]
fn hold_returns_the_failure_and_fallback_decides_with_the_builtin() {
    let hold = registry(RegistryConfig::new("jobset-system"));
    let s = hostile_jobset(&hold, "trap");
    let err = hold.decide_outcome(&s, &[]).expect_err("hold");
    assert!(err.plugin.starts_with("hostile@"));
    assert_eq!(err.slot, Slot::Outcome);

    let mut config = RegistryConfig::new("jobset-system");
    config
        .failure_modes
        .insert(Slot::Outcome, FailureMode::Fallback);
    let fallback = registry(config);
    let s = hostile_jobset(&fallback, "trap");
    let d = fallback.decide_outcome(&s, &[]).expect("falls back");
    assert!(d.plugin.starts_with("default-outcome@"), "{}", d.plugin);
    assert!(matches!(d.verdict.action, Action::Fail(ref t) if t.reason == "FailedJobs"));
    let original = d.fallback_from.expect("records the original failure");
    assert!(matches!(original.kind, ErrorKind::Trap { .. }));
}

#[test]
fn the_circuit_opens_after_repeated_failures() {
    let mut config = RegistryConfig::new("jobset-system");
    config.breaker = BreakerConfig {
        threshold: 2,
        cooldown: Duration::from_secs(600),
    };
    let reg = registry(config);
    let s = hostile_jobset(&reg, "trap");
    for _ in 0..2 {
        let err = reg.decide_outcome(&s, &[]).expect_err("fails");
        assert!(matches!(err.kind, ErrorKind::Trap { .. }), "{err}");
    }
    let err = reg.decide_outcome(&s, &[]).expect_err("circuit open");
    assert!(
        matches!(err.kind, ErrorKind::CircuitOpen { failures: 2, .. }),
        "{err}"
    );
}

#[test]
fn with_trusted_keys_only_plugins_signed_over_their_own_bytes_run() {
    use jobset_policy::trust::{SIGNATURE_ANNOTATION, Trust, generate, sign};
    let (private, public) = generate().expect("a key");
    let mut config = RegistryConfig::new("jobset-system");
    config.trust = Trust {
        keys: vec![public],
        allowed_digests: None,
    };
    let reg = registry(config);
    let signed = |bytes: &[u8], over: &[u8]| {
        let mut cm = custom(bytes);
        cm.metadata.annotations = Some(BTreeMap::from([(
            SIGNATURE_ANNOTATION.to_string(),
            sign(&private, &sha256_hex(over)).expect("signed"),
        )]));
        cm
    };
    let good = reg
        .apply_configmap(&signed(
            builtin::EXAMPLE_PREEMPTION_AWARE,
            builtin::EXAMPLE_PREEMPTION_AWARE,
        ))
        .expect("a signed plugin runs");

    // Unsigned: refused, naming the ConfigMap and why; the last good stays.
    let unsigned = custom(builtin::EXAMPLE_HOSTILE);
    let err = reg
        .apply_configmap(&unsigned)
        .expect_err("unsigned refused");
    assert_eq!(
        err.to_string(),
        "ConfigMap jobset-system/plugin-custom: plugin custom may not run here: it carries no \
         policy.jobset.dev/signature annotation, and this cluster runs only signed plugins"
    );
    // A signature copied from other bytes.
    let err = reg
        .apply_configmap(&signed(
            builtin::EXAMPLE_HOSTILE,
            builtin::EXAMPLE_PREEMPTION_AWARE,
        ))
        .expect_err("a signature for other bytes is refused");
    assert!(
        err.to_string().contains("is not a signature of sha256"),
        "{err}"
    );
    let d = reg
        .decide_outcome(&preempted("team"), &[])
        .expect("decides");
    assert_eq!(d.plugin, good.id, "the last good version stays in force");

    // The built-in defaults (as deploy/plugins ships them) need no signature.
    reg.apply_configmap(&configmap(
        "jobset-system",
        "default-outcome",
        builtin::DEFAULT_OUTCOME,
        None,
    ))
    .expect("the built-in bytes are trusted as the binary is");
}

#[test]
fn a_flood_of_plugin_configmaps_in_one_namespace_stops_at_its_limit_before_compiling() {
    let mut config = RegistryConfig::new("jobset-system");
    config.max_plugins_per_namespace = 3;
    let reg = registry(config);
    let mut refused = Vec::new();
    for i in 0..500 {
        match reg.apply_configmap(&configmap(
            "tenant",
            &format!("p{i}"),
            builtin::EXAMPLE_PREEMPTION_AWARE,
            None,
        )) {
            Ok(_) => {}
            Err(e) => refused.push(e.to_string()),
        }
    }
    assert_eq!(refused.len(), 497);
    assert_eq!(
        refused[0],
        "ConfigMap tenant/plugin-p3: namespace tenant already has 3 plugins in force, the most allowed \
         (--max-plugins-per-namespace); plugin p3 is not loaded"
    );
    assert_eq!(reg.plugin_count(), 3);
    // A plugin already in force may still be updated, another namespace is
    // not affected, and the controller's namespace has no limit.
    reg.apply_configmap(&configmap("tenant", "p0", builtin::DEFAULT_OUTCOME, None))
        .expect("an update of a plugin in force");
    reg.apply_configmap(&configmap("other", "p0", builtin::DEFAULT_OUTCOME, None))
        .expect("another namespace has its own limit");
    for i in 0..5 {
        reg.apply_configmap(&configmap(
            "jobset-system",
            &format!("c{i}"),
            builtin::DEFAULT_OUTCOME,
            None,
        ))
        .expect("no limit in the controller's namespace");
    }
}

#[test]
fn the_compiled_code_cache_keeps_the_most_recently_used_within_its_bound() {
    let rt = jobset_policy::Runtime::new(jobset_policy::Limits {
        max_compiled: 2,
        ..Default::default()
    })
    .expect("a runtime");
    rt.load("a", builtin::DEFAULT_STARTUP).expect("loads");
    rt.load("b", builtin::DEFAULT_OUTCOME).expect("loads");
    let (n, bytes) = rt.compiled_cache();
    assert_eq!(n, 2);
    assert!(bytes > 0);
    // "a" is used again, so "b" is the least recently used when a third
    // component comes in.
    rt.load("a again", builtin::DEFAULT_STARTUP).expect("loads");
    rt.load("c", builtin::DEFAULT_PLACEMENT).expect("loads");
    assert_eq!(rt.compiled_cache().0, 2);
    assert!(rt.is_compiled(builtin::DEFAULT_STARTUP) && rt.is_compiled(builtin::DEFAULT_PLACEMENT));
    assert!(
        !rt.is_compiled(builtin::DEFAULT_OUTCOME),
        "the least recently used went first"
    );
    // A plugin loaded before keeps working when its code left the cache.
    let tight = jobset_policy::Runtime::new(jobset_policy::Limits {
        max_compiled_bytes: 1,
        ..Default::default()
    })
    .expect("a runtime");
    let kept = tight.load("kept", builtin::DEFAULT_OUTCOME).expect("loads");
    tight
        .load("other", builtin::DEFAULT_STARTUP)
        .expect("loads");
    assert_eq!(
        tight.compiled_cache().0,
        1,
        "one component over the byte bound stays, the newest"
    );
    let snap = preempted("team");
    kept.outcome(&snap, &[])
        .expect("the evicted plugin still decides");
}

/// `bytes` with a custom section appended: the same plugin under another
/// sha256, so that nothing of it is compiled yet in any runtime's cache.
fn tagged(bytes: &[u8], tag: &str) -> Vec<u8> {
    let mut payload = vec![tag.len() as u8];
    payload.extend_from_slice(tag.as_bytes());
    payload.extend_from_slice(b"distinct");
    let mut out = bytes.to_vec();
    out.push(0); // custom section
    out.push(payload.len() as u8);
    out.extend_from_slice(&payload);
    out
}

fn on_demand() -> (jobset_policy::Runtime, Registry) {
    let rt = jobset_policy::Runtime::new(Default::default()).expect("a runtime");
    let mut config = RegistryConfig::new("jobset-system");
    config.compile_on_demand = true;
    let reg = Registry::new(rt.clone(), config).expect("registry starts");
    (rt, reg)
}

/// Decides until the plugin is no longer being compiled (real time: the
/// compile runs on a thread of its own).
fn decide_when_compiled(
    reg: &Registry,
    snapshot: &jobset_policy::snapshot::Snapshot,
) -> Result<
    jobset_policy::Decision<jobset_policy::snapshot::OutcomeVerdict>,
    jobset_policy::PolicyError,
> {
    let start = std::time::Instant::now();
    loop {
        match reg.decide_outcome(snapshot, &[]) {
            Err(e) if matches!(e.kind, ErrorKind::Compiling { .. }) => {
                assert!(
                    start.elapsed() < Duration::from_secs(120),
                    "still compiling after two minutes: {e}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

#[test]
fn on_demand_a_plugin_is_verified_on_arrival_and_compiled_when_a_jobset_first_selects_it() {
    let (rt, reg) = on_demand();
    let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = notices.clone();
    reg.on_compiled(move |n| seen.lock().expect("lock").push(n.clone()));
    let bytes = tagged(builtin::EXAMPLE_PREEMPTION_AWARE, "lazy");
    let applied = reg
        .apply_configmap(&custom(&bytes))
        .expect("a valid component is accepted");
    assert!(applied.pending, "{applied:?}");
    assert_eq!(reg.stats().pending, 1);
    assert!(
        !rt.is_compiled(&bytes),
        "nothing compiled before a JobSet selects it"
    );
    // A JobSet that does not select it compiles nothing either.
    let mut other = preempted("team");
    other.jobset.annotations.clear();
    reg.decide_outcome(&other, &[])
        .expect("the default decides");
    assert!(!rt.is_compiled(&bytes));

    let first = reg
        .decide_outcome(&preempted("team"), &[])
        .expect_err("waits for the compile");
    assert!(matches!(first.kind, ErrorKind::Compiling { .. }), "{first}");
    assert_eq!(first.plugin, applied.id);
    assert!(first.to_string().contains("is being compiled"), "{first}");
    let decided = decide_when_compiled(&reg, &preempted("team")).expect("decides once compiled");
    assert_eq!(decided.plugin, applied.id);
    assert!(rt.is_compiled(&bytes));
    assert_eq!(
        reg.stats(),
        jobset_policy::RegistryStats {
            plugins: 1,
            ..Default::default()
        }
    );
    let notices = notices.lock().expect("lock").clone();
    assert_eq!(
        notices,
        vec![jobset_policy::CompileNotice {
            configmap: "jobset-system/plugin-custom".to_string(),
            plugin: applied.id.clone(),
            error: None,
        }]
    );
    // The same ConfigMap again (a watch resync) compiles nothing more.
    let again = reg.apply_configmap(&custom(&bytes)).expect("accepted");
    assert!(!again.pending);
    reg.decide_outcome(&preempted("team"), &[])
        .expect("decides at once");
}

#[test]
fn on_demand_bytes_that_are_not_a_valid_component_are_refused_on_arrival() {
    let (_, reg) = on_demand();
    let core_module = b"\0asm\x01\0\0\0";
    let mut truncated = builtin::EXAMPLE_PREEMPTION_AWARE.to_vec();
    truncated.truncate(truncated.len() / 2);
    for (bytes, says) in [
        (&b"not wasm at all"[..], "not a WebAssembly component"),
        (&core_module[..], "not a WebAssembly component"),
        (&truncated[..], "not a valid component"),
    ] {
        let e = reg.apply_configmap(&custom(bytes)).expect_err("refused");
        assert!(
            e.to_string().starts_with("plugin custom: ") && e.to_string().contains(says),
            "{e}"
        );
    }
    assert_eq!(reg.plugin_count(), 0);
}

#[test]
fn on_demand_a_plugin_that_cannot_load_fails_its_decisions_and_an_update_of_one_in_use_keeps_the_last_good()
 {
    let (_, reg) = on_demand();
    let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = notices.clone();
    reg.on_compiled(move |n| seen.lock().expect("lock").push(n.clone()));
    // Never compiled: the failure shows on the JobSets that select it.
    reg.apply_configmap(&custom(builtin::EXAMPLE_WRONG_EXPORT))
        .expect("a valid component is accepted before it is compiled");
    let e = decide_when_compiled(&reg, &preempted("team")).expect_err("cannot load");
    assert!(matches!(e.kind, ErrorKind::NotLoaded { .. }), "{e}");
    assert!(
        e.to_string().contains("could not be loaded") && e.to_string().contains("does not export"),
        "{e}"
    );
    assert_eq!(reg.stats().failed, 1);
    // The same bytes again are refused at once, not compiled again.
    let again = reg
        .apply_configmap(&custom(builtin::EXAMPLE_WRONG_EXPORT))
        .expect_err("the failure is remembered");
    assert!(again.to_string().contains("does not export"), "{again}");

    // A good version, selected and compiled, then a bad update: compiled
    // at once, since JobSets use the plugin, and rejected.
    let good = reg
        .apply_configmap(&custom(builtin::EXAMPLE_PREEMPTION_AWARE))
        .expect("accepted");
    assert_eq!(
        decide_when_compiled(&reg, &preempted("team"))
            .expect("decides")
            .plugin,
        good.id
    );
    let bad = tagged(builtin::EXAMPLE_WRONG_EXPORT, "update");
    let update = reg.apply_configmap(&custom(&bad)).expect("verified");
    let start = std::time::Instant::now();
    while !notices
        .lock()
        .expect("lock")
        .iter()
        .any(|n| n.plugin == update.id)
    {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the update was never compiled"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let failed = notices
        .lock()
        .expect("lock")
        .iter()
        .find(|n| n.plugin == update.id)
        .cloned()
        .expect("a notice");
    assert!(
        failed
            .error
            .as_deref()
            .is_some_and(|e| e.contains("does not export")),
        "{failed:?}"
    );
    assert_eq!(
        reg.decide_outcome(&preempted("team"), &[])
            .expect("the last good version decides")
            .plugin,
        good.id
    );
}

#[test]
fn fallback_never_replaces_a_plugin_that_is_being_compiled() {
    let rt = jobset_policy::Runtime::new(Default::default()).expect("a runtime");
    let mut config = RegistryConfig::new("jobset-system");
    config.compile_on_demand = true;
    config
        .failure_modes
        .insert(Slot::Outcome, FailureMode::Fallback);
    let reg = Registry::new(rt, config).expect("registry starts");
    let bytes = tagged(builtin::EXAMPLE_PREEMPTION_AWARE, "fallback");
    let applied = reg.apply_configmap(&custom(&bytes)).expect("accepted");
    let e = reg
        .decide_outcome(&preempted("team"), &[])
        .expect_err("waits");
    assert!(matches!(e.kind, ErrorKind::Compiling { .. }), "{e}");
    assert_eq!(
        decide_when_compiled(&reg, &preempted("team"))
            .expect("decides")
            .plugin,
        applied.id
    );
}

#[test]
fn on_demand_code_already_compiled_such_as_a_shipped_default_is_in_force_at_once() {
    // deploy/ ships the defaults as ConfigMaps: selecting them must never
    // make a JobSet wait (nor show PluginCompiling where upstream shows
    // nothing).
    let (_, reg) = on_demand();
    let applied = reg
        .apply_configmap(&configmap(
            "jobset-system",
            "default-outcome",
            builtin::DEFAULT_OUTCOME,
            None,
        ))
        .expect("accepted");
    assert!(!applied.pending, "{applied:?}");
    let mut s = preempted("team");
    s.jobset.annotations.clear();
    let decided = reg
        .decide_outcome(&s, &[])
        .expect("decides at once, without waiting for a compile");
    assert_eq!(decided.plugin, applied.id);
}
