//! Admission webhooks for JobSets: defaulting (mutating) and validation
//! (validating) over HTTPS, with certificates either managed here (a
//! Secret, rotated, `caBundle` patched) or mounted (cert-manager). No pod
//! webhook: placement pins each exclusive Job up front (DESIGN.md 8).

pub mod cert_dir;
pub mod certs;
pub mod configurations;
pub mod handlers;
pub mod rotation;
pub mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jobset_api::FeatureGates;
use kube::Client;

pub use cert_dir::CertDir;
pub use certs::{CertBundle, CertStore, service_dns_names};
pub use configurations::Target;
pub use rotation::{ManagedCerts, Renewal};
pub use server::WebhookState;

use crate::error::ControllerError;

/// Defaults of the deploy manifests.
pub const DEFAULT_NAMESPACE: &str = "jobset-system";
pub const DEFAULT_SERVICE: &str = "jobset-webhook-service";
pub const DEFAULT_SECRET: &str = "jobset-webhook-server-cert";

/// Where the serving certificate comes from.
#[derive(Clone, Debug)]
pub enum CertSource {
    /// `tls.crt` and `tls.key` in a mounted directory, re-read periodically.
    Dir {
        path: PathBuf,
        reload_every: Duration,
    },
    /// Generated, stored in a Secret, rotated; `caBundle` patched.
    Managed(ManagedCerts),
}

impl CertSource {
    /// Self-managed certificates for `service` in `namespace`, stored in
    /// `secret`, valid a year and renewed a month before expiry.
    pub fn managed(namespace: &str, service: &str, secret: &str) -> CertSource {
        CertSource::Managed(ManagedCerts {
            namespace: namespace.to_string(),
            secret: secret.to_string(),
            dns_names: service_dns_names(service, namespace),
            mutating: configurations::MUTATING_CONFIGURATION.to_string(),
            validating: configurations::VALIDATING_CONFIGURATION.to_string(),
            validity: Duration::from_secs(365 * 86_400),
            renew_before: Duration::from_secs(30 * 86_400),
            check_every: Duration::from_secs(600),
        })
    }
}

/// How the webhook server runs.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Listen address (upstream: port 9443).
    pub addr: SocketAddr,
    /// The certificate.
    pub certs: CertSource,
    /// Feature gates validation honours.
    pub gates: FeatureGates,
}

/// Serves the webhooks until `shutdown` resolves, keeping the certificate
/// fresh. Fails if the address cannot be bound.
pub async fn serve(
    config: WebhookConfig,
    client: Client,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ControllerError> {
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|e| ControllerError::Webhook(format!("binding {}: {e}", config.addr)))?;
    let store = Arc::new(CertStore::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let certs = match config.certs {
        CertSource::Dir { path, reload_every } => {
            tokio::spawn(CertDir::new(path).run(store.clone(), reload_every, stopped()))
        }
        CertSource::Managed(m) => tokio::spawn(m.run(client.clone(), store.clone(), stopped())),
    };
    let state = Arc::new(WebhookState {
        client: Some(client),
        gates: config.gates,
        store,
    });
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let result = server::serve_listener(listener, state, stopped()).await;
    let _ = certs.await;
    result
}

/// Serves the webhooks on loopback for a local (simulated) API server: a
/// fresh certificate for 127.0.0.1, and both configurations registered by
/// URL with its CA. Returns the bound address once registered.
pub async fn serve_on_loopback(
    client: Client,
    gates: FeatureGates,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<SocketAddr, ControllerError> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| ControllerError::Webhook(format!("binding 127.0.0.1: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ControllerError::Webhook(format!("local address: {e}")))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let bundle = CertBundle::generate(
        &["127.0.0.1".to_string(), "localhost".to_string()],
        now,
        365 * 86_400,
    )?;
    let store = Arc::new(CertStore::default());
    store.set(bundle.certified_key()?);
    let state = Arc::new(WebhookState {
        client: Some(client.clone()),
        gates,
        store,
    });
    tokio::spawn(async move {
        if let Err(e) = server::serve_listener(listener, state, shutdown).await {
            tracing::warn!(error = %e, "webhook server stopped");
        }
    });
    configurations::register(
        &client,
        &Target::Url(format!("https://{addr}")),
        Some(&bundle.ca_pem),
    )
    .await?;
    Ok(addr)
}
