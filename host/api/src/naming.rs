//! Names the controller derives from a JobSet (spec 3.3 and 3.4): child Job
//! names, pod hostnames, the headless Service and subdomain, PVC names, the
//! job-key hash, global and group indexes, and the DNS length arithmetic.

use sha1::{Digest, Sha1};

use crate::spec::{JobSet, JobSetSpec};

/// Suffix length the Job controller appends to pod names (`-abcde`).
pub const POD_NAME_RANDOM_SUFFIX: &str = "-abcde";

/// Name of the Job with index `job_index` of replicated job `rjob`.
pub fn job_name(jobset: &str, rjob: &str, job_index: i64) -> String {
    format!("{jobset}-{rjob}-{job_index}")
}

/// Hostname of the pod with completion index `pod_index` in that Job.
pub fn pod_hostname(jobset: &str, rjob: &str, job_index: i64, pod_index: i64) -> String {
    format!("{jobset}-{rjob}-{job_index}-{pod_index}")
}

/// The coordinator endpoint `<js>-<rjob>-<jobIndex>-<podIndex>.<subdomain>`.
pub fn coordinator_endpoint(
    jobset: &str,
    rjob: &str,
    job_index: i64,
    pod_index: i64,
    subdomain: &str,
) -> String {
    format!(
        "{}.{subdomain}",
        pod_hostname(jobset, rjob, job_index, pod_index)
    )
}

/// The subdomain (and headless Service name) of a JobSet: `network.subdomain`
/// when set and non-empty, otherwise the JobSet name.
pub fn subdomain<'a>(spec: &'a JobSetSpec, jobset_name: &'a str) -> &'a str {
    spec.network
        .as_ref()
        .and_then(|n| n.subdomain.as_deref())
        .filter(|s| !s.is_empty())
        .unwrap_or(jobset_name)
}

/// The headless Service name of a JobSet (its subdomain).
pub fn headless_service_name(js: &JobSet) -> &str {
    subdomain(&js.spec, js.metadata.name.as_deref().unwrap_or(""))
}

/// Name of the PVC generated from claim template `claim`.
pub fn pvc_name(claim: &str, jobset: &str) -> String {
    format!("{claim}-{jobset}")
}

/// The `job-key` label value: SHA-1 hex of `<namespace>/<jobName>`.
pub fn job_key(namespace: &str, job_name: &str) -> String {
    let mut h = Sha1::new();
    h.update(namespace.as_bytes());
    h.update(b"/");
    h.update(job_name.as_bytes());
    hex::encode(h.finalize())
}

/// The node-selector strategy's nodeSelector value `<ns>_<jobName>`.
pub fn namespaced_job_value(namespace: &str, job_name: &str) -> String {
    format!("{namespace}_{job_name}")
}

/// The pod-name index key: the pod name without its last `-suffix`; `None`
/// for names with fewer than 5 dash-separated parts.
pub fn pod_name_index(pod_name: &str) -> Option<&str> {
    if pod_name.split('-').count() < 5 {
        return None;
    }
    pod_name.rsplit_once('-').map(|(head, _)| head)
}

/// Sum of `replicas` over all replicated jobs.
pub fn global_replicas(spec: &JobSetSpec) -> i64 {
    spec.replicated_jobs
        .iter()
        .map(|r| i64::from(r.replicas()))
        .sum()
}

/// Index of Job `job_index` of `rjob` across all replicated jobs, in spec
/// order; `None` when there is no such replicated job.
pub fn global_index(spec: &JobSetSpec, rjob: &str, job_index: i64) -> Option<i64> {
    let mut before = 0i64;
    for r in &spec.replicated_jobs {
        if r.name == rjob {
            return Some(before + job_index);
        }
        before += i64::from(r.replicas());
    }
    None
}

/// Sum of `replicas` over the replicated jobs of group `group`.
pub fn group_replicas(spec: &JobSetSpec, group: &str) -> i64 {
    spec.replicated_jobs
        .iter()
        .filter(|r| r.group_name() == group)
        .map(|r| i64::from(r.replicas()))
        .sum()
}

/// Index of Job `job_index` of `rjob` within its group, in spec order;
/// `None` when there is no such replicated job.
pub fn group_index(spec: &JobSetSpec, rjob: &str, job_index: i64) -> Option<i64> {
    let target = spec.replicated_job(rjob)?;
    let group = target.group_name();
    let mut before = 0i64;
    for r in &spec.replicated_jobs {
        if r.name == rjob {
            return Some(before + job_index);
        }
        if r.group_name() == group {
            before += i64::from(r.replicas());
        }
    }
    None
}

/// The longest child Job name of a replicated job: the one of index
/// `replicas - 1`.
pub fn longest_job_name(jobset: &str, rjob: &str, replicas: i32) -> String {
    job_name(jobset, rjob, i64::from(replicas) - 1)
}

/// The longest pod name of an Indexed replicated job with `completions` set,
/// including the Job controller's random suffix.
pub fn longest_pod_name(jobset: &str, rjob: &str, replicas: i32, completions: i32) -> String {
    format!(
        "{}-{}{POD_NAME_RANDOM_SUFFIX}",
        longest_job_name(jobset, rjob, replicas),
        i64::from(completions) - 1
    )
}

/// The name validation uses for a JobSet: `metadata.name`, or for an object
/// created with `generateName` that prefix plus 5 placeholder characters
/// (the length the API server will append).
pub fn effective_name(js: &JobSet) -> String {
    match js.metadata.name.as_deref().filter(|n| !n.is_empty()) {
        Some(n) => n.to_string(),
        None => format!(
            "{}abcde",
            js.metadata.generate_name.as_deref().unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Network, ReplicatedJob};

    fn rjob(name: &str, replicas: i32, group: Option<&str>) -> ReplicatedJob {
        ReplicatedJob {
            name: name.into(),
            replicas: Some(replicas),
            group_name: group.map(Into::into),
            ..Default::default()
        }
    }

    fn spec() -> JobSetSpec {
        JobSetSpec {
            replicated_jobs: vec![
                rjob("driver", 1, Some("a")),
                rjob("workers", 3, Some("b")),
                rjob("ps", 2, Some("a")),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn job_and_pod_names_join_the_parts_with_dashes() {
        assert_eq!(job_name("js", "w", 2), "js-w-2");
        assert_eq!(pod_hostname("js", "w", 2, 0), "js-w-2-0");
        assert_eq!(coordinator_endpoint("js", "d", 0, 1, "sub"), "js-d-0-1.sub");
        assert_eq!(pvc_name("ckpt", "js"), "ckpt-js");
        assert_eq!(namespaced_job_value("ns", "js-w-0"), "ns_js-w-0");
    }

    #[test]
    fn job_key_is_the_sha1_of_namespace_slash_job_name() {
        // sha1("default/js-w-0"), computed independently with `sha1sum`.
        assert_eq!(
            job_key("default", "js-w-0"),
            "4ff81fd931645b5111ec7c7532e38adf82a24c26"
        );
        assert_eq!(job_key("a", "b").len(), 40);
    }

    #[test]
    fn subdomain_falls_back_to_the_jobset_name() {
        let mut s = spec();
        assert_eq!(subdomain(&s, "js"), "js");
        s.network = Some(Network {
            subdomain: Some(String::new()),
            ..Default::default()
        });
        assert_eq!(subdomain(&s, "js"), "js");
        s.network = Some(Network {
            subdomain: Some("net".into()),
            ..Default::default()
        });
        assert_eq!(subdomain(&s, "js"), "net");
    }

    #[test]
    fn global_index_counts_the_replicas_of_earlier_replicated_jobs() {
        let s = spec();
        assert_eq!(global_replicas(&s), 6);
        assert_eq!(global_index(&s, "driver", 0), Some(0));
        assert_eq!(global_index(&s, "workers", 2), Some(3));
        assert_eq!(global_index(&s, "ps", 1), Some(5));
        assert_eq!(global_index(&s, "nope", 0), None);
    }

    #[test]
    fn group_index_counts_only_earlier_replicated_jobs_of_the_same_group() {
        let s = spec();
        assert_eq!(group_replicas(&s, "a"), 3);
        assert_eq!(group_replicas(&s, "b"), 3);
        assert_eq!(group_index(&s, "ps", 1), Some(2));
        assert_eq!(group_index(&s, "workers", 1), Some(1));
        assert_eq!(group_index(&s, "nope", 0), None);
    }

    #[test]
    fn unset_group_names_form_the_default_group() {
        let s = JobSetSpec {
            replicated_jobs: vec![rjob("a", 2, None), rjob("b", 2, Some("default"))],
            ..Default::default()
        };
        assert_eq!(group_replicas(&s, "default"), 4);
        assert_eq!(group_index(&s, "b", 0), Some(2));
    }

    #[test]
    fn the_longest_names_use_the_last_indexes() {
        assert_eq!(longest_job_name("js", "w", 10), "js-w-9");
        assert_eq!(longest_pod_name("js", "w", 10, 100), "js-w-9-99-abcde");
        // 3.4: len(js)+len(rjob)+digits(replicas-1)+digits(completions-1) <= 54
        let js = "j".repeat(50);
        assert_eq!(longest_pod_name(&js, "w", 10, 10).len(), 50 + 1 + 1 + 1 + 9);
    }

    #[test]
    fn pod_name_index_drops_the_random_suffix() {
        assert_eq!(pod_name_index("js-w-0-0-abcde"), Some("js-w-0-0"));
        assert_eq!(pod_name_index("js-w-0-abcde"), None);
    }

    #[test]
    fn generated_names_stand_in_for_an_empty_name() {
        let mut js = JobSet::new("", JobSetSpec::default());
        js.metadata.generate_name = Some("run-".into());
        assert_eq!(effective_name(&js), "run-abcde");
        js.metadata.name = Some("x".into());
        assert_eq!(effective_name(&js), "x");
    }
}
