//! Admission webhooks registered in configurations: a tiny HTTP webhook in
//! the test mutates and rejects ConfigMaps created through kube-rs.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use jobset_sim::{Sim, SimConfig};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

async fn review(
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, hyper::Error> {
    let path = req.uri().path().to_string();
    let body = req.into_body().collect().await?.to_bytes();
    let review: Value = serde_json::from_slice(&body).unwrap_or_default();
    let uid = review["request"]["uid"].clone();
    let name = review["request"]["object"]["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let response = if path == "/mutate" {
        let patch = json!([{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}]);
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(patch.to_string());
        json!({"uid": uid, "allowed": true, "patchType": "JSONPatch", "patch": encoded})
    } else if name.starts_with("invalid") {
        json!({"uid": uid, "allowed": false, "status": {"code": 422, "reason": "Invalid",
            "message": "ConfigMap \"invalid\" is invalid: data.x: Invalid value: 1",
            "details": {"name": name, "kind": "ConfigMap",
                        "causes": [{"field": "data.x", "reason": "FieldValueInvalid", "message": "Invalid value: 1"}]}}})
    } else if name.starts_with("bad") {
        json!({"uid": uid, "allowed": false, "status": {"code": 403, "message": "names starting with bad are not allowed"}})
    } else {
        json!({"uid": uid, "allowed": true})
    };
    let out = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
    Ok(http::Response::new(Full::new(Bytes::from(out.to_string()))))
}

async fn start_webhook() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, hyper::service::service_fn(review))
                    .await;
            });
        }
    });
    addr
}

fn hook(name: &str, url: String, policy: &str) -> Value {
    json!({"name": name, "clientConfig": {"url": url}, "failurePolicy": policy, "sideEffects": "None",
           "admissionReviewVersions": ["v1"], "timeoutSeconds": 2,
           "objectSelector": {"matchExpressions": [{"key": "skip-webhooks", "operator": "DoesNotExist"}]},
           "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}]})
}

fn cm(name: &str, labels: Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))
        .expect("configmap")
}

/// The API server's answer to creating ConfigMap `name`, which a webhook
/// must refuse.
async fn refused(cms: &Api<ConfigMap>, name: &str) -> Box<kube::core::Status> {
    match cms
        .create(&PostParams::default(), &cm(name, json!(null)))
        .await
    {
        Err(kube::Error::Api(s)) => s,
        other => panic!("expected an API error for {name}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_in_configurations_mutate_and_reject() {
    let addr = start_webhook().await;
    let sim = Sim::new(SimConfig::default());
    let client = kube::Client::new(sim.service(), "default");
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    mutating
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "labeler"},
            "webhooks": [hook("labeler.example.io", format!("http://{addr}/mutate"), "Fail")]}))
            .unwrap(),
        )
        .await
        .unwrap();
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    validating
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "namer"},
            "webhooks": [hook("namer.example.io", format!("http://{addr}/validate"), "Fail")]}))
            .unwrap(),
        )
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let good = cms
        .create(&PostParams::default(), &cm("good", json!(null)))
        .await
        .unwrap();
    assert_eq!(
        good.metadata
            .labels
            .unwrap_or_default()
            .get("mutated")
            .map(String::as_str),
        Some("yes")
    );
    let s = refused(&cms, "bad-name").await;
    assert_eq!(s.code, 403);
    assert!(
        s.message.contains(
            "admission webhook \"namer.example.io\" denied the request: names starting with bad"
        ),
        "{}",
        s.message
    );
    // An Invalid answer keeps its reason and details, as kube-apiserver
    // passes them on (kubectl prints "The ConfigMap "invalid" is invalid:"
    // and the causes from them).
    let s = refused(&cms, "invalid").await;
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    assert!(
        s.message
            .starts_with("admission webhook \"namer.example.io\" denied the request: ConfigMap"),
        "{}",
        s.message
    );
    let details = s.details.as_ref().expect("the webhook's details");
    assert_eq!(details.kind, "ConfigMap");
    assert_eq!(details.causes.len(), 1);
    assert_eq!(details.causes[0].field, "data.x");
    // The objectSelector excludes labelled objects from both webhooks.
    let skipped = cms
        .create(
            &PostParams::default(),
            &cm("bad-but-skipped", json!({"skip-webhooks": "1"})),
        )
        .await
        .unwrap();
    assert!(
        !skipped
            .metadata
            .labels
            .unwrap_or_default()
            .contains_key("mutated")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_webhook_fails_or_is_ignored_by_its_failure_policy() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let sim = Sim::new(SimConfig::default());
    let client = kube::Client::new(sim.service(), "default");
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let cfg = |policy: &str| -> ValidatingWebhookConfiguration {
        serde_json::from_value(json!({"metadata": {"name": "down"}, "webhooks": [hook("down.example.io", format!("http://{closed}/"), policy)]})).unwrap()
    };
    validating
        .create(&PostParams::default(), &cfg("Ignore"))
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(&PostParams::default(), &cm("ignored", json!(null)))
        .await
        .unwrap();
    validating
        .delete("down", &Default::default())
        .await
        .unwrap();
    validating
        .create(&PostParams::default(), &cfg("Fail"))
        .await
        .unwrap();
    let err = cms
        .create(&PostParams::default(), &cm("failed", json!(null)))
        .await
        .unwrap_err();
    let kube::Error::Api(s) = err else {
        panic!("expected an API error")
    };
    assert_eq!(s.code, 500);
    assert!(
        s.message
            .contains("failed calling webhook \"down.example.io\""),
        "{}",
        s.message
    );
}

/// A CA and a server certificate for 127.0.0.1, made with the openssl tool.
fn certificates(dir: &std::path::Path) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .expect("ext");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=sim-test-ca",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.crt",
        "-days",
        "1",
        "-extfile",
        "ext",
    ]);
    let read = |f: &str| std::fs::read(dir.join(f)).expect("read pem");
    (read("ca.crt"), read("srv.crt"), read("srv.key"))
}

async fn start_tls_webhook(cert: Vec<u8>, key: Vec<u8>) -> SocketAddr {
    use rustls_pki_types::pem::PemObject;
    use tokio_rustls::rustls;
    let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(&cert)
        .collect::<Result<_, _>>()
        .expect("certs");
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(&key).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let io = hyper_util::rt::TokioIo::new(tls);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, hyper::service::service_fn(review))
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_webhook_is_trusted_through_its_ca_bundle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = certificates(dir.path());
    let addr = start_tls_webhook(cert, key).await;
    let sim = Sim::new(SimConfig::default());
    let client = kube::Client::new(sim.service(), "default");
    use base64::Engine;
    let bundle = base64::engine::general_purpose::STANDARD.encode(&ca);
    let mut webhook = hook("tls.example.io", format!("https://{addr}/validate"), "Fail");
    webhook["clientConfig"]["caBundle"] = json!(bundle);
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    validating
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "tls"}, "webhooks": [webhook.clone()]}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(&PostParams::default(), &cm("fine", json!(null)))
        .await
        .unwrap();
    let err = cms
        .create(&PostParams::default(), &cm("bad-tls", json!(null)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 403 && s.message.contains("tls.example.io")),
        "{err}"
    );
    // A bundle that does not hold the signing CA fails the call.
    webhook["clientConfig"]["caBundle"] = json!(
        base64::engine::general_purpose::STANDARD
            .encode(std::fs::read(dir.path().join("srv.crt")).unwrap())
    );
    validating.delete("tls", &Default::default()).await.unwrap();
    validating
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "tls"}, "webhooks": [webhook]}))
                .unwrap(),
        )
        .await
        .unwrap();
    let err = cms
        .create(&PostParams::default(), &cm("untrusted", json!(null)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 500),
        "{err}"
    );
}
