//! Certificates in a pair (`[pair]`): both nodes serve the same certificate for every name
//! set, ordered once. Both hold the same private key (`key_file`, the same file on each), so
//! a chain one node obtained is as good on the other: a node whose certificate is due first
//! looks at the chain its peer serves (a TLS handshake with the peer's HTTPS listener: the
//! handshake's signature proves the peer holds the shared key) and adopts it when it is newer
//! than its own. Otherwise the first node orders at once; the second waits up to `takeover`
//! for the first to do it, then orders itself. No protocol of labgate's own: TLS, and for the
//! `builtin` provider RFC 2136 updates to the peer's DNS ([`WithPeer`]).
//!
//! [`decide`] makes the choice, a pure function of what the node has and saw.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use labgate_config::pair::{PairSettings, Role};
use rustls::pki_types::ServerName;
use tracing::warn;

use crate::provider::{DnsProvider, Published};
use crate::rfc2136::Rfc2136;
use crate::store::Stored;
use crate::verify::{CertInfo, verify};
use crate::{Error, secret};

/// How often a node waiting for its peer's certificate looks again.
pub const PEER_POLL: Duration = Duration::from_secs(2);
/// Longest a look at the peer may take (connect and handshake).
const PEER_TIMEOUT: Duration = Duration::from_secs(3);

/// What a node does about a name set whose certificate is due (or missing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Serve the chain the peer serves.
    Adopt,
    /// Order a certificate now.
    Order,
    /// Look at the peer again after this long.
    Wait(Duration),
}

/// The step for a node whose certificate (`own`, if any) is due and which has waited
/// `waited` for its peer, whose peer serves `peer` (a chain already checked: the shared key,
/// every name, valid now):
/// adopt the peer's when it ends later than its own; else the first node orders, and the
/// second waits for the first, looking again every [`PEER_POLL`], until `takeover` has
/// passed.
pub fn decide(
    own: Option<&CertInfo>,
    peer: Option<&CertInfo>,
    first: bool,
    waited: Duration,
    takeover: Duration,
) -> Step {
    let newer = peer.is_some_and(|p| own.is_none_or(|o| p.not_after > o.not_after));
    if newer {
        Step::Adopt
    } else if first || waited >= takeover {
        Step::Order
    } else {
        Step::Wait(PEER_POLL.min(takeover - waited))
    }
}

/// What a node's peer serves for a name set.
#[derive(Debug)]
pub enum Seen {
    /// A chain for the shared key that covers every name and is valid now.
    Usable(Stored),
    /// A certificate valid for the names but for another key: the nodes' `key_file`s differ,
    /// or the peer's certificate was ordered before `[pair]`.
    OtherKey,
    /// Nothing usable: the peer is unreachable, or serves no valid certificate for the names.
    Nothing,
}

/// A pair's part in one certificate's job.
#[derive(Debug, Clone, PartialEq)]
pub struct PairJob {
    /// This node and its peer.
    pub role: Role,
    /// The pair's settings.
    pub settings: PairSettings,
    /// The peer's HTTPS listener, where its chains are seen.
    pub peer_https: SocketAddr,
    /// The peer's DNS listener, where the `builtin` provider's values also go.
    pub peer_dns: SocketAddr,
    /// The internal zones, which challenge values sent to the peer are updates of.
    pub zones: Vec<hickory_net::proto::rr::Name>,
}

impl PairJob {
    /// The shared key, read from its file at each renewal (a replaced file is used from the
    /// next one on).
    ///
    /// # Errors
    /// [`Error::Secret`] when the file is unreadable or holds no ECDSA key in PKCS#8 PEM.
    pub fn key(&self) -> Result<rcgen::KeyPair, Error> {
        let path: &PathBuf = &self.settings.key_file;
        let text = secret::read(path)?;
        rcgen::KeyPair::from_pem(&text).map_err(|_| Error::Secret {
            path: path.clone(),
            what: "no ECDSA P-256 or P-384 key in PKCS#8 PEM in it: make one with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`".into(),
        })
    }

    /// What the peer serves for `names`, judged against the shared `key`.
    pub async fn peer_chain(&self, names: &[String], key: &rcgen::KeyPair) -> Seen {
        let Some(host) = sni(names) else {
            return Seen::Nothing;
        };
        let served = tokio::time::timeout(PEER_TIMEOUT, served_chain(self.peer_https, host));
        let Ok(Some(chain)) = served.await else {
            return Seen::Nothing;
        };
        let spki = rcgen::PublicKeyData::subject_public_key_info(key);
        let now = SystemTime::now();
        if let Ok(info) = verify(&chain, names, &spki, now) {
            return Seen::Usable(Stored {
                chain_pem: chain,
                key_pem: key.serialize_pem(),
                info,
            });
        }
        // A chain good in every way but the key: said apart, for the operator.
        let theirs = crate::verify::chain(&chain)
            .ok()
            .and_then(|c| crate::verify::leaf_key(c.first()?).ok());
        match theirs {
            Some(k) if k != spki && verify(&chain, names, &k, now).is_ok() => Seen::OtherKey,
            _ => Seen::Nothing,
        }
    }

    /// The `builtin` provider `local` of this node, its values also sent to the peer.
    pub fn with_peer(&self, local: Arc<dyn DnsProvider>) -> WithPeer {
        let peer = Rfc2136::to_peer(
            self.peer_dns,
            self.role.me,
            &self.settings.tsig,
            self.zones.clone(),
        );
        WithPeer { local, peer }
    }
}

/// Whether `ip` is this machine's: a socket can be bound to it.
pub fn is_local(ip: std::net::IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// The name to ask the peer's TLS listener for: the first name, a wildcard's with a label
/// only it covers.
fn sni(names: &[String]) -> Option<ServerName<'static>> {
    ServerName::try_from(crate::verify::covered_host(names.first()?)).ok()
}

/// The chain (PEM, leaf first) a TLS server at `addr` presents for `host`, taken only when
/// the handshake's signature verifies with the leaf's key.
async fn served_chain(addr: SocketAddr, host: ServerName<'static>) -> Option<String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .ok()?
        .dangerous()
        // SECURITY: the leaf is trusted for carrying the pair's own key, checked by the
        // caller, which the signature proves the server holds.
        .with_custom_certificate_verifier(Arc::new(labgate_outbound::SignaturesOnly(provider)))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(host, tcp)
        .await
        .ok()?;
    let certs = tls.get_ref().1.peer_certificates()?;
    Some(certs.iter().map(|c| pem("CERTIFICATE", c)).collect())
}

/// One PEM block.
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A pair's `builtin` provider: values served by this node's DNS and sent to its peer's as
/// TSIG-signed RFC 2136 updates, so the CA may ask either. A peer that does not take them is
/// logged, not an error: if it is down it is not where the CA's questions go.
pub struct WithPeer {
    local: Arc<dyn DnsProvider>,
    peer: Rfc2136,
}

#[async_trait]
impl DnsProvider for WithPeer {
    async fn publish(&self, name: &str, value: &str) -> Result<Published, Error> {
        let mut published = self.local.publish(name, value).await?;
        match self.peer.publish(name, value).await {
            // The zone is what the peer's removal needs; the local one needs none.
            Ok(p) => published.zone = p.zone,
            Err(e) => warn!("{name}: the challenge value is not on the peer: {e}"),
        }
        Ok(published)
    }

    async fn unpublish(&self, record: &Published) -> Result<(), Error> {
        self.local.unpublish(record).await?;
        if !record.zone.is_empty() {
            self.peer.unpublish(record).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn cert(ends_on_day: u64) -> CertInfo {
        CertInfo {
            not_before: SystemTime::UNIX_EPOCH + DAY * 10,
            not_after: SystemTime::UNIX_EPOCH + DAY * u32::try_from(ends_on_day).expect("day"),
            issuer: "CN=test".into(),
        }
    }

    /// (case, own, peer's, first node, waited, step)
    type Row<'a> = (
        &'a str,
        Option<&'a CertInfo>,
        Option<&'a CertInfo>,
        bool,
        Duration,
        Step,
    );

    #[test]
    fn the_first_node_orders_the_second_adopts_and_takes_over_after_the_wait() {
        let takeover = Duration::from_secs(900);
        let (old, new) = (cert(100), cert(190));
        let s = Duration::from_secs;
        // (case, own, peer's, first node, waited, step)
        #[rustfmt::skip]
        let table: &[Row<'_>] = &[
            ("none anywhere: the first orders", None, None, true, s(0), Step::Order),
            ("none anywhere: the second waits", None, None, false, s(0), Step::Wait(PEER_POLL)),
            ("none anywhere, the wait over: the second orders", None, None, false, takeover, Step::Order),
            ("the wait nearly over: the second looks again at its end", None, None, false, s(899), Step::Wait(s(1))),
            ("the peer has one: adopt it", None, Some(&new), false, s(0), Step::Adopt),
            ("the first adopts too (it was down while the second ordered)", None, Some(&new), true, s(0), Step::Adopt),
            ("the peer's is newer: adopt", Some(&old), Some(&new), false, s(5), Step::Adopt),
            ("the peer's is the same: the first orders", Some(&new), Some(&new), true, s(0), Step::Order),
            ("the peer's is the same: the second waits", Some(&new), Some(&new), false, s(0), Step::Wait(PEER_POLL)),
            ("the peer's is older: the first orders", Some(&new), Some(&old), true, s(0), Step::Order),
            ("the peer's is older, the wait over: the second orders", Some(&new), Some(&old), false, s(3600), Step::Order),
            ("the peer unreachable: the second waits", Some(&old), None, false, s(60), Step::Wait(PEER_POLL)),
        ];
        for &(case, own, peer, first, waited, want) in table {
            assert_eq!(decide(own, peer, first, waited, takeover), want, "{case}");
        }
    }

    #[test]
    fn the_peer_is_asked_for_a_name_the_certificate_covers() {
        let sni = |names: &[&str]| {
            let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
            sni(&names).map(|n| n.to_str().into_owned())
        };
        assert_eq!(
            sni(&["lab.example.com", "*.lab.example.com"]).as_deref(),
            Some("lab.example.com")
        );
        assert_eq!(
            sni(&["*.lab.example.com"]).as_deref(),
            Some("labgate-wildcard-check.lab.example.com")
        );
        assert_eq!(sni(&[]), None);
    }

    #[test]
    fn pem_blocks_wrap_at_64_and_read_back() {
        let der: Vec<u8> = (0..=255).collect();
        let text = pem("CERTIFICATE", &der);
        assert!(
            text.lines()
                .all(|l| l.len() <= 64 || l.starts_with("-----"))
        );
        let back = crate::verify::chain(&text).expect("parses");
        assert_eq!(back[0].as_ref(), &der[..]);
    }
}
