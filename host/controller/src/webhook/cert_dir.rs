//! Certificates from a mounted directory (cert-manager, or any Secret
//! volume): `tls.crt` and `tls.key` are read at start and re-read when they
//! change, so a renewed certificate is served without a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::certs::{CERT_FILE, CertStore, KEY_FILE, certified_key};
use crate::error::ControllerError;

/// Watches a certificate directory.
#[derive(Debug)]
pub struct CertDir {
    dir: PathBuf,
    loaded: Option<(String, String)>,
}

fn read(path: &Path) -> Result<String, ControllerError> {
    std::fs::read_to_string(path).map_err(|e| {
        ControllerError::Webhook(format!(
            "webhook certificate: cannot read {}: {e}",
            path.display()
        ))
    })
}

impl CertDir {
    /// A watcher of `dir`; nothing is read yet.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CertDir {
            dir: dir.into(),
            loaded: None,
        }
    }

    /// Loads the certificate into `store` when the files differ from what
    /// was loaded last. Returns whether it (re)loaded. A broken pair leaves
    /// the last good certificate in place and is an error.
    pub fn reload_if_changed(&mut self, store: &CertStore) -> Result<bool, ControllerError> {
        // Secret volumes update through a symlink swap, so read the
        // contents rather than trusting modification times.
        let cert = read(&self.dir.join(CERT_FILE))?;
        let key = read(&self.dir.join(KEY_FILE))?;
        if self.loaded.as_ref() == Some(&(cert.clone(), key.clone())) {
            return Ok(false);
        }
        store.set(certified_key(&cert, &key)?);
        self.loaded = Some((cert, key));
        Ok(true)
    }

    /// Re-reads the directory every `every` until `shutdown`.
    pub async fn run(
        mut self,
        store: Arc<CertStore>,
        every: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            match self.reload_if_changed(&store) {
                Ok(true) => tracing::info!(dir = %self.dir.display(), "webhook certificate loaded"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "webhook certificate not reloaded; the last good one stays")
                }
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::certs::CertBundle;
    use super::*;

    fn write(dir: &Path, b: &CertBundle) {
        std::fs::write(dir.join(CERT_FILE), &b.cert_pem).expect("write cert");
        std::fs::write(dir.join(KEY_FILE), &b.key_pem).expect("write key");
    }

    #[test]
    fn a_renewed_certificate_file_is_served_without_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CertStore::default();
        let mut watcher = CertDir::new(dir.path());
        let a = CertBundle::generate(&["svc".into()], 1_790_000_000, 86_400).expect("a");
        write(dir.path(), &a);
        assert!(watcher.reload_if_changed(&store).expect("loads"));
        let first = store.leaf_der();
        assert!(!watcher.reload_if_changed(&store).expect("unchanged"));
        let b = CertBundle::generate(&["svc".into()], 1_790_000_000, 86_400).expect("b");
        write(dir.path(), &b);
        assert!(watcher.reload_if_changed(&store).expect("reloads"));
        assert_ne!(first, store.leaf_der());
    }

    #[test]
    fn a_broken_file_keeps_the_last_good_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CertStore::default();
        let mut watcher = CertDir::new(dir.path());
        let a = CertBundle::generate(&["svc".into()], 1_790_000_000, 86_400).expect("a");
        write(dir.path(), &a);
        watcher.reload_if_changed(&store).expect("loads");
        let first = store.leaf_der();
        std::fs::write(dir.path().join(KEY_FILE), "garbage").expect("write");
        assert!(watcher.reload_if_changed(&store).is_err());
        assert_eq!(first, store.leaf_der());
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_the_file() {
        let store = CertStore::default();
        let err = CertDir::new("/nonexistent/certs")
            .reload_if_changed(&store)
            .expect_err("fails");
        assert!(err.to_string().contains("tls.crt"), "{err}");
    }
}
