//! Authentication by bearer token and RBAC authorisation against Roles,
//! ClusterRoles and their bindings, answering 401/403 as a real server does.

use serde_json::Value;

use crate::errors::{ApiError, qualified};
use crate::selectors::LabelSelector;
use crate::sim::Sim;
use crate::store::State;

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    /// A cluster administrator (member of `system:masters`).
    pub fn admin() -> Self {
        UserInfo {
            name: "system:admin".into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        }
    }

    /// The identity of a ServiceAccount's token.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        UserInfo {
            name: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
        }
    }
}

/// What a request wants to do, in RBAC's terms.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub sub: Option<&'a str>,
    pub namespace: &'a str,
    pub name: &'a str,
}

impl Sim {
    /// Registers a token for a ServiceAccount and returns it.
    pub fn mint_service_account_token(&self, namespace: &str, name: &str) -> String {
        let token = format!("sa-{namespace}-{name}-{}", self.resource_version());
        self.add_token(&token, UserInfo::service_account(namespace, name));
        token
    }

    /// Registers a bearer token for a user.
    pub fn add_token(&self, token: &str, user: UserInfo) {
        if let Ok(mut t) = self.shared.tokens.lock() {
            t.insert(token.to_string(), user);
        }
    }

    /// Who the request is from; with RBAC off everyone is an administrator.
    pub(crate) fn authenticate(&self, token: Option<&str>) -> Result<UserInfo, ApiError> {
        if !self.shared.config.rbac {
            return Ok(UserInfo::admin());
        }
        let found = token.and_then(|t| self.shared.tokens.lock().ok()?.get(t).cloned());
        found.ok_or_else(|| ApiError::new(401, "Unauthorized", "Unauthorized"))
    }

    /// Checks a resource request against RBAC when it is on.
    pub(crate) fn authorize(&self, user: &UserInfo, a: &Attributes<'_>) -> Result<(), ApiError> {
        if !self.shared.config.rbac || user.groups.iter().any(|g| g == "system:masters") {
            return Ok(());
        }
        if allowed(&self.lock(), user, a) {
            return Ok(());
        }
        let res = match a.sub {
            Some(s) => format!("{}/{s}", a.resource),
            None => a.resource.to_string(),
        };
        let who = if a.name.is_empty() {
            qualified(a.group, a.resource)
        } else {
            format!("{} \"{}\"", qualified(a.group, a.resource), a.name)
        };
        let scope = if a.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace \"{}\"", a.namespace)
        };
        Err(ApiError {
            details: Some(
                serde_json::json!({"name": a.name, "group": a.group, "kind": a.resource}),
            ),
            ..ApiError::new(
                403,
                "Forbidden",
                format!(
                    "{who} is forbidden: User \"{}\" cannot {} resource \"{res}\" in API group \"{}\" {scope}",
                    user.name, a.verb, a.group
                ),
            )
        })
    }
}

fn strs(v: &Value, field: &str) -> Vec<String> {
    v.get(field)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(String::from))
        .collect()
}

fn subject_matches(s: &Value, user: &UserInfo, binding_ns: &str) -> bool {
    let kind = s.get("kind").and_then(Value::as_str).unwrap_or_default();
    let name = s.get("name").and_then(Value::as_str).unwrap_or_default();
    match kind {
        "User" => user.name == name,
        "Group" => user.groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            let ns = s
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_ns);
            user.name == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

fn rule_allows(rule: &Value, a: &Attributes<'_>) -> bool {
    let has = |field: &str, want: &str| strs(rule, field).iter().any(|x| x == "*" || x == want);
    let res = match a.sub {
        Some(s) => format!("{}/{s}", a.resource),
        None => a.resource.to_string(),
    };
    let resource_ok = strs(rule, "resources").iter().any(|r| {
        r == "*"
            || *r == res
            || (a.sub.is_some() && *r == format!("*/{}", a.sub.unwrap_or_default()))
    });
    let names = strs(rule, "resourceNames");
    let name_ok = names.is_empty() || (!a.name.is_empty() && names.iter().any(|n| n == a.name));
    has("verbs", a.verb) && has("apiGroups", a.group) && resource_ok && name_ok
}

fn role_rules(state: &State, role_ref: &Value, binding_ns: &str) -> Vec<Value> {
    let kind = role_ref
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = role_ref
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let role = match kind {
        "ClusterRole" => state.get("rbac.authorization.k8s.io/clusterroles", "", name),
        "Role" => state.get("rbac.authorization.k8s.io/roles", binding_ns, name),
        _ => None,
    };
    let Some(role) = role else { return Vec::new() };
    let mut rules = role
        .get("rules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    // An aggregated ClusterRole also holds the rules of the ClusterRoles it selects.
    let selectors = role
        .pointer("/aggregationRule/clusterRoleSelectors")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for sel in selectors {
        let Ok(sel) = LabelSelector::from_object(&sel) else {
            continue;
        };
        for other in state.list("rbac.authorization.k8s.io/clusterroles", None) {
            if other.pointer("/metadata/name") != role.pointer("/metadata/name")
                && sel.matches(other)
            {
                rules.extend(
                    other
                        .get("rules")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                );
            }
        }
    }
    rules
}

/// Answers a SelfSubjectAccessReview for `user`.
pub(crate) fn self_review(sim: &Sim, user: &UserInfo, review: &Value) -> Value {
    let ra = review
        .pointer("/spec/resourceAttributes")
        .cloned()
        .unwrap_or_default();
    let s = |f: &str| {
        ra.get(f)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (verb, group, resource, sub, ns, name) = (
        s("verb"),
        s("group"),
        s("resource"),
        s("subresource"),
        s("namespace"),
        s("name"),
    );
    let attrs = Attributes {
        verb: &verb,
        group: &group,
        resource: &resource,
        sub: (!sub.is_empty()).then_some(sub.as_str()),
        namespace: &ns,
        name: &name,
    };
    let allowed = sim.authorize(user, &attrs).is_ok();
    let mut out = review.clone();
    out["apiVersion"] = serde_json::json!("authorization.k8s.io/v1");
    out["kind"] = serde_json::json!("SelfSubjectAccessReview");
    out["status"] = serde_json::json!({"allowed": allowed});
    out
}

fn allowed(state: &State, user: &UserInfo, a: &Attributes<'_>) -> bool {
    let check = |binding: &Value, ns: &str| {
        let subjects = binding.get("subjects").and_then(Value::as_array);
        if !subjects
            .into_iter()
            .flatten()
            .any(|s| subject_matches(s, user, ns))
        {
            return false;
        }
        let role_ref = binding.get("roleRef").cloned().unwrap_or_default();
        role_rules(state, &role_ref, ns)
            .iter()
            .any(|r| rule_allows(r, a))
    };
    let cluster = state
        .list("rbac.authorization.k8s.io/clusterrolebindings", None)
        .any(|b| check(b, ""));
    cluster
        || (!a.namespace.is_empty()
            && state
                .list("rbac.authorization.k8s.io/rolebindings", Some(a.namespace))
                .any(|b| check(b, a.namespace)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs<'a>(
        verb: &'a str,
        resource: &'a str,
        sub: Option<&'a str>,
        name: &'a str,
    ) -> Attributes<'a> {
        Attributes {
            verb,
            group: "batch",
            resource,
            sub,
            namespace: "ns",
            name,
        }
    }

    #[test]
    fn rules_match_verbs_subresources_and_resource_names() {
        let rule = json!({"apiGroups": ["batch"], "resources": ["jobs", "jobs/status"], "verbs": ["get", "patch"], "resourceNames": ["a"]});
        assert!(rule_allows(
            &rule,
            &attrs("patch", "jobs", Some("status"), "a")
        ));
        assert!(!rule_allows(
            &rule,
            &attrs("patch", "jobs", Some("status"), "b")
        ));
        assert!(!rule_allows(&rule, &attrs("delete", "jobs", None, "a")));
        assert!(!rule_allows(&rule, &attrs("list", "jobs", None, "")));
    }

    #[test]
    fn service_account_subjects_default_to_the_binding_namespace() {
        let user = UserInfo::service_account("ns", "bot");
        assert!(subject_matches(
            &json!({"kind": "ServiceAccount", "name": "bot"}),
            &user,
            "ns"
        ));
        assert!(!subject_matches(
            &json!({"kind": "ServiceAccount", "name": "bot"}),
            &user,
            "other"
        ));
        assert!(subject_matches(
            &json!({"kind": "Group", "name": "system:serviceaccounts"}),
            &user,
            ""
        ));
    }
}
