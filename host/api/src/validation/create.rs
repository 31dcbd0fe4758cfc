//! The CREATE rules of spec 5.2 that concern the spec as a whole and each
//! replicated job (items 1 to 6 and 8), and the CRD schema checks (item 10).

use std::collections::HashSet;

use k8s_openapi::api::batch::v1::JobSpec;

use super::{ErrorKind, ValidationContext, ValidationErrors, quoted_list};
use crate::crd::IN_ORDER_DEPENDS_ON_MESSAGE;
use crate::dns;
use crate::labels::{
    MAX_DEPENDS_ON, MAX_JOB_RESTARTS_ITEMS, MAX_MANAGED_BY_LENGTH, MAX_VOLUME_CLAIM_POLICIES,
};
use crate::naming;
use crate::spec::{JobSet, RestartStrategy, StartupPolicyOrder};
use crate::status::JobSetStatus;

const MAX_INT32: i64 = i32::MAX as i64;
const INDEXED: &str = "Indexed";

/// Whether a Job template uses Indexed completion.
pub(crate) fn is_indexed(spec: Option<&JobSpec>) -> bool {
    spec.and_then(|s| s.completion_mode.as_deref()) == Some(INDEXED)
}

/// Checks the CRD schema makes before any webhook runs: bounds, list sizes
/// and keys, and the InOrder / dependsOn exclusion.
pub(crate) fn schema_checks(js: &JobSet, errs: &mut ValidationErrors) {
    let spec = &js.spec;
    if js.metadata.name.as_deref().unwrap_or("").is_empty()
        && js
            .metadata
            .generate_name
            .as_deref()
            .unwrap_or("")
            .is_empty()
    {
        errs.push(
            "metadata.name",
            ErrorKind::Required,
            "name or generateName is required",
        );
    }
    let mut seen = HashSet::new();
    for (i, rjob) in spec.replicated_jobs.iter().enumerate() {
        let path = format!("spec.replicatedJobs[{i}]");
        if rjob.name.is_empty() {
            errs.push(
                format!("{path}.name"),
                ErrorKind::Required,
                "a replicated job needs a name",
            );
        } else if !seen.insert(rjob.name.as_str()) {
            errs.push(
                format!("{path}.name"),
                ErrorKind::Duplicate,
                format!(
                    "{:?} is already the name of an earlier replicated job; names must be unique",
                    rjob.name
                ),
            );
        }
        if rjob.replicas() < 0 {
            errs.push(
                format!("{path}.replicas"),
                ErrorKind::Invalid,
                format!(
                    "{} is negative; replicas must be 0 or more",
                    rjob.replicas()
                ),
            );
        }
        if rjob.depends_on.len() > MAX_DEPENDS_ON {
            errs.push(
                format!("{path}.dependsOn"),
                ErrorKind::TooMany,
                format!(
                    "has {} items, at most {MAX_DEPENDS_ON} are allowed",
                    rjob.depends_on.len()
                ),
            );
        }
        let mut deps = HashSet::new();
        for (j, d) in rjob.depends_on.iter().enumerate() {
            if !deps.insert(d.name.as_str()) {
                errs.push(
                    format!("{path}.dependsOn[{j}].name"),
                    ErrorKind::Duplicate,
                    format!(
                        "{:?} is listed twice; each dependency may appear once",
                        d.name
                    ),
                );
            }
        }
    }
    if let Some(status) = &js.status {
        status_checks(status, errs);
    }
    if let Some(ttl) = spec.ttl_seconds_after_finished
        && ttl < 0
    {
        errs.push(
            "spec.ttlSecondsAfterFinished",
            ErrorKind::Invalid,
            format!("{ttl} is negative; it must be 0 or more seconds"),
        );
    }
    if spec.volume_claim_policies.len() > MAX_VOLUME_CLAIM_POLICIES {
        errs.push(
            "spec.volumeClaimPolicies",
            ErrorKind::TooMany,
            format!(
                "has {} items, at most {MAX_VOLUME_CLAIM_POLICIES} are allowed",
                spec.volume_claim_policies.len()
            ),
        );
    }
    for (i, p) in spec.volume_claim_policies.iter().enumerate() {
        if p.templates.len() > MAX_VOLUME_CLAIM_POLICIES {
            errs.push(
                format!("spec.volumeClaimPolicies[{i}].templates"),
                ErrorKind::TooMany,
                format!(
                    "has {} items, at most {MAX_VOLUME_CLAIM_POLICIES} are allowed",
                    p.templates.len()
                ),
            );
        }
    }
    let in_order = spec
        .startup_policy
        .as_ref()
        .is_some_and(|s| s.startup_policy_order == StartupPolicyOrder::InOrder);
    let with_deps: Vec<&str> = spec
        .replicated_jobs
        .iter()
        .filter(|r| !r.depends_on.is_empty())
        .map(|r| r.name.as_str())
        .collect();
    if in_order && !with_deps.is_empty() {
        errs.push(
            "spec.startupPolicy.startupPolicyOrder",
            ErrorKind::Forbidden,
            format!(
                "{IN_ORDER_DEPENDS_ON_MESSAGE}: InOrder is set and replicated jobs {} use dependsOn; \
                 use AnyOrder with dependsOn, or InOrder without it",
                quoted_list(with_deps)
            ),
        );
    }
}

/// The CRD bounds of the status: in-place restart attempts are not
/// negative, and the per-Job restart arrays hold at most 1024 items.
fn status_checks(status: &JobSetStatus, errs: &mut ValidationErrors) {
    for (field, v) in [
        (
            "previousInPlaceRestartAttempt",
            status.previous_in_place_restart_attempt,
        ),
        (
            "currentInPlaceRestartAttempt",
            status.current_in_place_restart_attempt,
        ),
    ] {
        if let Some(v) = v.filter(|v| *v < 0) {
            errs.push(
                format!("status.{field}"),
                ErrorKind::Invalid,
                format!("{v} is negative; it must be 0 or more"),
            );
        }
    }
    for (i, r) in status.replicated_jobs_status.iter().enumerate() {
        for (field, len) in [
            ("jobRestarts", r.job_restarts.len()),
            (
                "jobRestartsCountTowardsMax",
                r.job_restarts_count_towards_max.len(),
            ),
        ] {
            if len > MAX_JOB_RESTARTS_ITEMS {
                errs.push(
                    format!("status.replicatedJobsStatus[{i}].{field}"),
                    ErrorKind::TooMany,
                    format!("has {len} items, at most {MAX_JOB_RESTARTS_ITEMS} are allowed"),
                );
            }
        }
    }
}

/// The validating webhook's CREATE rules, except the failure policy and
/// volume claim policies which have their own modules.
pub(crate) fn webhook_checks(
    js: &JobSet,
    ctx: &ValidationContext<'_>,
    errs: &mut ValidationErrors,
) {
    let spec = &js.spec;
    let name = naming::effective_name(js);
    let in_place = spec
        .failure_policy
        .as_ref()
        .is_some_and(|fp| fp.restart_strategy() == RestartStrategy::InPlaceRestart);
    if in_place && !ctx.gates.in_place_restart {
        errs.push(
            "spec.failurePolicy.restartStrategy",
            ErrorKind::Forbidden,
            "InPlaceRestart restart strategy cannot be set when InPlaceRestart feature gate is disabled",
        );
    }

    if let Some(sub) = spec
        .network
        .as_ref()
        .and_then(|n| n.subdomain.as_deref())
        .filter(|s| !s.is_empty())
    {
        for m in dns::dns1123_subdomain(sub) {
            errs.push(
                "spec.network.subdomain",
                ErrorKind::Invalid,
                format!("{sub:?}: {m}"),
            );
        }
        if sub.len() > dns::DNS_LABEL_MAX_LENGTH {
            errs.push(
                "spec.network.subdomain",
                ErrorKind::TooLong,
                format!(
                    "subdomain is too long: {} characters, at most {} are allowed since it is also the Service name",
                    sub.len(),
                    dns::DNS_LABEL_MAX_LENGTH
                ),
            );
        } else {
            for m in dns::dns1035_label(sub) {
                errs.push(
                    "spec.network.subdomain",
                    ErrorKind::Invalid,
                    format!("{sub:?}: {m}"),
                );
            }
        }
    }

    if let Some(mb) = &spec.managed_by {
        if mb.len() > MAX_MANAGED_BY_LENGTH {
            errs.push(
                "spec.managedBy",
                ErrorKind::TooLong,
                format!(
                    "{} characters, at most {MAX_MANAGED_BY_LENGTH} are allowed",
                    mb.len()
                ),
            );
        }
        for m in dns::domain_prefixed_path(mb) {
            errs.push("spec.managedBy", ErrorKind::Invalid, format!("{mb:?}: {m}"));
        }
    }

    for (i, rjob) in spec.replicated_jobs.iter().enumerate() {
        let path = format!("spec.replicatedJobs[{i}]");
        let job_spec = rjob.template.spec.as_ref();
        let parallelism = job_spec.and_then(|s| s.parallelism).unwrap_or(1);
        if i64::from(parallelism) * i64::from(rjob.replicas()) > MAX_INT32 {
            errs.push(
                format!("{path}.replicas"),
                ErrorKind::Invalid,
                format!(
                    "replicas ({}) times parallelism ({parallelism}) exceeds {MAX_INT32}, the most pods a replicated job may have",
                    rjob.replicas()
                ),
            );
        }
        if let Some(g) = &rjob.group_name {
            for m in dns::dns1035_label(g) {
                errs.push(
                    format!("{path}.groupName"),
                    ErrorKind::Invalid,
                    format!("{g:?}: {m}"),
                );
            }
        }
        let job_name = naming::longest_job_name(&name, &rjob.name, rjob.replicas());
        for m in dns::dns1035_label(&job_name) {
            errs.push(
                format!("{path}.name"),
                ErrorKind::Invalid,
                format!("the generated Job name {job_name:?} is not valid: {m}"),
            );
        }
        if is_indexed(job_spec)
            && let Some(completions) = job_spec.and_then(|s| s.completions)
        {
            let pod = naming::longest_pod_name(&name, &rjob.name, rjob.replicas(), completions);
            // Its syntax is the Job name's, checked above; only the length is new.
            if pod.len() > dns::DNS_LABEL_MAX_LENGTH {
                errs.push(
                    format!("{path}.name"),
                    ErrorKind::TooLong,
                    format!(
                        "JobSet name is too long, pod names generated for this JobSet will exceed 63 characters \
                         (the longest is {pod:?}, {} characters)",
                        pod.len()
                    ),
                );
            }
        }
        if i == 0 && !rjob.depends_on.is_empty() {
            errs.push(
                format!("{path}.dependsOn"),
                ErrorKind::Forbidden,
                "the first replicated job cannot depend on others: there is no earlier replicated job",
            );
        } else {
            let earlier: Vec<&str> = spec.replicated_jobs[..i]
                .iter()
                .map(|r| r.name.as_str())
                .collect();
            for (j, d) in rjob.depends_on.iter().enumerate() {
                if !earlier.contains(&d.name.as_str()) {
                    errs.push(
                        format!("{path}.dependsOn[{j}].name"),
                        ErrorKind::Invalid,
                        format!(
                            "{:?} is not an earlier replicated job (earlier: {})",
                            d.name,
                            quoted_list(earlier.iter().copied())
                        ),
                    );
                }
            }
        }
        if in_place {
            in_place_template_checks(&path, job_spec, errs);
        }
    }

    if let Some(sp) = &spec.success_policy {
        for (j, t) in sp.target_replicated_jobs.iter().enumerate() {
            if spec.replicated_job(t).is_none() {
                errs.push(
                    format!("spec.successPolicy.targetReplicatedJobs[{j}]"),
                    ErrorKind::Invalid,
                    format!(
                        "{t:?} is not a replicated job of this JobSet (replicated jobs: {})",
                        rjob_names(js)
                    ),
                );
            }
        }
    }
    coordinator_checks(js, &name, errs);
}

pub(crate) fn rjob_names(js: &JobSet) -> String {
    quoted_list(js.spec.replicated_jobs.iter().map(|r| r.name.as_str()))
}

fn in_place_template_checks(path: &str, job_spec: Option<&JobSpec>, errs: &mut ValidationErrors) {
    let tpl = format!("{path}.template.spec");
    let backoff = job_spec.and_then(|s| s.backoff_limit);
    if backoff != Some(i32::MAX) {
        errs.push(
            format!("{tpl}.backoffLimit"),
            ErrorKind::Invalid,
            format!(
                "is {}; with restartStrategy InPlaceRestart it must be {} (2147483647) so pods are restarted, not failed",
                backoff.map_or("unset".to_string(), |b| b.to_string()),
                i32::MAX
            ),
        );
    }
    let prp = job_spec.and_then(|s| s.pod_replacement_policy.as_deref());
    if prp != Some("Failed") {
        errs.push(
            format!("{tpl}.podReplacementPolicy"),
            ErrorKind::Invalid,
            format!(
                "is {}; with restartStrategy InPlaceRestart it must be \"Failed\"",
                prp.map_or("unset".into(), |p| format!("{p:?}"))
            ),
        );
    }
    let completions = job_spec.and_then(|s| s.completions);
    let parallelism = job_spec.and_then(|s| s.parallelism);
    match (completions, parallelism) {
        (Some(c), Some(p)) if c == p => {}
        (Some(c), Some(p)) => errs.push(
            format!("{tpl}.completions"),
            ErrorKind::Invalid,
            format!("completions ({c}) must equal parallelism ({p}) with restartStrategy InPlaceRestart"),
        ),
        _ => errs.push(
            format!("{tpl}.completions"),
            ErrorKind::Required,
            "with restartStrategy InPlaceRestart both completions and parallelism must be set, and equal",
        ),
    }
}

fn coordinator_checks(js: &JobSet, name: &str, errs: &mut ValidationErrors) {
    let Some(c) = &js.spec.coordinator else {
        return;
    };
    let Some(rjob) = js.spec.replicated_job(&c.replicated_job) else {
        errs.push(
            "spec.coordinator.replicatedJob",
            ErrorKind::Invalid,
            format!(
                "{:?} is not a replicated job of this JobSet (replicated jobs: {})",
                c.replicated_job,
                rjob_names(js)
            ),
        );
        return;
    };
    if c.job_index() < 0 || c.job_index() >= rjob.replicas() {
        errs.push(
            "spec.coordinator.jobIndex",
            ErrorKind::Invalid,
            format!(
                "{} is out of range: replicated job {:?} has Job indexes 0 to {}",
                c.job_index(),
                rjob.name,
                i64::from(rjob.replicas()) - 1
            ),
        );
    }
    let job_spec = rjob.template.spec.as_ref();
    match job_spec.and_then(|s| s.completions) {
        Some(completions) if is_indexed(job_spec) => {
            if c.pod_index() < 0 || c.pod_index() >= completions {
                errs.push(
                    "spec.coordinator.podIndex",
                    ErrorKind::Invalid,
                    format!(
                        "{} is out of range: Jobs of {:?} have pod indexes 0 to {}",
                        c.pod_index(),
                        rjob.name,
                        i64::from(completions) - 1
                    ),
                );
            }
        }
        _ => errs.push(
            "spec.coordinator.replicatedJob",
            ErrorKind::Invalid,
            format!(
                "{:?} must use completionMode Indexed with completions set to hold the coordinator",
                rjob.name
            ),
        ),
    }
    let endpoint = naming::coordinator_endpoint(
        name,
        &rjob.name,
        i64::from(c.job_index()),
        i64::from(c.pod_index()),
        naming::subdomain(&js.spec, name),
    );
    for m in dns::label_value(&endpoint) {
        errs.push(
            "spec.coordinator",
            ErrorKind::Invalid,
            format!("the coordinator endpoint {endpoint:?} is not a valid label value: {m}"),
        );
    }
}
