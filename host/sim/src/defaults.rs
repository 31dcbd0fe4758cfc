//! Server-side defaults for built-in kinds: what a real API server fills in
//! on create (pod phase, Job selector and labels, namespace status, CRD
//! status conditions), so clients see the same shapes.

use serde_json::{Value, json};

use crate::read::meta;
use crate::registry::ResourceInfo;

fn default(obj: &mut Value, pointer: &str, v: Value) {
    let mut cur = obj;
    let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    for (i, p) in parts.iter().enumerate() {
        if !cur.is_object() {
            return;
        }
        if i + 1 == parts.len() {
            if cur.get(*p).is_none_or(Value::is_null) {
                cur[*p] = v;
            }
            return;
        }
        if cur.get(*p).is_none() {
            cur[*p] = json!({});
        }
        cur = &mut cur[*p];
    }
}

fn pod_spec(spec: &mut Value) {
    default(spec, "/restartPolicy", json!("Always"));
    default(spec, "/dnsPolicy", json!("ClusterFirst"));
    default(spec, "/schedulerName", json!("default-scheduler"));
    default(spec, "/terminationGracePeriodSeconds", json!(30));
    default(spec, "/securityContext", json!({}));
    if let Some(cs) = spec.get_mut("containers").and_then(Value::as_array_mut) {
        for c in cs {
            default(c, "/terminationMessagePath", json!("/dev/termination-log"));
            default(c, "/terminationMessagePolicy", json!("File"));
            default(c, "/imagePullPolicy", json!("IfNotPresent"));
        }
    }
}

/// Defaults applied when an object is created.
pub fn on_create(info: &ResourceInfo, obj: &mut Value) {
    match (info.group.as_str(), info.kind.as_str()) {
        ("", "Pod") => {
            if let Some(spec) = obj.get_mut("spec") {
                pod_spec(spec);
            }
            obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
        }
        ("", "Namespace") => {
            let name = meta(obj, "name").to_string();
            default(obj, "/metadata/labels", json!({}));
            obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            obj["status"] = json!({"phase": "Active"});
        }
        ("batch", "Job") => job(obj),
        ("", "Service") => service(obj),
        _ => {}
    }
    on_update(info, obj);
}

fn job(obj: &mut Value) {
    let uid = meta(obj, "uid").to_string();
    let name = meta(obj, "name").to_string();
    let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    job_sizes(spec);
    default(spec, "/backoffLimit", json!(6));
    default(spec, "/completionMode", json!("NonIndexed"));
    default(spec, "/suspend", json!(false));
    default(spec, "/manualSelector", Value::Null);
    if let Some(m) = spec.as_object_mut()
        && m.get("manualSelector").is_some_and(Value::is_null)
    {
        m.remove("manualSelector");
    }
    if spec.get("podReplacementPolicy").is_none() && spec.get("podFailurePolicy").is_none() {
        spec["podReplacementPolicy"] = json!("TerminatingOrFailed");
    }
    if spec.pointer("/manualSelector") != Some(&json!(true)) {
        spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
        let labels = json!({
            "batch.kubernetes.io/controller-uid": uid, "controller-uid": uid,
            "batch.kubernetes.io/job-name": name, "job-name": name,
        });
        default(spec, "/template/metadata/labels", json!({}));
        if let (Some(l), Some(add)) = (
            spec.pointer_mut("/template/metadata/labels")
                .and_then(Value::as_object_mut),
            labels.as_object(),
        ) {
            for (k, v) in add {
                l.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(ps) = spec.pointer_mut("/template/spec") {
        pod_spec(ps);
    }
    // As kube-apiserver: a Job created with no labels of its own takes its
    // pod template's, with the job-name labels but not the controller-uid
    // ones.
    let own_labels = obj
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .is_some_and(|l| !l.is_empty());
    if !own_labels
        && let Some(template) = obj
            .pointer("/spec/template/metadata/labels")
            .and_then(Value::as_object)
    {
        let labels: serde_json::Map<String, Value> = template
            .iter()
            .filter(|(k, _)| !k.ends_with("controller-uid"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !labels.is_empty() {
            obj["metadata"]["labels"] = Value::Object(labels);
        }
    }
}

/// Service defaults, with a cluster IP from 10.96.0.0/12 derived from the uid
/// unless the Service is headless (`clusterIP: None`).
fn service(obj: &mut Value) {
    let uid = meta(obj, "uid").to_string();
    let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    default(spec, "/type", json!("ClusterIP"));
    default(spec, "/sessionAffinity", json!("None"));
    let external = matches!(
        spec.get("type").and_then(Value::as_str),
        Some("ExternalName")
    );
    if !external {
        default(spec, "/ipFamilies", json!(["IPv4"]));
        default(spec, "/ipFamilyPolicy", json!("SingleStack"));
        default(spec, "/internalTrafficPolicy", json!("Cluster"));
        let ip = spec
            .get("clusterIP")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let ip = if ip.is_empty() {
            let h = uid
                .bytes()
                .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
            format!(
                "10.{}.{}.{}",
                96 + (h >> 16) % 16,
                (h >> 8) & 0xff,
                (h & 0xff).max(1)
            )
        } else {
            ip
        };
        spec["clusterIP"] = json!(ip);
        spec["clusterIPs"] = json!([ip]);
    }
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            default(p, "/protocol", json!("TCP"));
            if let Some(port) = p.get("port").cloned() {
                default(p, "/targetPort", port);
            }
        }
    }
    obj["status"] = json!({"loadBalancer": {}});
}

/// Defaults refreshed on every write (CRD status follows its spec).
/// A Job's `completions` and `parallelism` when unset, on every write as
/// kube-apiserver defaults them (a patch that clears them gets them back);
/// likewise a pod-failure-policy rule's condition `status` (True), and an
/// empty `onPodConditions` list, which its Go types do not keep.
fn job_sizes(spec: &mut Value) {
    if let Some(rules) = spec
        .pointer_mut("/podFailurePolicy/rules")
        .and_then(Value::as_array_mut)
    {
        for rule in rules.iter_mut().filter_map(Value::as_object_mut) {
            match rule
                .get_mut("onPodConditions")
                .and_then(Value::as_array_mut)
            {
                Some(conds) if conds.is_empty() => {
                    rule.remove("onPodConditions");
                }
                Some(conds) => {
                    for c in conds.iter_mut().filter_map(Value::as_object_mut) {
                        if c.get("status").is_none_or(|s| s.is_null() || s == "") {
                            c.insert("status".into(), json!("True"));
                        }
                    }
                }
                None => {}
            }
        }
    }
    let completions_set = spec.get("completions").is_some_and(|c| !c.is_null());
    if !completions_set && spec.get("parallelism").is_none_or(Value::is_null) {
        spec["completions"] = json!(1);
    }
    default(spec, "/parallelism", json!(1));
}

pub fn on_update(info: &ResourceInfo, obj: &mut Value) {
    if info.group == "batch"
        && info.kind == "Job"
        && let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object())
    {
        job_sizes(spec);
    }
    if info.group == "apiextensions.k8s.io" && info.kind == "CustomResourceDefinition" {
        let names = obj.pointer("/spec/names").cloned().unwrap_or_default();
        let stored: Vec<Value> = obj
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
            .filter_map(|v| v.get("name").cloned())
            .collect();
        let t = obj
            .pointer("/metadata/creationTimestamp")
            .cloned()
            .unwrap_or_default();
        obj["status"] = json!({
            "acceptedNames": names,
            "storedVersions": stored,
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": t},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": t}
            ]
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    #[test]
    fn a_new_job_gets_its_selector_labels_and_counters_defaulted() {
        let info = Registry::with_builtins()
            .get("batch", "v1", "jobs")
            .unwrap();
        let mut j = json!({"metadata": {"name": "pi", "uid": "u"}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}});
        on_create(&info, &mut j);
        assert_eq!(j["spec"]["completions"], 1);
        assert_eq!(j["spec"]["backoffLimit"], 6);
        assert_eq!(
            j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
            "u"
        );
        assert_eq!(
            j["spec"]["template"]["metadata"]["labels"]["job-name"],
            "pi"
        );
        // No labels of its own: the template's, without the controller-uid.
        assert_eq!(
            j["metadata"]["labels"],
            json!({"batch.kubernetes.io/job-name": "pi", "job-name": "pi"})
        );
        let mut own = json!({"metadata": {"name": "pi", "uid": "u", "labels": {"team": "a"}}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}});
        on_create(&info, &mut own);
        assert_eq!(own["metadata"]["labels"], json!({"team": "a"}));
    }

    #[test]
    fn services_get_a_cluster_ip_unless_headless() {
        let info = Registry::with_builtins().get("", "v1", "services").unwrap();
        let mut svc =
            json!({"metadata": {"name": "s", "uid": "u1"}, "spec": {"ports": [{"port": 80}]}});
        on_create(&info, &mut svc);
        let ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
        assert!(ip.starts_with("10.") && svc["spec"]["clusterIPs"][0] == json!(ip));
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
        let mut headless =
            json!({"metadata": {"name": "h", "uid": "u2"}, "spec": {"clusterIP": "None"}});
        on_create(&info, &mut headless);
        assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
    }

    #[test]
    fn pod_failure_policy_conditions_default_to_true_and_an_empty_list_goes() {
        let info = Registry::with_builtins()
            .get("batch", "v1", "jobs")
            .unwrap();
        let mut j = json!({"metadata": {"name": "w", "uid": "u"}, "spec": {"template": {},
        "podFailurePolicy": {"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}, "onPodConditions": []}
        ]}}});
        on_create(&info, &mut j);
        let rules = &j["spec"]["podFailurePolicy"]["rules"];
        assert_eq!(rules[0]["onPodConditions"][0]["status"], "True");
        assert!(rules[1].get("onPodConditions").is_none(), "{rules}");
    }

    #[test]
    fn a_job_with_only_parallelism_keeps_completions_unset() {
        let info = Registry::with_builtins()
            .get("batch", "v1", "jobs")
            .unwrap();
        let mut j = json!({"metadata": {"name": "w", "uid": "u"}, "spec": {"parallelism": 3, "template": {}}});
        on_create(&info, &mut j);
        assert!(j["spec"].get("completions").is_none());
        assert_eq!(j["spec"]["parallelism"], 3);
    }
}
