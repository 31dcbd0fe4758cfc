//! Serving certificates for the webhook server: generating a CA and a
//! serving certificate for the Service's DNS names, turning PEM into what
//! rustls serves, and the store the server reads on every handshake, so a
//! renewed certificate is served without a restart.

use std::sync::{Arc, RwLock};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

use crate::error::ControllerError;

/// The Secret keys (and file names in a mounted directory), as cert-manager
/// and `kubernetes.io/tls` Secrets name them.
pub const CERT_FILE: &str = "tls.crt";
pub const KEY_FILE: &str = "tls.key";
pub const CA_FILE: &str = "ca.crt";

const DAY: i64 = 86_400;

fn cert_error(detail: impl std::fmt::Display) -> ControllerError {
    ControllerError::Webhook(format!("webhook certificate: {detail}"))
}

/// A CA and the serving certificate it signed, in PEM, with the serving
/// certificate's expiry (seconds since the epoch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertBundle {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub not_after: i64,
}

/// The DNS names a Service `service` in `namespace` is reached by.
pub fn service_dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

/// The start of the day holding `unix`, and that day as (year, month, day).
fn midnight(unix: i64) -> (i64, (i32, u8, u8)) {
    let days = unix.div_euclid(DAY);
    (days * DAY, civil_from_days(days))
}

impl CertBundle {
    /// A fresh CA and a serving certificate for `dns_names` (an entry that
    /// is an IP address becomes an IP SAN), valid from a day before `now`
    /// until `now + validity_secs`, at day granularity.
    pub fn generate(
        dns_names: &[String],
        now: i64,
        validity_secs: i64,
    ) -> Result<CertBundle, ControllerError> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let (_, (y, m, d)) = midnight(now - DAY);
        let not_before = rcgen::date_time_ymd(y, m, d);
        let (not_after_unix, (y, m, d)) = midnight(now + validity_secs);
        let not_after = rcgen::date_time_ymd(y, m, d);
        let ca_key = KeyPair::generate().map_err(cert_error)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "jobset-webhook-ca");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca_params.not_before = not_before;
        ca_params.not_after = not_after;
        let ca = ca_params.self_signed(&ca_key).map_err(cert_error)?;

        let key = KeyPair::generate().map_err(cert_error)?;
        let mut params = CertificateParams::new(dns_names.to_vec()).map_err(cert_error)?;
        params.distinguished_name.push(
            DnType::CommonName,
            dns_names.first().cloned().unwrap_or_default(),
        );
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.signed_by(&key, &ca, &ca_key).map_err(cert_error)?;
        Ok(CertBundle {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_after: not_after_unix,
        })
    }

    /// Whether the serving certificate expires within `renew_before_secs`
    /// of `now` (or has expired).
    pub fn needs_renewal(&self, now: i64, renew_before_secs: i64) -> bool {
        self.not_after - renew_before_secs <= now
    }

    /// The certificate chain and key as rustls serves them.
    pub fn certified_key(&self) -> Result<Arc<CertifiedKey>, ControllerError> {
        certified_key(&self.cert_pem, &self.key_pem)
    }
}

/// Parses a PEM certificate chain and private key into a served key.
pub fn certified_key(cert_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, ControllerError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| cert_error(format!("{CERT_FILE} is not a PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(cert_error(format!("{CERT_FILE} holds no certificate")));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| cert_error(format!("{KEY_FILE} is not a PEM private key: {e}")))?;
    let signer = tokio_rustls::rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| cert_error(format!("{KEY_FILE}: {e}")))?;
    Ok(Arc::new(CertifiedKey::new(certs, signer)))
}

/// The certificate the server presents; swapped in place on renewal.
#[derive(Debug, Default)]
pub struct CertStore {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl CertStore {
    /// Serves `key` from the next handshake on.
    pub fn set(&self, key: Arc<CertifiedKey>) {
        if let Ok(mut c) = self.current.write() {
            *c = Some(key);
        }
    }

    /// Whether a certificate is loaded (the server is ready to admit).
    pub fn is_ready(&self) -> bool {
        self.current.read().map(|c| c.is_some()).unwrap_or(false)
    }

    /// The DER of the leaf certificate served now.
    pub fn leaf_der(&self) -> Option<Vec<u8>> {
        let c = self.current.read().ok()?;
        Some(c.as_ref()?.cert.first()?.as_ref().to_vec())
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok()?.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_since_the_epoch_become_calendar_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn a_generated_bundle_parses_and_knows_when_to_renew() {
        let now = 1_790_000_000;
        let b = CertBundle::generate(&service_dns_names("svc", "ns"), now, 365 * DAY)
            .expect("generates");
        assert!(b.ca_pem.contains("BEGIN CERTIFICATE"));
        assert!(b.certified_key().is_ok());
        assert!(b.not_after > now + 364 * DAY && b.not_after <= now + 365 * DAY);
        assert!(!b.needs_renewal(now, 30 * DAY));
        assert!(b.needs_renewal(b.not_after - 29 * DAY, 30 * DAY));
        assert!(b.needs_renewal(b.not_after + 1, 0));
    }

    #[test]
    fn garbage_pem_is_an_error_naming_the_file() {
        let err = certified_key("nope", "nope").expect_err("fails");
        assert!(err.to_string().contains(CERT_FILE), "{err}");
    }

    #[test]
    fn the_store_serves_what_was_set_last() {
        let store = CertStore::default();
        assert!(!store.is_ready());
        let a = CertBundle::generate(&["a".into()], 1_790_000_000, DAY).expect("a");
        let b = CertBundle::generate(&["b".into()], 1_790_000_000, DAY).expect("b");
        store.set(a.certified_key().expect("a"));
        let first = store.leaf_der();
        store.set(b.certified_key().expect("b"));
        assert!(store.is_ready());
        assert_ne!(first, store.leaf_der());
    }

    #[test]
    fn service_names_cover_the_short_and_full_forms() {
        let names = service_dns_names("jobset-webhook-service", "jobset-system");
        assert!(names.contains(&"jobset-webhook-service.jobset-system.svc".to_string()));
        assert_eq!(names.len(), 4);
    }
}
