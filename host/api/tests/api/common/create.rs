//! Helpers for the CREATE validation tables: a case type and builders
//! that change the base JobSet.
#![allow(dead_code)]

use super::{job, pod};
use jobset_api::ErrorKind;
use jobset_api::*;
use k8s_openapi::api::core::v1::{PersistentVolumeClaimSpec, VolumeMount};

pub type Mutate = Box<dyn Fn(&mut JobSet)>;

pub struct Case {
    pub name: &'static str,
    pub gates: FeatureGates,
    pub mutate: Mutate,
    pub want: Vec<(&'static str, ErrorKind)>,
}

pub fn case(
    name: &'static str,
    mutate: impl Fn(&mut JobSet) + 'static,
    want: &[(&'static str, ErrorKind)],
) -> Case {
    Case {
        name,
        gates: FeatureGates::all(),
        mutate: Box::new(mutate),
        want: want.to_vec(),
    }
}

pub fn gated(mut c: Case, gates: FeatureGates) -> Case {
    c.gates = gates;
    c
}

pub const NO_RESTART_JOB: FeatureGates = FeatureGates {
    restart_job: false,
    in_place_restart: true,
    elastic_jobset: true,
};
pub const NO_IN_PLACE: FeatureGates = FeatureGates {
    restart_job: true,
    in_place_restart: false,
    elastic_jobset: true,
};

pub fn in_place(js: &mut JobSet) {
    js.spec.failure_policy = Some(FailurePolicy {
        restart_strategy: Some(RestartStrategy::InPlaceRestart),
        ..Default::default()
    });
    for i in 0..js.spec.replicated_jobs.len() {
        job(js, i).backoff_limit = Some(i32::MAX);
        job(js, i).pod_replacement_policy = Some("Failed".into());
    }
}

pub fn depends(js: &mut JobSet, i: usize, names: &[&str]) {
    js.spec.replicated_jobs[i].depends_on = names
        .iter()
        .map(|n| DependsOn {
            name: n.to_string(),
            status: DependsOnStatus::Ready,
        })
        .collect();
}

pub fn rule(action: FailurePolicyAction, name: &str) -> FailurePolicyRule {
    FailurePolicyRule {
        name: name.into(),
        action,
        ..Default::default()
    }
}

pub fn rules(js: &mut JobSet, rules: Vec<FailurePolicyRule>) {
    js.spec.failure_policy = Some(FailurePolicy {
        rules,
        ..Default::default()
    });
}

pub fn coordinator(js: &mut JobSet, rjob: &str, job_index: i32, pod_index: i32) {
    js.spec.coordinator = Some(Coordinator {
        replicated_job: rjob.into(),
        job_index: Some(job_index),
        pod_index: Some(pod_index),
    });
}

pub fn claim(name: &str) -> Embedded<ClaimTemplate> {
    let mut t = ClaimTemplate::default();
    t.metadata.name = Some(name.into());
    t.spec = Some(PersistentVolumeClaimSpec {
        access_modes: Some(vec!["ReadWriteOnce".into()]),
        ..Default::default()
    });
    Embedded::new(t)
}

pub fn claims(js: &mut JobSet, policies: &[&[&str]]) {
    js.spec.volume_claim_policies = policies
        .iter()
        .map(|names| VolumeClaimPolicy {
            templates: names.iter().map(|n| claim(n)).collect(),
            retention_policy: Some(VolumeRetentionPolicy {
                when_deleted: Some(WhenDeleted::Delete),
            }),
        })
        .collect();
}

pub fn mount(js: &mut JobSet, name: &str) {
    pod(js, 0).containers[0]
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .push(VolumeMount {
            name: name.into(),
            mount_path: format!("/{name}"),
            ..Default::default()
        });
}

pub fn retain(js: &mut JobSet) {
    js.spec.volume_claim_policies[0].retention_policy = Some(VolumeRetentionPolicy {
        when_deleted: Some(WhenDeleted::Retain),
    });
}
