//! What the controller's memory holds per Job: the side-by-side benchmark
//! on the real control plane measures about 21 KB of resident memory per
//! Job. This bench builds the Jobs of the benchmark's JobSets (8 Jobs of 4
//! pods, one replicated job) as the controller creates them, completes
//! each with what the API server adds (defaults, UIDs, status), and counts
//! the live heap bytes per Job (a counting allocator) held by the Jobs as
//! served and by the controller's Job index, which keeps them slimmed
//! (`index::slim`), beside the Job's size as compact JSON.
//!
//! `cargo bench -p jobset-controller --bench index_memory`

use jobset_api::JobSet;
use jobset_controller::index::{Index, slim};
use jobset_controller::job_builder::build_job;
use k8s_openapi::api::batch::v1::Job;
use serde_json::{Value, json};

#[path = "support/counting.rs"]
mod counting;
use counting::live;

const JOBSETS: usize = 500;
const JOBS_PER_JOBSET: usize = 8;

/// The benchmark's JobSet `n` (tests/differential/bench.py), as the API
/// server stores it.
fn jobset(n: usize) -> JobSet {
    serde_json::from_value(json!({
        "apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
        "metadata": {"name": format!("scale-{n}"), "namespace": "bench",
                     "uid": format!("5d3c0f6e-8a1b-4c2d-9e7f-{n:012}"), "generation": 1},
        "spec": {"replicatedJobs": [{"name": "w", "replicas": JOBS_PER_JOBSET, "template": {"spec": {
            "parallelism": 4, "completions": 4, "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never",
                                  "containers": [{"name": "main", "image": "busybox:1.37"}]}}}}}]},
    }))
    .expect("the benchmark's JobSet parses")
}

/// What kube-apiserver 1.35 adds to a created Job: its identity, the
/// labels the Job controller's defaulting sets, the defaults of the Job
/// and pod specs, and a running status.
fn as_served(job: &Job, n: usize, i: usize) -> Job {
    let mut v = serde_json::to_value(job).expect("a Job serializes");
    let uid = format!("0c9e7a52-41f3-4b8e-a6d0-{:012}", n * JOBS_PER_JOBSET + i);
    let name = v["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let extra = json!({
        "batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
        "controller-uid": uid, "job-name": name,
    });
    let meta = &mut v["metadata"];
    meta["uid"] = json!(uid);
    meta["resourceVersion"] = json!(format!("{}", 100_000 + n * 64 + i));
    meta["generation"] = json!(1);
    meta["creationTimestamp"] = json!("2026-12-06T10:00:00Z");
    merge(&mut meta["labels"], &extra);
    let spec = &mut v["spec"];
    for (k, d) in [
        ("completionMode", json!("Indexed")),
        ("suspend", json!(false)),
        ("manualSelector", json!(false)),
        ("podReplacementPolicy", json!("TerminatingOrFailed")),
    ] {
        if spec.get(k).is_none() {
            spec[k] = d;
        }
    }
    spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    merge(&mut spec["template"]["metadata"]["labels"], &extra);
    let pod = &mut spec["template"]["spec"];
    for (k, d) in [
        ("terminationGracePeriodSeconds", json!(30)),
        ("dnsPolicy", json!("ClusterFirst")),
        ("securityContext", json!({})),
        ("schedulerName", json!("default-scheduler")),
    ] {
        pod[k] = d;
    }
    if let Some(containers) = pod["containers"].as_array_mut() {
        for c in containers {
            c["resources"] = json!({});
            c["terminationMessagePath"] = json!("/dev/termination-log");
            c["terminationMessagePolicy"] = json!("File");
            c["imagePullPolicy"] = json!("IfNotPresent");
        }
    }
    v["status"] = json!({
        "startTime": "2026-12-06T10:00:01Z", "active": 4, "ready": 4, "terminating": 0,
        "uncountedTerminatedPods": {},
    });
    serde_json::from_value(v).expect("the served Job parses")
}

fn merge(into: &mut Value, extra: &Value) {
    if !into.is_object() {
        *into = json!({});
    }
    if let (Some(m), Some(e)) = (into.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            m.insert(k.clone(), v.clone());
        }
    }
}

/// Live heap bytes per Job held by copies of `jobs` made inside the
/// measured window: as they are (in a Vec), or in a fresh index.
fn held_per_job(jobs: &[Job], in_index: bool) -> f64 {
    let index = Index::default();
    let before = live();
    let mut plain = Vec::new();
    for job in jobs {
        if in_index {
            index.upsert_job(job.clone());
        } else {
            plain.push(std::sync::Arc::new(job.clone()));
        }
    }
    let after = live();
    let per = (after - before) as f64 / jobs.len() as f64;
    drop(plain);
    drop(index);
    per
}

fn json_len(jobs: &[Job]) -> f64 {
    jobs.iter()
        .map(|j| serde_json::to_vec(j).map(|b| b.len()).unwrap_or(0))
        .sum::<usize>() as f64
        / jobs.len() as f64
}

fn main() {
    let jobs: Vec<Job> = (0..JOBSETS)
        .flat_map(|n| {
            let js = jobset(n);
            let rjob = js.spec.replicated_jobs[0].clone();
            (0..JOBS_PER_JOBSET)
                .map(move |i| as_served(&build_job(&js, &rjob, i as i32, false), n, i))
        })
        .collect();
    let slimmed: Vec<Job> = jobs
        .iter()
        .cloned()
        .map(|mut j| {
            slim(&mut j);
            j
        })
        .collect();
    let full = held_per_job(&jobs, false);
    let stored = held_per_job(&jobs, true);
    println!(
        "index_memory: {} Jobs ({JOBSETS} JobSets x {JOBS_PER_JOBSET} Jobs of 4 pods)",
        jobs.len()
    );
    println!(
        "  a Job as served:             {full:>8.0} heap bytes per Job; {:>6.0} bytes as JSON",
        json_len(&jobs)
    );
    println!(
        "  a Job in the index (slim):   {stored:>8.0} heap bytes per Job; {:>6.0} bytes as JSON",
        json_len(&slimmed)
    );
    println!(
        "  the index keeps {:.0}% of a served Job's heap",
        100.0 * stored / full
    );
}
