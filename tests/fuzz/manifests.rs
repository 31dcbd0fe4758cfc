//! Fuzzed manifests through parsing, defaulting and validation (property
//! tests): nothing panics, every validation error names a field, defaulting
//! is idempotent, and a JobSet valid after defaulting stays valid when
//! defaulted again. The checked-in corpus (tests/fuzz-corpus/manifests)
//! is replayed on every run.
//!
//! CI runs 64 cases per property; the long run is
//! `PROPTEST_CASES=20000 cargo test -p jobset-e2e --test fuzz manifests::`.

use std::path::Path;

use jobset_api::validation::{ValidationContext, validate_create};
use proptest::prelude::*;
use serde_json::{Value, json};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
}

/// The properties every manifest must keep, whatever it holds.
fn check(doc: &Value) -> Result<(), String> {
    let Ok(mut js) = jobset_api::parse_jobset_value(doc) else {
        return Ok(());
    };
    jobset_api::defaulting::default_jobset(&mut js);
    let once = serde_json::to_value(&js).map_err(|e| e.to_string())?;
    jobset_api::defaulting::default_jobset(&mut js);
    let twice = serde_json::to_value(&js).map_err(|e| e.to_string())?;
    if once != twice {
        return Err(format!("defaulting is not idempotent:\n{once}\n{twice}"));
    }
    match validate_create(&js, &ValidationContext::default()) {
        Ok(()) => {
            let mut again = js.clone();
            jobset_api::defaulting::default_jobset(&mut again);
            validate_create(&again, &ValidationContext::default())
                .map_err(|e| format!("valid, then invalid after defaulting again: {e}"))?;
        }
        Err(errs) => {
            if errs.errors().is_empty() {
                return Err("a rejection without errors".into());
            }
            for e in errs.errors() {
                if e.path.is_empty() || e.message.is_empty() {
                    return Err(format!("an error without a field path or message: {e:?}"));
                }
            }
        }
    }
    Ok(())
}

fn name() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,12}".prop_map(Value::from),
        ".{0,80}".prop_map(Value::from),
        Just(Value::Null),
        any::<i64>().prop_map(Value::from),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-3i64..5).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        Just(Value::Null),
        Just(json!("3")),
    ]
}

fn template() -> impl Strategy<Value = Value> {
    (
        number(),
        number(),
        prop::sample::select(vec!["Indexed", "NonIndexed", "Bogus"]),
    )
        .prop_map(|(parallelism, completions, mode)| {
            json!({"spec": {"parallelism": parallelism, "completions": completions,
                "completionMode": mode,
                "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}})
        })
}

fn replicated_job() -> impl Strategy<Value = Value> {
    (
        name(),
        number(),
        template(),
        prop::collection::vec(
            (name(), prop::sample::select(vec!["Ready", "Complete", "x"])),
            0..3,
        ),
        prop::option::of(name()),
    )
        .prop_map(|(name, replicas, template, deps, group)| {
            let deps: Vec<Value> = deps
                .into_iter()
                .map(|(n, s)| json!({"name": n, "status": s}))
                .collect();
            let mut rj = json!({"name": name, "replicas": replicas, "template": template});
            if !deps.is_empty() {
                rj["dependsOn"] = json!(deps);
            }
            if let Some(g) = group {
                rj["groupName"] = g;
            }
            rj
        })
}

fn rule() -> impl Strategy<Value = Value> {
    (
        name(),
        prop::sample::select(vec![
            "FailJobSet",
            "RestartJobSet",
            "RestartJobSetAndIgnoreMaxRestarts",
            "RestartJob",
            "Nope",
        ]),
        prop::collection::vec(name(), 0..3),
        prop::collection::vec(".{0,12}", 0..2),
    )
        .prop_map(|(name, action, targets, patterns)| {
            json!({"name": name, "action": action, "targetReplicatedJobs": targets,
                   "onJobFailureReasons": ["BackoffLimitExceeded"],
                   "onJobFailureMessagePatterns": patterns})
        })
}

fn manifest() -> impl Strategy<Value = Value> {
    (
        name(),
        prop::collection::vec(replicated_job(), 0..4),
        prop::option::of((number(), prop::collection::vec(rule(), 0..3))),
        prop::option::of((
            prop::sample::select(vec!["All", "Any", "Some"]),
            prop::collection::vec(name(), 0..3),
        )),
        prop::option::of(prop::sample::select(vec!["AnyOrder", "InOrder", "Random"])),
        prop::option::of(any::<bool>()),
        prop::option::of(number()),
    )
        .prop_map(|(name, rjobs, failure, success, startup, suspend, ttl)| {
            let mut spec = json!({"replicatedJobs": rjobs});
            if let Some((max, rules)) = failure {
                spec["failurePolicy"] = json!({"maxRestarts": max, "rules": rules});
            }
            if let Some((op, targets)) = success {
                spec["successPolicy"] = json!({"operator": op, "targetReplicatedJobs": targets});
            }
            if let Some(order) = startup {
                spec["startupPolicy"] = json!({"startupPolicyOrder": order});
            }
            if let Some(s) = suspend {
                spec["suspend"] = json!(s);
            }
            if let Some(t) = ttl {
                spec["ttlSecondsAfterFinished"] = t;
            }
            json!({"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
                   "metadata": {"name": name, "namespace": "default"}, "spec": spec})
        })
}

/// Arbitrary JSON, to throw at the parser as a whole document or a spec.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,16}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn generated_manifests_keep_the_properties(doc in manifest()) {
        check(&doc).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn arbitrary_json_specs_keep_the_properties(spec in any_json()) {
        let doc = json!({"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
                         "metadata": {"name": "x"}, "spec": spec});
        check(&doc).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn arbitrary_text_never_panics_the_yaml_parser(text in ".{0,400}") {
        let _ = jobset_api::parse_jobset_yaml(&text);
    }
}

#[test]
fn the_checked_in_corpus_keeps_the_properties() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz-corpus/manifests");
    let mut n = 0;
    let mut rejected = 0;
    for entry in std::fs::read_dir(&dir).expect("the corpus exists") {
        let path = entry.expect("a corpus entry").path();
        let text = std::fs::read_to_string(&path).expect("a corpus file reads");
        // Some entries are not even YAML the parser accepts; that is fine.
        if let Ok(doc) = serde_yaml::from_str::<Value>(&text) {
            check(&doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        let valid = jobset_api::parse_jobset_yaml(&text).is_ok_and(|mut js| {
            jobset_api::defaulting::default_jobset(&mut js);
            validate_create(&js, &ValidationContext::default()).is_ok()
        });
        if !valid {
            rejected += 1;
        }
        n += 1;
    }
    assert!(n >= 10, "the corpus holds {n} manifests");
    assert!(
        rejected * 2 > n,
        "the corpus is meant to be mostly invalid: {rejected} of {n} rejected"
    );
}
