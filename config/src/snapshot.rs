//! The compiled, immutable runtime configuration that DNS and the proxy read per request.

use std::net::IpAddr;
use std::path::PathBuf;

use hickory_proto::rr::{LowerName, RecordType};

use crate::admin::AdminPolicy;
use crate::error::Diagnostic;
use crate::network::{NetworkId, Networks};
use crate::route::{Route, RouteTable, Service, ServiceId};
use crate::settings::{
    AcmeSettings, CertSource, Certificates, ConnectionLimits, Coverage, DnsProvider, DnsSettings,
    Listen,
};
use crate::source::ContentHash;
use crate::view::{Lookup, View, Zone};

/// One compiled configuration. Shared as `Arc<Snapshot>` behind an `ArcSwap`; never mutated.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases by one with every published snapshot.
    pub generation: u64,
    /// SHA-256 of the sources.
    pub hash: ContentHash,
    /// Directory for state (local CA, ACME). Restart-only.
    pub state_dir: PathBuf,
    /// Whether HTTP requests are logged.
    pub access_log: bool,
    /// Proxies whose `X-Forwarded-For` is kept.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Bounds on open client connections of the HTTP listeners.
    pub connections: ConnectionLimits,
    /// Listening addresses. Restart-only.
    pub listen: Listen,
    /// Who may use the admin endpoint. Its credentials are not in [`Self::hash`] (see
    /// [`Self::same_as`]).
    pub admin: AdminPolicy,
    /// Networks and the address lookup.
    pub networks: Networks,
    /// Internal zones, answered authoritatively; a view lists the ones it sees.
    pub zones: Vec<Zone>,
    /// One view per network, indexed by network id (the tunnel's is empty).
    pub views: Vec<View>,
    /// Services, indexed by id.
    pub services: Vec<Service>,
    /// Host and path → service.
    pub routes: RouteTable,
    /// Upstreams, forwarders, blocklists and the DNS limits.
    pub dns: DnsSettings,
    /// The certificates to serve and the local CA switch.
    pub certificates: Certificates,
    /// ACME account, if certificates are issued.
    pub acme: Option<AcmeSettings>,
    /// DNS providers for ACME challenges.
    pub providers: Vec<DnsProvider>,
    /// The query log's settings.
    pub query_log: crate::settings::QueryLogSettings,
    /// The dnstap stream (`[dnstap]`), if one is configured.
    pub dnstap: Option<crate::settings::DnstapSettings>,
    /// The pair this labgate is one of (`[pair]`). Its TSIG secret is not in [`Self::hash`]
    /// (see [`Self::same_as`]).
    pub pair: Option<crate::pair::PairSettings>,
    /// The Git commit checked out where the configuration was read, if it was read from a
    /// checkout: set by whoever read the files (compiling is pure), not part of the hash.
    pub revision: Option<std::sync::Arc<str>>,
    /// Warnings found while compiling.
    pub warnings: Vec<Diagnostic>,
}

impl Snapshot {
    /// Whether `other` would serve exactly as this one does, so a reload to it changes
    /// nothing: the same content hash and the same admin credentials.
    ///
    /// SECURITY: the admin endpoint's credentials and the pair's TSIG key are compared here, not hashed into
    /// [`Self::hash`], which is logged and shown on `/config`: a hash over configuration text
    /// that sits in Git and a weak password could be searched offline for the password.
    pub fn same_as(&self, other: &Self) -> bool {
        self.hash == other.hash && self.admin == other.admin && self.pair == other.pair
    }

    /// The view of a network.
    ///
    /// # Panics
    /// If the id came from another snapshot.
    pub fn view(&self, network: NetworkId) -> &View {
        &self.views[network.index()]
    }

    /// A service by id.
    ///
    /// # Panics
    /// If the id came from another snapshot.
    pub fn service(&self, id: ServiceId) -> &Service {
        &self.services[id.index()]
    }

    /// What a client's query for internal data gets, `None` when the client is in no network.
    pub fn lookup(&self, client: IpAddr, name: &LowerName, rtype: RecordType) -> Option<Lookup> {
        let network = self.networks.lookup(client)?.network;
        Some(self.view(network).lookup(&self.zones, name, rtype))
    }

    /// The certificate a TLS handshake for a normalized host gets: a configured certificate,
    /// else a local-CA certificate for names labgate routes, else none.
    pub fn certificate_for(&self, host: &str) -> Coverage {
        self.certificate_from(host, |_| true)
    }

    /// What the proxy serves when only the configured certificates for which `ready(index)`
    /// holds are at hand: for each name labgate routes, and the default name, the certificate
    /// a handshake gets. The binary loads the ready ones and signs a local-CA leaf for each
    /// [`Coverage::LocalCa`] name; `Uncovered` names have no certificate.
    pub fn certificate_plan(&self, ready: impl Fn(usize) -> bool) -> Vec<CertificatePlan<'_>> {
        let default = self
            .certificates
            .default_name
            .as_deref()
            .filter(|d| self.routes.route(d, "/") == Route::UnknownHost);
        self.routes
            .hosts()
            .chain(default)
            .map(|name| {
                let cover = self.certificate_from(name, &ready);
                let acme_pending = cover == Coverage::LocalCa
                    && matches!(self.certificates.cover(name), Coverage::Spec(i)
                        if matches!(self.certificates.specs[i].source, CertSource::Acme { .. }));
                CertificatePlan {
                    name,
                    cover,
                    acme_pending,
                }
            })
            .collect()
    }

    /// [`Self::certificate_for`] with only the certificates for which `ready(index)` holds.
    fn certificate_from(&self, host: &str, ready: impl Fn(usize) -> bool) -> Coverage {
        match self.certificates.cover_from(host, ready) {
            Coverage::LocalCa
                if self.routes.route(host, "/") == Route::UnknownHost
                    && self.certificates.default_name.as_deref() != Some(host) =>
            {
                Coverage::Uncovered
            }
            c => c,
        }
    }

    /// Whether a peer is a trusted proxy (its `X-Forwarded-For` is kept).
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.trusted_proxies.iter().any(|n| n.contains(&peer))
    }

    /// The service for a normalized host and path.
    pub fn route(&self, host: &str, path: &str) -> Route {
        self.routes.route(host, path)
    }
}

/// One name the proxy answers for (a routed host or the default name) and what serves it: the
/// answer of [`Snapshot::certificate_plan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertificatePlan<'a> {
    /// The name, lower-case.
    pub name: &'a str,
    /// The certificate its handshakes get now.
    pub cover: Coverage,
    /// Whether an ACME certificate will cover it once issued (the local CA stands in until
    /// then).
    pub acme_pending: bool,
}
