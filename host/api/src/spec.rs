//! The `JobSet` custom resource and its spec types (spec section 2.1 to 2.4),
//! with the exact upstream JSON names. No behaviour lives here beyond the
//! accessors that apply the documented defaults of unset fields.

use k8s_openapi::api::batch::v1::JobTemplateSpec;
use k8s_openapi::api::core::v1::{PersistentVolumeClaimSpec, PersistentVolumeClaimStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::embedded::Embedded;
use crate::status::JobSetStatus;

/// The desired state of a JobSet: groups of identical child Jobs and the
/// policies that start, finish, fail and restart them.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "jobset.x-k8s.io",
    version = "v1alpha2",
    kind = "JobSet",
    plural = "jobsets",
    shortname = "js",
    namespaced,
    status = "JobSetStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "JobSet is the Schema for the jobsets API",
    printcolumn = r#"{"name":"TerminalState","type":"string","jsonPath":".status.terminalState","description":"Final state of JobSet"}"#,
    printcolumn = r#"{"name":"Restarts","type":"string","jsonPath":".status.restarts","description":"Number of restarts"}"#,
    printcolumn = r#"{"name":"Completed","type":"string","jsonPath":".status.conditions[?(@.type==\"Completed\")].status","description":"JobSet Completed"}"#,
    printcolumn = r#"{"name":"Suspended","type":"string","jsonPath":".spec.suspend","description":"JobSet suspended"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp","description":"Time this JobSet was created"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct JobSetSpec {
    /// Groups of identical child Jobs, keyed by name. Immutable, except the
    /// pod-template labels, annotations, nodeSelector, tolerations and
    /// schedulingGates while the JobSet is suspended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicated_jobs: Vec<ReplicatedJob>,
    /// Pod DNS and the headless Service. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// When the JobSet is declared Completed. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_policy: Option<SuccessPolicy>,
    /// How Job failures fail or restart the JobSet. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_policy: Option<FailurePolicy>,
    /// Deprecated start ordering of replicated jobs. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_policy: Option<StartupPolicy>,
    /// Suspends (true) or resumes all child Jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// The pod whose stable endpoint is published to every Job and pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordinator: Option<Coordinator>,
    /// The controller responsible for this JobSet; any value other than
    /// jobset.sigs.k8s.io/jobset-controller makes this controller skip it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
    /// Seconds after Completed/Failed before the JobSet is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<i32>,
    /// PersistentVolumeClaims shared across replicated jobs. Immutable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_claim_policies: Vec<VolumeClaimPolicy>,
}

/// A group of `replicas` identical child Jobs built from one template.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicatedJob {
    /// Suffix of the child Job names; unique within the JobSet.
    pub name: String,
    /// Group used for the `group-*` labels; unset means `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    /// Template of every child Job of this group.
    pub template: Embedded<JobTemplateSpec>,
    /// Number of child Jobs; unset means 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Earlier replicated jobs that must reach a status before this one's
    /// Jobs are created. Immutable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<DependsOn>,
}

impl ReplicatedJob {
    /// The number of child Jobs, applying the CRD default of 1.
    pub fn replicas(&self) -> i32 {
        self.replicas.unwrap_or(1)
    }

    /// The group name, applying the CRD default `default`.
    pub fn group_name(&self) -> &str {
        self.group_name.as_deref().unwrap_or(DEFAULT_GROUP_NAME)
    }
}

/// Group name of replicated jobs that do not set one.
pub const DEFAULT_GROUP_NAME: &str = "default";

/// One dependency of a replicated job on an earlier one.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DependsOn {
    /// Name of an earlier replicated job.
    pub name: String,
    /// The status all of its Jobs must reach.
    pub status: DependsOnStatus,
}

/// Status a dependency must reach.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum DependsOnStatus {
    /// Every Job of the dependency is ready.
    #[default]
    Ready,
    /// Every Job of the dependency completed.
    Complete,
}

/// Pod DNS settings and the headless Service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    /// Create a headless Service and set each pod's subdomain.
    #[serde(
        rename = "enableDNSHostnames",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_dns_hostnames: Option<bool>,
    /// Name of the headless Service; unset means the JobSet name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdomain: Option<String>,
    /// Copied into the Service's `publishNotReadyAddresses`; unset means true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_not_ready_addresses: Option<bool>,
}

/// When a JobSet is declared Completed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SuccessPolicy {
    /// Whether all or any of the targeted Jobs must succeed.
    pub operator: Operator,
    /// Replicated jobs whose Jobs count; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_replicated_jobs: Vec<String>,
}

/// Operator of the success policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum Operator {
    /// Every targeted Job must succeed.
    #[default]
    All,
    /// One targeted Job succeeding is enough.
    Any,
}

/// How Job failures fail or restart the JobSet.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailurePolicy {
    /// Limit on the restarts that count toward the maximum; unset means 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restarts: Option<i32>,
    /// How a JobSet restart is carried out; unset means `Recreate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_strategy: Option<RestartStrategy>,
    /// Rules evaluated in order; the first match decides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<FailurePolicyRule>,
}

impl FailurePolicy {
    /// The restart limit (unset means 0).
    pub fn max_restarts(&self) -> i32 {
        self.max_restarts.unwrap_or(0)
    }

    /// The restart strategy, applying the CRD default `Recreate`.
    pub fn restart_strategy(&self) -> RestartStrategy {
        self.restart_strategy.unwrap_or_default()
    }
}

/// How a JobSet restart is carried out.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum RestartStrategy {
    /// Recreate each Job as soon as its previous attempt is gone.
    #[default]
    Recreate,
    /// Recreate Jobs only once every previous-attempt Job is gone.
    BlockingRecreate,
    /// Restart the containers in place (feature gate `InPlaceRestart`).
    InPlaceRestart,
}

/// One failure-policy rule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailurePolicyRule {
    /// Unique rule name, used in the Restarting condition reason.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// What to do when the rule matches.
    pub action: FailurePolicyAction,
    /// Job failure reasons the rule matches; empty matches any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_job_failure_reasons: Vec<String>,
    /// Regexes searched in the Job failure message; empty matches any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_job_failure_message_patterns: Vec<String>,
    /// Replicated jobs the rule applies to; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_replicated_jobs: Vec<String>,
}

/// Action of a failure-policy rule.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum FailurePolicyAction {
    /// Mark the JobSet Failed.
    #[default]
    FailJobSet,
    /// Restart every Job, counting toward `maxRestarts`.
    RestartJobSet,
    /// Restart every Job without counting toward `maxRestarts`.
    RestartJobSetAndIgnoreMaxRestarts,
    /// Recreate only the failed Job, counting toward `maxRestarts`.
    RestartJob,
    /// Recreate only the failed Job without counting toward `maxRestarts`.
    RestartJobAndIgnoreMaxRestarts,
}

impl FailurePolicyAction {
    /// Whether the action restarts a single Job (needs the `RestartJob` gate).
    pub fn is_restart_job(self) -> bool {
        matches!(
            self,
            Self::RestartJob | Self::RestartJobAndIgnoreMaxRestarts
        )
    }
}

/// Deprecated start ordering of replicated jobs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StartupPolicy {
    /// `AnyOrder` or `InOrder`.
    pub startup_policy_order: StartupPolicyOrder,
}

/// Start ordering of replicated jobs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum StartupPolicyOrder {
    /// Start everything at once.
    #[default]
    AnyOrder,
    /// Start each replicated job once the previous one is ready.
    InOrder,
}

/// The pod whose endpoint is published as the coordinator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Coordinator {
    /// Name of the replicated job holding the coordinator.
    pub replicated_job: String,
    /// Index of the Job within that replicated job; unset means 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_index: Option<i32>,
    /// Completion index of the pod within that Job; unset means 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_index: Option<i32>,
}

impl Coordinator {
    /// The Job index (unset means 0).
    pub fn job_index(&self) -> i32 {
        self.job_index.unwrap_or(0)
    }

    /// The pod index (unset means 0).
    pub fn pod_index(&self) -> i32 {
        self.pod_index.unwrap_or(0)
    }
}

/// PersistentVolumeClaims shared across replicated jobs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeClaimPolicy {
    /// Claims to create; each one is mounted where a container names it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<Embedded<ClaimTemplate>>,
    /// What happens to the claims when the JobSet is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_policy: Option<VolumeRetentionPolicy>,
}

/// A PersistentVolumeClaim as embedded in a volume claim policy: like
/// `core/v1 PersistentVolumeClaim`, but `apiVersion` and `kind` are only
/// written when the manifest had them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimTemplate {
    /// Usually unset in a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Usually unset in a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The claim's metadata; `name` is the claim template name.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The claim's spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<PersistentVolumeClaimSpec>,
    /// Ignored; accepted because the upstream type has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PersistentVolumeClaimStatus>,
}

impl ClaimTemplate {
    /// The claim template name (`metadata.name`, empty when unset).
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or("")
    }
}

/// Retention of generated claims.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeRetentionPolicy {
    /// `Delete` (default) or `Retain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_deleted: Option<WhenDeleted>,
}

/// What happens to a claim when its JobSet is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum WhenDeleted {
    /// Garbage-collected with the JobSet (controller owner reference).
    #[default]
    Delete,
    /// Left in place.
    Retain,
}

pub(crate) fn is_zero(v: &i32) -> bool {
    *v == 0
}

impl JobSetSpec {
    /// Whether the JobSet is suspended (unset means not suspended).
    pub fn is_suspended(&self) -> bool {
        self.suspend.unwrap_or(false)
    }

    /// The replicated job with this name.
    pub fn replicated_job(&self, name: &str) -> Option<&ReplicatedJob> {
        self.replicated_jobs.iter().find(|r| r.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn enums_serialise_to_the_upstream_strings() {
        let v = serde_json::to_value((
            FailurePolicyAction::RestartJobAndIgnoreMaxRestarts,
            RestartStrategy::InPlaceRestart,
            StartupPolicyOrder::InOrder,
            DependsOnStatus::Complete,
            Operator::Any,
            WhenDeleted::Retain,
        ))
        .unwrap();
        assert_eq!(
            v,
            json!([
                "RestartJobAndIgnoreMaxRestarts",
                "InPlaceRestart",
                "InOrder",
                "Complete",
                "Any",
                "Retain"
            ])
        );
    }

    #[test]
    fn a_jobset_uses_the_upstream_field_names_and_round_trips() {
        let input = json!({
            "apiVersion": "jobset.x-k8s.io/v1alpha2",
            "kind": "JobSet",
            "metadata": {"name": "js", "namespace": "ns"},
            "spec": {
                "replicatedJobs": [{
                    "name": "w", "groupName": "g", "replicas": 2,
                    "dependsOn": [{"name": "d", "status": "Ready"}],
                    "template": {"spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}}
                }],
                "network": {"enableDNSHostnames": true, "subdomain": "s", "publishNotReadyAddresses": false},
                "successPolicy": {"operator": "All", "targetReplicatedJobs": ["w"]},
                "failurePolicy": {"maxRestarts": 3, "restartStrategy": "BlockingRecreate", "rules": [{
                    "name": "r", "action": "FailJobSet", "onJobFailureReasons": ["PodFailurePolicy"],
                    "onJobFailureMessagePatterns": ["oom"], "targetReplicatedJobs": ["w"]}]},
                "startupPolicy": {"startupPolicyOrder": "InOrder"},
                "suspend": true,
                "coordinator": {"replicatedJob": "w", "jobIndex": 1, "podIndex": 2},
                "managedBy": "acme.io/x",
                "ttlSecondsAfterFinished": 10,
                "volumeClaimPolicies": [{"templates": [{"metadata": {"name": "c"}}],
                    "retentionPolicy": {"whenDeleted": "Retain"}}]
            },
            "status": {
                "restarts": 0, "restartsCountTowardsMax": 1, "terminalState": "Failed",
                "replicatedJobsStatus": [{"name": "w", "ready": 1, "succeeded": 0, "failed": 0,
                    "active": 1, "suspended": 0, "jobRestarts": [1, 0], "jobRestartsCountTowardsMax": [1, 0]}],
                "previousInPlaceRestartAttempt": 0, "currentInPlaceRestartAttempt": 1
            }
        });
        let js: JobSet = serde_json::from_value(input.clone()).unwrap();
        assert_eq!(js.spec.replicated_jobs[0].replicas(), 2);
        assert_eq!(serde_json::to_value(&js).unwrap(), input);
    }

    #[test]
    fn restarts_are_serialised_even_when_zero() {
        let v = serde_json::to_value(JobSetStatus::default()).unwrap();
        assert_eq!(v, json!({"restarts": 0}));
    }

    #[test]
    fn unset_fields_fall_back_to_the_crd_defaults() {
        let r = ReplicatedJob::default();
        assert_eq!((r.replicas(), r.group_name()), (1, "default"));
        assert_eq!(
            FailurePolicy::default().restart_strategy(),
            RestartStrategy::Recreate
        );
    }
}
