//! Fixtures shared by the validation table tests: a small valid JobSet and
//! accessors into it, and the table runner.
#![allow(dead_code)]

pub mod create;

use jobset_api::{
    ErrorKind, JobSet, PvcLookup, ValidationContext, ValidationErrors, default_jobset,
    validate_create,
};
use k8s_openapi::api::batch::v1::JobSpec;
use k8s_openapi::api::core::v1::PodSpec;

pub const BASE: &str = r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {name: js, namespace: ns}
spec:
  replicatedJobs:
  - name: driver
    replicas: 1
    template:
      spec:
        parallelism: 1
        completions: 1
        template:
          metadata: {labels: {app: x}}
          spec:
            containers:
            - {name: c, image: busybox, volumeMounts: [{name: data, mountPath: /d}]}
  - name: workers
    replicas: 2
    template:
      spec:
        parallelism: 2
        completions: 2
        template:
          spec:
            containers: [{name: c, image: busybox}]
"#;

/// The base JobSet, defaulted as on CREATE.
pub fn base() -> JobSet {
    let mut js: JobSet = serde_yaml::from_str(BASE).expect("fixture parses");
    default_jobset(&mut js);
    js
}

pub fn job(js: &mut JobSet, i: usize) -> &mut JobSpec {
    js.spec.replicated_jobs[i]
        .template
        .spec
        .get_or_insert_with(Default::default)
}

pub fn pod(js: &mut JobSet, i: usize) -> &mut PodSpec {
    job(js, i)
        .template
        .spec
        .get_or_insert_with(Default::default)
}

/// (path, kind) pairs of validation errors, sorted.
pub type Errors = Vec<(String, ErrorKind)>;

/// Sorted (path, kind) pairs of a validation result.
pub fn found(r: Result<(), ValidationErrors>) -> Vec<(String, ErrorKind)> {
    let mut v: Vec<(String, ErrorKind)> = match r {
        Ok(()) => Vec::new(),
        Err(e) => e.0.into_iter().map(|e| (e.path, e.kind)).collect(),
    };
    v.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.as_str().cmp(b.1.as_str())));
    v
}

pub fn expected(e: &[(&str, ErrorKind)]) -> Vec<(String, ErrorKind)> {
    let mut v: Vec<(String, ErrorKind)> = e.iter().map(|(p, k)| (p.to_string(), *k)).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.as_str().cmp(b.1.as_str())));
    v
}

/// Runs every case, then fails listing all the cases whose errors differ.
pub fn run_table(cases: Vec<(&'static str, Errors, Errors)>) -> usize {
    let mut failures = Vec::new();
    let n = cases.len();
    for (name, got, want) in cases {
        if got != want {
            failures.push(format!("{name}:\n  got  {got:?}\n  want {want:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    n
}

/// Runs CREATE cases against the base JobSet with this PVC lookup.
pub fn run_create_table(cases: Vec<create::Case>, pvcs: &dyn PvcLookup) -> usize {
    let mut table = Vec::new();
    for c in cases {
        let mut js = base();
        (c.mutate)(&mut js);
        let ctx = ValidationContext {
            gates: c.gates,
            pvcs,
        };
        table.push((c.name, found(validate_create(&js, &ctx)), expected(&c.want)));
    }
    run_table(table)
}
