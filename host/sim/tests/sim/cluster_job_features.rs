//! Job controller features end to end on virtual time: suspend and resume,
//! activeDeadlineSeconds, backoffLimitPerIndex, foreground deletion waiting
//! for pods to stop, the mode without a Job controller, timed domain
//! failures from a scenario, and convergence under API faults.

use std::time::Duration;

use jobset_sim::cluster::ClusterHandle;
use jobset_sim::{PatchKind, Propagation, Resource, Sim, SimClient};
use serde_json::{Value, json};

use crate::cluster_support::{condition, pods_of, start_cluster, wait_for};

async fn start(layout: &str, scenario: &str, job_controller: bool) -> (Sim, ClusterHandle) {
    start_cluster(layout, scenario, 11, job_controller).await
}

fn job(name: &str, n: u32, extra: Value) -> Value {
    let mut j = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"parallelism": n, "completions": n, "completionMode": "Indexed",
                 "template": {"spec": {"restartPolicy": "Never",
                                       "containers": [{"name": "main", "image": "busybox"}]}}}
    });
    if let (Some(spec), Some(add)) = (j["spec"].as_object_mut(), extra.as_object()) {
        for (k, v) in add {
            spec.insert(k.clone(), v.clone());
        }
    }
    j
}

/// Waits (in virtual time, at most `limit`) until Job `name` satisfies `pred`.
async fn wait_job(
    client: &SimClient,
    name: &str,
    limit: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(client, &Resource::jobs(), name, limit, pred).await
}

#[tokio::test(start_paused = true)]
async fn suspending_a_job_stops_its_pods_and_resuming_starts_new_ones() {
    let (sim, _c) = start("pools=1,nodes=2", "defaultDuration: 1h", true).await;
    let client = sim.client("test");
    client
        .create(&Resource::jobs(), Some("default"), &job("s", 2, json!({})))
        .await
        .expect("create");
    wait_job(&client, "s", Duration::from_secs(60), |j| {
        j["status"]["ready"] == 2
    })
    .await;
    client
        .patch(
            &Resource::jobs(),
            Some("default"),
            "s",
            PatchKind::Merge,
            &json!({"spec": {"suspend": true}}),
        )
        .await
        .expect("suspend");
    let j = wait_job(&client, "s", Duration::from_secs(120), |j| {
        condition(j, "Suspended")["status"] == "True"
            && j["status"]["active"] == 0
            && j["status"]["terminating"] == 0
    })
    .await;
    assert_eq!(condition(&j, "Suspended")["reason"], "JobSuspended");
    assert_eq!(
        j["status"]["failed"], 0,
        "pods stopped by a suspension are not failures"
    );
    let before: Vec<Value> = pods_of(&client, "s").await;
    assert!(before.iter().all(|p| p["status"]["phase"] == "Failed"));
    client
        .patch(
            &Resource::jobs(),
            Some("default"),
            "s",
            PatchKind::Merge,
            &json!({"spec": {"suspend": false}}),
        )
        .await
        .expect("resume");
    let j = wait_job(&client, "s", Duration::from_secs(60), |j| {
        j["status"]["ready"] == 2
    })
    .await;
    assert_eq!(condition(&j, "Suspended")["status"], "False");
    assert_eq!(condition(&j, "Suspended")["reason"], "JobResumed");
    // The stopped pods went away with their finalizer; two new ones run.
    let after = pods_of(&client, "s").await;
    assert_eq!(after.len(), 2);
    assert!(after.iter().all(|p| {
        !before
            .iter()
            .any(|b| b["metadata"]["name"] == p["metadata"]["name"])
    }));
}

#[tokio::test(start_paused = true)]
async fn a_job_past_its_active_deadline_fails_with_deadline_exceeded_after_its_pods_stop() {
    let (sim, c) = start("pools=1,nodes=1", "defaultDuration: 1h", true).await;
    let client = sim.client("test");
    client
        .create(
            &Resource::jobs(),
            Some("default"),
            &job("dl", 1, json!({"activeDeadlineSeconds": 100})),
        )
        .await
        .expect("create");
    let j = wait_job(&client, "dl", Duration::from_secs(600), |j| {
        condition(j, "Failed")["status"] == "True"
    })
    .await;
    assert_eq!(condition(&j, "Failed")["reason"], "DeadlineExceeded");
    assert_eq!(
        condition(&j, "Failed")["message"],
        "Job was active longer than specified deadline"
    );
    // FailureTarget at the deadline, Failed only after the 30 s grace period.
    let ev = c.events();
    let at = |what: &str| ev.iter().find(|e| e.detail == what).map(|e| e.at_ms / 1000);
    assert_eq!(at("FailureTarget DeadlineExceeded"), Some(100));
    assert_eq!(at("Failed DeadlineExceeded"), Some(130));
}

#[tokio::test(start_paused = true)]
async fn an_index_failing_past_its_per_index_limit_fails_the_job_with_failed_indexes() {
    let scenario = "defaultDuration: 30s\nrules:\n- match: {job: pi, podIndex: 1}\n  duration: 10s\n  exitCode: 2\n";
    let (sim, _c) = start("pools=1,nodes=3", scenario, true).await;
    let client = sim.client("test");
    client
        .create(
            &Resource::jobs(),
            Some("default"),
            &job(
                "pi",
                3,
                json!({"backoffLimitPerIndex": 1, "backoffLimit": null}),
            ),
        )
        .await
        .expect("create");
    let j = wait_job(&client, "pi", Duration::from_secs(900), |j| {
        condition(j, "Failed")["status"] == "True"
    })
    .await;
    assert_eq!(condition(&j, "Failed")["reason"], "FailedIndexes");
    assert_eq!(condition(&j, "Failed")["message"], "Job has failed indexes");
    assert_eq!(j["status"]["failedIndexes"], "1");
    assert_eq!(j["status"]["completedIndexes"], "0,2");
    assert_eq!(
        j["status"]["failed"], 2,
        "index 1 ran twice: once plus one retry"
    );
    let retried: Vec<Value> = pods_of(&client, "pi")
        .await
        .into_iter()
        .filter(|p| p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == "1")
        .collect();
    let mut counts: Vec<&str> = retried
        .iter()
        .filter_map(|p| {
            p["metadata"]["annotations"]["batch.kubernetes.io/job-index-failure-count"].as_str()
        })
        .collect();
    counts.sort();
    assert_eq!(counts, ["0", "1"]);
}

#[tokio::test(start_paused = true)]
async fn foreground_deletion_of_a_job_waits_for_its_pods_grace_period() {
    let (sim, _c) = start("pools=1,nodes=2", "defaultDuration: 1h", true).await;
    let client = sim.client("test");
    let mut j = job("fg", 2, json!({}));
    j["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(45);
    client
        .create(&Resource::jobs(), Some("default"), &j)
        .await
        .expect("create");
    wait_job(&client, "fg", Duration::from_secs(60), |j| {
        j["status"]["ready"] == 2
    })
    .await;
    client
        .delete(
            &Resource::jobs(),
            Some("default"),
            "fg",
            Some(Propagation::Foreground),
        )
        .await
        .expect("delete");
    tokio::time::sleep(Duration::from_secs(40)).await;
    let still = client
        .get(&Resource::jobs(), Some("default"), "fg")
        .await
        .expect("job still there");
    assert!(still["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(
        pods_of(&client, "fg").await.len(),
        2,
        "pods are still terminating"
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    let gone = client.get(&Resource::jobs(), Some("default"), "fg").await;
    assert_eq!(gone.map_err(|e| e.code).err(), Some(404));
    assert!(pods_of(&client, "fg").await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn without_a_job_controller_jobs_get_no_pods_and_status_is_written_by_hand() {
    let (sim, c) = start("pools=1,nodes=1", "{}", false).await;
    let client = sim.client("test");
    client
        .create(
            &Resource::jobs(),
            Some("default"),
            &job("manual", 2, json!({})),
        )
        .await
        .expect("create");
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(pods_of(&client, "manual").await.is_empty());
    let status = json!({"status": {"active": 2, "ready": 2, "startTime": "2026-01-01T00:00:00Z"}});
    let j = client
        .patch_status(
            &Resource::jobs(),
            Some("default"),
            "manual",
            PatchKind::Merge,
            &status,
        )
        .await
        .expect("status by hand");
    assert_eq!(j["status"]["ready"], 2);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let j = client
        .get(&Resource::jobs(), Some("default"), "manual")
        .await
        .expect("get");
    assert_eq!(j["status"]["ready"], 2, "nothing overwrites it");
    assert!(c.events().iter().all(|e| e.component != "job-controller"));
}

#[tokio::test(start_paused = true)]
async fn a_timed_domain_failure_from_the_scenario_moves_the_job_to_the_healthy_pool() {
    let scenario = "defaultDuration: 10m\nfaults:\n- at: 2m\n  failDomain: {key: cloud.google.com/gke-nodepool, value: pool-0}\n";
    let (sim, c) = start("pools=2,nodes=2", scenario, true).await;
    let client = sim.client("test");
    let mut j = job("moved", 2, json!({"backoffLimit": 4}));
    j["spec"]["template"]["spec"]["nodeSelector"] = json!({"kubernetes.io/os": "linux"});
    client
        .create(&Resource::jobs(), Some("default"), &j)
        .await
        .expect("create");
    let done = wait_job(&client, "moved", Duration::from_secs(3600), |j| {
        condition(j, "Complete")["status"] == "True"
    })
    .await;
    let all = pods_of(&client, "moved").await;
    let disrupted = all
        .iter()
        .filter(|p| condition(p, "DisruptionTarget")["status"] == "True")
        .count();
    assert_eq!(done["status"]["failed"].as_i64(), Some(disrupted as i64));
    assert!(
        disrupted >= 1,
        "pool-0 held at least one pod (least-allocated spreads)"
    );
    assert!(
        all.iter()
            .filter(|p| p["status"]["phase"] == "Succeeded")
            .all(|p| p["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| n.starts_with("pool-1")))
    );
    let ev = c.events();
    assert!(
        ev.iter()
            .any(|e| e.action == "FailDomain" && e.at_ms == 120_000)
    );
    assert_eq!(ev.iter().filter(|e| e.action == "FailNode").count(), 2);
}

#[tokio::test(start_paused = true)]
async fn jobs_still_complete_when_the_api_fails_requests_and_drops_watches() {
    let scenario = r#"
defaultDuration: 60s
api:
  errorRates: {create: {rate: 0.3}, patch: {rate: 0.3, code: 429}}
  dropWatchesAfter: 45s
"#;
    let (sim, _c) = start("pools=2,nodes=2", scenario, true).await;
    let client = sim.client("test");
    let mut created = 0;
    while created < 3 {
        let name = format!("flaky-{created}");
        if client
            .create(
                &Resource::jobs(),
                Some("default"),
                &job(&name, 2, json!({})),
            )
            .await
            .is_ok()
        {
            created += 1;
        }
    }
    for i in 0..3 {
        let j = wait_job(
            &client,
            &format!("flaky-{i}"),
            Duration::from_secs(1800),
            |j| condition(j, "Complete")["status"] == "True",
        )
        .await;
        assert_eq!(j["status"]["succeeded"], 2);
    }
}
