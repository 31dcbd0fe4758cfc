//! Objects a pod needs that no component of the simulated cluster provides:
//! the PodGroup its `schedulingGroup` names (workload-aware scheduling) and
//! the DRA resource claims it lists. Such a pod waits, as it would on a
//! cluster without those components; this module only words the reason.

use serde_json::Value;

use super::util::{meta, str_at};
use crate::client::{Resource, SimClient};

fn exists(found: Result<Value, crate::errors::ApiError>) -> bool {
    found.is_ok()
}

/// Why the pod cannot be scheduled because of what it references, if so:
/// every missing reference, so that fixing one does not reveal the next.
pub async fn missing_reference(client: &SimClient, pod: &Value) -> Option<String> {
    let mut reasons = Vec::new();
    let ns = meta(pod, "namespace");
    let group = str_at(pod, "/spec/schedulingGroup/podGroupName");
    if !group.is_empty() {
        let res = Resource::new("scheduling.k8s.io", "v1alpha2", "podgroups");
        if !exists(client.get(&res, Some(ns), group).await) {
            reasons.push(format!(
                "waiting for pod group \"{group}\": no PodGroup of that name in namespace \
                 \"{ns}\" (no workload-aware scheduling in this cluster)"
            ));
        }
    }
    // The first claim is enough to say why the pod waits for devices.
    if let Some(claim) = pod
        .pointer("/spec/resourceClaims")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
    {
        reasons.push(claim_reason(client, ns, claim).await);
    }
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// Why the DRA claim `claim` of a pod in `ns` cannot be allocated.
async fn claim_reason(client: &SimClient, ns: &str, claim: &Value) -> String {
    let name = str_at(claim, "/name");
    let template = str_at(claim, "/resourceClaimTemplateName");
    let (res, object, kind) = if template.is_empty() {
        (
            Resource::new("resource.k8s.io", "v1", "resourceclaims"),
            str_at(claim, "/resourceClaimName"),
            "ResourceClaim",
        )
    } else {
        (
            Resource::new("resource.k8s.io", "v1", "resourceclaimtemplates"),
            template,
            "ResourceClaimTemplate",
        )
    };
    let why = if exists(client.get(&res, Some(ns), object).await) {
        "no DRA driver publishes devices in this cluster".to_string()
    } else {
        format!("{kind} \"{object}\" does not exist in namespace \"{ns}\"")
    };
    format!("cannot allocate resource claim \"{name}\": {why}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{Sim, SimConfig};

    #[tokio::test]
    async fn a_pod_naming_a_missing_pod_group_or_claim_template_is_told_why() {
        let sim = Sim::new(SimConfig::default());
        let client = sim.client("test");
        let grouped = json!({"metadata": {"name": "p", "namespace": "default"},
            "spec": {"schedulingGroup": {"podGroupName": "workers-pg"}}});
        let why = missing_reference(&client, &grouped)
            .await
            .unwrap_or_default();
        assert!(why.contains("pod group \"workers-pg\""), "{why}");
        let claimed = json!({"metadata": {"name": "p", "namespace": "default"},
            "spec": {"resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "gpu-tmpl"}]}});
        let why = missing_reference(&client, &claimed)
            .await
            .unwrap_or_default();
        assert!(
            why.contains("\"gpu\"") && why.contains("ResourceClaimTemplate \"gpu-tmpl\""),
            "{why}"
        );
        let both = json!({"metadata": {"name": "p", "namespace": "default"},
            "spec": {"schedulingGroup": {"podGroupName": "workers-pg"},
                     "resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "gpu-tmpl"}]}});
        let why = missing_reference(&client, &both).await.unwrap_or_default();
        assert!(
            why.contains("pod group \"workers-pg\"")
                && why.contains("ResourceClaimTemplate \"gpu-tmpl\""),
            "both missing references are named: {why}"
        );
        let plain = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {}});
        assert_eq!(missing_reference(&client, &plain).await, None);
    }
}
