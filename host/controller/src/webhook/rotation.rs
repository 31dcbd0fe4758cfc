//! Self-managed certificates: the CA and serving certificate live in a
//! `kubernetes.io/tls` Secret; a missing, unreadable, expiring or expired
//! one (or one for other DNS names) is regenerated, `caBundle` is patched
//! into both webhook configurations, and the served key swapped in place.
//! Safe with several replicas: the Secret is the single source of truth.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, PostParams};

use super::certs::{CA_FILE, CERT_FILE, CertBundle, CertStore, KEY_FILE};
use super::configurations::patch_ca_bundle;
use crate::error::ControllerError;

/// Annotation on the Secret: the serving certificate's expiry (Unix seconds).
pub const NOT_AFTER_ANNOTATION: &str = "jobset.x-k8s.io/cert-not-after";
/// Annotation on the Secret: the DNS names the certificate was made for.
pub const DNS_NAMES_ANNOTATION: &str = "jobset.x-k8s.io/cert-dns-names";

/// Where and how the certificates are managed.
#[derive(Clone, Debug)]
pub struct ManagedCerts {
    /// Namespace of the Secret (the controller's).
    pub namespace: String,
    /// Name of the Secret.
    pub secret: String,
    /// Names the serving certificate is for.
    pub dns_names: Vec<String>,
    /// The MutatingWebhookConfiguration to patch.
    pub mutating: String,
    /// The ValidatingWebhookConfiguration to patch.
    pub validating: String,
    /// Lifetime of a generated certificate.
    pub validity: Duration,
    /// Renew when less than this is left.
    pub renew_before: Duration,
    /// How often the Secret is checked.
    pub check_every: Duration,
}

/// What [`ManagedCerts::ensure`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// The Secret's certificate is good and is served.
    Loaded,
    /// A new certificate was generated, stored and is served; why.
    Generated(String),
}

fn api_error(action: &str, object: &str, e: kube::Error) -> ControllerError {
    ControllerError::Api {
        action: action.to_string(),
        object: object.to_string(),
        source: Box::new(e),
    }
}

fn text(data: &BTreeMap<String, ByteString>, key: &str) -> Option<String> {
    data.get(key)
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
}

/// The bundle a Secret holds, or why it cannot be used.
fn bundle_of(secret: &Secret, dns_names: &[String]) -> Result<CertBundle, String> {
    let data = secret.data.clone().unwrap_or_default();
    let annotations = secret.metadata.annotations.clone().unwrap_or_default();
    let (Some(ca_pem), Some(cert_pem), Some(key_pem)) = (
        text(&data, CA_FILE),
        text(&data, CERT_FILE),
        text(&data, KEY_FILE),
    ) else {
        return Err(format!("it lacks {CA_FILE}, {CERT_FILE} or {KEY_FILE}"));
    };
    let not_after = annotations
        .get(NOT_AFTER_ANNOTATION)
        .and_then(|v| v.parse::<i64>().ok())
        .ok_or_else(|| format!("annotation {NOT_AFTER_ANNOTATION} is missing or not a number"))?;
    if annotations.get(DNS_NAMES_ANNOTATION) != Some(&dns_names.join(",")) {
        return Err("it was made for other DNS names".to_string());
    }
    let bundle = CertBundle {
        ca_pem,
        cert_pem,
        key_pem,
        not_after,
    };
    bundle.certified_key().map_err(|e| e.to_string())?;
    Ok(bundle)
}

fn secret_for(namespace: &str, name: &str, b: &CertBundle, dns_names: &[String]) -> Secret {
    let data = [
        (CA_FILE, &b.ca_pem),
        (CERT_FILE, &b.cert_pem),
        (KEY_FILE, &b.key_pem),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
    .collect();
    let annotations = [
        (NOT_AFTER_ANNOTATION.to_string(), b.not_after.to_string()),
        (DNS_NAMES_ANNOTATION.to_string(), dns_names.join(",")),
    ]
    .into_iter()
    .collect();
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            annotations: Some(annotations),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".to_string()),
        data: Some(data),
        ..Default::default()
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl ManagedCerts {
    /// One check at `now` (Unix seconds): loads the Secret's certificate, or
    /// generates a new one when it is missing, unusable or due; makes sure
    /// both configurations trust the CA; serves the certificate from `store`.
    pub async fn ensure(
        &self,
        client: &Client,
        store: &CertStore,
        now: i64,
    ) -> Result<Renewal, ControllerError> {
        let api: Api<Secret> = Api::namespaced(client.clone(), &self.namespace);
        let current = api
            .get_opt(&self.secret)
            .await
            .map_err(|e| api_error("read Secret", &self.secret, e))?;
        let renew_before = self.renew_before.as_secs() as i64;
        let why = match current.as_ref().map(|s| bundle_of(s, &self.dns_names)) {
            None => Some("the Secret does not exist".to_string()),
            Some(Err(why)) => Some(format!("the Secret is unusable: {why}")),
            Some(Ok(b)) if b.needs_renewal(now, renew_before) => Some(if b.not_after <= now {
                "the certificate has expired".to_string()
            } else {
                "the certificate expires soon".to_string()
            }),
            Some(Ok(b)) => {
                patch_ca_bundle(client, &self.mutating, &self.validating, &b.ca_pem).await?;
                store.set(b.certified_key()?);
                return Ok(Renewal::Loaded);
            }
        };
        let why = why.unwrap_or_default();
        tracing::info!(secret = %self.secret, reason = %why, "generating the webhook certificate");
        let fresh = CertBundle::generate(&self.dns_names, now, self.validity.as_secs() as i64)?;
        // Trust the new CA before anyone serves a certificate it signed,
        // and keep trusting the old one while other replicas still serve it.
        let previous_ca = current
            .as_ref()
            .and_then(|s| s.data.as_ref())
            .and_then(|d| text(d, CA_FILE))
            .filter(|ca| ca.contains("BEGIN CERTIFICATE"));
        let bundle = match &previous_ca {
            Some(old)
                if current
                    .as_ref()
                    .and_then(|s| bundle_of(s, &self.dns_names).ok())
                    .is_some_and(|b| b.not_after > now) =>
            {
                format!("{}{}", fresh.ca_pem, old)
            }
            _ => fresh.ca_pem.clone(),
        };
        patch_ca_bundle(client, &self.mutating, &self.validating, &bundle).await?;
        let mut secret = secret_for(&self.namespace, &self.secret, &fresh, &self.dns_names);
        match current {
            None => {
                api.create(&PostParams::default(), &secret)
                    .await
                    .map_err(|e| api_error("create Secret", &self.secret, e))?;
            }
            Some(old) => {
                secret.metadata.resource_version = old.metadata.resource_version;
                secret.metadata.labels = old.metadata.labels;
                api.replace(&self.secret, &PostParams::default(), &secret)
                    .await
                    .map_err(|e| api_error("update Secret", &self.secret, e))?;
            }
        }
        store.set(fresh.certified_key()?);
        Ok(Renewal::Generated(why))
    }

    /// Checks now and then every `check_every` until `shutdown`; a failed
    /// check is logged and retried sooner.
    pub async fn run(
        self,
        client: Client,
        store: Arc<CertStore>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            let wait = match self.ensure(&client, &store, unix_now()).await {
                Ok(Renewal::Loaded) => self.check_every,
                Ok(Renewal::Generated(why)) => {
                    tracing::info!(reason = %why, "webhook certificate renewed");
                    self.check_every
                }
                Err(e) => {
                    tracing::warn!(error = %e, "webhook certificate check failed; retrying");
                    Duration::from_secs(5).min(self.check_every)
                }
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
