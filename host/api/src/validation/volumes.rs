//! CREATE rules of volume claim policies (spec 2.4 and 5.2 item 9): claim
//! names, generated PVC names, mounts, conflicts with pod volumes, and the
//! reuse of a claim that already exists.

use std::collections::HashSet;

use super::{ErrorKind, ValidationContext, ValidationErrors};
use crate::dns;
use crate::labels::MAX_VOLUME_CLAIM_NAME_LENGTH;
use crate::naming;
use crate::spec::{JobSet, WhenDeleted};

pub(crate) fn check(js: &JobSet, ctx: &ValidationContext<'_>, errs: &mut ValidationErrors) {
    if js.spec.volume_claim_policies.is_empty() {
        return;
    }
    let name = naming::effective_name(js);
    let namespace = js.metadata.namespace.as_deref().unwrap_or("default");
    let mut mounted = HashSet::new();
    let mut pod_volumes = Vec::new();
    for (k, rjob) in js.spec.replicated_jobs.iter().enumerate() {
        let Some(pod) = rjob
            .template
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
        else {
            continue;
        };
        for c in pod
            .containers
            .iter()
            .chain(pod.init_containers.iter().flatten())
        {
            for m in c.volume_mounts.iter().flatten() {
                mounted.insert(m.name.clone());
            }
        }
        for (v, vol) in pod.volumes.iter().flatten().enumerate() {
            pod_volumes.push((
                vol.name.clone(),
                format!("spec.replicatedJobs[{k}].template.spec.template.spec.volumes[{v}]"),
            ));
        }
    }

    let mut seen = HashSet::new();
    for (i, policy) in js.spec.volume_claim_policies.iter().enumerate() {
        let retain = policy
            .retention_policy
            .as_ref()
            .and_then(|r| r.when_deleted)
            .unwrap_or_default()
            == WhenDeleted::Retain;
        for (j, tpl) in policy.templates.iter().enumerate() {
            let path = format!("spec.volumeClaimPolicies[{i}].templates[{j}]");
            if tpl
                .metadata
                .namespace
                .as_deref()
                .is_some_and(|n| !n.is_empty())
            {
                errs.push(
                    format!("{path}.metadata.namespace"),
                    ErrorKind::Forbidden,
                    "must not be set: claims are created in the JobSet's namespace",
                );
            }
            let claim = tpl.name();
            let name_path = format!("{path}.metadata.name");
            if claim.is_empty() {
                errs.push(
                    name_path,
                    ErrorKind::Required,
                    "a claim template needs a name",
                );
                continue;
            }
            for m in dns::dns1123_subdomain(claim) {
                errs.push(&name_path, ErrorKind::Invalid, format!("{claim:?}: {m}"));
            }
            if !seen.insert(claim) {
                errs.push(
                    &name_path,
                    ErrorKind::Duplicate,
                    format!("{claim:?} is already used by another claim template; names must be unique across all policies"),
                );
            }
            let pvc = naming::pvc_name(claim, &name);
            if pvc.len() > MAX_VOLUME_CLAIM_NAME_LENGTH {
                errs.push(
                    &name_path,
                    ErrorKind::TooLong,
                    format!(
                        "the generated PVC name {pvc:?} has {} characters, at most {MAX_VOLUME_CLAIM_NAME_LENGTH} are allowed",
                        pvc.len()
                    ),
                );
            }
            if !mounted.contains(claim) {
                errs.push(
                    &name_path,
                    ErrorKind::Invalid,
                    format!("{claim:?} is not mounted: no container or initContainer of any replicated job has a volumeMount with this name"),
                );
            }
            for (_, vpath) in pod_volumes.iter().filter(|(v, _)| v == claim) {
                errs.push(
                    &name_path,
                    ErrorKind::Invalid,
                    format!("{claim:?} conflicts with the pod volume {vpath} of the same name; rename one of them"),
                );
            }
            if let Some(existing) = ctx.pvcs.existing_pvc(namespace, &pvc) {
                if existing.spec != tpl.spec {
                    errs.push(
                        format!("{path}.spec"),
                        ErrorKind::Invalid,
                        format!("the PVC {pvc:?} already exists with a different spec; reuse it with an identical spec or rename the template"),
                    );
                }
                if !retain {
                    errs.push(
                        format!("spec.volumeClaimPolicies[{i}].retentionPolicy.whenDeleted"),
                        ErrorKind::Invalid,
                        format!("the PVC {pvc:?} already exists; reusing it needs whenDeleted Retain so that deleting this JobSet keeps it"),
                    );
                }
            }
        }
    }
}
