//! Which plugins may run: an administrator names ed25519 public keys (and,
//! optionally, the sha256 digests allowed), and then every plugin
//! ConfigMap must carry, in the annotation `policy.jobset.dev/signature`,
//! a signature over its plugin's sha256 by one of those keys. The
//! annotation reads `ed25519:<key id>:<signature, base64>`; the key id is
//! the first 16 hex digits of the sha256 of the public key, and the signed
//! message is `jobset-policy-plugin-sha256:<digest, lower-case hex>`, so a
//! signature cannot be replayed for other bytes or for another purpose.
//! `jobset policy keygen`, `pack --sign` and `verify` use the same code.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sha2::{Digest, Sha256};

/// The annotation that carries a plugin's signature.
pub const SIGNATURE_ANNOTATION: &str = "policy.jobset.dev/signature";

/// What a signature signs: the plugin's digest, with its purpose.
fn message(digest_hex: &str) -> Vec<u8> {
    format!(
        "jobset-policy-plugin-sha256:{}",
        digest_hex.to_ascii_lowercase()
    )
    .into_bytes()
}

/// The id of a public key: the first 16 hex digits of its sha256.
pub fn key_id(public_key: &[u8]) -> String {
    hex::encode(Sha256::digest(public_key))[..16].to_string()
}

/// A trusted public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    pub id: String,
    bytes: Vec<u8>,
}

impl PublicKey {
    /// Reads a public key written as base64 of its 32 bytes (as `jobset
    /// policy keygen` prints it), optionally prefixed `ed25519:`.
    pub fn parse(text: &str) -> Result<PublicKey, String> {
        let raw = text.trim();
        let raw = raw.strip_prefix("ed25519:").unwrap_or(raw);
        let bytes = STANDARD
            .decode(raw)
            .map_err(|e| format!("public key {raw:?} is not base64: {e}"))?;
        if bytes.len() != 32 {
            return Err(format!(
                "public key {raw:?} has {} bytes; an ed25519 public key has 32",
                bytes.len()
            ));
        }
        Ok(PublicKey {
            id: key_id(&bytes),
            bytes,
        })
    }

    /// The key as `parse` reads it.
    pub fn to_text(&self) -> String {
        format!("ed25519:{}", STANDARD.encode(&self.bytes))
    }
}

/// The administrator's rules for plugin ConfigMaps. With no keys and no
/// digests, every plugin that passes the other checks may run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trust {
    /// When any, a valid signature by one of them is required.
    pub keys: Vec<PublicKey>,
    /// When set, only these digests (lower-case hex) may run.
    pub allowed_digests: Option<BTreeSet<String>>,
}

impl Trust {
    /// Whether any rule applies.
    pub fn is_open(&self) -> bool {
        self.keys.is_empty() && self.allowed_digests.is_none()
    }

    /// Whether a plugin of sha256 `digest_hex` whose ConfigMap carries the
    /// signature annotation `signature` may run; if not, why.
    pub fn check(&self, digest_hex: &str, signature: Option<&str>) -> Result<(), String> {
        let digest = digest_hex.to_ascii_lowercase();
        if let Some(allowed) = &self.allowed_digests
            && !allowed.contains(&digest)
        {
            return Err(format!(
                "its sha256 {digest} is not among the digests this cluster allows"
            ));
        }
        if self.keys.is_empty() {
            return Ok(());
        }
        let Some(signature) = signature else {
            return Err(format!(
                "it carries no {SIGNATURE_ANNOTATION} annotation, and this cluster runs only signed plugins"
            ));
        };
        let mut parts = signature.trim().splitn(3, ':');
        let (Some("ed25519"), Some(id), Some(sig)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!(
                "annotation {SIGNATURE_ANNOTATION} must read ed25519:<key id>:<signature>"
            ));
        };
        let Some(key) = self.keys.iter().find(|k| k.id == id) else {
            return Err(format!(
                "it is signed by key {id}, which this cluster does not trust"
            ));
        };
        let sig = STANDARD.decode(sig).map_err(|e| {
            format!("annotation {SIGNATURE_ANNOTATION}: the signature is not base64: {e}")
        })?;
        UnparsedPublicKey::new(&ED25519, &key.bytes)
            .verify(&message(&digest), &sig)
            .map_err(|_| format!("its signature by key {id} is not a signature of sha256 {digest}"))
    }
}

/// A new key pair: the private key (PKCS#8, base64, for `pack --sign`) and
/// the public key to trust.
pub fn generate() -> Result<(String, PublicKey), String> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 =
        Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| format!("generating a key: {e}"))?;
    let pair =
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| format!("reading the key: {e}"))?;
    let public = pair.public_key().as_ref().to_vec();
    Ok((
        STANDARD.encode(pkcs8.as_ref()),
        PublicKey {
            id: key_id(&public),
            bytes: public,
        },
    ))
}

/// The signature annotation for a plugin of sha256 `digest_hex`, by the
/// private key `private` (as `generate` writes it).
pub fn sign(private: &str, digest_hex: &str) -> Result<String, String> {
    let pkcs8 = STANDARD
        .decode(private.trim())
        .map_err(|e| format!("the private key is not base64: {e}"))?;
    let pair = Ed25519KeyPair::from_pkcs8(&pkcs8)
        .map_err(|e| format!("the private key is not an ed25519 key (PKCS#8): {e}"))?;
    let id = key_id(pair.public_key().as_ref());
    let sig = pair.sign(&message(digest_hex));
    Ok(format!("ed25519:{id}:{}", STANDARD.encode(sig.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn trusting(key: &PublicKey) -> Trust {
        Trust {
            keys: vec![key.clone()],
            allowed_digests: None,
        }
    }

    #[test]
    fn a_signature_by_a_trusted_key_over_the_digest_is_accepted() {
        let (private, public) = generate().unwrap();
        let sig = sign(&private, DIGEST).unwrap();
        assert!(sig.starts_with(&format!("ed25519:{}:", public.id)));
        assert_eq!(trusting(&public).check(DIGEST, Some(&sig)), Ok(()));
        assert_eq!(
            trusting(&public).check(&DIGEST.to_uppercase(), Some(&sig)),
            Ok(())
        );
        // The key reads back from its text.
        assert_eq!(PublicKey::parse(&public.to_text()).unwrap(), public);
    }

    #[test]
    fn a_signature_for_other_bytes_by_another_key_or_missing_is_refused() {
        let (private, public) = generate().unwrap();
        let sig = sign(&private, DIGEST).unwrap();
        let other_digest = "0".repeat(64);
        let e = trusting(&public)
            .check(&other_digest, Some(&sig))
            .unwrap_err();
        assert!(e.contains("is not a signature of sha256 0000"), "{e}");
        let (_, stranger) = generate().unwrap();
        let e = trusting(&stranger).check(DIGEST, Some(&sig)).unwrap_err();
        assert!(e.contains("which this cluster does not trust"), "{e}");
        let e = trusting(&public).check(DIGEST, None).unwrap_err();
        assert!(
            e.contains("carries no policy.jobset.dev/signature annotation"),
            "{e}"
        );
        let e = trusting(&public)
            .check(DIGEST, Some("rsa:x:y"))
            .unwrap_err();
        assert!(e.contains("must read ed25519:<key id>:<signature>"), "{e}");
    }

    #[test]
    fn only_allowed_digests_run_when_a_list_is_given() {
        let trust = Trust {
            keys: vec![],
            allowed_digests: Some([DIGEST.to_string()].into()),
        };
        assert_eq!(trust.check(DIGEST, None), Ok(()));
        let e = trust.check(&"1".repeat(64), None).unwrap_err();
        assert!(
            e.contains("not among the digests this cluster allows"),
            "{e}"
        );
        assert!(Trust::default().is_open());
    }

    #[test]
    fn a_malformed_public_key_is_named() {
        assert!(
            PublicKey::parse("not base64!")
                .unwrap_err()
                .contains("is not base64")
        );
        assert!(
            PublicKey::parse("AAAA")
                .unwrap_err()
                .contains("has 3 bytes")
        );
    }
}
