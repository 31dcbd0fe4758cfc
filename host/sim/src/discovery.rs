//! Discovery documents: `/api`, `/apis` and each group version's
//! `APIResourceList`, built from the registry so CRDs appear once applied.

use serde_json::{Value, json};

use crate::errors::ApiError;
use crate::registry::{ALL_VERBS, ResourceInfo};
use crate::sim::Sim;

fn resource_entries(info: &ResourceInfo) -> Vec<Value> {
    let mut main = json!({
        "name": info.resource, "singularName": info.singular, "namespaced": info.namespaced,
        "kind": info.kind, "verbs": ALL_VERBS,
    });
    if info.resource == "selfsubjectaccessreviews" {
        main["verbs"] = json!(["create"]);
    }
    if !info.short_names.is_empty() {
        main["shortNames"] = json!(info.short_names);
    }
    let mut cats = info.categories.clone();
    if !info.custom && matches!(info.kind.as_str(), "Pod" | "Service" | "Job") {
        cats.push("all".into());
    }
    if !cats.is_empty() {
        main["categories"] = json!(cats);
    }
    let mut out = vec![main];
    if info.has_status {
        out.push(json!({
            "name": format!("{}/status", info.resource), "singularName": "", "namespaced": info.namespaced,
            "kind": info.kind, "verbs": ["get", "patch", "update"],
        }));
    }
    out
}

impl Sim {
    pub(crate) fn discovery_api(&self) -> Value {
        json!({"kind": "APIVersions", "versions": ["v1"],
               "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
    }

    pub(crate) fn discovery_apis(&self) -> Value {
        let state = self.lock();
        let mut groups: Vec<(String, Vec<String>, String)> = Vec::new();
        for (g, v) in state.registry.group_versions() {
            if g.is_empty() {
                continue;
            }
            match groups.iter_mut().find(|(og, _, _)| *og == g) {
                Some((_, vs, _)) => vs.push(v),
                None => groups.push((g.clone(), vec![v], String::new())),
            }
        }
        for (g, vs, preferred) in groups.iter_mut() {
            let storage = state
                .registry
                .all()
                .find(|i| i.group == *g && i.version == i.storage_version)
                .map(|i| i.version.clone());
            *preferred = storage.unwrap_or_else(|| vs[0].clone());
            vs.sort_by_key(|v| if v == preferred { 0 } else { 1 });
        }
        let list: Vec<Value> = groups
            .iter()
            .map(|(g, vs, preferred)| {
                json!({
                    "name": g,
                    "versions": vs.iter().map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v})).collect::<Vec<_>>(),
                    "preferredVersion": {"groupVersion": format!("{g}/{preferred}"), "version": preferred},
                })
            })
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": list})
    }

    pub(crate) fn discovery_group_version(
        &self,
        group: &str,
        version: &str,
    ) -> Result<Value, ApiError> {
        let infos = self.lock().registry.resources_in(group, version);
        if infos.is_empty() {
            return Err(ApiError::path_not_found());
        }
        let gv = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        let resources: Vec<Value> = infos.iter().flat_map(|i| resource_entries(i)).collect();
        Ok(
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
        )
    }
}
