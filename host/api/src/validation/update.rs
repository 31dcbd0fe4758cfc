//! UPDATE rules (spec 5.3): replicated jobs are immutable except the
//! pod-template fields Kueue changes while suspended and, with the
//! ElasticJobSet gate, parallelism/completions; managedBy never changes;
//! the CRD's CEL rules keep the policies immutable.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use super::create::{is_indexed, schema_checks};
use super::{ErrorKind, ValidationContext, ValidationErrors, quoted_list};
use crate::spec::{JobSet, ReplicatedJob};
use crate::status::{TERMINAL_STATE_COMPLETED, TERMINAL_STATE_FAILED};

/// Most immutable-field errors reported for one replicated job.
const MAX_DIFFS_PER_RJOB: usize = 20;

const SUSPENDED_HINT: &str = "while the JobSet is suspended, only the pod template's labels, annotations, \
     nodeSelector, tolerations and schedulingGates may change";

/// Validates an UPDATE of `old` to `new`: the CRD schema checks on `new`,
/// the CEL immutability rules, and the webhook's immutability of
/// replicated jobs and `managedBy`. CREATE rules are not re-run.
pub fn validate_update(
    old: &JobSet,
    new: &JobSet,
    ctx: &ValidationContext<'_>,
) -> Result<(), ValidationErrors> {
    let mut errs = ValidationErrors::default();
    schema_checks(new, &mut errs);
    cel_immutability(old, new, &mut errs);
    replicated_jobs(old, new, ctx, &mut errs);
    if old.spec.managed_by != new.spec.managed_by {
        errs.push(
            "spec.managedBy",
            ErrorKind::Forbidden,
            format!(
                "field is immutable (was {:?})",
                old.spec.managed_by.as_deref().unwrap_or("")
            ),
        );
    }
    errs.into_result()
}

/// `self == oldSelf` rules only apply when the field is set in both objects.
fn cel_immutability(old: &JobSet, new: &JobSet, errs: &mut ValidationErrors) {
    fn same<T: PartialEq>(a: &Option<T>, b: &Option<T>) -> bool {
        a.is_none() || b.is_none() || a == b
    }
    let (o, n) = (&old.spec, &new.spec);
    let changed = [
        ("spec.network", same(&o.network, &n.network)),
        (
            "spec.successPolicy",
            same(&o.success_policy, &n.success_policy),
        ),
        (
            "spec.failurePolicy",
            same(&o.failure_policy, &n.failure_policy),
        ),
        (
            "spec.startupPolicy",
            same(&o.startup_policy, &n.startup_policy),
        ),
        (
            "spec.volumeClaimPolicies",
            o.volume_claim_policies.is_empty()
                || n.volume_claim_policies.is_empty()
                || o.volume_claim_policies == n.volume_claim_policies,
        ),
    ];
    for (path, ok) in changed {
        if !ok {
            errs.push(
                path,
                ErrorKind::Forbidden,
                "Value is immutable: this field cannot change after creation",
            );
        }
    }
}

fn is_finished(js: &JobSet) -> bool {
    let Some(status) = &js.status else {
        return false;
    };
    !status.terminal_state.is_empty()
        || status.conditions.iter().any(|c| {
            (c.type_ == TERMINAL_STATE_COMPLETED || c.type_ == TERMINAL_STATE_FAILED)
                && c.status == "True"
        })
}

fn replicated_jobs(
    old: &JobSet,
    new: &JobSet,
    ctx: &ValidationContext<'_>,
    errs: &mut ValidationErrors,
) {
    let suspended = old.spec.is_suspended() || new.spec.is_suspended();
    let mut munged = new.spec.replicated_jobs.clone();
    for (i, rjob) in munged.iter_mut().enumerate() {
        let Some(old_rjob) = old.spec.replicated_job(&rjob.name) else {
            continue;
        };
        if ctx.gates.elastic_jobset && is_indexed(rjob.template.spec.as_ref()) {
            elastic_change(i, old, old_rjob, rjob, errs);
        }
        if suspended {
            keep_old_schedulable_fields(old_rjob, rjob);
        }
    }

    let old_names: Vec<&str> = old
        .spec
        .replicated_jobs
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    let new_names: Vec<&str> = munged.iter().map(|r| r.name.as_str()).collect();
    if old_names != new_names {
        errs.push(
            "spec.replicatedJobs",
            ErrorKind::Forbidden,
            format!(
                "replicated jobs cannot be added, removed, renamed or reordered (were {}, now {})",
                quoted_list(old_names),
                quoted_list(new_names)
            ),
        );
        return;
    }
    for (i, (o, m)) in old.spec.replicated_jobs.iter().zip(&munged).enumerate() {
        let (Ok(ov), Ok(mv)) = (serde_json::to_value(o), serde_json::to_value(m)) else {
            continue;
        };
        let mut paths = Vec::new();
        diff_paths(&ov, &mv, format!("spec.replicatedJobs[{i}]"), &mut paths);
        for p in paths.into_iter().take(MAX_DIFFS_PER_RJOB) {
            let hint = if suspended { "" } else { SUSPENDED_HINT };
            let sep = if hint.is_empty() { "" } else { "; " };
            errs.push(
                p,
                ErrorKind::Forbidden,
                format!("field is immutable{sep}{hint}"),
            );
        }
    }
}

/// ElasticJobSet: an Indexed template may change parallelism and completions
/// while the JobSet is unfinished, to values of at least 1 that are equal,
/// in upstream's words. One rule is ours: a resize may not unset either
/// value (upstream admits it, then never resizes the Jobs, and a Job built
/// later from the template is refused for want of completions). The munged
/// copy takes the old values so the change is judged here only.
fn elastic_change(
    i: usize,
    old: &JobSet,
    old_rjob: &ReplicatedJob,
    rjob: &mut ReplicatedJob,
    errs: &mut ValidationErrors,
) {
    let old_spec = old_rjob.template.spec.as_ref();
    let (op, oc) = (
        old_spec.and_then(|s| s.parallelism),
        old_spec.and_then(|s| s.completions),
    );
    let Some(new_spec) = rjob.template.spec.as_mut() else {
        return;
    };
    let (np, nc) = (new_spec.parallelism, new_spec.completions);
    new_spec.parallelism = op;
    new_spec.completions = oc;
    if (op, oc) == (np, nc) {
        return;
    }
    let path = format!("spec.replicatedJobs[{i}].template.spec");
    if is_finished(old) {
        errs.push(
            path,
            ErrorKind::Forbidden,
            "Cannot mutate parallelism or completions when JobSet is in a terminal state (Completed or Failed)",
        );
        return;
    }
    for (field, before, after) in [("parallelism", op, np), ("completions", oc, nc)] {
        match after {
            Some(v) if before != after && v < 1 => errs.push(
                format!("{path}.{field}"),
                ErrorKind::Invalid,
                format!("{v}: {field} must be >= 1"),
            ),
            None if before.is_some() => errs.push(
                format!("{path}.{field}"),
                ErrorKind::Required,
                format!("{field} cannot be unset when resizing an Elastic Indexed Job"),
            ),
            _ => {}
        }
    }
    if let (Some(p), Some(c)) = (np, nc)
        && p != c
    {
        errs.push(
            format!("{path}.completions"),
            ErrorKind::Invalid,
            format!("{c}: completions must be equal to parallelism for Elastic Indexed Jobs"),
        );
    }
}

/// While suspended, Kueue may rewrite these pod-template fields.
fn keep_old_schedulable_fields(old_rjob: &ReplicatedJob, rjob: &mut ReplicatedJob) {
    let (Some(old_job), Some(new_job)) =
        (old_rjob.template.spec.as_ref(), rjob.template.spec.as_mut())
    else {
        return;
    };
    let (old_tpl, new_tpl) = (&old_job.template, &mut new_job.template);
    match (&old_tpl.metadata, &mut new_tpl.metadata) {
        (Some(om), Some(nm)) => {
            nm.labels = om.labels.clone();
            nm.annotations = om.annotations.clone();
        }
        (Some(om), None) => {
            new_tpl.metadata = Some(ObjectMeta {
                labels: om.labels.clone(),
                annotations: om.annotations.clone(),
                ..Default::default()
            });
        }
        (None, Some(nm)) => {
            nm.labels = None;
            nm.annotations = None;
            if *nm == Default::default() {
                new_tpl.metadata = None;
            }
        }
        (None, None) => {}
    }
    if let (Some(op), Some(np)) = (&old_tpl.spec, &mut new_tpl.spec) {
        np.node_selector = op.node_selector.clone();
        np.tolerations = op.tolerations.clone();
        np.scheduling_gates = op.scheduling_gates.clone();
    }
}

/// Paths of the leaves where two JSON values differ; arrays of different
/// lengths are reported as a whole.
fn diff_paths(a: &Value, b: &Value, path: String, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                match (x.get(k), y.get(k)) {
                    (Some(xv), Some(yv)) => diff_paths(xv, yv, format!("{path}.{k}"), out),
                    _ => out.push(format!("{path}.{k}")),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (xv, yv)) in x.iter().zip(y).enumerate() {
                diff_paths(xv, yv, format!("{path}[{i}]"), out);
            }
        }
        _ if a != b => out.push(path),
        _ => {}
    }
}
