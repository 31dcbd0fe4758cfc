//! get and list: selectors, paging with `limit`/`continue`, and the output
//! forms a client can ask for in `Accept` (object, Table, PartialObjectMetadata).

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::errors::ApiError;
use crate::handler::Call;
use crate::registry::ResourceInfo;
use crate::request::ApiResponse;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::sim::Sim;

/// How a client wants objects rendered.
#[derive(Debug, Clone, PartialEq)]
pub enum Form {
    Object,
    Table(String),
    Meta,
}

/// Picks the output form from `Accept` (first acceptable entry wins).
pub fn form_of(accept: &str, include_object: Option<&str>) -> Form {
    for part in accept.split(',') {
        let p = part.replace(' ', "");
        if p.contains("as=Table")
            && p.contains("g=meta.k8s.io")
            && p.contains("v=v1")
            && !p.contains("v=v1beta1")
        {
            return Form::Table(include_object.unwrap_or("Metadata").to_string());
        }
        if p.contains("as=PartialObjectMetadata") && p.contains("v=v1") && !p.contains("v=v1beta1")
        {
            return Form::Meta;
        }
        if p.starts_with("application/json") && !p.contains("as=")
            || p.starts_with("*/*")
            || p.starts_with("application/yaml")
        {
            return Form::Object;
        }
    }
    Form::Object
}

/// The stored object as served in the requested version (CRD versions and
/// the two Event APIs share storage).
pub fn present(info: &ResourceInfo, obj: &Value) -> Value {
    crate::conversion::from_storage(info, obj)
}

/// Like `present`, sharing the stored object when no change is needed.
pub fn present_shared(info: &ResourceInfo, obj: &Arc<Value>) -> Arc<Value> {
    crate::conversion::from_storage_shared(info, obj)
}

/// Strips an object to `PartialObjectMetadata`.
pub fn partial_metadata(obj: &Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
           "metadata": obj.get("metadata").cloned().unwrap_or_default()})
}

/// Listing filters from the query string.
pub(crate) struct Filters {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filters {
    pub fn from_call(call: &Call) -> Result<Self, ApiError> {
        Ok(Filters {
            labels: LabelSelector::parse(call.req.param("labelSelector").unwrap_or_default())?,
            fields: FieldSelector::parse_for(
                &call.info,
                call.req.param("fieldSelector").unwrap_or_default(),
            )?,
        })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }
}

fn continue_token(ns: &str, name: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{ns}/{name}"))
}

fn parse_continue(token: &str) -> Result<(String, String), ApiError> {
    let bad = || ApiError::bad_request("continue key is not valid: invalid token");
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let s = String::from_utf8(raw).map_err(|_| bad())?;
    let (ns, name) = s.split_once('/').ok_or_else(bad)?;
    Ok((ns.to_string(), name.to_string()))
}

impl Sim {
    pub(crate) fn get(&self, call: &Call) -> Result<ApiResponse, ApiError> {
        let obj = self
            .lock()
            .get(&call.info.store_key(), &call.ns, &call.name)
            .ok_or_else(|| {
                ApiError::not_found(&call.info.group, &call.info.resource, &call.name)
            })?;
        let form = form_of(&call.req.accept, call.req.param("includeObject"));
        if form == Form::Object {
            return Ok(ApiResponse::shared(200, present_shared(&call.info, &obj)));
        }
        Ok(ApiResponse::ok(self.render_one(&call.info, &obj, &form)))
    }

    /// One object in the requested form.
    pub(crate) fn render_one(&self, info: &ResourceInfo, obj: &Value, form: &Form) -> Value {
        match form {
            Form::Object => present(info, obj),
            Form::Meta => partial_metadata(obj),
            Form::Table(include) => self.table(info, &[Arc::new(obj.clone())], include, None),
        }
    }

    pub(crate) fn list(&self, call: &Call) -> Result<ApiResponse, ApiError> {
        let filters = Filters::from_call(call)?;
        let limit = match call.req.param("limit") {
            Some(l) if !l.is_empty() => l
                .parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
            _ => 0,
        };
        let start = match call.req.param("continue").filter(|c| !c.is_empty()) {
            Some(c) => Some(parse_continue(c)?),
            None => None,
        };
        let ns = (!call.ns.is_empty()).then_some(call.ns.as_str());
        let (items, rv, more) = {
            let state = self.lock();
            let mut items: Vec<Arc<Value>> = Vec::new();
            let mut more = 0usize;
            for o in state.list(&call.info.store_key(), ns) {
                if let Some((sns, sname)) = &start {
                    let key = (meta(o, "namespace"), meta(o, "name"));
                    if key <= (sns.as_str(), sname.as_str()) {
                        continue;
                    }
                }
                if !filters.matches(o) {
                    continue;
                }
                if limit > 0 && items.len() >= limit {
                    more += 1;
                    continue;
                }
                items.push(o.clone());
            }
            (items, state.rv, more)
        };
        let form = form_of(&call.req.accept, call.req.param("includeObject"));
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if more > 0
            && let Some(last) = items.last()
        {
            metadata["continue"] =
                json!(continue_token(meta(last, "namespace"), meta(last, "name")));
            metadata["remainingItemCount"] = json!(more);
        }
        let body = match &form {
            Form::Table(include) => {
                let mut t = self.table(&call.info, &items, include, Some(rv));
                t["metadata"] = metadata;
                t
            }
            Form::Meta => json!({
                "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                "metadata": metadata,
                "items": items.iter().map(|o| partial_metadata(o)).collect::<Vec<_>>(),
            }),
            Form::Object => json!({
                "apiVersion": call.info.api_version(),
                "kind": call.info.list_kind,
                "metadata": metadata,
                "items": items.iter().map(|o| present(&call.info, o)).collect::<Vec<_>>(),
            }),
        };
        Ok(ApiResponse::ok(body))
    }
}

/// A `metadata` string field, or "".
pub fn meta<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_get_accept_header_asks_for_a_table() {
        let a = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(form_of(a, None), Form::Table("Metadata".into()));
        assert_eq!(form_of("application/json", None), Form::Object);
        assert_eq!(
            form_of(
                "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
                None
            ),
            Form::Meta
        );
    }

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let t = continue_token("ns", "a-b");
        assert_eq!(
            parse_continue(&t).unwrap(),
            ("ns".to_string(), "a-b".to_string())
        );
        assert_eq!(parse_continue("!!").unwrap_err().code, 400);
    }
}
