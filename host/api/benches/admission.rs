//! Cost of admitting a JobSet: parsing YAML (with the unknown-field check),
//! defaulting, CREATE and UPDATE validation, on an example of ours and on a
//! large generated JobSet. Run with `cargo bench -p jobset-api --bench admission`.

use criterion::{Criterion, criterion_group, criterion_main};
use jobset_api::*;

/// One of the repository's own example manifests (`examples/`).
fn example(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A JobSet with `n` replicated jobs, each with dependsOn on the previous
/// one and a failure policy rule, to see how validation scales.
fn large(n: usize) -> String {
    let mut s = String::from(
        "apiVersion: jobset.x-k8s.io/v1alpha2\nkind: JobSet\nmetadata: {name: big, namespace: ns}\nspec:\n  failurePolicy:\n    maxRestarts: 3\n    rules:\n",
    );
    for i in 0..n {
        s += &format!(
            "    - {{name: r{i}, action: RestartJobSet, onJobFailureReasons: [PodFailurePolicy], onJobFailureMessagePatterns: ['oom.*{i}'], targetReplicatedJobs: [rj{i}]}}\n"
        );
    }
    s += "  replicatedJobs:\n";
    for i in 0..n {
        s += &format!("  - name: rj{i}\n    replicas: 4\n");
        if i > 0 {
            s += &format!("    dependsOn: [{{name: rj{}, status: Ready}}]\n", i - 1);
        }
        s += "    template:\n      spec:\n        parallelism: 8\n        completions: 8\n        template:\n          spec:\n            containers: [{name: c, image: busybox, resources: {requests: {cpu: '1'}}}]\n";
    }
    s
}

fn admit(text: &str) -> JobSet {
    let mut js = parse_jobset_yaml(text).expect("bench input parses");
    default_jobset(&mut js);
    validate_create(&js, &ValidationContext::default()).expect("bench input is valid");
    js
}

fn bench(c: &mut Criterion) {
    let seed = example("multislice.yaml");
    let big = large(100);
    // Warm the CRD schema the unknown-field check uses.
    admit(&seed);

    c.bench_function("parse multislice example", |b| {
        b.iter(|| parse_jobset_yaml(&seed))
    });
    c.bench_function("parse + default + validate multislice example", |b| {
        b.iter(|| admit(&seed))
    });
    c.bench_function("parse + default + validate 100 replicated jobs", |b| {
        b.iter(|| admit(&big))
    });
    let old = admit(&big);
    let mut new = old.clone();
    new.spec.suspend = Some(true);
    c.bench_function("validate update of 100 replicated jobs", |b| {
        b.iter(|| validate_update(&old, &new, &ValidationContext::default()))
    });
    c.bench_function("crd_yaml", |b| b.iter(crd_yaml));
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
