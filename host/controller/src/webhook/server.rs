//! The HTTPS server: rustls with the certificate from a [`CertStore`]
//! (read per handshake, so renewals apply at once), HTTP/1.1 with hyper,
//! routing AdmissionReviews to the handlers and reading the claims that
//! validation compares templates with.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use jobset_api::FeatureGates;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Client;
use kube::api::Api;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

use super::certs::CertStore;
use super::configurations::{MUTATE_PATH, VALIDATE_PATH};
use super::handlers::{self, Claims};
use crate::error::ControllerError;

/// Largest AdmissionReview accepted (the API server's own request cap).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// What the request handlers share.
pub struct WebhookState {
    /// For reading claims during validation; `None` reads none.
    pub client: Option<Client>,
    /// Feature gates validation honours.
    pub gates: FeatureGates,
    /// The served certificate.
    pub store: Arc<CertStore>,
}

/// A TLS acceptor that presents whatever `store` holds at handshake time.
pub fn acceptor(store: Arc<CertStore>) -> Result<TlsAcceptor, ControllerError> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ControllerError::Webhook(format!("TLS set-up: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn respond(code: u16, body: Vec<u8>) -> http::Response<Full<Bytes>> {
    let mut r = http::Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::OK);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// Reads the claims a CREATE compares its claim templates with (GET each;
/// absent ones are left out).
pub async fn fetch_claims(
    state: &WebhookState,
    req: &AdmissionRequest<DynamicObject>,
) -> Result<Claims, String> {
    let mut claims = Claims::new();
    let (Some(client), Operation::Create) = (&state.client, &req.operation) else {
        return Ok(claims);
    };
    let Some(js) = handlers::requested_jobset(req) else {
        return Ok(claims);
    };
    for (ns, name) in handlers::claims_to_fetch(&js) {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        match api.get_opt(&name).await {
            Ok(Some(pvc)) => {
                claims.insert((ns, name), pvc);
            }
            Ok(None) => {}
            Err(e) => return Err(format!("reading PersistentVolumeClaim {ns}/{name}: {e}")),
        }
    }
    Ok(claims)
}

fn parse_review(body: &[u8]) -> Result<AdmissionRequest<DynamicObject>, String> {
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_slice(body).map_err(|e| e.to_string())?;
    review
        .try_into()
        .map_err(|e: kube::core::admission::ConvertAdmissionReviewError| e.to_string())
}

/// Answers an AdmissionReview sent to `path` inside the process (a
/// simulator in the same process calls it instead of the network). No
/// PersistentVolumeClaims are looked up: such a run starts with none.
pub fn answer_in_process(
    path: &str,
    review: &serde_json::Value,
    gates: FeatureGates,
) -> serde_json::Value {
    let body = serde_json::to_vec(review).unwrap_or_default();
    let response = match parse_review(&body) {
        Err(why) => AdmissionResponse::invalid(format!("not an AdmissionReview: {why}")),
        Ok(request) if path == MUTATE_PATH => handlers::mutate(&request),
        Ok(request) if path == VALIDATE_PATH => {
            handlers::validate(&request, gates, &Claims::default())
        }
        Ok(request) => AdmissionResponse::from(&request).deny(format!("no webhook at {path}")),
    };
    serde_json::from_slice(&handlers::encode_review(response)).unwrap_or_default()
}

/// An in-process webhook endpoint: AdmissionReview in, AdmissionReview out.
pub type InProcessAnswer = Arc<dyn Fn(&serde_json::Value) -> serde_json::Value + Send + Sync>;

/// The webhook URLs under `base` with their in-process answers, for a
/// simulator in this process to call (see [`answer_in_process`]).
pub fn in_process_endpoints(base: &str, gates: FeatureGates) -> Vec<(String, InProcessAnswer)> {
    [MUTATE_PATH, VALIDATE_PATH]
        .into_iter()
        .map(|path| {
            let answer: InProcessAnswer =
                Arc::new(move |review| answer_in_process(path, review, gates));
            (format!("{}{path}", base.trim_end_matches('/')), answer)
        })
        .collect()
}

/// Answers one HTTP request.
pub async fn handle(
    state: Arc<WebhookState>,
    req: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path().to_string();
    if req.method() == http::Method::GET && (path == "/healthz" || path == "/readyz") {
        return Ok(if state.store.is_ready() {
            respond(200, b"ok".to_vec())
        } else {
            respond(503, b"no certificate yet".to_vec())
        });
    }
    if req.method() != http::Method::POST || (path != MUTATE_PATH && path != VALIDATE_PATH) {
        return Ok(respond(404, b"not found".to_vec()));
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let r = AdmissionResponse::invalid(format!("reading the request: {e}"));
            return Ok(respond(400, handlers::encode_review(r)));
        }
    };
    let request = match parse_review(&body) {
        Ok(r) => r,
        Err(why) => {
            let r = AdmissionResponse::invalid(format!("not an AdmissionReview: {why}"));
            return Ok(respond(400, handlers::encode_review(r)));
        }
    };
    let response = if path == MUTATE_PATH {
        handlers::mutate(&request)
    } else {
        match fetch_claims(&state, &request).await {
            Ok(claims) => handlers::validate(&request, state.gates, &claims),
            Err(why) => AdmissionResponse::from(&request).deny(why),
        }
    };
    tracing::debug!(path, uid = %request.uid, allowed = response.allowed, "admission");
    Ok(respond(200, handlers::encode_review(response)))
}

/// Accepts connections on `listener` until `shutdown` resolves.
pub async fn serve_listener(
    listener: TcpListener,
    state: Arc<WebhookState>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ControllerError> {
    let tls = acceptor(state.store.clone())?;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let tls = tls.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let stream = match tls.accept(stream).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "webhook TLS handshake failed");
                    return;
                }
            };
            let svc = hyper::service::service_fn(move |req| handle(state.clone(), req));
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(%peer, error = %e, "webhook connection ended");
            }
        });
    }
}
