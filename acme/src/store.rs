//! Issued certificates on disk: one directory per name set under `acme/certs/` in the state
//! directory, `chain.pem` (leaf first) and `key.pem` (0600), each written atomically. What is
//! read back is verified like a fresh issuance before it is served.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use labgate_config::settings::AcmeSettings;
use sha2::{Digest, Sha256};

use crate::verify::{CertInfo, verify};
use crate::{Error, write_atomic};

/// A certificate and its key, verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// PEM chain, leaf first.
    pub chain_pem: String,
    /// PEM private key.
    pub key_pem: String,
    /// Validity and issuer.
    pub info: CertInfo,
}

/// The directory of a name set: its first name (readable) and a digest of all of them (a
/// changed set is another certificate).
pub(crate) fn dir(state_dir: &Path, names: &[String]) -> PathBuf {
    let digest = Sha256::digest(names.join("\n").as_bytes());
    let tag: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let first = names
        .first()
        .map_or("cert", String::as_str)
        .replace('*', "_");
    state_dir
        .join("acme")
        .join("certs")
        .join(format!("{first}-{tag}"))
}

/// Where a certificate was ordered and how: the directory, key type and profile. A stored
/// certificate ordered otherwise is not served: switching from `letsencrypt-staging` to
/// `letsencrypt` would else keep the untrusted staging certificate until its renewal.
pub(crate) fn origin(settings: &AcmeSettings) -> String {
    format!(
        "{} {:?} {}\n",
        settings.directory,
        settings.key_type,
        settings.profile.as_deref().unwrap_or("-")
    )
}

/// The stored certificate for `names`, if one is there, was ordered as `origin` says (or
/// before origins were kept) and still verifies at `now`.
pub(crate) fn load(dir: &Path, names: &[String], origin: &str, now: SystemTime) -> Option<Stored> {
    if let Ok(stored) = std::fs::read_to_string(dir.join("origin.txt"))
        && stored != origin
    {
        tracing::info!(
            "{}: ordered from another directory or with another key type or profile; a new certificate will be ordered",
            dir.display()
        );
        return None;
    }
    let chain_pem = std::fs::read_to_string(dir.join("chain.pem")).ok()?;
    let key_pem = std::fs::read_to_string(dir.join("key.pem")).ok()?;
    let checked = rcgen::KeyPair::from_pem(&key_pem)
        .map_err(|e| Error::Verify(format!("key.pem does not parse ({e})")))
        .and_then(|key| {
            verify(
                &chain_pem,
                names,
                &rcgen::PublicKeyData::subject_public_key_info(&key),
                now,
            )
        });
    match checked {
        Ok(info) => Some(Stored {
            chain_pem,
            key_pem,
            info,
        }),
        Err(e) => {
            tracing::warn!("{}: {e}; a new certificate will be ordered", dir.display());
            None
        }
    }
}

/// Writes a certificate: the key first (0600), then the chain, then its origin.
pub(crate) fn save(dir: &Path, cert: &Stored, origin: &str) -> Result<(), Error> {
    write_atomic(&dir.join("key.pem"), cert.key_pem.as_bytes(), 0o600)?;
    write_atomic(&dir.join("chain.pem"), cert.chain_pem.as_bytes(), 0o644)?;
    write_atomic(&dir.join("origin.txt"), origin.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_ordered_elsewhere_is_not_served() {
        let dir = tempfile::tempdir().expect("dir");
        let names = vec!["app.lab.example.com".to_owned()];
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca = rcgen::CertificateParams::new(Vec::new()).expect("params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_pem = ca.self_signed(&ca_key).expect("CA").pem();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().expect("key");
        let leaf = rcgen::CertificateParams::new(names.clone())
            .expect("params")
            .signed_by(&key, &issuer)
            .expect("leaf");
        std::fs::write(dir.path().join("chain.pem"), leaf.pem() + &ca_pem).expect("chain");
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).expect("key");
        let staging = "https://acme-staging-v02.api.letsencrypt.org/directory EcdsaP256 -\n";
        let production = "https://acme-v02.api.letsencrypt.org/directory EcdsaP256 -\n";
        let now = SystemTime::now();
        // Saved before origins were kept: served.
        assert!(load(dir.path(), &names, production, now).is_some());
        std::fs::write(dir.path().join("origin.txt"), staging).expect("origin");
        assert!(load(dir.path(), &names, staging, now).is_some());
        assert!(load(dir.path(), &names, production, now).is_none());
    }
}
