//! Elastic JobSets (gate ElasticJobSet): a change of a replicated job's
//! `parallelism` and `completions` reaches the Jobs of the current attempt
//! that have not finished, as upstream's `syncJobScaling` does. Jobs of an
//! earlier attempt are being deleted and are left alone; Jobs created
//! later are built from the changed template anyway. Pure.

use std::collections::BTreeMap;

use jobset_api::JobSet;
use jobset_api::labels::REPLICATED_JOB_NAME_KEY;
use k8s_openapi::api::batch::v1::Job;

use crate::actions::{Action, Resize};

/// The sizes the API server stores for a Job asking for these: both 1
/// when neither is set, parallelism 1 when only it is unset. Comparing with
/// these spares a patch the API server would undo (upstream sends it, on
/// every reconcile, for a replicated job that sets neither).
fn as_defaulted(parallelism: Option<i32>, completions: Option<i32>) -> (Option<i32>, Option<i32>) {
    match (parallelism, completions) {
        (None, None) => (Some(1), Some(1)),
        (None, c) => (Some(1), c),
        sizes => sizes,
    }
}

/// The resizes that bring `active` Jobs to their replicated job's size.
///
/// A replicated job whose template asks for different `parallelism` and
/// `completions` is not elastic (upstream's admission refuses such an
/// update for an Indexed Job, and a non-Indexed Job cannot change its
/// completions at all); its Jobs are left as they are.
pub fn plan_scaling(js: &JobSet, active: &[&Job]) -> Option<Action> {
    let desired: BTreeMap<&str, (Option<i32>, Option<i32>)> = js
        .spec
        .replicated_jobs
        .iter()
        .filter_map(|r| {
            let spec = r.template.spec.as_ref();
            let parallelism = spec.and_then(|s| s.parallelism);
            let completions = spec.and_then(|s| s.completions);
            (parallelism == completions)
                .then_some((r.name.as_str(), as_defaulted(parallelism, completions)))
        })
        .collect();
    let resizes: Vec<Resize> = active
        .iter()
        .filter_map(|job| {
            let rjob = job.metadata.labels.as_ref()?.get(REPLICATED_JOB_NAME_KEY)?;
            let &(parallelism, completions) = desired.get(rjob.as_str())?;
            let spec = job.spec.as_ref();
            let drifted = as_defaulted(
                spec.and_then(|s| s.parallelism),
                spec.and_then(|s| s.completions),
            ) != (parallelism, completions);
            drifted.then(|| Resize {
                job: job.metadata.name.clone().unwrap_or_default(),
                parallelism,
                completions,
            })
        })
        .collect();
    (!resizes.is_empty()).then_some(Action::ResizeJobs(resizes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job_builder::build_job;

    fn jobset(parallelism: i32, completions: i32) -> JobSet {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
            "metadata": {"name": "js", "namespace": "ns", "uid": "u"},
            "spec": {"replicatedJobs": [
                {"name": "workers", "replicas": 2, "template": {"spec": {
                    "completionMode": "Indexed",
                    "parallelism": parallelism, "completions": completions,
                    "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}},
                {"name": "driver", "template": {"spec": {
                    "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}}
            ]}
        }))
        .unwrap()
    }

    fn jobs_of(js: &JobSet) -> Vec<Job> {
        js.spec
            .replicated_jobs
            .iter()
            .flat_map(|r| (0..r.replicas()).map(move |i| build_job(js, r, i, false)))
            .collect()
    }

    #[test]
    fn jobs_of_the_old_size_are_resized_and_the_others_left_alone() {
        let jobs = jobs_of(&jobset(2, 2));
        let refs: Vec<&Job> = jobs.iter().collect();
        assert_eq!(plan_scaling(&jobset(2, 2), &refs), None);
        let Some(Action::ResizeJobs(resizes)) = plan_scaling(&jobset(4, 4), &refs) else {
            panic!("a resize was expected");
        };
        let names: Vec<&str> = resizes.iter().map(|r| r.job.as_str()).collect();
        assert_eq!(names, ["js-workers-0", "js-workers-1"]);
        assert!(
            resizes
                .iter()
                .all(|r| r.parallelism == Some(4) && r.completions == Some(4))
        );
    }

    #[test]
    fn a_template_that_sets_no_size_matches_the_sizes_the_api_server_gave() {
        let mut js = jobset(2, 2);
        let mut jobs = jobs_of(&js);
        for job in &mut jobs {
            let spec = job.spec.as_mut().unwrap();
            spec.parallelism = Some(1);
            spec.completions = Some(1);
        }
        let spec = js.spec.replicated_jobs[0].template.spec.as_mut().unwrap();
        spec.parallelism = None;
        spec.completions = None;
        let refs: Vec<&Job> = jobs.iter().collect();
        assert_eq!(plan_scaling(&js, &refs), None);
    }

    #[test]
    fn a_template_with_unequal_sizes_is_not_elastic() {
        let jobs = jobs_of(&jobset(2, 2));
        let refs: Vec<&Job> = jobs.iter().collect();
        assert_eq!(plan_scaling(&jobset(3, 4), &refs), None);
    }

    #[test]
    fn only_the_jobs_handed_in_are_resized() {
        let jobs = jobs_of(&jobset(2, 2));
        let refs: Vec<&Job> = jobs.iter().skip(1).collect();
        let Some(Action::ResizeJobs(resizes)) = plan_scaling(&jobset(1, 1), &refs) else {
            panic!("a resize was expected");
        };
        assert_eq!(resizes.len(), 1);
        assert_eq!(resizes[0].job, "js-workers-1");
    }
}
