//! Defaulting of a JobSet on CREATE (spec 5.1): what the mutating webhook
//! sets plus the CRD defaults the API server applies. Pure and idempotent;
//! never run on UPDATE.

use k8s_openapi::api::batch::v1::JobSpec;

use crate::labels::default_rule_name;
use crate::spec::{
    DEFAULT_GROUP_NAME, JobSet, Network, Operator, RestartStrategy, StartupPolicy,
    StartupPolicyOrder, SuccessPolicy, VolumeRetentionPolicy, WhenDeleted,
};

/// Completion mode given to Job templates that set none.
pub const DEFAULT_COMPLETION_MODE: &str = "Indexed";
/// Pod restart policy given to Job templates that set none.
pub const DEFAULT_POD_RESTART_POLICY: &str = "OnFailure";

/// Applies the CREATE defaults of spec 5.1 in place: success policy `All`,
/// startup policy `AnyOrder`, Indexed Jobs with `OnFailure` pods, network
/// DNS hostnames and not-ready addresses on, failure rule names, claim
/// retention `Delete`, and the CRD defaults (replicas 1, group `default`,
/// restart strategy `Recreate`). Running it twice changes nothing more.
pub fn default_jobset(js: &mut JobSet) {
    let spec = &mut js.spec;
    spec.success_policy.get_or_insert_with(|| SuccessPolicy {
        operator: Operator::All,
        target_replicated_jobs: Vec::new(),
    });
    spec.startup_policy.get_or_insert(StartupPolicy {
        startup_policy_order: StartupPolicyOrder::AnyOrder,
    });

    for rjob in &mut spec.replicated_jobs {
        rjob.replicas.get_or_insert(1);
        rjob.group_name
            .get_or_insert_with(|| DEFAULT_GROUP_NAME.to_string());
        let job_spec = rjob.template.spec.get_or_insert_with(JobSpec::default);
        job_spec
            .completion_mode
            .get_or_insert_with(|| DEFAULT_COMPLETION_MODE.to_string());
        let pod_spec = job_spec.template.spec.get_or_insert_with(Default::default);
        if pod_spec.restart_policy.as_deref().unwrap_or("").is_empty() {
            pod_spec.restart_policy = Some(DEFAULT_POD_RESTART_POLICY.to_string());
        }
    }

    let network = spec.network.get_or_insert_with(Network::default);
    network.enable_dns_hostnames.get_or_insert(true);
    network.publish_not_ready_addresses.get_or_insert(true);

    if let Some(fp) = &mut spec.failure_policy {
        fp.restart_strategy.get_or_insert(RestartStrategy::Recreate);
        for (i, rule) in fp.rules.iter_mut().enumerate() {
            if rule.name.is_empty() {
                rule.name = default_rule_name(i);
            }
        }
    }

    for policy in &mut spec.volume_claim_policies {
        policy
            .retention_policy
            .get_or_insert_with(VolumeRetentionPolicy::default)
            .when_deleted
            .get_or_insert(WhenDeleted::Delete);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{
        FailurePolicy, FailurePolicyRule, JobSetSpec, ReplicatedJob, VolumeClaimPolicy,
    };
    use serde_json::json;

    fn bare() -> JobSet {
        JobSet::new(
            "js",
            JobSetSpec {
                replicated_jobs: vec![ReplicatedJob {
                    name: "w".into(),
                    ..Default::default()
                }],
                failure_policy: Some(FailurePolicy {
                    rules: vec![
                        FailurePolicyRule {
                            name: "keep".into(),
                            ..Default::default()
                        },
                        FailurePolicyRule::default(),
                    ],
                    ..Default::default()
                }),
                volume_claim_policies: vec![VolumeClaimPolicy::default()],
                ..Default::default()
            },
        )
    }

    #[test]
    fn a_bare_jobset_gets_every_create_default() {
        let mut js = bare();
        default_jobset(&mut js);
        let spec = serde_json::to_value(&js.spec).unwrap();
        assert_eq!(spec["successPolicy"], json!({"operator": "All"}));
        assert_eq!(
            spec["startupPolicy"],
            json!({"startupPolicyOrder": "AnyOrder"})
        );
        assert_eq!(
            spec["network"],
            json!({"enableDNSHostnames": true, "publishNotReadyAddresses": true})
        );
        let rj = &spec["replicatedJobs"][0];
        assert_eq!(rj["replicas"], 1);
        assert_eq!(rj["groupName"], "default");
        assert_eq!(rj["template"]["spec"]["completionMode"], "Indexed");
        assert_eq!(
            rj["template"]["spec"]["template"]["spec"]["restartPolicy"],
            "OnFailure"
        );
        assert_eq!(spec["failurePolicy"]["restartStrategy"], "Recreate");
        assert_eq!(spec["failurePolicy"]["rules"][0]["name"], "keep");
        assert_eq!(
            spec["failurePolicy"]["rules"][1]["name"],
            "failurePolicyRule1"
        );
        assert_eq!(
            spec["volumeClaimPolicies"][0]["retentionPolicy"],
            json!({"whenDeleted": "Delete"})
        );
        assert!(spec.get("suspend").is_none());
        assert!(
            spec["network"].get("subdomain").is_none(),
            "the subdomain is resolved at runtime"
        );
    }

    #[test]
    fn defaulting_twice_changes_nothing_more() {
        let mut once = bare();
        default_jobset(&mut once);
        let mut twice = once.clone();
        default_jobset(&mut twice);
        assert_eq!(once, twice);
    }

    #[test]
    fn values_already_set_are_kept() {
        let mut js: JobSet = serde_json::from_value(json!({
            "apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": {"name": "js"},
            "spec": {
                "network": {"enableDNSHostnames": false},
                "successPolicy": {"operator": "Any"},
                "failurePolicy": {"restartStrategy": "BlockingRecreate"},
                "replicatedJobs": [{"name": "w", "replicas": 0, "groupName": "g", "template": {"spec": {
                    "completionMode": "NonIndexed",
                    "template": {"spec": {"restartPolicy": "Never", "containers": []}}}}}]
            }
        }))
        .unwrap();
        default_jobset(&mut js);
        let spec = serde_json::to_value(&js.spec).unwrap();
        assert_eq!(
            spec["network"],
            json!({"enableDNSHostnames": false, "publishNotReadyAddresses": true})
        );
        assert_eq!(spec["successPolicy"]["operator"], "Any");
        assert_eq!(spec["failurePolicy"]["restartStrategy"], "BlockingRecreate");
        let rj = &spec["replicatedJobs"][0];
        assert_eq!(
            (rj["replicas"].clone(), rj["groupName"].clone()),
            (json!(0), json!("g"))
        );
        assert_eq!(rj["template"]["spec"]["completionMode"], "NonIndexed");
        assert_eq!(
            rj["template"]["spec"]["template"]["spec"]["restartPolicy"],
            "Never"
        );
    }
}
