//! HTTPS calls to webhooks. TLS client support is not built in: an `https`
//! webhook counts as a failed call (its failurePolicy decides).

use serde_json::Value;

/// Posts an AdmissionReview over HTTPS (not supported: always an error).
pub async fn post_https(
    uri: &http::Uri,
    _ca_bundle: Option<&str>,
    _review: &Value,
) -> Result<Value, String> {
    Err(format!(
        "Post {uri}: https webhooks are not supported by the simulator; use an http:// url"
    ))
}
