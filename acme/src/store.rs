//! Issued certificates on disk: one directory per name set under `acme/certs/` in the state
//! directory, `chain.pem` (leaf first) and `key.pem` (0600), each written atomically. What is
//! read back is verified like a fresh issuance before it is served.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

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

/// The stored certificate for `names`, if one is there and still verifies at `now`.
pub(crate) fn load(dir: &Path, names: &[String], now: SystemTime) -> Option<Stored> {
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

/// Writes a certificate: the key first (0600), then the chain.
pub(crate) fn save(dir: &Path, cert: &Stored) -> Result<(), Error> {
    write_atomic(&dir.join("key.pem"), cert.key_pem.as_bytes(), 0o600)?;
    write_atomic(&dir.join("chain.pem"), cert.chain_pem.as_bytes(), 0o644)
}
