//! Self-managed webhook certificates against the simulated API server,
//! which calls the webhooks over HTTPS trusting only `caBundle`: a missing
//! Secret is generated, a good one is reused, an expired one is
//! regenerated and re-patched, and admission works again without a restart.

use std::sync::Arc;
use std::time::Duration;

use jobset_api::{FeatureGates, JobSet};
use jobset_controller::webhook::configurations::{self, Target};
use jobset_controller::webhook::rotation::{DNS_NAMES_ANNOTATION, NOT_AFTER_ANNOTATION};
use jobset_controller::webhook::{
    CertBundle, CertStore, ManagedCerts, Renewal, WebhookState, server,
};
use jobset_sim::{Sim, SimConfig};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

const NS: &str = "jobset-system";
const SECRET: &str = "jobset-webhook-server-cert";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn names() -> Vec<String> {
    vec!["127.0.0.1".to_string(), "localhost".to_string()]
}

fn managed() -> ManagedCerts {
    ManagedCerts {
        namespace: NS.to_string(),
        secret: SECRET.to_string(),
        dns_names: names(),
        mutating: configurations::MUTATING_CONFIGURATION.to_string(),
        validating: configurations::VALIDATING_CONFIGURATION.to_string(),
        validity: Duration::from_secs(365 * 86_400),
        renew_before: Duration::from_secs(30 * 86_400),
        check_every: Duration::from_secs(600),
    }
}

fn jobset(name: &str) -> JobSet {
    serde_json::from_value(json!({
        "apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
        "metadata": {"name": name},
        "spec": {"replicatedJobs": [{"name": "w", "template": {"spec": {"template": {"spec": {
            "containers": [{"name": "c", "image": "busybox"}]}}}}}]}
    }))
    .expect("a JobSet")
}

async fn setup() -> (Client, Arc<CertStore>) {
    let sim = Sim::new(SimConfig::default());
    let client = Client::new(sim.service(), "default");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &jobset_api::crd())
        .await
        .expect("CRD");
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": NS}})).expect("ns"),
    )
    .await
    .expect("namespace");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let store = Arc::new(CertStore::default());
    let state = Arc::new(WebhookState {
        client: Some(client.clone()),
        gates: FeatureGates::default(),
        store: store.clone(),
    });
    tokio::spawn(server::serve_listener(
        listener,
        state,
        std::future::pending::<()>(),
    ));
    configurations::register(&client, &Target::Url(format!("https://{addr}")), Some(""))
        .await
        .expect("configurations registered");
    (client, store)
}

async fn ca_bundle(client: &Client) -> Vec<u8> {
    let v: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let cfg = v
        .get(configurations::VALIDATING_CONFIGURATION)
        .await
        .expect("configuration");
    cfg.webhooks.unwrap_or_default()[0]
        .client_config
        .ca_bundle
        .clone()
        .map(|b| b.0)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_is_generated_and_the_ca_bundle_patched_so_admission_works() {
    let (client, store) = setup().await;
    let m = managed();
    let r = m.ensure(&client, &store, now()).await.expect("ensure");
    assert_eq!(r, Renewal::Generated("the Secret does not exist".into()));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let secret = secrets.get(SECRET).await.expect("the Secret exists");
    let ca = secret.data.clone().unwrap_or_default()["ca.crt"].0.clone();
    assert_eq!(ca_bundle(&client).await, ca, "caBundle is the Secret's CA");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));

    let api: Api<JobSet> = Api::namespaced(client.clone(), "default");
    let created = api
        .create(&PostParams::default(), &jobset("first"))
        .await
        .expect("admitted over HTTPS");
    assert!(
        created.spec.success_policy.is_some(),
        "the mutating webhook defaulted it"
    );

    // A second check reuses the Secret and writes nothing.
    let rv = secret.metadata.resource_version.clone();
    let r = m.ensure(&client, &store, now()).await.expect("ensure");
    assert_eq!(r, Renewal::Loaded);
    assert_eq!(
        secrets
            .get(SECRET)
            .await
            .expect("secret")
            .metadata
            .resource_version,
        rv
    );

    // Deleted: regenerated.
    secrets
        .delete(SECRET, &DeleteParams::default())
        .await
        .expect("delete");
    let r = m.ensure(&client, &store, now()).await.expect("ensure");
    assert_eq!(r, Renewal::Generated("the Secret does not exist".into()));
    api.create(&PostParams::default(), &jobset("after-delete"))
        .await
        .expect("admitted with the regenerated certificate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_blocks_admission_until_it_is_regenerated_without_a_restart() {
    let (client, store) = setup().await;
    let m = managed();
    m.ensure(&client, &store, now()).await.expect("ensure");
    // Replace the Secret with a certificate that expired yesterday, and
    // serve it, as a controller would after a long outage.
    let expired = CertBundle::generate(&names(), now() - 3 * 86_400, 86_400).expect("expired");
    assert!(expired.not_after < now());
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let mut s = secrets.get(SECRET).await.expect("secret");
    let data = s.data.get_or_insert_with(Default::default);
    data.insert(
        "ca.crt".into(),
        ByteString(expired.ca_pem.clone().into_bytes()),
    );
    data.insert(
        "tls.crt".into(),
        ByteString(expired.cert_pem.clone().into_bytes()),
    );
    data.insert(
        "tls.key".into(),
        ByteString(expired.key_pem.clone().into_bytes()),
    );
    let ann = s.metadata.annotations.get_or_insert_with(Default::default);
    ann.insert(NOT_AFTER_ANNOTATION.into(), expired.not_after.to_string());
    ann.insert(DNS_NAMES_ANNOTATION.into(), names().join(","));
    secrets
        .replace(SECRET, &PostParams::default(), &s)
        .await
        .expect("replace");
    configurations::patch_ca_bundle(
        &client,
        configurations::MUTATING_CONFIGURATION,
        configurations::VALIDATING_CONFIGURATION,
        &expired.ca_pem,
    )
    .await
    .expect("patch");
    store.set(expired.certified_key().expect("key"));

    let api: Api<JobSet> = Api::namespaced(client.clone(), "default");
    let err = api
        .create(&PostParams::default(), &jobset("while-expired"))
        .await
        .expect_err("an expired certificate fails the call, and failurePolicy Fail blocks");
    assert!(err.to_string().contains("failed calling webhook"), "{err}");

    let r = m.ensure(&client, &store, now()).await.expect("ensure");
    assert_eq!(r, Renewal::Generated("the certificate has expired".into()));
    let bundle = String::from_utf8(ca_bundle(&client).await).expect("PEM");
    let fresh = secrets.get(SECRET).await.expect("secret");
    let fresh_ca =
        String::from_utf8(fresh.data.unwrap_or_default()["ca.crt"].0.clone()).expect("PEM");
    assert!(bundle.contains(fresh_ca.trim()), "the new CA is trusted");
    assert!(
        !bundle.contains(expired.ca_pem.trim()),
        "the expired CA is dropped"
    );
    api.create(&PostParams::default(), &jobset("after-renewal"))
        .await
        .expect("admitted again without a restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_due_for_renewal_is_rotated_while_the_old_ca_stays_trusted() {
    let (client, store) = setup().await;
    let mut m = managed();
    m.ensure(&client, &store, now()).await.expect("ensure");
    let old = ca_bundle(&client).await;
    // Renew when less than 400 days are left: due at once.
    m.renew_before = Duration::from_secs(400 * 86_400);
    let r = m.ensure(&client, &store, now()).await.expect("ensure");
    assert_eq!(r, Renewal::Generated("the certificate expires soon".into()));
    let bundle = String::from_utf8(ca_bundle(&client).await).expect("PEM");
    let old = String::from_utf8(old).expect("PEM");
    assert!(
        bundle.contains(old.trim()),
        "replicas still serving the old certificate stay trusted"
    );
    assert!(bundle.matches("BEGIN CERTIFICATE").count() == 2, "{bundle}");
    let api: Api<JobSet> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &jobset("rotated"))
        .await
        .expect("admitted with the rotated certificate");
}
