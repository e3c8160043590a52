//! The one decision every request path and `labgate explain` share: from client address (or
//! the tunnel), TLS server name, Host and path to a service or a refusal.

use std::net::IpAddr;
use std::sync::Arc;

use labgate_config::Snapshot;
use labgate_config::network::NetworkId;
use labgate_config::route::{Access, MAX_HOST_LEN, Route, ServiceId, normalize_host};
use rustls::sign::CertifiedKey;

use crate::certs::CertMap;

/// What happens to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Forward to the service.
    Forward {
        /// The service.
        service: ServiceId,
        /// The client's network.
        network: NetworkId,
    },
    /// Answer with an error page.
    Refuse(Refusal),
}

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Via {
    /// HTTPS or plain HTTP: the client's address decides its network.
    #[default]
    Direct,
    /// The Cloudflare Tunnel origin: the peer must be a connector, the network is `tunnel`.
    Tunnel,
}

/// Why a request is refused, with its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A tunnel listener's peer is not a `tunnel.connectors` address: 403.
    NotConnector,
    /// Host missing or not a host name: 400.
    BadHost,
    /// The client is in no configured network: 403.
    NoNetwork,
    /// No service has the host: 404.
    UnknownHost,
    /// The host is known but no path prefix matches: 404.
    UnknownPath,
    /// The path names another service once decoded or resolved than as written: 400.
    AmbiguousPath,
    /// The Host is neither the TLS server name nor covered by the connection's certificate:
    /// 421.
    Misdirected,
    /// The service does not allow the client's network: 403.
    Denied {
        /// The service.
        service: ServiceId,
        /// The client's network.
        network: NetworkId,
    },
}

impl Refusal {
    /// The HTTP status.
    pub fn status(self) -> u16 {
        match self {
            Self::BadHost | Self::AmbiguousPath => 400,
            Self::NoNetwork | Self::NotConnector | Self::Denied { .. } => 403,
            Self::UnknownHost | Self::UnknownPath => 404,
            Self::Misdirected => 421,
        }
    }
}

/// What a TLS connection was opened for. A connection is authoritative for every name its
/// certificate covers (RFC 9110 §7.4), and browsers reuse an HTTP/2 connection under a
/// wildcard certificate for its other names.
#[derive(Clone, Copy)]
pub struct Tls<'a> {
    /// The normalized server name the client sent.
    pub sni: &'a str,
    /// The certificate the handshake served.
    pub cert: Option<&'a Arc<CertifiedKey>>,
    /// The certificates the connection's handshake chose from, to tell whether `cert` is
    /// another host's too.
    pub certs: &'a CertMap,
}

/// Decides a request. `client` is the peer's address; `tls` what the connection was opened
/// for (`None` for plain HTTP or a client that sent no SNI); `host` the raw Host header or
/// `:authority`. Through the tunnel, a service that does not allow `tunnel` is unknown (404):
/// the internet learns nothing of internal names.
pub fn decide(
    snapshot: &Snapshot,
    client: IpAddr,
    via: Via,
    tls: Option<Tls<'_>>,
    host: Option<&[u8]>,
    path: &str,
) -> Decision {
    let mut buf = [0u8; MAX_HOST_LEN];
    let Some(host) = host.and_then(|h| normalize_host(h, &mut buf)) else {
        return Decision::Refuse(Refusal::BadHost);
    };
    // SECURITY: a client must not get one name's certificate, then ask for a name that
    // certificate does not cover.
    if tls.is_some_and(|t| t.sni != host && !t.cert.is_some_and(|c| t.certs.serves(c, host))) {
        return Decision::Refuse(Refusal::Misdirected);
    }
    let network = match via {
        // SECURITY: tunnel traffic arrives from loopback; it must never count as a LAN client.
        Via::Tunnel if !snapshot.networks.is_connector(client) => {
            return Decision::Refuse(Refusal::NotConnector);
        }
        Via::Tunnel => snapshot.networks.tunnel().id,
        Via::Direct => match snapshot.networks.lookup(client) {
            Some(m) => m.network,
            None => return Decision::Refuse(Refusal::NoNetwork),
        },
    };
    let service = match snapshot.route(host, path) {
        Route::Service(id) => id,
        Route::UnknownHost => return Decision::Refuse(Refusal::UnknownHost),
        Route::UnknownPath => return Decision::Refuse(Refusal::UnknownPath),
        Route::Ambiguous => return Decision::Refuse(Refusal::AmbiguousPath),
    };
    match (snapshot.service(service).access(network), via) {
        (Access::Allow, _) => Decision::Forward { service, network },
        (Access::Deny, Via::Tunnel) => Decision::Refuse(Refusal::UnknownHost),
        (Access::Deny, Via::Direct) => Decision::Refuse(Refusal::Denied { service, network }),
    }
}
