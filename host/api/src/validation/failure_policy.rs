//! CREATE rules of the failure policy (spec 5.2 item 7): the RestartJob
//! gate, its replicas cap, rule names, target replicated jobs and failure
//! reasons. Message patterns are not checked here, as upstream.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

use super::create::rjob_names;
use super::{ErrorKind, ValidationContext, ValidationErrors, quoted_list};
use crate::labels::{
    ALLOWED_JOB_FAILURE_REASONS, MAX_REPLICAS_FOR_RESTART_JOB, MAX_RULE_NAME_LENGTH,
    MIN_RULE_NAME_LENGTH, RULE_NAME_PATTERN,
};
use crate::spec::JobSet;

static RULE_NAME: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(RULE_NAME_PATTERN).ok());

pub(crate) fn check(js: &JobSet, ctx: &ValidationContext<'_>, errs: &mut ValidationErrors) {
    let Some(fp) = &js.spec.failure_policy else {
        return;
    };
    let restart_job_rules: Vec<usize> = fp
        .rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.action.is_restart_job())
        .map(|(i, _)| i)
        .collect();
    if let Some(&first) = restart_job_rules.first()
        && !ctx.gates.restart_job
    {
        // Upstream's words, once for all such rules, at the first one.
        errs.push(
            format!("spec.failurePolicy.rules[{first}].action"),
            ErrorKind::Forbidden,
            "RestartJob and RestartJobAndIgnoreMaxRestarts failure policy actions are not allowed \
             when RestartJob feature gate is disabled",
        );
        return;
    }
    if let Some(&first) = restart_job_rules.first() {
        for (k, rjob) in js.spec.replicated_jobs.iter().enumerate() {
            if rjob.replicas() > MAX_REPLICAS_FOR_RESTART_JOB {
                errs.push(
                    format!("spec.replicatedJobs[{k}].replicas"),
                    ErrorKind::Invalid,
                    format!(
                        "{} is more than {MAX_REPLICAS_FOR_RESTART_JOB}, the most replicas allowed when a failure rule \
                         (rules[{first}]) uses a RestartJob action",
                        rjob.replicas()
                    ),
                );
            }
        }
    }

    let mut by_name: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, rule) in fp.rules.iter().enumerate() {
        let path = format!("spec.failurePolicy.rules[{i}]");
        let n = rule.name.len();
        if n < MIN_RULE_NAME_LENGTH {
            errs.push(
                format!("{path}.name"),
                ErrorKind::Required,
                format!("a rule needs a name of {MIN_RULE_NAME_LENGTH} to {MAX_RULE_NAME_LENGTH} characters"),
            );
        } else {
            if n > MAX_RULE_NAME_LENGTH {
                errs.push(
                    format!("{path}.name"),
                    ErrorKind::TooLong,
                    format!("{n} characters, at most {MAX_RULE_NAME_LENGTH} are allowed"),
                );
            }
            if !RULE_NAME.as_ref().is_some_and(|re| re.is_match(&rule.name)) {
                errs.push(
                    format!("{path}.name"),
                    ErrorKind::Invalid,
                    format!(
                        "{:?} must start with a letter, contain only letters, digits, '_', ',' or ':', and not end \
                         with ',' or ':' (regex {RULE_NAME_PATTERN})",
                        rule.name
                    ),
                );
            }
            by_name.entry(rule.name.as_str()).or_default().push(i);
        }

        for (j, t) in rule.target_replicated_jobs.iter().enumerate() {
            if js.spec.replicated_job(t).is_none() {
                errs.push(
                    format!("{path}.targetReplicatedJobs[{j}]"),
                    ErrorKind::Invalid,
                    format!(
                        "{t:?} is not a replicated job of this JobSet (replicated jobs: {})",
                        rjob_names(js)
                    ),
                );
            }
        }

        for (j, reason) in rule.on_job_failure_reasons.iter().enumerate() {
            if !ALLOWED_JOB_FAILURE_REASONS.contains(&reason.as_str()) {
                errs.push(
                    format!("{path}.onJobFailureReasons[{j}]"),
                    ErrorKind::NotSupported,
                    format!(
                        "{reason:?} is not a Job failure reason; supported values: {}",
                        quoted_list(ALLOWED_JOB_FAILURE_REASONS)
                    ),
                );
            }
        }
        // Message patterns are admitted as upstream admits them: a pattern
        // that does not compile is skipped when a decision is made, with a
        // log line naming it, and a repeated one changes nothing.
    }

    for (name, indices) in by_name.into_iter().filter(|(_, v)| v.len() > 1) {
        for &i in &indices[1..] {
            errs.push(
                format!("spec.failurePolicy.rules[{i}].name"),
                ErrorKind::Duplicate,
                format!("rule names are not unique, rules with indices {indices:?} all have the same name {name:?}"),
            );
        }
    }
}
