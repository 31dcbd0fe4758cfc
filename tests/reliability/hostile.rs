//! Hostile plugins end to end: each misbehaviour of the hostile example
//! plugin (and a component with the wrong exports) is selected, through a
//! plugin ConfigMap and the `policy.jobset.dev/startup` annotation, by one
//! JobSet among healthy ones. The controller stays up, the healthy JobSets
//! finish, each affected JobSet shows `PolicyFailed` naming the plugin and
//! the error, and it recovers once its ConfigMap is fixed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jobset_controller::policy::{PluginConfigMaps, PolicyEngine};
use jobset_e2e::{Env, NS, runtime};
use jobset_policy::{Registry, RegistryConfig, Runtime, builtin};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, PostParams};

/// Mode (the plugin's configuration), and what the failure must say.
const MODES: &[(&str, &str)] = &[
    ("loop", "timed out"),
    ("memory", "ran out of memory"),
    ("trap", "trapped"),
    ("recursion", "trapped"),
    ("huge", "invalid verdict"),
    ("unknown-name", "no-such-replicated-job"),
    ("snoop", "net=denied"),
    // Rejected by validate-config: never in force, so unknown to the JobSet.
    ("reject", "is not a known plugin"),
];

/// A component that does not export what a plugin must.
const WRONG_EXPORT: &str = "wrong-export";

fn plugin_configmap(name: &str, wasm: &[u8], config: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(NS.to_string()),
            labels: Some(BTreeMap::from([(
                jobset_policy::registry::PLUGIN_LABEL.to_string(),
                name.to_string(),
            )])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            jobset_policy::registry::CONFIG_KEY.to_string(),
            config.to_string(),
        )])),
        binary_data: Some(BTreeMap::from([(
            jobset_policy::registry::WASM_KEY.to_string(),
            ByteString(wasm.to_vec()),
        )])),
        ..Default::default()
    }
}

fn jobset(name: &str, plugin: Option<&str>) -> String {
    let annotations = plugin
        .map(|p| format!("annotations: {{policy.jobset.dev/startup: {p}}}, "))
        .unwrap_or_default();
    format!(
        r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {{name: {name}, {annotations}namespace: default}}
spec:
  replicatedJobs:
  - name: workers
    replicas: 2
    template: {{spec: {{template: {{spec: {{containers: [{{name: c, image: busybox}}]}}}}}}}}
"#
    )
}

/// The simulator and controller with a registry of `config` deciding and
/// watching plugin ConfigMaps, and the ConfigMaps of the namespace.
async fn start(rt: Runtime, config: RegistryConfig) -> (Env, Api<ConfigMap>) {
    let registry = Arc::new(Registry::new(rt, config).expect("the registry starts"));
    let engine: Arc<dyn PolicyEngine> = registry.clone();
    let plugins: Arc<dyn PluginConfigMaps> = registry;
    let env = Env::start_with_plugins(engine, Some(plugins)).await;
    let cms = Api::namespaced(env.client.clone(), NS);
    (env, cms)
}

async fn finish(env: &Env, name: &str) {
    for job in env.wait_jobs(name, 2).await {
        env.complete_job(&job).await;
    }
    env.wait_condition(name, "Completed").await;
}

#[test]
fn hostile_plugins_hold_only_their_own_jobset_and_a_fixed_configmap_releases_it() {
    runtime().block_on(async {
        let rt = Runtime::shared()
            .expect("the policy runtime starts")
            .clone();
        let (env, cms) = start(rt, RegistryConfig::new(NS)).await;
        let mut affected = Vec::new();
        for (mode, _) in MODES {
            let name = format!("hostile-{mode}");
            cms.create(
                &PostParams::default(),
                &plugin_configmap(&name, builtin::EXAMPLE_HOSTILE, mode),
            )
            .await
            .expect("the plugin ConfigMap is stored");
            affected.push(name);
        }
        let wrong = format!("hostile-{WRONG_EXPORT}");
        cms.create(
            &PostParams::default(),
            &plugin_configmap(&wrong, builtin::EXAMPLE_WRONG_EXPORT, ""),
        )
        .await
        .expect("the plugin ConfigMap is stored");
        // A plugin that writes a lot to stdout and stderr still decides.
        cms.create(
            &PostParams::default(),
            &plugin_configmap("hostile-print", builtin::EXAMPLE_HOSTILE, "print"),
        )
        .await
        .expect("the plugin ConfigMap is stored");
        env.settle().await;

        for name in affected.iter().chain([&wrong]) {
            env.create(&jobset(name, Some(name))).await;
        }
        env.create(&jobset("printer", Some("hostile-print"))).await;
        for i in 0..3 {
            env.create(&jobset(&format!("healthy-{i}"), None)).await;
        }

        // The healthy JobSets (and the noisy but well-formed plugin's) finish.
        let started = tokio::time::Instant::now();
        for name in ["healthy-0", "healthy-1", "healthy-2", "printer"] {
            finish(&env, name).await;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "healthy JobSets took {:?} among hostile ones",
            started.elapsed()
        );

        // Each affected JobSet is held with PolicyFailed naming its plugin
        // and what went wrong, and has no Jobs.
        let expected = MODES
            .iter()
            .map(|(mode, says)| (format!("hostile-{mode}"), *says))
            .chain([(wrong.clone(), "is not a known plugin")]);
        for (name, says) in expected {
            let js = env.wait_condition(&name, "PolicyFailed").await;
            let cond = js
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "PolicyFailed"))
                .cloned()
                .expect("PolicyFailed is set");
            assert_eq!(cond.reason, "StartupPluginFailed", "{name}");
            assert!(cond.message.contains(&name), "{name}: {}", cond.message);
            let decided = env.decisions(&name);
            assert!(
                decided
                    .iter()
                    .any(|d| d.contains(&name) && d.contains(says)),
                "{name}: no decision says {says:?}: {decided:?}"
            );
            assert!(env.jobs(&name).await.is_empty(), "{name} created Jobs");
        }

        // Fixing each ConfigMap (a well-behaved configuration, or the right
        // component) releases its JobSet.
        for name in &affected {
            cms.replace(
                name,
                &PostParams::default(),
                &fixed(&cms.get(name).await.expect("the ConfigMap exists"), None),
            )
            .await
            .expect("the ConfigMap is fixed");
        }
        cms.replace(
            &wrong,
            &PostParams::default(),
            &fixed(
                &cms.get(&wrong).await.expect("the ConfigMap exists"),
                Some(builtin::EXAMPLE_HOSTILE),
            ),
        )
        .await
        .expect("the ConfigMap is fixed");
        for name in affected.iter().chain([&wrong]) {
            finish(&env, name).await;
            let cond = env.condition(name, "PolicyFailed").await;
            assert!(
                cond.as_ref().is_none_or(|c| c.status == "False"),
                "{name} still shows {cond:?}"
            );
        }
        env.stop().await;
    });
}

/// The ConfigMap with a well-behaved configuration (and `wasm`, if given).
fn fixed(cm: &ConfigMap, wasm: Option<&[u8]>) -> ConfigMap {
    let mut cm = cm.clone();
    cm.data = Some(BTreeMap::from([(
        jobset_policy::registry::CONFIG_KEY.to_string(),
        "behave".to_string(),
    )]));
    if let Some(w) = wasm {
        cm.binary_data = Some(BTreeMap::from([(
            jobset_policy::registry::WASM_KEY.to_string(),
            ByteString(w.to_vec()),
        )]));
    }
    cm
}

/// Waits in real time (the compile runs on a thread of its own) while
/// letting the controller run on the paused clock, until `check` holds.
async fn wait_real<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "after three minutes, still not {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn a_component_built_to_compile_slowly_is_abandoned_at_the_deadline_and_costs_no_one_else() {
    // 600 KB that take about 5 s to compile, under a 1.5 s deadline (a
    // real plugin takes 0.2-0.4 s in this build: the deadline must not
    // catch the fixed plugin's compile on a loaded machine either).
    let slow = jobset_e2e::slow_compile::slow_to_compile(30_000);
    runtime().block_on(async {
        let rt = Runtime::new(Default::default()).expect("a runtime");
        let mut config = RegistryConfig::new(NS);
        config.compile_on_demand = true;
        config.compile_deadline = Duration::from_millis(1500);
        let (env, cms) = start(rt.clone(), config).await;
        cms.create(&PostParams::default(), &plugin_configmap("slow", &slow, ""))
            .await
            .expect("the plugin ConfigMap is stored");
        env.settle().await;
        assert!(
            !rt.is_compiled(&slow),
            "a verified ConfigMap is not compiled before a JobSet selects it"
        );
        env.create(&jobset("selects-slow", Some("slow"))).await;
        for i in 0..3 {
            env.create(&jobset(&format!("healthy-{i}"), None)).await;
        }
        // The healthy JobSets run and finish meanwhile.
        for i in 0..3 {
            finish(&env, &format!("healthy-{i}")).await;
        }
        // At the deadline the compile is abandoned: the JobSet shows why,
        // the ConfigMap has an event, the metrics count it.
        wait_real("the slow plugin's compile abandoned", || async {
            env.condition("selects-slow", "PolicyFailed")
                .await
                .is_some_and(|c| c.status == "True")
        })
        .await;
        let failed = env
            .condition("selects-slow", "PolicyFailed")
            .await
            .expect("set");
        assert_eq!(failed.reason, "StartupPluginFailed");
        assert!(
            failed.message.contains("could not be loaded")
                && failed
                    .message
                    .contains("longer than the 1.5s deadline and was abandoned"),
            "{}",
            failed.message
        );
        assert!(env.jobs("selects-slow").await.is_empty());
        // Before that, while it compiled, the JobSet said it waited, and
        // nothing failed.
        let waited = env
            .events("selects-slow")
            .await
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("PluginCompiling"))
            .expect("a PluginCompiling event while the plugin compiled");
        assert!(
            waited
                .note
                .as_deref()
                .is_some_and(|n| n.contains("is being compiled")),
            "{waited:?}"
        );
        assert!(
            env.decisions("selects-slow").iter().any(
                |d| d.starts_with("startup by slow@") && d.ends_with("waiting for its compile")
            ),
            "{:?}",
            env.decisions("selects-slow")
        );
        let rejected = env.wait_event("slow", "PluginRejected").await;
        assert!(
            rejected
                .note
                .as_deref()
                .is_some_and(|n| n.contains("was not compiled") && n.contains("abandoned")),
            "{rejected:?}"
        );
        let metrics = env.metrics.render();
        assert!(
            metrics.contains("jobset_plugin_compiles_abandoned_total 1\n")
                && metrics.contains("jobset_plugins_failed 1\n")
                && metrics.contains("jobset_plugin_compile_deadline_milliseconds 1500\n"),
            "{metrics}"
        );
        // A real plugin in its place is compiled (after the abandoned
        // compile ends: one compile at a time) and releases the JobSet.
        cms.replace(
            "slow",
            &PostParams::default(),
            &fixed(
                &cms.get("slow").await.expect("the ConfigMap exists"),
                Some(builtin::EXAMPLE_HOSTILE),
            ),
        )
        .await
        .expect("the ConfigMap is fixed");
        wait_real("the JobSet released", || async {
            !env.jobs("selects-slow").await.is_empty()
        })
        .await;
        finish(&env, "selects-slow").await;
        let after = env
            .condition("selects-slow", "PolicyFailed")
            .await
            .expect("set");
        assert_eq!(after.status, "False", "{after:?}");
        env.stop().await;
    });
}

fn shadowed_jobset(name: &str, shadow: &str) -> String {
    format!(
        r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {{name: {name}, namespace: default, annotations: {{policy.jobset.dev/outcome-shadow: {shadow}}}}}
spec:
  failurePolicy: {{maxRestarts: 0}}
  replicatedJobs:
  - name: workers
    replicas: 2
    template: {{spec: {{template: {{spec: {{containers: [{{name: c, image: busybox}}]}}}}}}}}
"#
    )
}

#[test]
fn shadow_plugins_agree_diverge_and_trap_and_the_active_decisions_stand() {
    runtime().block_on(async {
        let rt = Runtime::shared()
            .expect("the policy runtime starts")
            .clone();
        let (env, cms) = start(rt, RegistryConfig::new(NS)).await;
        for (name, wasm, config) in [
            // The active plugin's own code under another name: agrees.
            ("twin", builtin::DEFAULT_OUTCOME, ""),
            // Restarts after a preemption where the default fails: diverges.
            ("candidate", builtin::EXAMPLE_PREEMPTION_AWARE, ""),
            ("trapping", builtin::EXAMPLE_HOSTILE, "trap"),
        ] {
            cms.create(
                &PostParams::default(),
                &plugin_configmap(name, wasm, config),
            )
            .await
            .expect("the plugin ConfigMap is stored");
        }
        env.settle().await;
        for (js, shadow) in [
            ("agrees", "twin"),
            ("diverges", "candidate"),
            ("traps", "trapping"),
        ] {
            env.create(&shadowed_jobset(js, shadow)).await;
        }
        // Every JobSet's first worker is preempted: with maxRestarts 0 the
        // active (default) plugin fails each of them.
        for js in ["agrees", "diverges", "traps"] {
            let jobs = env.wait_jobs(js, 2).await;
            env.fail_job(&jobs[0], "PodFailurePolicy", "pod was preempted")
                .await;
        }
        for js in ["agrees", "diverges", "traps"] {
            env.wait_condition(js, "Failed").await;
        }
        let metrics = || env.metrics.render();
        wait_real("the three shadow decisions counted", || async {
            let m = metrics();
            [
                "result=\"agree\"",
                "result=\"diverge\"",
                "result=\"shadow_failed\"",
            ]
            .iter()
            .all(|r| {
                m.lines()
                    .any(|l| l.starts_with("jobset_shadow_decisions_total") && l.contains(r))
            })
        })
        .await;
        let m = metrics();
        let line = |shadow: &str| {
            m.lines()
                .find(|l| {
                    l.starts_with(
                        "jobset_shadow_decisions_total{slot=\"outcome\",active=\"default-outcome@",
                    ) && l.contains(&format!("shadow=\"{shadow}@"))
                })
                .unwrap_or_else(|| panic!("no shadow metric for {shadow}:\n{m}"))
                .to_string()
        };
        assert!(line("twin").contains("result=\"agree\""), "{m}");
        assert!(line("candidate").contains("result=\"diverge\""), "{m}");
        assert!(line("trapping").contains("result=\"shadow_failed\""), "{m}");
        // Only the divergence is an event, naming both plugins and verdicts.
        let diverged = env.wait_event("diverges", "ShadowDiverged").await;
        let note = diverged.note.clone().unwrap_or_default();
        assert!(
            note.starts_with("shadow plugin candidate@")
                && note.contains("would decide outcome differently from default-outcome@")
                && note.contains("(attempt 0)")
                && note.contains("\"Fail\"")
                && note.contains("\"RestartJobset\""),
            "{note}"
        );
        assert_eq!(diverged.type_.as_deref(), Some("Normal"));
        for quiet in ["agrees", "traps"] {
            assert!(
                !env.events(quiet)
                    .await
                    .iter()
                    .any(|e| e.reason.as_deref() == Some("ShadowDiverged")),
                "{quiet} has a divergence event"
            );
        }
        // The active verdicts were applied: each failed, none restarted,
        // and no PolicyFailed for the trapping shadow.
        for js in ["agrees", "diverges", "traps"] {
            let got = env.get(js).await;
            let status = got.status.expect("a status");
            assert_eq!(
                (status.restarts, status.terminal_state.as_str()),
                (0, "Failed"),
                "{js}"
            );
            assert!(
                env.condition(js, "PolicyFailed")
                    .await
                    .is_none_or(|c| c.status == "False"),
                "{js}"
            );
        }
        env.stop().await;
    });
}
