//! HTTPS calls to webhooks: a rustls client trusting exactly the webhook's
//! `caBundle`, one HTTP/1.1 request per call.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto};

fn connector(ca_bundle_b64: Option<&str>) -> Result<TlsConnector, String> {
    let b64 = ca_bundle_b64.ok_or("no caBundle: the simulator trusts only a webhook's caBundle")?;
    let pem = STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("caBundle is not base64: {e}"))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("caBundle holds an invalid certificate: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("caBundle certificate rejected: {e}"))?;
    }
    if roots.is_empty() {
        return Err("caBundle holds no certificate".into());
    }
    let config = ClientConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Posts an AdmissionReview over HTTPS, verifying the server against `caBundle`.
pub async fn post_https(
    uri: &http::Uri,
    ca_bundle: Option<&str>,
    review: &Value,
) -> Result<Value, String> {
    let connector = connector(ca_bundle)?;
    let host = uri
        .host()
        .ok_or("the webhook url has no host")?
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let name = ServerName::try_from(host.clone())
        .map_err(|e| format!("invalid server name {host:?}: {e}"))?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("Post {uri:?}: dial tcp: {e}"))?;
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("Post {uri:?}: tls: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let body = serde_json::to_vec(review).map_err(|e| e.to_string())?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let req = http::Request::post(path)
        .header("host", format!("{host}:{port}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("Post {uri:?}: {e}"))?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!("the server responded with {status}"));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("the response is not an AdmissionReview: {e}"))
}

/// A self-signed certificate for 127.0.0.1 and localhost: (certificate PEM, key PEM).
pub fn self_signed() -> Result<(String, String), String> {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .map_err(|e| format!("cannot make a serving certificate: {e}"))?;
    Ok((ck.cert.pem(), ck.key_pair.serialize_pem()))
}

/// A TLS acceptor serving `cert_pem` with `key_pem`.
pub fn acceptor(cert_pem: &str, key_pem: &str) -> Result<tokio_rustls::TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("invalid certificate: {e}"))?;
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("invalid key: {e}"))?;
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| e.to_string())?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_garbage_ca_bundle_is_a_call_failure() {
        assert!(connector(None).is_err());
        assert!(connector(Some("%%%")).is_err());
        assert!(connector(Some(&STANDARD.encode("not a pem"))).is_err());
    }
}
