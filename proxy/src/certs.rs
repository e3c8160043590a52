//! The certificate store that rustls asks during every handshake: exact names, then one
//! wildcard level, then the default, else a handshake alert. Swapped whole through `ArcSwap`,
//! so a handshake in progress keeps the map it started with.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, CryptoProvider, ResolvesServerCert};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::Error;

/// Certificates by name.
#[derive(Debug, Default, Clone)]
pub struct CertMap {
    exact: HashMap<Arc<str>, Arc<CertifiedKey>>,
    /// `*.lab.example.com` stored under `lab.example.com`.
    wildcard: HashMap<Arc<str>, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl CertMap {
    /// Adds a certificate under each of its names (`*.zone` for a wildcard).
    pub fn insert(&mut self, names: &[Arc<str>], key: &Arc<CertifiedKey>) {
        for name in names {
            let lower: Arc<str> = name.to_ascii_lowercase().into();
            match lower.strip_prefix("*.") {
                Some(parent) => self.wildcard.insert(parent.into(), Arc::clone(key)),
                None => self.exact.insert(lower, Arc::clone(key)),
            };
        }
    }

    /// Sets the certificate for clients that send no SNI or an unknown one.
    pub fn set_default(&mut self, key: Arc<CertifiedKey>) {
        self.default = Some(key);
    }

    /// The certificate for a lower-case name.
    pub fn get(&self, name: &str) -> Option<&Arc<CertifiedKey>> {
        self.exact
            .get(name)
            .or_else(|| self.wildcard.get(name.split_once('.')?.1))
    }

    /// The certificate a handshake for the (normalized) server name gets: its own, else the
    /// default.
    pub fn for_name(&self, name: Option<&str>) -> Option<&Arc<CertifiedKey>> {
        name.and_then(|n| self.get(n)).or(self.default.as_ref())
    }

    /// Whether `cert` is what a handshake for the lower-case `host` gets from this map.
    pub fn serves(&self, cert: &Arc<CertifiedKey>, host: &str) -> bool {
        self.get(host).is_some_and(|k| Arc::ptr_eq(k, cert))
    }

    /// Whether a lower-case name has a certificate of its own (default excluded).
    pub fn covers(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Number of distinct names.
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    /// Whether it holds no name.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The live certificates, shared by every TLS listener.
#[derive(Debug, Default)]
pub struct CertStore {
    map: ArcSwap<CertMap>,
}

impl CertStore {
    /// Replaces every certificate at once.
    pub fn publish(&self, map: CertMap) {
        self.map.store(Arc::new(map));
    }

    /// The certificates now served.
    pub fn current(&self) -> Arc<CertMap> {
        self.map.load_full()
    }

    /// Whether a handshake that sent this server name (as sent, `None` for no SNI) gets a
    /// certificate: the decision of [`ResolvesServerCert::resolve`], made before rustls runs.
    pub fn resolves(&self, sni: Option<&str>) -> bool {
        let mut buf = [0u8; labgate_config::route::MAX_HOST_LEN];
        self.for_name(sni_name(sni, &mut buf)).is_some()
    }

    /// The certificate a handshake for the (normalized) server name gets.
    fn for_name(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        self.map.load().for_name(name).cloned()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut buf = [0u8; labgate_config::route::MAX_HOST_LEN];
        self.for_name(sni_name(hello.server_name(), &mut buf))
    }
}

/// The name a client's SNI asks for, normalized like a Host header (trailing dot, case).
/// RFC 6066 forbids IP literals in SNI; some clients (wrk) send one anyway: it names nothing.
pub(crate) fn sni_name<'b>(
    raw: Option<&str>,
    buf: &'b mut [u8; labgate_config::route::MAX_HOST_LEN],
) -> Option<&'b str> {
    let raw = raw.filter(|n| n.parse::<std::net::IpAddr>().is_err())?;
    labgate_config::route::normalize_host(raw.as_bytes(), buf)
}

/// Parses a PEM chain and key into a rustls signing key, checking that they match.
///
/// # Errors
/// [`Error::ChainPem`], [`Error::NoCertificate`], [`Error::KeyPem`] or
/// [`Error::KeyMismatch`].
pub fn certified_key(chain_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, Error> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(Error::ChainPem)?;
    if chain.is_empty() {
        return Err(Error::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(Error::KeyPem)?;
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    CertifiedKey::from_der(chain, key, &provider).map_err(Error::KeyMismatch)
}

/// The SNI a client sent and the certificate it got, kept in the connection's TLS digest for
/// the SNI/Host check.
#[derive(Debug, Clone)]
pub struct Sni {
    /// The normalized server name.
    pub name: Option<Arc<str>>,
    /// The certificate served for it.
    pub cert: Option<Arc<CertifiedKey>>,
    /// The certificates the handshake chose from: what the SNI/Host check asks whether
    /// `cert` covers another host too.
    pub certs: Arc<CertMap>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_for(names: &[&str]) -> Arc<CertifiedKey> {
        let ck = rcgen::generate_simple_self_signed(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .expect("rcgen");
        let ck = certified_key(
            ck.cert.pem().as_bytes(),
            ck.signing_key.serialize_pem().as_bytes(),
        )
        .expect("parse");
        Arc::new(ck)
    }

    #[test]
    fn exact_then_one_wildcard_level_then_default() {
        let exact = key_for(&["nas.lab.test"]);
        let wild = key_for(&["*.lab.test"]);
        let default = key_for(&["fallback.test"]);
        let mut map = CertMap::default();
        map.insert(&["nas.lab.test".into()], &exact);
        map.insert(&["*.lab.test".into(), "lab.test".into()], &wild);
        assert!(
            map.get("nas.lab.test")
                .is_some_and(|k| Arc::ptr_eq(k, &exact))
        );
        assert!(
            map.get("app.lab.test")
                .is_some_and(|k| Arc::ptr_eq(k, &wild))
        );
        assert!(map.get("lab.test").is_some_and(|k| Arc::ptr_eq(k, &wild)));
        assert!(map.get("a.b.lab.test").is_none(), "one wildcard level only");
        map.set_default(default);
        assert_eq!(map.len(), 3);
    }

    #[test]
    fn a_key_for_another_certificate_is_refused() {
        let a = rcgen::generate_simple_self_signed(vec!["a.test".to_owned()]).expect("rcgen");
        let b = rcgen::generate_simple_self_signed(vec!["b.test".to_owned()]).expect("rcgen");
        let err = certified_key(
            a.cert.pem().as_bytes(),
            b.signing_key.serialize_pem().as_bytes(),
        )
        .err();
        assert!(matches!(err, Some(Error::KeyMismatch(_))), "{err:?}");
        let err = certified_key(b"junk", b"junk").err();
        assert!(matches!(err, Some(Error::NoCertificate)), "{err:?}");
    }
}
