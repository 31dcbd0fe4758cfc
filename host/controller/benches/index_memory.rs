//! What the controller's memory holds per Job: the side-by-side benchmark
//! on the real control plane measures about 21 KB of resident memory per
//! Job; this bench says how much of it the Job index holds. It builds the
//! Jobs of the benchmark's JobSets (8 Jobs of 4 pods, one replicated job)
//! as the controller creates them, completes each with what the API server
//! adds (defaults, UIDs, status), stores 4,000 of them in the index as the
//! Job watch does, and counts the live heap bytes per Job (a counting
//! allocator), beside the Job's size as compact JSON. The same is done
//! with the pod template taken out, to show what a leaner index would
//! keep.
//!
//! `cargo bench -p jobset-controller --bench index_memory`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use jobset_api::JobSet;
use jobset_controller::index::Index;
use jobset_controller::job_builder::build_job;
use k8s_openapi::api::batch::v1::Job;
use serde_json::{Value, json};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only the
// count of live bytes is kept on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const JOBSETS: usize = 500;
const JOBS_PER_JOBSET: usize = 8;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

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

/// Live heap bytes per Job once copies of `jobs`, made inside the
/// measured window, are in a fresh index.
fn held_per_job(jobs: &[Job]) -> f64 {
    let index = Index::default();
    let before = live();
    for job in jobs {
        index.upsert_job(job.clone());
    }
    let after = live();
    let per = (after - before) as f64 / jobs.len() as f64;
    drop(index);
    per
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
    let json_bytes = jobs
        .iter()
        .map(|j| serde_json::to_vec(j).map(|b| b.len()).unwrap_or(0))
        .sum::<usize>() as f64
        / jobs.len() as f64;
    let lean: Vec<Job> = jobs
        .iter()
        .cloned()
        .map(|mut j| {
            if let Some(spec) = j.spec.as_mut() {
                spec.template = Default::default();
            }
            j
        })
        .collect();
    let lean_json = lean
        .iter()
        .map(|j| serde_json::to_vec(j).map(|b| b.len()).unwrap_or(0))
        .sum::<usize>() as f64
        / lean.len() as f64;
    let count = jobs.len();
    let full = held_per_job(&jobs);
    let without_template = held_per_job(&lean);
    println!("index_memory: {count} Jobs ({JOBSETS} JobSets x {JOBS_PER_JOBSET} Jobs of 4 pods)");
    println!(
        "  as stored in the index:        {full:>8.0} heap bytes per Job; {json_bytes:>6.0} bytes as JSON"
    );
    println!(
        "  without the pod template:      {without_template:>8.0} heap bytes per Job; {lean_json:>6.0} bytes as JSON"
    );
    println!(
        "  the pod template's share:      {:>7.0}% of the heap the index holds per Job",
        100.0 * (full - without_template) / full
    );
}
