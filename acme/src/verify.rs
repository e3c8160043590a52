//! Checks an issued chain before it is served: the leaf chains to the certificates that came
//! with it (each signed by the next; the last one is the anchor: it arrived over the ACME
//! server's authenticated TLS), it is valid now, it names every name of the order, and it
//! carries our key.

use std::time::SystemTime;

use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::server::ParsedCertificate;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::Error;

/// What the checks learned about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// The issuer's distinguished name.
    pub issuer: String,
}

/// Parses a PEM chain, leaf first.
pub(crate) fn chain(pem: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Verify(format!("the chain is not PEM ({e})")))?;
    if certs.is_empty() {
        return Err(Error::Verify("the chain holds no certificate".into()));
    }
    Ok(certs)
}

/// Validity and issuer of a leaf (no other check).
///
/// # Errors
/// [`Error::Verify`] when the leaf does not parse.
pub fn info(leaf: &CertificateDer<'_>) -> Result<CertInfo, Error> {
    let (_, cert) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|e| Error::Verify(format!("the leaf does not parse ({e})")))?;
    let at = |t: x509_parser::time::ASN1Time| {
        let secs = u64::try_from(t.timestamp()).unwrap_or(0);
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs)
    };
    Ok(CertInfo {
        not_before: at(cert.validity().not_before),
        not_after: at(cert.validity().not_after),
        issuer: cert.issuer().to_string(),
    })
}

/// A host name that a certificate for `name` covers: `name` itself, and for a wildcard a name
/// only the wildcard covers.
pub(crate) fn covered_host(name: &str) -> String {
    match name.strip_prefix("*.") {
        Some(base) => format!("labgate-wildcard-check.{base}"),
        None => name.to_owned(),
    }
}

/// The SubjectPublicKeyInfo (DER) of `leaf`.
///
/// # Errors
/// [`Error::Verify`] when the leaf does not parse.
pub(crate) fn leaf_key(leaf: &CertificateDer<'_>) -> Result<Vec<u8>, Error> {
    let (_, cert) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|e| Error::Verify(format!("the leaf does not parse ({e})")))?;
    Ok(cert.tbs_certificate.subject_pki.raw.to_vec())
}

/// Verifies `chain_pem` for `names` and the public key `spki` (SubjectPublicKeyInfo DER) at
/// `now`.
///
/// # Errors
/// [`Error::Verify`] naming the failed check.
pub fn verify(
    chain_pem: &str,
    names: &[String],
    spki: &[u8],
    now: SystemTime,
) -> Result<CertInfo, Error> {
    let certs = chain(chain_pem)?;
    let (leaf, rest) = certs
        .split_first()
        .ok_or_else(|| Error::Verify("empty chain".into()))?;
    let Some((anchor, intermediates)) = rest.split_last() else {
        return Err(Error::Verify(
            "the chain holds the leaf alone: no issuer to check it against".into(),
        ));
    };
    let parsed = ParsedCertificate::try_from(leaf)
        .map_err(|e| Error::Verify(format!("the leaf does not parse ({e})")))?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(anchor.clone())
        .map_err(|e| Error::Verify(format!("the chain's last certificate is unusable ({e})")))?;
    let since = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| Error::Verify("the clock is before 1970".into()))?;
    let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
    verify_server_cert_signed_by_trust_anchor(
        &parsed,
        &roots,
        intermediates,
        UnixTime::since_unix_epoch(since),
        algs.all,
    )
    .map_err(|e| Error::Verify(format!("the chain does not verify ({e})")))?;
    for name in names {
        let probe = covered_host(name);
        let server_name = ServerName::try_from(probe.as_str())
            .map_err(|e| Error::Verify(format!("`{name}` is not a DNS name ({e})")))?;
        rustls::client::verify_server_name(&parsed, &server_name)
            .map_err(|_| Error::Verify(format!("the certificate does not cover {name}")))?;
    }
    if leaf_key(leaf)? != spki {
        return Err(Error::Verify(
            "the certificate is not for the key labgate made".into(),
        ));
    }
    info(leaf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::PublicKeyData;

    /// A CA and a leaf for `names` signed by it, as a PEM chain, and the leaf's key.
    fn issued(names: &[&str]) -> (String, rcgen::KeyPair) {
        issued_with(names, |_| {})
    }

    /// Like [`issued`], valid from `from` to `until` (seconds since 1970).
    fn issued_between(names: &[&str], from: i64, until: i64) -> (String, rcgen::KeyPair) {
        let at = |t| time::OffsetDateTime::from_unix_timestamp(t).expect("time");
        issued_with(names, |params| {
            params.not_before = at(from);
            params.not_after = at(until);
        })
    }

    /// Like [`issued`], with the leaf's parameters changed by `edit` before it is signed.
    fn issued_with(
        names: &[&str],
        edit: impl FnOnce(&mut rcgen::CertificateParams),
    ) -> (String, rcgen::KeyPair) {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).expect("ca");
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("params");
        edit(&mut params);
        let leaf = params.signed_by(&key, &issuer).expect("leaf");
        (format!("{}{}", leaf.pem(), ca_cert.pem()), key)
    }

    /// A case: its name, the certificate's names, the order's names, now, accepted.
    type Row<'a> = (&'a str, &'a [&'a str], &'a [&'a str], i64, bool);

    #[test]
    fn the_certificate_must_be_valid_now_and_cover_each_name() {
        const DAY: i64 = 86_400;
        let at = |t: i64| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(t.unsigned_abs());
        // (case, the certificate's names, the order's names, now, accepted)
        #[rustfmt::skip]
        let table: [Row<'_>; 12] = [
            ("valid", &["app.lab.test"], &["app.lab.test"], 150 * DAY, true),
            ("on its first second", &["app.lab.test"], &["app.lab.test"], 100 * DAY, true),
            ("on its last second", &["app.lab.test"], &["app.lab.test"], 190 * DAY, true),
            ("not yet valid", &["app.lab.test"], &["app.lab.test"], 100 * DAY - 1, false),
            ("expired", &["app.lab.test"], &["app.lab.test"], 190 * DAY + 1, false),
            ("a wildcard for a wildcard", &["*.lab.test", "lab.test"], &["*.lab.test", "lab.test"], 150 * DAY, true),
            ("one name for a wildcard", &["app.lab.test"], &["*.lab.test"], 150 * DAY, false),
            ("the apex for a wildcard", &["lab.test"], &["*.lab.test"], 150 * DAY, false),
            ("a wildcard for the apex", &["*.lab.test"], &["lab.test"], 150 * DAY, false),
            ("a deeper wildcard", &["*.app.lab.test"], &["*.lab.test"], 150 * DAY, false),
            ("names in another case", &["APP.lab.test"], &["app.LAB.test"], 150 * DAY, true),
            ("a name missing", &["app.lab.test"], &["app.lab.test", "db.lab.test"], 150 * DAY, false),
        ];
        for (case, sans, names, now, accepted) in table {
            let (chain, key) = issued_between(sans, 100 * DAY, 190 * DAY);
            let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
            let got = verify(&chain, &names, &key.subject_public_key_info(), at(now));
            assert_eq!(got.is_ok(), accepted, "{case}: {got:?}");
        }
    }

    #[test]
    fn names_key_and_chain_are_all_checked() {
        let names = [
            "lab.example.test".to_owned(),
            "*.lab.example.test".to_owned(),
        ];
        let (chain, key) = issued(&["lab.example.test", "*.lab.example.test"]);
        let spki = key.subject_public_key_info();
        let now = SystemTime::now();
        assert!(verify(&chain, &names, &spki, now).is_ok());
        let e = verify(&chain, &["other.example.test".to_owned()], &spki, now).expect_err("name");
        assert!(
            e.to_string().contains("does not cover other.example.test"),
            "{e}"
        );
        let other = rcgen::KeyPair::generate().expect("key");
        let e = verify(&chain, &names, &other.subject_public_key_info(), now).expect_err("key");
        assert!(e.to_string().contains("not for the key"), "{e}");
        let (foreign, _) = issued(&["lab.example.test"]);
        let leaf_only = chain
            .split_inclusive("-----END CERTIFICATE-----\n")
            .next()
            .expect("leaf");
        let mixed = format!(
            "{leaf_only}{}",
            foreign
                .split_inclusive("-----END CERTIFICATE-----\n")
                .nth(1)
                .expect("ca")
        );
        let e = verify(&mixed, &names, &spki, now).expect_err("chain");
        assert!(e.to_string().contains("does not verify"), "{e}");
        let e = verify(leaf_only, &names, &spki, now).expect_err("alone");
        assert!(e.to_string().contains("leaf alone"), "{e}");
    }
}
