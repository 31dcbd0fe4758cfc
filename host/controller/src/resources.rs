//! The JobSet's other children: the headless Service (spec 3.3, 4.9) and
//! the shared PersistentVolumeClaims of `volumeClaimPolicies` (spec 2.4).
//! Pure builders.

use std::collections::BTreeMap;

use jobset_api::labels::JOBSET_NAME_KEY;
use jobset_api::{JobSet, WhenDeleted, naming};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::job_builder::owner_reference;

/// The headless Service: `clusterIP: None`, selecting the JobSet's pods,
/// publishing not-ready addresses unless the spec says otherwise.
pub fn headless_service(js: &JobSet) -> Service {
    let name = js.metadata.name.clone().unwrap_or_default();
    let publish = js
        .spec
        .network
        .as_ref()
        .and_then(|n| n.publish_not_ready_addresses)
        .unwrap_or(true);
    Service {
        metadata: ObjectMeta {
            name: Some(naming::subdomain(&js.spec, &name).to_string()),
            namespace: js.metadata.namespace.clone(),
            owner_references: Some(vec![owner_reference(js)]),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_string()),
            selector: Some(BTreeMap::from([(JOBSET_NAME_KEY.to_string(), name)])),
            publish_not_ready_addresses: Some(publish),
            ..Default::default()
        }),
        status: None,
    }
}

/// Every PVC the JobSet's volume claim policies ask for, named
/// `<claim>-<jobset>`, labelled with the JobSet name, owned by the JobSet
/// unless the policy retains it.
pub fn claims(js: &JobSet) -> Vec<PersistentVolumeClaim> {
    let jobset_name = js.metadata.name.clone().unwrap_or_default();
    let mut out = Vec::new();
    for policy in &js.spec.volume_claim_policies {
        let retain = policy
            .retention_policy
            .as_ref()
            .and_then(|r| r.when_deleted)
            .is_some_and(|w| w == WhenDeleted::Retain);
        for template in &policy.templates {
            let mut labels = template.metadata.labels.clone().unwrap_or_default();
            labels.insert(JOBSET_NAME_KEY.to_string(), jobset_name.clone());
            out.push(PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(naming::pvc_name(template.name(), &jobset_name)),
                    namespace: js.metadata.namespace.clone(),
                    labels: Some(labels),
                    annotations: template.metadata.annotations.clone(),
                    owner_references: (!retain).then(|| vec![owner_reference(js)]),
                    ..Default::default()
                },
                spec: template.spec.clone(),
                status: None,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn js(yaml: &str) -> JobSet {
        serde_yaml::from_str(yaml).expect("fixture parses")
    }

    #[test]
    fn the_headless_service_is_named_after_the_subdomain_and_selects_the_pods() {
        let j = js(
            "metadata: {name: js, namespace: ns}\nspec:\n  network: {subdomain: net, publishNotReadyAddresses: false}\n",
        );
        let svc = headless_service(&j);
        assert_eq!(svc.metadata.name.as_deref(), Some("net"));
        let spec = svc.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.selector.unwrap()[JOBSET_NAME_KEY], "js");
        assert_eq!(spec.publish_not_ready_addresses, Some(false));
        let defaulted = headless_service(&js("metadata: {name: js}\nspec: {}\n"));
        assert_eq!(defaulted.metadata.name.as_deref(), Some("js"));
        assert_eq!(
            defaulted.spec.unwrap().publish_not_ready_addresses,
            Some(true)
        );
    }

    #[test]
    fn retained_claims_have_no_owner() {
        let j = js(r#"
metadata: {name: js, namespace: ns}
spec:
  volumeClaimPolicies:
  - templates: [{metadata: {name: a, labels: {x: y}}}]
  - templates: [{metadata: {name: b}}]
    retentionPolicy: {whenDeleted: Retain}
"#);
        let c = claims(&j);
        assert_eq!(c[0].metadata.name.as_deref(), Some("a-js"));
        assert_eq!(c[0].metadata.labels.as_ref().unwrap()["x"], "y");
        assert_eq!(
            c[0].metadata.labels.as_ref().unwrap()[JOBSET_NAME_KEY],
            "js"
        );
        assert!(c[0].metadata.owner_references.is_some());
        assert_eq!(c[1].metadata.name.as_deref(), Some("b-js"));
        assert!(c[1].metadata.owner_references.is_none());
    }
}
