//! Resource quantities as the scheduler compares them: `500m`, `4`, `32Gi`,
//! `1e3` parsed to thousandths, and a pod's effective requests (containers
//! summed, init containers as a maximum, limits standing in for missing
//! requests).

use std::collections::BTreeMap;

use serde_json::Value;

/// A quantity in thousandths of its unit, or None when malformed.
pub fn parse_quantity(v: &Value) -> Option<i64> {
    if let Some(n) = v.as_f64() {
        return Some((n * 1000.0).round() as i64);
    }
    let s = v.as_str()?.trim();
    let suffixes: [(&str, f64); 15] = [
        ("Ki", 1024.0),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("Ei", 1024f64.powi(6)),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let (num, scale) = suffixes
        .iter()
        .find_map(|(suf, scale)| s.strip_suffix(suf).map(|n| (n, *scale)))
        .unwrap_or((s, 1.0));
    let n: f64 = num.parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    Some((n * scale * 1000.0).round() as i64)
}

fn add_map(into: &mut BTreeMap<String, i64>, from: Option<&Value>) {
    for (k, v) in from.and_then(Value::as_object).into_iter().flatten() {
        if let Some(q) = parse_quantity(v) {
            *into.entry(k.clone()).or_default() += q;
        }
    }
}

fn container_requests(c: &Value) -> BTreeMap<String, i64> {
    let mut req = BTreeMap::new();
    add_map(&mut req, c.pointer("/resources/requests"));
    let mut lim = BTreeMap::new();
    add_map(&mut lim, c.pointer("/resources/limits"));
    for (k, v) in lim {
        req.entry(k).or_insert(v);
    }
    req
}

/// What a pod asks of a node, in thousandths.
pub fn pod_requests(pod: &Value) -> BTreeMap<String, i64> {
    let mut total: BTreeMap<String, i64> = BTreeMap::new();
    for c in pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for (k, v) in container_requests(c) {
            *total.entry(k).or_default() += v;
        }
    }
    for c in pod
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for (k, v) in container_requests(c) {
            let e = total.entry(k).or_default();
            *e = (*e).max(v);
        }
    }
    total
}

/// A node's allocatable resources, in thousandths.
pub fn allocatable(node: &Value) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    add_map(&mut out, node.pointer("/status/allocatable"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities_parse_with_decimal_and_binary_suffixes() {
        assert_eq!(parse_quantity(&json!("500m")), Some(500));
        assert_eq!(parse_quantity(&json!("4")), Some(4000));
        assert_eq!(parse_quantity(&json!(4)), Some(4000));
        assert_eq!(
            parse_quantity(&json!("1Gi")),
            Some(1024 * 1024 * 1024 * 1000)
        );
        assert_eq!(parse_quantity(&json!("2k")), Some(2_000_000));
        assert_eq!(parse_quantity(&json!("lots")), None);
    }

    #[test]
    fn limits_stand_in_for_missing_requests_and_init_containers_take_the_max() {
        let pod = json!({"spec": {
            "containers": [
                {"resources": {"requests": {"cpu": "1"}, "limits": {"google.com/tpu": 4}}},
                {"resources": {"requests": {"cpu": "500m"}}}],
            "initContainers": [{"resources": {"requests": {"cpu": "2"}}}]}});
        let r = pod_requests(&pod);
        assert_eq!(r.get("cpu"), Some(&2000));
        assert_eq!(r.get("google.com/tpu"), Some(&4000));
    }
}
