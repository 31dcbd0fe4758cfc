//! Protobuf request bodies for the few built-in kinds kubectl's typed
//! commands send that way (`kubectl create configmap|secret|namespace|
//! serviceaccount|role|rolebinding|clusterrole|clusterrolebinding`), decoded
//! into the JSON form the rest of the server works on.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use crate::clock::format_rfc3339;
use crate::errors::ApiError;

/// The content type kubectl's typed clients send.
pub const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// How one field decodes.
#[derive(Clone, Copy)]
enum F {
    Str,
    Bool,
    Int,
    Time,
    StrMap,
    BytesMap,
    Msg(&'static [(u64, &'static str, F, bool)]),
}

type Schema = &'static [(u64, &'static str, F, bool)];

const OWNER: Schema = &[
    (1, "kind", F::Str, false),
    (3, "name", F::Str, false),
    (4, "uid", F::Str, false),
    (5, "apiVersion", F::Str, false),
    (6, "controller", F::Bool, false),
    (7, "blockOwnerDeletion", F::Bool, false),
];
const META: Schema = &[
    (1, "name", F::Str, false),
    (2, "generateName", F::Str, false),
    (3, "namespace", F::Str, false),
    (5, "uid", F::Str, false),
    (6, "resourceVersion", F::Str, false),
    (7, "generation", F::Int, false),
    (8, "creationTimestamp", F::Time, false),
    (9, "deletionTimestamp", F::Time, false),
    (11, "labels", F::StrMap, false),
    (12, "annotations", F::StrMap, false),
    (13, "ownerReferences", F::Msg(OWNER), true),
    (14, "finalizers", F::Str, true),
];
const CONFIGMAP: Schema = &[
    (1, "metadata", F::Msg(META), false),
    (2, "data", F::StrMap, false),
    (3, "binaryData", F::BytesMap, false),
    (4, "immutable", F::Bool, false),
];
const SECRET: Schema = &[
    (1, "metadata", F::Msg(META), false),
    (2, "data", F::BytesMap, false),
    (3, "type", F::Str, false),
    (4, "stringData", F::StrMap, false),
    (5, "immutable", F::Bool, false),
];
const NS_SPEC: Schema = &[(1, "finalizers", F::Str, true)];
const NAMESPACE: Schema = &[
    (1, "metadata", F::Msg(META), false),
    (2, "spec", F::Msg(NS_SPEC), false),
];
const NAME_REF: Schema = &[(1, "name", F::Str, false)];
const OBJ_REF: Schema = &[
    (1, "kind", F::Str, false),
    (2, "namespace", F::Str, false),
    (3, "name", F::Str, false),
];
const SA: Schema = &[
    (1, "metadata", F::Msg(META), false),
    (2, "secrets", F::Msg(OBJ_REF), true),
    (3, "imagePullSecrets", F::Msg(NAME_REF), true),
    (4, "automountServiceAccountToken", F::Bool, false),
];
const RULE: Schema = &[
    (1, "verbs", F::Str, true),
    (2, "apiGroups", F::Str, true),
    (3, "resources", F::Str, true),
    (4, "resourceNames", F::Str, true),
    (5, "nonResourceURLs", F::Str, true),
];
const ROLE: Schema = &[
    (1, "metadata", F::Msg(META), false),
    (2, "rules", F::Msg(RULE), true),
];
const SUBJECT: Schema = &[
    (1, "kind", F::Str, false),
    (2, "apiGroup", F::Str, false),
    (3, "name", F::Str, false),
    (4, "namespace", F::Str, false),
];
const ROLE_REF: Schema = &[
    (1, "apiGroup", F::Str, false),
    (2, "kind", F::Str, false),
    (3, "name", F::Str, false),
];
const BINDING: Schema = &[
    (1, "metadata", F::Msg(META), false),
    (2, "subjects", F::Msg(SUBJECT), true),
    (3, "roleRef", F::Msg(ROLE_REF), false),
];

const RESOURCE_ATTRS: Schema = &[
    (1, "namespace", F::Str, false),
    (2, "verb", F::Str, false),
    (3, "group", F::Str, false),
    (4, "version", F::Str, false),
    (5, "resource", F::Str, false),
    (6, "subresource", F::Str, false),
    (7, "name", F::Str, false),
];
const NON_RESOURCE_ATTRS: Schema = &[(1, "path", F::Str, false), (2, "verb", F::Str, false)];
const SSAR_SPEC: Schema = &[
    (1, "resourceAttributes", F::Msg(RESOURCE_ATTRS), false),
    (
        2,
        "nonResourceAttributes",
        F::Msg(NON_RESOURCE_ATTRS),
        false,
    ),
];
const SSAR: Schema = &[
    (1, "metadata", F::Msg(META), false),
    (2, "spec", F::Msg(SSAR_SPEC), false),
];

fn schema_for(kind: &str) -> Option<Schema> {
    Some(match kind {
        "ConfigMap" => CONFIGMAP,
        "Secret" => SECRET,
        "Namespace" => NAMESPACE,
        "ServiceAccount" => SA,
        "Role" | "ClusterRole" => ROLE,
        "RoleBinding" | "ClusterRoleBinding" => BINDING,
        "SelfSubjectAccessReview" => SSAR,
        _ => return None,
    })
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn bad(why: &str) -> ApiError {
    ApiError::bad_request(format!("error decoding protobuf body: {why}"))
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ApiError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| bad("truncated varint"))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad("varint too long"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], ApiError> {
        let len = usize::try_from(self.varint()?).map_err(|_| bad("length"))?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| bad("truncated field"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// Next (field number, wire value); lengths as bytes, varints as numbers.
    fn field(&mut self) -> Result<Option<(u64, Wire<'a>)>, ApiError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            2 => Wire::Len(self.bytes()?),
            1 => {
                self.pos += 8;
                Wire::Skip
            }
            5 => {
                self.pos += 4;
                Wire::Skip
            }
            _ => return Err(bad("unsupported wire type")),
        };
        Ok(Some((key >> 3, wire)))
    }
}

enum Wire<'a> {
    Varint(u64),
    Len(&'a [u8]),
    Skip,
}

fn text(b: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(b.to_vec()).map_err(|_| bad("invalid UTF-8"))
}

fn map_entry(b: &[u8], as_bytes: bool) -> Result<(String, Value), ApiError> {
    let mut r = Reader { buf: b, pos: 0 };
    let (mut k, mut v) = (String::new(), Value::String(String::new()));
    while let Some((n, w)) = r.field()? {
        if let Wire::Len(d) = w {
            match n {
                1 => k = text(d)?,
                2 if as_bytes => v = json!(STANDARD.encode(d)),
                2 => v = json!(text(d)?),
                _ => {}
            }
        }
    }
    Ok((k, v))
}

fn message(b: &[u8], schema: Schema) -> Result<Value, ApiError> {
    let mut out = Map::new();
    let mut r = Reader { buf: b, pos: 0 };
    while let Some((n, w)) = r.field()? {
        let Some((_, name, f, repeated)) = schema.iter().find(|(num, ..)| *num == n) else {
            continue;
        };
        let v = match (f, w) {
            (F::Str, Wire::Len(d)) => json!(text(d)?),
            (F::Bool, Wire::Varint(x)) => json!(x != 0),
            (F::Int, Wire::Varint(x)) => json!(x as i64),
            (F::Time, Wire::Len(d)) => {
                let t = message(d, &[(1, "s", F::Int, false)])?;
                json!(format_rfc3339(t["s"].as_i64().unwrap_or(0)))
            }
            (F::StrMap | F::BytesMap, Wire::Len(d)) => {
                let (k, v) = map_entry(d, matches!(f, F::BytesMap))?;
                let m = out.entry(name.to_string()).or_insert_with(|| json!({}));
                m[k] = v;
                continue;
            }
            (F::Msg(s), Wire::Len(d)) => message(d, s)?,
            _ => return Err(bad(&format!("unexpected wire type for {name}"))),
        };
        if *repeated {
            let list = out.entry(name.to_string()).or_insert_with(|| json!([]));
            if let Some(a) = list.as_array_mut() {
                a.push(v);
            }
        } else {
            out.insert(name.to_string(), v);
        }
    }
    Ok(Value::Object(out))
}

/// Decodes a `k8s\0`-prefixed protobuf body into a JSON object.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let rest = body
        .strip_prefix(b"k8s\0")
        .ok_or_else(|| bad("missing the k8s protobuf prefix"))?;
    let mut r = Reader { buf: rest, pos: 0 };
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    while let Some((n, w)) = r.field()? {
        match (n, w) {
            (1, Wire::Len(tm)) => {
                let t = message(
                    tm,
                    &[(1, "apiVersion", F::Str, false), (2, "kind", F::Str, false)],
                )?;
                api_version = t["apiVersion"].as_str().unwrap_or_default().to_string();
                kind = t["kind"].as_str().unwrap_or_default().to_string();
            }
            (2, Wire::Len(d)) => raw = d,
            _ => {}
        }
    }
    let schema = schema_for(&kind).ok_or_else(|| {
        ApiError::unsupported_media_type(&format!(
            "{PROTOBUF} for kind {kind:?}; send JSON or YAML"
        ))
    })?;
    let mut obj = message(raw, schema)?;
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![((n << 3) | 2) as u8, payload.len() as u8];
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn a_configmap_envelope_decodes_to_json() {
        let meta = field(1, b"cfg");
        let entry = [field(1, b"k"), field(2, b"v")].concat();
        let cm = [field(1, &meta), field(2, &entry)].concat();
        let tm = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
        let body = [b"k8s\0".to_vec(), field(1, &tm), field(2, &cm)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"k": "v"}})
        );
    }

    #[test]
    fn truncated_or_unknown_bodies_are_errors_not_panics() {
        assert_eq!(decode(b"k8s\0\x0a\xff").unwrap_err().code, 400);
        assert_eq!(decode(b"nope").unwrap_err().code, 400);
        let tm = [field(1, b"v1"), field(2, b"Pod")].concat();
        let body = [b"k8s\0".to_vec(), field(1, &tm)].concat();
        assert_eq!(decode(&body).unwrap_err().code, 415);
    }
}
