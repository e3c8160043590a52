//! labgate's own certificate authority, kept in `<state_dir>/local-ca/`.
//!
//! Clients that should trust labgate's internal names import `ca.pem` once. The CA key never
//! leaves the state directory (mode 0600).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use crate::{Error, write_atomic};

/// Lifetime of a leaf certificate from the local CA.
pub const LEAF_LIFETIME: Duration = Duration::days(90);
/// Lifetime of the CA itself.
pub const CA_LIFETIME: Duration = Duration::days(3650);

/// The local CA: its certificate and the key that signs leaves.
pub struct LocalCa {
    dir: PathBuf,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // SECURITY: the signing key stays out of Debug output.
        f.debug_struct("LocalCa")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// A certificate chain and its private key, PEM-encoded.
pub struct Issued {
    /// Leaf first, then the CA.
    pub chain_pem: String,
    /// PKCS#8 private key.
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("chain_pem", &self.chain_pem)
            .finish_non_exhaustive()
    }
}

/// The CA's directory under the state directory.
const DIR: &str = "local-ca";
/// The CA certificate's file in it.
const CERT_FILE: &str = "ca.pem";

impl LocalCa {
    /// Loads the CA from `<state_dir>/local-ca`, creating it on first use.
    ///
    /// # Errors
    /// [`Error::Io`] when the directory cannot be read or written, [`Error::Material`] when
    /// stored files do not parse.
    pub fn load_or_create(state_dir: &Path) -> Result<Self, Error> {
        let dir = state_dir.join(DIR);
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join("ca.key");
        if cert_path.exists() && key_path.exists() {
            let read = |p: &Path| {
                std::fs::read_to_string(p).map_err(|source| Error::Io {
                    action: "read",
                    path: p.to_owned(),
                    source,
                })
            };
            let cert_pem = read(&cert_path)?;
            let material = |what: String| Error::Material {
                path: dir.clone(),
                what,
            };
            let key = KeyPair::from_pem(&read(&key_path)?)
                .map_err(|e| material(format!("ca.key does not parse ({e})")))?;
            let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)
                .map_err(|e| material(format!("ca.pem does not parse ({e})")))?;
            return Ok(Self {
                dir,
                cert_pem,
                issuer,
            });
        }
        Self::create(dir)
    }

    fn create(dir: PathBuf) -> Result<Self, Error> {
        let material = |e: rcgen::Error| Error::Material {
            path: dir.clone(),
            what: format!("cannot make the CA ({e})"),
        };
        let key = KeyPair::generate().map_err(material)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "labgate local CA");
        dn.push(DnType::OrganizationName, "labgate");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + CA_LIFETIME;
        let cert = params.self_signed(&key).map_err(material)?;
        write_atomic(&dir.join("ca.key"), key.serialize_pem().as_bytes(), 0o600)?;
        write_atomic(&dir.join(CERT_FILE), cert.pem().as_bytes(), 0o644)?;
        let cert_pem = cert.pem();
        let issuer = Issuer::new(params, key);
        Ok(Self {
            dir,
            cert_pem,
            issuer,
        })
    }

    /// Path of the CA certificate, for clients to trust (`curl --cacert`).
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(CERT_FILE)
    }

    /// Where the CA certificate of `state_dir` is (or will be), without loading it.
    pub fn cert_path_in(state_dir: &Path) -> PathBuf {
        state_dir.join(DIR).join(CERT_FILE)
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a leaf certificate for host names (wildcards allowed), valid from an hour ago
    /// for [`LEAF_LIFETIME`].
    ///
    /// # Errors
    /// [`Error::Material`] when a name is not a valid DNS name or signing fails.
    pub fn issue(&self, names: &[String], now: OffsetDateTime) -> Result<Issued, Error> {
        let material = |e: rcgen::Error| Error::Material {
            path: self.dir.clone(),
            what: format!("cannot issue a certificate for {names:?} ({e})"),
        };
        let key = KeyPair::generate().map_err(material)?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(material)?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().map_or("labgate", String::as_str),
        );
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = now - Duration::hours(1);
        params.not_after = now + LEAF_LIFETIME;
        let cert = params.signed_by(&key, &self.issuer).map_err(material)?;
        Ok(Issued {
            chain_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn ca_is_created_once_with_a_private_key_file() -> Result<(), Error> {
        let dir = tempfile::tempdir().map_err(|e| Error::Io {
            action: "create",
            path: PathBuf::new(),
            source: e,
        })?;
        let ca = LocalCa::load_or_create(dir.path())?;
        let key_mode = std::fs::metadata(dir.path().join("local-ca/ca.key"))
            .map(|m| m.permissions().mode() & 0o777)
            .ok();
        assert_eq!(key_mode, Some(0o600));
        let again = LocalCa::load_or_create(dir.path())?;
        assert_eq!(
            ca.cert_pem(),
            again.cert_pem(),
            "a second start reuses the CA"
        );
        let leaf = again.issue(
            &["demo.test".into(), "*.demo.test".into()],
            OffsetDateTime::now_utc(),
        )?;
        assert_eq!(leaf.chain_pem.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(leaf.key_pem.contains("PRIVATE KEY"));
        assert!(
            format!("{leaf:?}").find("PRIVATE").is_none(),
            "Debug never shows the key"
        );
        Ok(())
    }

    /// A real verifier (openssl) accepts the leaf for its names under the CA.
    #[test]
    fn openssl_verifies_the_leaf_against_the_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = LocalCa::load_or_create(dir.path()).expect("CA");
        let leaf = ca
            .issue(&["app.demo.test".into()], OffsetDateTime::now_utc())
            .expect("leaf");
        let leaf_path = dir.path().join("leaf.pem");
        std::fs::write(&leaf_path, &leaf.chain_pem).expect("write leaf");
        let verify = |host: &str| {
            std::process::Command::new("openssl")
                .arg("verify")
                .arg("-CAfile")
                .arg(ca.cert_path())
                .args(["-verify_hostname", host])
                .arg(&leaf_path)
                .output()
                .expect("openssl is needed: apt-get install openssl (scripts/test.sh does)")
        };
        let ok = verify("app.demo.test");
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stdout)
        );
        let wrong = verify("other.demo.test");
        assert!(
            !wrong.status.success(),
            "a name not in the certificate must fail"
        );
    }
}
