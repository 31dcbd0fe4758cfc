//! The admission webhook flags of `jobset controller`: where to serve,
//! and whether the certificate is self-managed (a Secret, rotated,
//! `caBundle` patched) or mounted (`--cert-dir`, e.g. cert-manager).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use jobset_api::FeatureGates;
use jobset_controller::webhook::{CertSource, DEFAULT_SECRET, DEFAULT_SERVICE, WebhookConfig};

fn default_namespace() -> String {
    std::env::var("POD_NAMESPACE").unwrap_or_else(|_| crate::run::CONTROLLER_NAMESPACE.to_string())
}

/// Admission webhook options.
#[derive(Debug, clap::Args)]
pub struct WebhookArgs {
    /// Where the JobSet admission webhooks are served over HTTPS.
    #[arg(long, default_value = "0.0.0.0:9443")]
    pub webhook_addr: SocketAddr,
    /// Serve no admission webhooks.
    #[arg(long)]
    pub no_webhooks: bool,
    /// A directory with tls.crt and tls.key (e.g. a cert-manager Secret),
    /// re-read when it changes; without it the certificate is self-managed.
    #[arg(long)]
    pub cert_dir: Option<PathBuf>,
    /// The Service the API server reaches the webhooks through (its DNS
    /// names go into a self-managed certificate).
    #[arg(long, default_value = DEFAULT_SERVICE)]
    pub webhook_service: String,
    /// The Secret holding a self-managed certificate.
    #[arg(long, default_value = DEFAULT_SECRET)]
    pub webhook_secret: String,
    /// Namespace of the webhook Service and Secret (default: $POD_NAMESPACE
    /// or jobset-system).
    #[arg(long, default_value_t = default_namespace())]
    pub webhook_namespace: String,
}

/// The validation gates matching the controller's enabled gates.
pub fn gates(enabled: &[String]) -> FeatureGates {
    FeatureGates::from_enabled(enabled)
}

impl WebhookArgs {
    /// The webhook server's configuration, or `None` with `--no-webhooks`.
    pub fn config(&self, enabled_gates: &[String]) -> Option<WebhookConfig> {
        if self.no_webhooks {
            return None;
        }
        let certs = match &self.cert_dir {
            Some(path) => CertSource::Dir {
                path: path.clone(),
                reload_every: Duration::from_secs(30),
            },
            None => CertSource::managed(
                &self.webhook_namespace,
                &self.webhook_service,
                &self.webhook_secret,
            ),
        };
        Some(WebhookConfig {
            addr: self.webhook_addr,
            certs,
            gates: gates(enabled_gates),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        webhook: WebhookArgs,
    }

    #[test]
    fn without_a_cert_dir_the_certificate_is_self_managed_for_the_service() {
        let cmd = Cmd::parse_from([
            "x",
            "--webhook-service",
            "hooks",
            "--webhook-namespace",
            "ops",
        ]);
        let cfg = cmd.webhook.config(&["RestartJob".into()]).expect("on");
        let CertSource::Managed(m) = cfg.certs else {
            panic!("self-managed expected")
        };
        assert!(m.dns_names.contains(&"hooks.ops.svc".to_string()));
        assert_eq!(m.secret, DEFAULT_SECRET);
        assert!(cfg.gates.restart_job && !cfg.gates.in_place_restart);
    }

    #[test]
    fn a_cert_dir_is_used_as_mounted_and_no_webhooks_turns_them_off() {
        let cmd = Cmd::parse_from([
            "x",
            "--cert-dir",
            "/certs",
            "--webhook-addr",
            "127.0.0.1:9000",
        ]);
        let cfg = cmd.webhook.config(&[]).expect("on");
        assert!(
            matches!(cfg.certs, CertSource::Dir { ref path, .. } if path == &PathBuf::from("/certs"))
        );
        assert_eq!(cfg.addr.port(), 9000);
        let off = Cmd::parse_from(["x", "--no-webhooks"]);
        assert!(off.webhook.config(&[]).is_none());
    }
}
