//! Handler tests driven by AdmissionReview JSON, as the API server sends it.

use super::*;
use kube::core::admission::AdmissionReview;
use serde_json::json;

fn request(op: &str, object: Value, old: Value) -> AdmissionRequest<DynamicObject> {
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "7f1c",
            "kind": {"group": "jobset.x-k8s.io", "version": "v1alpha2", "kind": "JobSet"},
            "resource": {"group": "jobset.x-k8s.io", "version": "v1alpha2", "resource": "jobsets"},
            "name": object.pointer("/metadata/name").cloned().unwrap_or(json!("")),
            "namespace": "default",
            "operation": op,
            "userInfo": {"username": "alice"},
            "object": object,
            "oldObject": old,
            "dryRun": false
        }
    });
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_value(review).expect("a review decodes");
    review.try_into().expect("the review has a request")
}

fn jobset(spec: Value) -> Value {
    json!({
        "apiVersion": "jobset.x-k8s.io/v1alpha2",
        "kind": "JobSet",
        "metadata": {"name": "train", "namespace": "default"},
        "spec": spec
    })
}

fn workers(replicas: i64) -> Value {
    json!({"name": "workers", "replicas": replicas, "template": {"spec": {"template": {"spec": {
        "containers": [{"name": "c", "image": "busybox", "someFutureField": 1}]}}}}})
}

fn patched(response: &AdmissionResponse, original: &Value) -> Value {
    let raw = response.patch.clone().expect("a patch");
    let patch: json_patch::Patch = serde_json::from_slice(&raw).expect("a JSONPatch");
    let mut doc = original.clone();
    json_patch::patch(&mut doc, &patch).expect("the patch applies to the object as sent");
    doc
}

/// The object as the API server stores it after the mutating webhook.
fn defaulted(obj: Value) -> Value {
    let resp = mutate(&request("CREATE", obj.clone(), Value::Null));
    match resp.patch {
        Some(_) => patched(&resp, &obj),
        None => obj,
    }
}

#[test]
fn mutate_defaults_a_created_jobset_with_a_patch_that_applies_to_the_object_as_sent() {
    let obj = jobset(json!({"replicatedJobs": [workers(2)],
        "failurePolicy": {"maxRestarts": 2, "rules": [{"action": "FailJobSet"}]}}));
    let resp = mutate(&request("CREATE", obj.clone(), Value::Null));
    assert!(resp.allowed);
    let out = patched(&resp, &obj);
    assert_eq!(
        out.pointer("/spec/successPolicy/operator"),
        Some(&json!("All"))
    );
    assert_eq!(
        out.pointer("/spec/startupPolicy/startupPolicyOrder"),
        Some(&json!("AnyOrder"))
    );
    assert_eq!(
        out.pointer("/spec/replicatedJobs/0/template/spec/completionMode"),
        Some(&json!("Indexed"))
    );
    assert_eq!(
        out.pointer("/spec/replicatedJobs/0/template/spec/template/spec/restartPolicy"),
        Some(&json!("OnFailure"))
    );
    assert_eq!(
        out.pointer("/spec/network/enableDNSHostnames"),
        Some(&json!(true))
    );
    assert_eq!(
        out.pointer("/spec/failurePolicy/rules/0/name"),
        Some(&json!("failurePolicyRule0"))
    );
    // A field the typed view does not know is neither dropped nor rewritten.
    assert_eq!(
        out.pointer(
            "/spec/replicatedJobs/0/template/spec/template/spec/containers/0/someFutureField"
        ),
        Some(&json!(1))
    );
}

#[test]
fn mutate_leaves_an_already_defaulted_jobset_without_a_patch() {
    let obj = jobset(json!({"replicatedJobs": [workers(1)]}));
    let first = patched(&mutate(&request("CREATE", obj.clone(), Value::Null)), &obj);
    let second = mutate(&request("CREATE", first, Value::Null));
    assert!(second.allowed);
    assert!(second.patch.is_none(), "defaulting twice changes nothing");
}

#[test]
fn mutate_never_touches_an_update() {
    let obj = jobset(json!({"replicatedJobs": [workers(1)]}));
    let resp = mutate(&request("UPDATE", obj.clone(), obj));
    assert!(resp.allowed);
    assert!(resp.patch.is_none());
}

#[test]
fn mutate_adds_a_missing_pod_spec_parent_instead_of_failing() {
    let obj = jobset(json!({"replicatedJobs": [{"name": "w", "template": {}}]}));
    let resp = mutate(&request("CREATE", obj.clone(), Value::Null));
    let out = patched(&resp, &obj);
    assert_eq!(
        out.pointer("/spec/replicatedJobs/0/template/spec/completionMode"),
        Some(&json!("Indexed"))
    );
}

#[test]
fn validate_denies_a_create_with_every_error_and_its_field_path() {
    let obj = jobset(json!({
        "replicatedJobs": [
            {"name": "a", "replicas": 1, "dependsOn": [{"name": "b", "status": "Ready"}],
             "template": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}},
            workers(1)
        ],
        "successPolicy": {"operator": "All", "targetReplicatedJobs": ["nope"]}
    }));
    let resp = validate(
        &request("CREATE", obj, Value::Null),
        FeatureGates::default(),
        &Claims::new(),
    );
    assert!(!resp.allowed);
    assert_eq!(resp.result.code, 422);
    assert_eq!(resp.result.reason, "Invalid");
    let msg = &resp.result.message;
    assert!(msg.contains("spec.replicatedJobs[0].dependsOn"), "{msg}");
    assert!(
        msg.contains("spec.successPolicy.targetReplicatedJobs"),
        "{msg}"
    );
    let causes = resp
        .result
        .details
        .as_ref()
        .map(|d| d.causes.len())
        .unwrap_or(0);
    assert!(
        causes >= 2,
        "one cause per error: {:?}",
        resp.result.details
    );
}

#[test]
fn validate_admits_a_valid_create() {
    let obj = defaulted(jobset(json!({"replicatedJobs": [workers(3)]})));
    let resp = validate(
        &request("CREATE", obj, Value::Null),
        FeatureGates::default(),
        &Claims::new(),
    );
    assert!(resp.allowed, "{:?}", resp.result);
}

#[test]
fn validate_names_the_immutable_field_an_update_touches() {
    let old = defaulted(jobset(json!({"replicatedJobs": [workers(1)]})));
    let mut new = old.clone();
    new["spec"]["replicatedJobs"][0]["replicas"] = json!(4);
    let resp = validate(
        &request("UPDATE", new, old),
        FeatureGates::default(),
        &Claims::new(),
    );
    assert!(!resp.allowed);
    assert!(
        resp.result.message.contains("spec.replicatedJobs"),
        "{}",
        resp.result.message
    );
}

#[test]
fn validate_admits_an_update_that_only_changes_suspend() {
    let old = defaulted(jobset(
        json!({"replicatedJobs": [workers(1)], "suspend": false}),
    ));
    let mut new = old.clone();
    new["spec"]["suspend"] = json!(true);
    let resp = validate(
        &request("UPDATE", new, old),
        FeatureGates::default(),
        &Claims::new(),
    );
    assert!(resp.allowed, "{:?}", resp.result);
}

#[test]
fn validate_reports_a_field_of_the_wrong_type_with_its_path() {
    let obj = jobset(json!({"replicatedJobs": [{"name": "w", "replicas": "two", "template": {}}]}));
    let resp = validate(
        &request("CREATE", obj, Value::Null),
        FeatureGates::default(),
        &Claims::new(),
    );
    assert!(!resp.allowed);
    assert!(
        resp.result
            .message
            .contains("spec.replicatedJobs[0].replicas"),
        "{}",
        resp.result.message
    );
}

#[test]
fn validate_compares_claim_templates_with_the_claims_that_exist() {
    let obj = jobset(json!({
        "replicatedJobs": [{"name": "w", "template": {"spec": {"template": {"spec": {"containers": [
            {"name": "c", "image": "i", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]}}}}}],
        "volumeClaimPolicies": [{"templates": [{"metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"]}}]}]
    }));
    let req = request("CREATE", obj, Value::Null);
    let js = requested_jobset(&req).expect("parses");
    let wanted = claims_to_fetch(&js);
    assert_eq!(
        wanted,
        vec![("default".to_string(), "data-train".to_string())]
    );
    let clash: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "data-train"}, "spec": {"accessModes": ["ReadOnlyMany"]}}))
    .expect("a claim");
    let claims: Claims = [(wanted[0].clone(), clash)].into_iter().collect();
    let resp = validate(&req, FeatureGates::default(), &claims);
    assert!(!resp.allowed);
    assert!(
        resp.result
            .message
            .contains("spec.volumeClaimPolicies[0].templates[0].spec"),
        "{}",
        resp.result.message
    );
    assert!(validate(&req, FeatureGates::default(), &Claims::new()).allowed);
}

#[test]
fn a_denial_serialises_as_an_admission_review_the_api_server_reads() {
    let obj = jobset(json!({"replicatedJobs": [workers(1)], "managedBy": "not a path"}));
    let resp = validate(
        &request("CREATE", obj, Value::Null),
        FeatureGates::default(),
        &Claims::new(),
    );
    let out: Value = serde_json::from_slice(&encode_review(resp)).expect("serialises");
    assert_eq!(out["response"]["uid"], json!("7f1c"));
    assert_eq!(out["response"]["allowed"], json!(false));
    assert_eq!(out["response"]["status"]["code"], json!(422));
    assert!(
        out["response"]["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("spec.managedBy")),
        "{out}"
    );
}

#[test]
fn an_encoded_patch_is_base64_json_patch() {
    use base64::Engine;
    let obj = jobset(json!({"replicatedJobs": [workers(1)]}));
    let resp = mutate(&request("CREATE", obj, Value::Null));
    let out: Value = serde_json::from_slice(&encode_review(resp)).expect("serialises");
    assert_eq!(out["response"]["patchType"], json!("JSONPatch"));
    let text = out["response"]["patch"].as_str().expect("a string");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64");
    let ops: Vec<Value> = serde_json::from_slice(&raw).expect("JSON");
    assert!(
        ops.iter()
            .any(|o| o["path"] == json!("/spec/successPolicy")),
        "{ops:?}"
    );
}
