//! The scheduler's filters, pure, in kube-scheduler's order: unschedulable
//! nodes, taints and tolerations, node selector and required node affinity,
//! resource fit, then inter-pod affinity and anti-affinity by topology key
//! (with namespaces and namespaceSelector). Each failing node yields the
//! reasons kube-scheduler prints, and `fit_error` builds its message.

use std::collections::BTreeMap;

use serde_json::Value;

use super::resources::{allocatable, pod_requests};
use super::util::{meta, str_at};
use crate::selectors::LabelSelector;

/// The cluster as the filters see it.
pub struct World<'a> {
    /// Nodes by name.
    pub nodes: &'a BTreeMap<&'a str, &'a Value>,
    /// Pods bound to a node and not finished, with their node's name.
    pub assigned: Vec<(&'a Value, &'a str)>,
    /// Namespaces by name.
    pub namespaces: &'a BTreeMap<&'a str, &'a Value>,
    /// Requests already placed on each node, in thousandths (`pods` counts pods).
    pub requested: &'a BTreeMap<String, BTreeMap<String, i64>>,
    /// The assigned pods that carry required anti-affinity terms.
    pub anti_holders: Vec<(&'a Value, &'a str)>,
}

/// The assigned pods whose own anti-affinity can keep others away.
pub fn anti_holders<'a>(assigned: &[(&'a Value, &'a str)]) -> Vec<(&'a Value, &'a str)> {
    assigned
        .iter()
        .filter(|(p, _)| !terms(p, "podAntiAffinity").is_empty())
        .copied()
        .collect()
}

fn node_label<'a>(node: &'a Value, key: &str) -> Option<&'a str> {
    node.pointer("/metadata/labels")
        .and_then(|l| l.get(key))
        .and_then(Value::as_str)
}

fn tolerates(tolerations: &[Value], taint: &Value) -> bool {
    let (tk, tv, te) = (
        str_at(taint, "/key"),
        str_at(taint, "/value"),
        str_at(taint, "/effect"),
    );
    tolerations.iter().any(|t| {
        let key = str_at(t, "/key");
        let effect = str_at(t, "/effect");
        if !effect.is_empty() && effect != te {
            return false;
        }
        match str_at(t, "/operator") {
            "Exists" => key.is_empty() || key == tk,
            _ => key == tk && str_at(t, "/value") == tv,
        }
    })
}

fn node_selector_term_matches(term: &Value, node: &Value) -> bool {
    let exprs = term.get("matchExpressions").and_then(Value::as_array);
    let fields = term.get("matchFields").and_then(Value::as_array);
    if exprs.is_none_or(|e| e.is_empty()) && fields.is_none_or(|f| f.is_empty()) {
        return false;
    }
    let check = |e: &Value, value: Option<&str>| {
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let num = |s: &str| s.parse::<i64>().ok();
        match str_at(e, "/operator") {
            "In" => value.is_some_and(|v| values.contains(&v)),
            "NotIn" => !value.is_some_and(|v| values.contains(&v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            "Gt" => {
                matches!((value.and_then(num), values.first().and_then(|v| num(v))), (Some(a), Some(b)) if a > b)
            }
            "Lt" => {
                matches!((value.and_then(num), values.first().and_then(|v| num(v))), (Some(a), Some(b)) if a < b)
            }
            _ => false,
        }
    };
    exprs
        .into_iter()
        .flatten()
        .all(|e| check(e, node_label(node, str_at(e, "/key"))))
        && fields.into_iter().flatten().all(|e| {
            let v = (str_at(e, "/key") == "metadata.name").then(|| meta(node, "name"));
            check(e, v)
        })
}

fn node_affinity_matches(pod: &Value, node: &Value) -> bool {
    let selector_ok = pod
        .pointer("/spec/nodeSelector")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .all(|(k, v)| node_label(node, k) == v.as_str());
    if !selector_ok {
        return false;
    }
    match pod
        .pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
        .and_then(Value::as_array)
    {
        Some(terms) => terms.iter().any(|t| node_selector_term_matches(t, node)),
        None => true,
    }
}

/// Whether `other` (a pod) is selected by `term` of a pod in namespace `term_ns`.
fn term_selects(term: &Value, term_ns: &str, other: &Value, world: &World) -> bool {
    let other_ns = meta(other, "namespace");
    let names: Vec<&str> = term
        .get("namespaces")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let ns_sel = term.get("namespaceSelector").filter(|v| !v.is_null());
    let ns_ok = if names.is_empty() && ns_sel.is_none() {
        other_ns == term_ns
    } else {
        names.contains(&other_ns)
            || ns_sel.is_some_and(|s| {
                LabelSelector::from_object(s).is_ok_and(|sel| {
                    world
                        .namespaces
                        .get(other_ns)
                        .is_some_and(|n| sel.matches(n))
                })
            })
    };
    if !ns_ok {
        return false;
    }
    match term.get("labelSelector").filter(|v| !v.is_null()) {
        None => false,
        Some(s) => LabelSelector::from_object(s).is_ok_and(|sel| sel.matches(other)),
    }
}

fn terms<'a>(pod: &'a Value, kind: &str) -> Vec<&'a Value> {
    pod.get("spec")
        .and_then(|s| s.get("affinity"))
        .and_then(|a| a.get(kind))
        .and_then(|k| k.get("requiredDuringSchedulingIgnoredDuringExecution"))
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn same_domain(world: &World, node: &Value, other_node: &str, key: &str) -> bool {
    let Some(v) = node_label(node, key) else {
        return false;
    };
    world.nodes.get(other_node).and_then(|n| node_label(n, key)) == Some(v)
}

fn inter_pod(pod: &Value, node: &Value, world: &World) -> Option<&'static str> {
    let ns = meta(pod, "namespace");
    for (other, other_node) in &world.anti_holders {
        for t in terms(other, "podAntiAffinity") {
            let key = str_at(t, "/topologyKey");
            if term_selects(t, meta(other, "namespace"), pod, world)
                && same_domain(world, node, other_node, key)
            {
                return Some("node(s) didn't satisfy existing pods anti-affinity rules");
            }
        }
    }
    for t in terms(pod, "podAntiAffinity") {
        let key = str_at(t, "/topologyKey");
        if world
            .assigned
            .iter()
            .any(|(o, n)| term_selects(t, ns, o, world) && same_domain(world, node, n, key))
        {
            return Some("node(s) didn't match pod anti-affinity rules");
        }
    }
    for t in terms(pod, "podAffinity") {
        let key = str_at(t, "/topologyKey");
        let matching: Vec<&str> = world
            .assigned
            .iter()
            .filter(|(o, _)| term_selects(t, ns, o, world))
            .map(|(_, n)| *n)
            .collect();
        // The first pod of a group may go anywhere its own term would select it.
        let first_of_group = matching.is_empty() && term_selects(t, ns, pod, world);
        let ok = node_label(node, key).is_some()
            && (first_of_group || matching.iter().any(|n| same_domain(world, node, n, key)));
        if !ok {
            return Some("node(s) didn't match pod affinity rules");
        }
    }
    None
}

/// Why `pod` cannot go to `node` (empty: it fits).
pub fn reasons(pod: &Value, node: &Value, world: &World) -> Vec<String> {
    let tolerations: Vec<Value> = pod
        .pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        let t =
            serde_json::json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"});
        if !tolerates(&tolerations, &t) {
            return vec!["node(s) were unschedulable".into()];
        }
    }
    for taint in node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let effect = str_at(taint, "/effect");
        if matches!(effect, "NoSchedule" | "NoExecute") && !tolerates(&tolerations, taint) {
            return vec![format!(
                "node(s) had untolerated taint {{{}: {}}}",
                str_at(taint, "/key"),
                str_at(taint, "/value")
            )];
        }
    }
    if !node_affinity_matches(pod, node) {
        return vec!["node(s) didn't match Pod's node affinity/selector".into()];
    }
    let alloc = allocatable(node);
    let empty = BTreeMap::new();
    let used = world.requested.get(meta(node, "name")).unwrap_or(&empty);
    let mut out = Vec::new();
    let pods_used = used.get("pods").copied().unwrap_or(0);
    if let Some(max) = alloc.get("pods")
        && pods_used + 1000 > *max
    {
        out.push("Too many pods".to_string());
    }
    for (res, want) in pod_requests(pod) {
        if want == 0 {
            continue;
        }
        let have = alloc.get(&res).copied().unwrap_or(0) - used.get(&res).copied().unwrap_or(0);
        if want > have {
            out.push(format!("Insufficient {res}"));
        }
    }
    if !out.is_empty() {
        return out;
    }
    inter_pod(pod, node, world)
        .map(|r| vec![r.to_string()])
        .unwrap_or_default()
}

/// kube-scheduler's message: `0/16 nodes are available: 12 node(s) didn't
/// match Pod's node affinity/selector, 4 Insufficient google.com/tpu.`
pub fn fit_error(total: usize, histogram: &BTreeMap<String, usize>) -> String {
    let mut parts: Vec<String> = histogram.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    if parts.is_empty() {
        return format!("0/{total} nodes are available.");
    }
    format!("0/{total} nodes are available: {}.", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, pool: &str, tpu: u32) -> Value {
        json!({"metadata": {"name": name, "labels": {"cloud.google.com/gke-nodepool": pool, "kubernetes.io/hostname": name}},
               "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110", "google.com/tpu": tpu.to_string()}}})
    }

    fn refs(m: &BTreeMap<String, Value>) -> BTreeMap<&str, &Value> {
        m.iter().map(|(k, v)| (k.as_str(), v)).collect()
    }

    fn world<'a>(
        nodes: &'a BTreeMap<&'a str, &'a Value>,
        ns: &'a BTreeMap<&'a str, &'a Value>,
        req: &'a BTreeMap<String, BTreeMap<String, i64>>,
    ) -> World<'a> {
        World {
            nodes,
            assigned: Vec::new(),
            namespaces: ns,
            requested: req,
            anti_holders: Vec::new(),
        }
    }

    #[test]
    fn a_selector_mismatch_and_missing_tpus_give_kube_schedulers_message() {
        let nodes: BTreeMap<String, Value> = [("a", "p", 4), ("b", "q", 0), ("c", "q", 0)]
            .into_iter()
            .map(|(n, p, t)| (n.to_string(), node(n, p, t)))
            .collect();
        let (ns, req) = (BTreeMap::new(), BTreeMap::new());
        let (nr, nsr) = (refs(&nodes), refs(&ns));
        let w = world(&nr, &nsr, &req);
        let pod = json!({"metadata": {"namespace": "default"}, "spec": {"nodeSelector": {"cloud.google.com/gke-nodepool": "q"},
            "containers": [{"resources": {"limits": {"google.com/tpu": 4}}}]}});
        let mut h = BTreeMap::new();
        for n in nodes.values() {
            for r in reasons(&pod, n, &w) {
                *h.entry(r).or_insert(0) += 1;
            }
        }
        assert_eq!(
            fit_error(3, &h),
            "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient google.com/tpu."
        );
    }

    #[test]
    fn required_node_affinity_supports_in_not_in_exists_and_does_not_exist() {
        let n = node("a", "p", 0);
        let pod = |op: &str, values: Value| {
            json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": [{"key": "cloud.google.com/gke-nodepool", "operator": op, "values": values}]}]}}}}})
        };
        assert!(node_affinity_matches(&pod("In", json!(["p"])), &n));
        assert!(!node_affinity_matches(&pod("NotIn", json!(["p"])), &n));
        assert!(node_affinity_matches(&pod("Exists", json!([])), &n));
        assert!(!node_affinity_matches(&pod("DoesNotExist", json!([])), &n));
    }

    #[test]
    fn an_untolerated_no_schedule_taint_is_named_and_a_toleration_lifts_it() {
        let mut n = node("a", "p", 0);
        n["spec"] = json!({"taints": [{"key": "google.com/tpu", "value": "present", "effect": "NoSchedule"}]});
        let nodes = BTreeMap::new();
        let (ns, req) = (BTreeMap::new(), BTreeMap::new());
        let (nr, nsr) = (refs(&nodes), refs(&ns));
        let w = world(&nr, &nsr, &req);
        let pod = json!({"spec": {}});
        assert_eq!(
            reasons(&pod, &n, &w),
            vec!["node(s) had untolerated taint {google.com/tpu: present}".to_string()]
        );
        let tolerant =
            json!({"spec": {"tolerations": [{"key": "google.com/tpu", "operator": "Exists"}]}});
        assert!(reasons(&tolerant, &n, &w).is_empty());
    }

    #[test]
    fn anti_affinity_by_node_pool_keeps_a_second_pod_out_of_the_first_ones_pool() {
        let nodes: BTreeMap<String, Value> = [("a1", "p"), ("a2", "p"), ("b1", "q")]
            .into_iter()
            .map(|(n, p)| (n.to_string(), node(n, p, 0)))
            .collect();
        let term = json!({"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "cloud.google.com/gke-nodepool",
                          "namespaceSelector": {}});
        let pod = |name: &str| {
            json!({"metadata": {"name": name, "namespace": "default", "labels": {"app": "x"}},
            "spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term.clone()]}}}})
        };
        let first = pod("one");
        let ns: BTreeMap<String, Value> = [(
            "default".to_string(),
            json!({"metadata": {"name": "default"}}),
        )]
        .into();
        let req = BTreeMap::new();
        let (nr, nsr) = (refs(&nodes), refs(&ns));
        let mut w = world(&nr, &nsr, &req);
        w.assigned.push((&first, "a1"));
        w.anti_holders = anti_holders(&w.assigned);
        let second = pod("two");
        assert_eq!(
            reasons(&second, &nodes["a2"], &w),
            vec!["node(s) didn't satisfy existing pods anti-affinity rules".to_string()]
        );
        assert!(reasons(&second, &nodes["b1"], &w).is_empty());
    }
}
