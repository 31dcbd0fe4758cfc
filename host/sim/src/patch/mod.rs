//! Patches: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic
//! merge patch for built-in kinds, and server-side apply (`apply`).

pub mod apply;
pub mod json;
pub mod merge;
pub mod strategic;

use serde_json::Value;

use crate::errors::ApiError;

/// Applies a non-apply patch of the given content type to `current`.
pub fn apply_patch(
    content_type: &str,
    current: &Value,
    body: &[u8],
    _kind: &str,
) -> Result<Value, ApiError> {
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    match content_type {
        "application/merge-patch+json" => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            Ok(merge::merge_patch(current, &patch))
        }
        "application/json-patch+json" => json::json_patch(current, &patch),
        "application/strategic-merge-patch+json" => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "a strategic merge patch must be a JSON object",
                ));
            }
            strategic::strategic_merge(current, &patch)
        }
        other => Err(ApiError::unsupported_media_type(other)),
    }
}
