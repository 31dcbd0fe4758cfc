//! The Job controller, scheduler and kubelet together on virtual time: Jobs
//! run to Complete, fail on their backoff limit, and a podFailurePolicy turns
//! a node failure into reason PodFailurePolicy.

use std::time::Duration;

use jobset_sim::cluster::ClusterHandle;
use jobset_sim::{Resource, Sim, SimClient};
use serde_json::{Value, json};

use crate::cluster_support::{condition, pods_of, start_cluster, wait_for};

async fn start(layout: &str, scenario: &str) -> (Sim, ClusterHandle) {
    start_cluster(layout, scenario, 7, true).await
}

fn job(name: &str, parallelism: u32, completions: u32, extra: Value) -> Value {
    let mut j = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"parallelism": parallelism, "completions": completions, "completionMode": "Indexed",
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"restartPolicy": "Never", "subdomain": "svc",
                                       "containers": [{"name": "main", "image": "busybox",
                                                       "resources": {"requests": {"cpu": "1"}}}]}}}
    });
    if let (Some(spec), Some(add)) = (j["spec"].as_object_mut(), extra.as_object()) {
        for (k, v) in add {
            spec.insert(k.clone(), v.clone());
        }
    }
    j
}

/// Waits (in virtual time, at most `limit`) until the Job has a True condition of `kind`.
async fn wait_condition(client: &SimClient, name: &str, kind: &str, limit: Duration) -> Value {
    wait_for(client, &Resource::jobs(), name, limit, |o| {
        condition(o, kind)["status"] == "True"
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn an_indexed_job_of_three_runs_to_complete_with_pods_scheduled_ready_then_succeeded() {
    let (sim, cluster) = start("pools=2,nodes=2", "defaultDuration: 90s").await;
    let client = sim.client("test");
    client
        .create(
            &Resource::jobs(),
            Some("default"),
            &job("train", 3, 3, json!({})),
        )
        .await
        .expect("create");
    let done = wait_condition(&client, "train", "Complete", Duration::from_secs(600)).await;

    assert_eq!(done["status"]["succeeded"], 3);
    assert_eq!(done["status"]["completedIndexes"], "0-2");
    assert_eq!(done["status"]["active"], 0);
    assert_eq!(
        condition(&done, "SuccessCriteriaMet")["reason"],
        "CompletionsReached"
    );
    assert_eq!(
        condition(&done, "Complete")["message"],
        "Reached expected number of succeeded pods"
    );
    assert!(done["status"]["completionTime"].is_string());

    let pods = pods_of(&client, "train").await;
    assert_eq!(pods.len(), 3);
    let mut hostnames: Vec<&str> = pods
        .iter()
        .filter_map(|p| p["spec"]["hostname"].as_str())
        .collect();
    hostnames.sort();
    assert_eq!(hostnames, ["train-0", "train-1", "train-2"]);
    for p in &pods {
        assert_eq!(p["status"]["phase"], "Succeeded");
        assert!(
            p["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| n.starts_with("pool-"))
        );
        assert_eq!(p["spec"]["subdomain"], "svc");
        assert!(
            p["metadata"]["finalizers"].is_null(),
            "tracking finalizer released"
        );
        let name = p["metadata"]["name"].as_str().unwrap_or_default();
        let index = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
            .as_str()
            .unwrap_or("?");
        assert!(
            name.starts_with(&format!("train-{index}-")) && name.len() == "train-0-".len() + 5,
            "{name}"
        );
    }
    // Each pod went scheduled → Ready → Succeeded, in that order, 90 s apart.
    let ev = cluster.events();
    for p in &pods {
        let key = format!(
            "default/{}",
            p["metadata"]["name"].as_str().unwrap_or_default()
        );
        let at = |action: &str| {
            ev.iter()
                .find(|e| e.object == key && e.action == action)
                .map(|e| e.at_ms)
        };
        let (bound, started, ended) = (at("Bound"), at("Started"), at("Succeeded"));
        assert!(
            bound.is_some() && bound <= started && started < ended,
            "{key}: {bound:?} {started:?} {ended:?}"
        );
        assert_eq!(ended.unwrap_or(0) - started.unwrap_or(0), 90_000);
    }
    // Ready was reported on the Job while the pods ran.
    assert!(ev.iter().any(|e| e.action == "Started"));
}

#[tokio::test(start_paused = true)]
async fn a_job_with_backoff_limit_zero_fails_with_backoff_limit_exceeded_when_its_pod_fails() {
    let scenario = "rules:\n- match: {job: crash}\n  duration: 20s\n  exitCode: 3\n";
    let (sim, _cluster) = start("pools=1,nodes=2", scenario).await;
    let client = sim.client("test");
    client
        .create(
            &Resource::jobs(),
            Some("default"),
            &job("crash", 2, 2, json!({"backoffLimit": 0})),
        )
        .await
        .expect("create");
    let failed = wait_condition(&client, "crash", "Failed", Duration::from_secs(600)).await;
    assert_eq!(
        condition(&failed, "Failed")["reason"],
        "BackoffLimitExceeded"
    );
    assert_eq!(
        condition(&failed, "Failed")["message"],
        "Job has reached the specified backoff limit"
    );
    assert_eq!(
        condition(&failed, "FailureTarget")["reason"],
        "BackoffLimitExceeded"
    );
    assert!(failed["status"]["failed"].as_i64().is_some_and(|f| f >= 1));
    assert_eq!(failed["status"]["active"], 0);
    assert!(failed["status"]["completionTime"].is_null());
    // No replacement pod was created after the failure.
    assert_eq!(pods_of(&client, "crash").await.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_pod_failure_policy_on_disruption_target_turns_a_node_failure_into_reason_pod_failure_policy()
 {
    let (sim, cluster) = start("pools=1,nodes=1", "defaultDuration: 1h").await;
    let client = sim.client("test");
    let policy = json!({"backoffLimit": 6, "podFailurePolicy": {"rules": [
        {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget"}]}]}});
    client
        .create(
            &Resource::jobs(),
            Some("default"),
            &job("pfp", 1, 1, policy),
        )
        .await
        .expect("create");
    tokio::time::sleep(Duration::from_secs(120)).await;
    let pods = pods_of(&client, "pfp").await;
    assert_eq!(pods[0]["status"]["phase"], "Running");
    cluster.fail_node("pool-0-n0").await.expect("fail node");
    let failed = wait_condition(&client, "pfp", "Failed", Duration::from_secs(600)).await;
    let c = condition(&failed, "Failed");
    assert_eq!(c["reason"], "PodFailurePolicy");
    let pod_name = pods[0]["metadata"]["name"].as_str().unwrap_or_default();
    assert_eq!(
        c["message"],
        format!(
            "Pod default/{pod_name} has condition DisruptionTarget matching FailJob rule at index 0"
        )
    );
    let pod = &pods_of(&client, "pfp").await[0];
    assert_eq!(pod["status"]["phase"], "Failed");
    assert_eq!(
        condition(pod, "DisruptionTarget")["reason"],
        "DeletionByTaintManager"
    );
}

#[tokio::test(start_paused = true)]
async fn pods_failed_from_a_test_are_ignored_or_counted_by_exit_code_rules() {
    let (sim, cluster) = start("pools=1,nodes=2", "defaultDuration: 10m").await;
    let client = sim.client("test");
    let policy = json!({"backoffLimit": 0, "podFailurePolicy": {"rules": [
        {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [7]}},
        {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}}]}});
    client
        .create(
            &Resource::jobs(),
            Some("default"),
            &job("codes", 1, 1, policy),
        )
        .await
        .expect("create");
    tokio::time::sleep(Duration::from_secs(30)).await;
    let first = pods_of(&client, "codes").await[0]["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        cluster.fail_pod("default", &first, 7).await,
        "the running pod fails"
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    let j = client
        .get(&Resource::jobs(), Some("default"), "codes")
        .await
        .expect("get");
    assert_eq!(j["status"]["failed"], 0, "exit code 7 is ignored");
    assert_eq!(
        j["status"]["active"], 1,
        "and the pod is replaced despite backoffLimit 0"
    );
    assert_eq!(cluster.fail_job("default", "codes").await, 1);
    let j = wait_condition(&client, "codes", "Failed", Duration::from_secs(600)).await;
    assert_eq!(
        condition(&j, "Failed")["reason"],
        "BackoffLimitExceeded",
        "exit 1 matches no rule and counts"
    );
    let second = pods_of(&client, "codes")
        .await
        .into_iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
        .find(|n| *n != first);
    assert!(second.is_some());
    assert!(
        !cluster.fail_pod("default", &first, 42).await,
        "a finished pod cannot fail again"
    );
}

#[tokio::test(start_paused = true)]
async fn an_exit_code_fail_job_rule_names_the_container_in_the_message() {
    let (sim, cluster) = start("pools=1,nodes=1", "defaultDuration: 10m").await;
    let client = sim.client("test");
    let policy = json!({"podFailurePolicy": {"rules": [
        {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}}]}});
    client
        .create(
            &Resource::jobs(),
            Some("default"),
            &job("answer", 1, 1, policy),
        )
        .await
        .expect("create");
    tokio::time::sleep(Duration::from_secs(30)).await;
    let name = pods_of(&client, "answer").await[0]["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(cluster.fail_pod("default", &name, 42).await);
    let j = wait_condition(&client, "answer", "Failed", Duration::from_secs(600)).await;
    assert_eq!(condition(&j, "Failed")["reason"], "PodFailurePolicy");
    assert_eq!(
        condition(&j, "Failed")["message"],
        format!(
            "Container main for pod default/{name} failed with exit code 42 matching FailJob rule at index 0"
        )
    );
}
