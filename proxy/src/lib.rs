//! labgate's HTTPS entrypoint: pingora-core listeners, an HTTP/1.1 fast path and pingora's
//! sessions for the rest, routing by Host through the snapshot's route table and policy.
//! This crate receives snapshots and certificates; it reads no files.
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]
#![deny(unused_must_use)]

pub mod access;
pub mod backends;
pub mod certs;
pub mod cf_access;
pub mod chunked;
pub mod conns;
pub mod decide;
pub mod fast;
pub mod fuzzing;
pub mod general;
pub mod h2;
pub mod h2_path;
pub mod handshake;
pub mod head;
pub mod health;
pub mod hello;
mod idle;
pub mod metrics;
pub mod pages;
pub mod plan;
mod preface;
mod record;
pub mod rewrite;
mod service;
pub mod tunnel;
mod upstream;
mod watchdog;

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use labgate_config::{Publish, Snapshot};
use pingora::connectors::{ConnectorOptions, TransportConnector};

pub use certs::{CertMap, CertStore, Sni};
pub use record::Logged;
pub use service::{Bound, Sockets, listeners};

/// Errors of the proxy's control side: a certificate and key that cannot be served, TLS
/// that cannot be set up. Each names what is wrong; the parser's or rustls' reason is its
/// source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The certificate file is not a PEM chain.
    #[error("the certificate chain is not valid PEM")]
    ChainPem(#[source] rustls_pki_types::pem::Error),
    /// The certificate file holds no certificate.
    #[error("the certificate file holds no certificate")]
    NoCertificate,
    /// The key file holds no private key in PEM.
    #[error("the key file holds no usable private key")]
    KeyPem(#[source] rustls_pki_types::pem::Error),
    /// The key does not belong to the certificate, or rustls cannot sign with it.
    #[error("the key does not fit the certificate")]
    KeyMismatch(#[source] rustls::Error),
    /// pingora's TLS settings could not be made.
    #[error("cannot set up TLS")]
    Tls(#[source] pingora::BError),
    /// Cloudflare Access's signing keys could not be downloaded.
    #[error("cannot fetch Cloudflare Access keys from {url}")]
    AccessKeysFetch {
        /// The JWKS URL.
        url: Arc<str>,
        /// Why.
        #[source]
        source: labgate_outbound::Error,
    },
    /// What Cloudflare Access's JWKS URL serves is not a key set labgate can use.
    #[error("Cloudflare Access keys from {url}: {what}; check tunnel.access_jwks_url")]
    AccessKeySet {
        /// The JWKS URL.
        url: Arc<str>,
        /// What is wrong with it.
        what: String,
    },
    /// A listening socket handed to the proxy has no local address: bind it first.
    #[error("a listening socket is not bound")]
    Socket(#[source] std::io::Error),
}

/// What one snapshot means to the proxy: the snapshot, its backend pools, and the hosts whose
/// HTTP/2 connections go to pingora's session.
#[derive(Debug)]
pub struct ProxyState {
    /// The configuration.
    pub snapshot: Arc<Snapshot>,
    /// Backends per service.
    pub pools: backends::Pools,
    /// Hosts (lower case) of services with an h2c backend: only pingora's HTTP/2 client
    /// carries those, so an h2 connection opened for one goes to its session.
    h2c_hosts: std::collections::HashSet<Arc<str>>,
}

impl ProxyState {
    /// The state of `snapshot`; backends that did not change since `previous` keep their
    /// state.
    pub fn new(snapshot: Arc<Snapshot>, previous: &backends::Pools) -> Self {
        let pools = backends::Pools::build(&snapshot, previous);
        let h2c_hosts = snapshot
            .services
            .iter()
            .filter(|svc| svc.backends.iter().any(|b| b.h2c))
            .flat_map(|svc| svc.hosts.iter().cloned())
            .collect();
        Self {
            snapshot,
            pools,
            h2c_hosts,
        }
    }

    /// Whether an h2 connection opened for the (normalized) server name `sni` goes to
    /// pingora's session.
    pub(crate) fn h2_needs_session(&self, sni: Option<&str>) -> bool {
        sni.is_some_and(|n| self.h2c_hosts.contains(n))
    }
}

/// The proxy: state swapped on reload, the upstream connector and pool, counters.
pub struct Proxy {
    state: ArcSwap<ProxyState>,
    /// Upstream connections and their pool.
    pub connector: TransportConnector,
    /// HTTP/2 connections to h2c backends, shared by streams.
    h2: pingora::connectors::http::v2::Connector,
    /// Counters for `/metrics`.
    pub metrics: Arc<metrics::Metrics>,
    /// The certificates handshakes choose from by SNI; the binary publishes new ones here.
    pub certs: Arc<CertStore>,
    /// The access log's sending side.
    pub access: access::AccessLog,
    /// The port HTTPS redirects name.
    pub https_port: u16,
    /// Cloudflare Access signing keys.
    pub access_keys: Arc<cf_access::AccessKeys>,
    /// Open client connections per listener, in [`service::Listener::ALL`] order.
    open: [conns::Open; service::Listener::ALL.len()],
    /// Set when the process starts to stop: each HTTP/1 response says `Connection: close`
    /// and its connection ends with it, so no client sends a request on a connection about
    /// to be closed (a binary upgrade's new process takes the next connection).
    draining: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").finish_non_exhaustive()
    }
}

impl Proxy {
    /// A proxy serving a first snapshot.
    pub fn new(
        snapshot: Arc<Snapshot>,
        certs: Arc<CertStore>,
        metrics: Arc<metrics::Metrics>,
        access: access::AccessLog,
        https_port: u16,
        client: labgate_outbound::Client,
    ) -> Self {
        access.set_enabled(snapshot.access_log);
        Self {
            access,
            state: ArcSwap::from_pointee(ProxyState::new(snapshot, &backends::Pools::default())),
            connector: TransportConnector::new(Some(ConnectorOptions::new(backends::POOL_SIZE))),
            h2: pingora::connectors::http::v2::Connector::new(None),
            metrics,
            certs,
            https_port,
            access_keys: Arc::new(cf_access::AccessKeys::new(client)),
            open: Default::default(),
            draining: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Starts to drain: from now on every HTTP/1 response closes its connection.
    pub fn drain(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the proxy drains (see [`Proxy::drain`]).
    pub fn draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The state now served.
    pub fn state(&self) -> Arc<ProxyState> {
        self.state.load_full()
    }

    /// Appends the proxy's metrics (Prometheus text): counters, then backend health.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let state = self.state();
        self.metrics.render(&state.snapshot, out);
        let _ = writeln!(
            out,
            "# TYPE labgate_http_access_log_dropped_total counter\nlabgate_http_access_log_dropped_total {}",
            self.access
                .dropped
                .load(std::sync::atomic::Ordering::Relaxed)
        );
        out.push_str("# HELP labgate_http_connections_open Client connections open, TLS handshakes included.\n# TYPE labgate_http_connections_open gauge\n");
        for (l, open) in service::Listener::ALL.iter().zip(&self.open) {
            let _ = writeln!(
                out,
                "labgate_http_connections_open{{listener=\"{}\"}} {}",
                l.label(),
                open.count()
            );
        }
        out.push_str("# HELP labgate_http_connections_refused_total Client connections closed as they were accepted: the listener (server.max_connections) or the client's address (server.max_connections_per_address) was at its bound.\n# TYPE labgate_http_connections_refused_total counter\n");
        for (l, open) in service::Listener::ALL.iter().zip(&self.open) {
            for why in conns::Refused::ALL {
                let _ = writeln!(
                    out,
                    "labgate_http_connections_refused_total{{listener=\"{}\",reason=\"{}\"}} {}",
                    l.label(),
                    why.label(),
                    open.refused(why)
                );
            }
        }
        out.push_str("# TYPE labgate_http_backend_up gauge\n");
        for b in self.backends() {
            let _ = writeln!(
                out,
                "labgate_http_backend_up{{service=\"{}\",backend=\"{}\"}} {}",
                b.service,
                b.url,
                u8::from(b.up)
            );
        }
    }

    /// Every service's backends and whether each takes requests now (health checks and
    /// passive ejection).
    pub fn backends(&self) -> Vec<BackendHealth> {
        let state = self.state();
        let mut all = Vec::new();
        for (svc, pool) in state.snapshot.services.iter().zip(state.pools.iter()) {
            for b in &pool.backends {
                all.push(BackendHealth {
                    service: Arc::clone(&svc.name),
                    url: b.backend.url.to_string(),
                    up: b.available(),
                });
            }
        }
        all
    }
}

/// One backend of a service and its health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendHealth {
    /// The service's name.
    pub service: Arc<str>,
    /// The backend's URL.
    pub url: String,
    /// Whether it takes requests now.
    pub up: bool,
}

/// Now in Unix seconds, for Cloudflare Access tokens.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What every executor knows of a downstream connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client's address (v4-mapped addresses as IPv4).
    pub client: IpAddr,
    /// Whether it came over TLS.
    pub tls: bool,
    /// The normalized TLS server name.
    pub sni: Option<Arc<str>>,
    /// The certificate the handshake served.
    pub cert: Option<Arc<rustls::sign::CertifiedKey>>,
    /// The certificates the handshake chose from (`None` without TLS).
    pub certs: Option<Arc<CertMap>>,
    /// The listener: direct, or the tunnel origin.
    pub via: decide::Via,
}

impl ConnInfo {
    /// From pingora's digests of the connection: the peer address (v4-mapped addresses as
    /// IPv4), whether TLS carried it, and the SNI the handshake recorded; `via` the listener.
    pub fn from_digests(
        peer: Option<&pingora::protocols::l4::socket::SocketAddr>,
        ssl: Option<&pingora::protocols::tls::SslDigest>,
        via: decide::Via,
    ) -> Option<Self> {
        let client = peer?.as_inet()?.ip().to_canonical();
        let sni = ssl.and_then(|d| d.extension.get::<Sni>());
        Some(Self {
            client,
            tls: ssl.is_some(),
            sni: sni.and_then(|s| s.name.clone()),
            cert: sni.and_then(|s| s.cert.clone()),
            certs: sni.map(|s| Arc::clone(&s.certs)),
            via,
        })
    }

    /// What the TLS connection was opened for (`None`: plain HTTP, no SNI), for `decide`.
    pub fn opened_for(&self) -> Option<decide::Tls<'_>> {
        Some(decide::Tls {
            sni: self.sni.as_deref()?,
            cert: self.cert.as_ref(),
            certs: self.certs.as_deref()?,
        })
    }
}

impl Publish for Proxy {
    fn name(&self) -> &'static str {
        "proxy"
    }

    /// Serves a new snapshot from the next request on: its state is built here (backends
    /// that did not change keep their pools and health), then stored with one swap. Access
    /// keys the snapshot names are fetched by [`cf_access::AccessKeys::prefetch`], a task of
    /// the caller's.
    fn publish(&self, snapshot: Arc<Snapshot>) {
        self.access.set_enabled(snapshot.access_log);
        let state = ProxyState::new(snapshot, &self.state.load().pools);
        self.state.store(Arc::new(state));
    }
}
