//! Outcome plugins that ask for pod facts (`pod-facts`, contract 0.2.0),
//! end to end on the simulated cluster: the controller lists a failed
//! Job's failed pods once, gives their exit codes, nodes and disruptions
//! to the plugin, and the plugin's verdict is applied. The two example
//! plugins, `exit-codes` and `bad-node`, run as their users run them: as
//! Wasm components from ConfigMaps, selected for the outcome slot.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use jobset_e2e::{Env, runtime};
use jobset_policy::{Registry, RegistryConfig, Runtime, Slot, builtin};
use serde_json::Value;

/// A registry whose outcome plugin is `name` (the component `bytes`).
fn registry(name: &str, bytes: &[u8]) -> Arc<Registry> {
    let mut config = RegistryConfig::new("jobset-system");
    config.plugins.insert(Slot::Outcome, name.to_string());
    let rt = Runtime::shared().expect("the runtime").clone();
    let registry = Registry::new(rt, config).expect("the registry");
    let yaml = jobset_policy::tools::pack(bytes, name, "jobset-system").expect("packs");
    registry
        .apply_configmap(&serde_yaml::from_str(&yaml).expect("a ConfigMap"))
        .expect("the plugin loads");
    Arc::new(registry)
}

fn example(file: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join("examples").join(file)).expect("the example")
}

fn condition(js: &Value, type_: &str) -> Option<(String, String, String)> {
    js["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (s("status"), s("reason"), s("message"))
        })
}

async fn jobset_json(env: &Env, name: &str) -> Value {
    serde_json::to_value(env.get(name).await).expect("json")
}

async fn events(env: &Env) -> Vec<(String, String)> {
    let list = env
        .sim
        .client("e2e")
        .list(&jobset_sim::Resource::events(), Some("default"), None)
        .await
        .expect("events list");
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or_default().to_string(),
                e["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn exit_codes_restarts_uncounted_on_an_oom_kill_and_leaves_other_codes_to_the_manifest() {
    runtime().block_on(async {
        let engine = registry("exit-codes", builtin::EXAMPLE_EXIT_CODES);
        let (env, _cluster) =
            Env::start_on_cluster(engine, &[], "default", &example("exit-codes.scenario.yaml"))
                .await;
        env.create(&example("exit-codes.yaml")).await;
        env.wait_until(
            "the JobSet completes",
            Duration::from_secs(3600),
            || async { condition(&jobset_json(&env, "exit-codes").await, "Completed").is_some() },
        )
        .await;
        let js = jobset_json(&env, "exit-codes").await;
        // The OOM kill (137) restarted without spending the budget; the
        // exit code 1 was left to the manifest's rules, which spent it.
        assert_eq!(js["status"]["restarts"], 2);
        assert_eq!(js["status"]["restartsCountTowardsMax"], 1);
        let events = events(&env).await;
        assert!(
            events.iter().any(|(r, m)| r == "RetriableExitCodeRestart"
                && m.contains("exited with 137, which is listed as retriable")
                && m.contains("(policy exit-codes@")),
            "{events:?}"
        );
        // One list per failed Job (two), none failed, none held at the end.
        assert_eq!(env.metrics.pod_facts_lists(), (2, 0));
        env.stop().await;
    });
}

#[test]
fn exit_codes_fails_the_jobset_at_once_on_a_fatal_code_naming_container_pod_and_code() {
    runtime().block_on(async {
        let engine = registry("exit-codes", builtin::EXAMPLE_EXIT_CODES);
        let scenario = "defaultDuration: 10m\nrules:\n\
            - {match: {replicatedJob: workers, jobIndex: 1}, duration: 1m, exitCode: 3}\n";
        let (env, _cluster) = Env::start_on_cluster(engine, &[], "default", scenario).await;
        env.create(&example("exit-codes.yaml")).await;
        env.wait_until("the JobSet fails", Duration::from_secs(3600), || async {
            condition(&jobset_json(&env, "exit-codes").await, "Failed").is_some()
        })
        .await;
        let js = jobset_json(&env, "exit-codes").await;
        let (_, reason, message) = condition(&js, "Failed").expect("Failed");
        assert_eq!(reason, "FatalExitCode");
        assert!(
            message.starts_with("container trainer of pod exit-codes-workers-1-0-")
                && message.contains(
                    "(Job exit-codes-workers-1) exited with 3, which is listed as fatal (policy exit-codes@"
                ),
            "{message}"
        );
        assert_eq!(js["status"]["restarts"], 0, "no restart spent on it");
        env.stop().await;
    });
}

#[test]
fn bad_node_names_the_node_that_ate_the_retries_in_the_restart_event() {
    runtime().block_on(async {
        let engine = registry("bad-node", builtin::EXAMPLE_BAD_NODE);
        let (env, _cluster) =
            Env::start_on_cluster(engine, &[], "default", &example("bad-node.scenario.yaml")).await;
        env.create(&example("bad-node.yaml")).await;
        env.wait_until(
            "the JobSet completes",
            Duration::from_secs(3600),
            || async { condition(&jobset_json(&env, "bad-node").await, "Completed").is_some() },
        )
        .await;
        let js = jobset_json(&env, "bad-node").await;
        assert_eq!(js["status"]["restarts"], 1);
        let events = events(&env).await;
        let named: Vec<_> = events
            .iter()
            .filter(|(_, m)| m.contains("node cpu-0-n1 failed 3 pods of this attempt"))
            .collect();
        assert!(
            named
                .iter()
                .any(|(r, m)| r == "RestartJobSetFailurePolicyAction"
                    && m.contains("consider `kubectl cordon cpu-0-n1`")
                    && m.contains("(policy bad-node@")),
            "{events:?}"
        );
        env.stop().await;
    });
}

/// A client to the simulator whose lists of pods by controller-uid fail
/// with 503 while `refuse` is set (the API server overloaded, say).
fn refusing_pod_lists(
    sim: &jobset_sim::Sim,
    refuse: Arc<std::sync::atomic::AtomicBool>,
) -> kube::Client {
    let inner = sim.service();
    let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let mut inner = inner.clone();
        let refused = refuse.load(std::sync::atomic::Ordering::SeqCst)
            && req.uri().path() == "/api/v1/namespaces/default/pods"
            && req
                .uri()
                .query()
                .is_some_and(|q| q.contains("controller-uid"));
        async move {
            if refused {
                let body = serde_json::json!({"kind": "Status", "apiVersion": "v1",
                    "status": "Failure", "reason": "ServiceUnavailable",
                    "message": "the server is overloaded", "code": 503});
                return Ok::<_, std::convert::Infallible>(
                    http::Response::builder()
                        .status(503)
                        .header("content-type", "application/json")
                        .body(
                            http_body_util::Full::new(bytes::Bytes::from(body.to_string()))
                                .map_err(|never| match never {})
                                .boxed_unsync(),
                        )
                        .expect("a response"),
                );
            }
            tower::Service::call(&mut inner, req).await
        }
    });
    kube::Client::new(svc, "default")
}

#[test]
fn a_pod_list_that_fails_holds_the_decision_with_policy_failed_until_it_succeeds() {
    runtime().block_on(async {
        let sim = jobset_sim::Sim::new(jobset_sim::SimConfig::default());
        let client = kube::Client::new(sim.service(), "default");
        let refuse = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let controller = refusing_pod_lists(&sim, refuse.clone());
        let engine = registry("exit-codes", builtin::EXAMPLE_EXIT_CODES);
        let env = Env::start_on(sim, client, controller, engine, None).await;
        env.create(&example("exit-codes.yaml")).await;
        let jobs = env.wait_jobs("exit-codes", 2).await;
        env.fail_job(
            &jobs[0],
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        )
        .await;
        env.wait_until("the decision is held", Duration::from_secs(60), || async {
            condition(&jobset_json(&env, "exit-codes").await, "PolicyFailed")
                .is_some_and(|(s, r, _)| s == "True" && r == "PodFactsUnavailable")
        })
        .await;
        let js = jobset_json(&env, "exit-codes").await;
        let (_, _, message) = condition(&js, "PolicyFailed").expect("PolicyFailed");
        assert!(
            message.starts_with("cannot list the pods of Job default/exit-codes-workers-0: ")
                && message.contains("overloaded")
                && message.ends_with("the outcome decision waits for them and is retried"),
            "{message}"
        );
        assert_eq!(
            js["status"]["restarts"], 0,
            "nothing decided on partial facts"
        );
        assert!(condition(&js, "Failed").is_none());
        // Retried while it fails; decided once the list succeeds.
        tokio::time::sleep(Duration::from_secs(12)).await;
        assert!(env.metrics.pod_facts_lists().1 >= 2, "retried");
        refuse.store(false, std::sync::atomic::Ordering::SeqCst);
        env.wait_until("the JobSet restarts", Duration::from_secs(60), || async {
            jobset_json(&env, "exit-codes").await["status"]["restarts"] == 1
        })
        .await;
        let js = jobset_json(&env, "exit-codes").await;
        // No pods here (no kubelet): the manifest's rules decided, counted.
        assert_eq!(js["status"]["restartsCountTowardsMax"], 1);
        let (status, _, _) = condition(&js, "PolicyFailed").expect("PolicyFailed");
        assert_eq!(status, "False", "cleared once decided");
        env.stop().await;
    });
}
