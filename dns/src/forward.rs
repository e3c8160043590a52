//! Forwarding names outside the internal zones to upstream resolvers (hickory-resolver: UDP
//! with TCP on truncation, TCP, DoT, DoH), with its cache (TTL countdown, negative caching),
//! conditional forwarders, a bounded wait, and rebinding protection.
//!
//! Resolvers outlive snapshots: a reload that keeps an upstream list keeps its resolver and
//! with it the cache.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ProtocolConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::{Resolver, TokioResolver};
use labgate_config::Snapshot;
use labgate_config::settings::{Protocol, Upstream};
use tokio::time::Instant;
use tracing::debug;

use crate::answer::Answer;
use crate::cache::{Cache, Cached, Lifetime};
use crate::metrics::{CacheEvent, Metrics};

/// Longest wait for upstreams before answering SERVFAIL.
pub const UPSTREAM_DEADLINE: Duration = Duration::from_millis(3500);
/// Upstream silence after which a stale answer is sent (RFC 8767 suggests 1.8 s).
pub const STALE_AFTER: Duration = Duration::from_millis(1800);
/// Time one upstream attempt may take.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1500);

/// One list of upstreams and the resolver (with its cache) that uses them.
struct UpstreamSet {
    upstreams: Vec<Upstream>,
    /// Extra trusted CAs the resolver was built with.
    roots: Vec<Arc<[u8]>>,
    resolver: TokioResolver,
    /// A conditional forwarder's set (internal servers: exempt from rebinding protection).
    conditional: bool,
}

/// The resolvers for one snapshot: the default upstreams and each conditional forwarder.
pub(crate) struct Forwarders {
    /// Generation of the snapshot they were built for.
    pub(crate) generation: u64,
    default: Option<Arc<UpstreamSet>>,
    /// `None`: the forwarder's resolver could not be built. Its names then get SERVFAIL,
    /// never the default upstreams: they may be internal names that must not leak.
    conditional: Vec<(Name, Option<Arc<UpstreamSet>>)>,
    rebind_allow: Vec<Name>,
    cache: Arc<Cache>,
}

impl Forwarders {
    /// No upstreams at all (before the first snapshot is seen).
    pub(crate) fn empty() -> Self {
        Self {
            generation: 0,
            default: None,
            conditional: Vec::new(),
            rebind_allow: Vec::new(),
            cache: Arc::new(Cache::new(1, Duration::ZERO)),
        }
    }

    /// Resolvers for a snapshot, reusing `previous`' resolvers for unchanged upstream lists
    /// and its cache while the upstreams and cache settings stay the same.
    pub(crate) fn build(s: &Snapshot, previous: &Self) -> Self {
        let known: Vec<&Arc<UpstreamSet>> = previous
            .default
            .iter()
            .chain(
                previous
                    .conditional
                    .iter()
                    .filter_map(|(_, set)| set.as_ref()),
            )
            .collect();
        let set = |upstreams: &[Upstream], conditional: bool| -> Option<Arc<UpstreamSet>> {
            if upstreams.is_empty() {
                return None;
            }
            let roots = &s.dns.upstream_roots;
            if let Some(old) = known.iter().find(|k| {
                k.upstreams == upstreams && k.conditional == conditional && k.roots == *roots
            }) {
                return Some(Arc::clone(old));
            }
            match resolver(upstreams, roots) {
                Ok(resolver) => Some(Arc::new(UpstreamSet {
                    upstreams: upstreams.to_vec(),
                    roots: roots.clone(),
                    resolver,
                    conditional,
                })),
                Err(e) => {
                    tracing::warn!("cannot set up upstreams {upstreams:?}: {e}");
                    None
                }
            }
        };
        // Cached answers stay valid across reloads; only new cache settings start afresh.
        let cache = if previous.cache.settings() == (s.dns.cache_size.get(), s.dns.serve_stale) {
            Arc::clone(&previous.cache)
        } else {
            Arc::new(Cache::new(s.dns.cache_size.get(), s.dns.serve_stale))
        };
        Self {
            generation: s.generation,
            cache,
            default: set(&s.dns.upstreams, false),
            conditional: s
                .dns
                .forwarders
                .iter()
                .map(|f| (f.domain.clone(), set(&f.upstreams, true)))
                .collect(),
            rebind_allow: s.dns.rebind_allow.clone(),
        }
    }

    /// Resolves a name through the cache, then the conditional forwarder whose domain holds
    /// it (longest first), else the default upstreams. A stale answer goes out after
    /// [`STALE_AFTER`] of upstream silence or on upstream failure; without one, SERVFAIL
    /// when none is configured or all fail within [`UPSTREAM_DEADLINE`]. With a fresh cache
    /// hit, its lifetime (for the fast path to serve it on).
    pub(crate) async fn resolve(
        &self,
        name: &LowerName,
        rtype: RecordType,
        metrics: &Arc<Metrics>,
    ) -> (Answer, Option<Lifetime>) {
        let stale = match self.cache.get(name, rtype, Instant::now()) {
            Cached::Fresh {
                answer,
                life,
                prefetch,
            } => {
                metrics.cache(CacheEvent::Hit);
                if prefetch {
                    self.prefetch(name.clone(), rtype, metrics);
                }
                return (answer, Some(life));
            }
            Cached::Stale(a) => Some(a),
            Cached::Miss => None,
        };
        metrics.cache(CacheEvent::Miss);
        let answer = match (self.set_for(name), stale) {
            (None, stale) => stale.unwrap_or_else(Answer::servfail),
            (Some(set), None) => self
                .fetch(set, name.clone(), rtype, metrics)
                .await
                .unwrap_or_else(Answer::servfail),
            (Some(set), Some(stale)) => {
                let mut fetch =
                    Box::pin(tokio::spawn(self.fetch(set, name.clone(), rtype, metrics)));
                match tokio::time::timeout(STALE_AFTER, &mut fetch).await {
                    Ok(Ok(Some(fresh))) => fresh,
                    // Failed, or still silent: the stale answer now; a late answer still
                    // refreshes the cache because the fetch runs on.
                    _ => {
                        metrics.cache(CacheEvent::Stale);
                        stale
                    }
                }
            }
        };
        (answer, None)
    }

    /// Caches an answer as if the upstreams had just given it (fuzzing and tests: they run
    /// without upstreams).
    pub(crate) fn remember(&self, name: &LowerName, rtype: RecordType, answer: &Answer) {
        self.cache.put(name, rtype, answer, Instant::now());
    }

    fn fetch(
        &self,
        set: &Arc<UpstreamSet>,
        name: LowerName,
        rtype: RecordType,
        metrics: &Arc<Metrics>,
    ) -> impl Future<Output = Option<Answer>> + Send + 'static {
        fetch(Fetch {
            set: Arc::clone(set),
            cache: Arc::clone(&self.cache),
            rebind_allow: self.rebind_allow.clone(),
            metrics: Arc::clone(metrics),
            name,
            rtype,
        })
    }

    /// A host's addresses from the upstreams for its domain, empty on failure.
    pub(crate) async fn addresses(&self, host: &str) -> Vec<IpAddr> {
        let Ok(mut name) = Name::from_str(host) else {
            return Vec::new();
        };
        // A name from the configuration is complete: no search domains.
        name.set_fqdn(true);
        let Some(set) = self.set_for(&LowerName::new(&name)) else {
            return Vec::new();
        };
        let lookup = tokio::time::timeout(UPSTREAM_DEADLINE, set.resolver.lookup_ip(name)).await;
        match lookup {
            Ok(Ok(ips)) => ips.iter().collect(),
            _ => Vec::new(),
        }
    }

    /// The data of `name`'s `rtype` records from its upstreams, past the cache; empty when
    /// there are none or on failure.
    pub(crate) async fn records(&self, name: &Name, rtype: RecordType) -> Vec<RData> {
        let Some(set) = self.set_for(&LowerName::new(name)) else {
            return Vec::new();
        };
        match tokio::time::timeout(UPSTREAM_DEADLINE, set.resolver.lookup(name.clone(), rtype))
            .await
        {
            Ok(Ok(l)) => l
                .answers()
                .iter()
                .filter(|r| r.record_type() == rtype)
                .map(|r| r.data.clone())
                .collect(),
            _ => Vec::new(),
        }
    }

    fn set_for(&self, name: &LowerName) -> Option<&Arc<UpstreamSet>> {
        let name = Name::from(name);
        match self.conditional.iter().find(|(d, _)| d.zone_of(&name)) {
            Some((_, set)) => set.as_ref(),
            None => self.default.as_ref(),
        }
    }

    fn prefetch(&self, name: LowerName, rtype: RecordType, metrics: &Arc<Metrics>) {
        if let Some(set) = self.set_for(&name) {
            let task = self.fetch(set, name, rtype, metrics);
            // Bounded by UPSTREAM_DEADLINE inside `fetch`; nothing waits for it.
            drop(tokio::spawn(task));
        }
    }
}

/// One upstream question and what it needs, owned so it can outlive the client's wait.
struct Fetch {
    set: Arc<UpstreamSet>,
    cache: Arc<Cache>,
    rebind_allow: Vec<Name>,
    metrics: Arc<Metrics>,
    name: LowerName,
    rtype: RecordType,
}

/// Asks the upstreams within [`UPSTREAM_DEADLINE`], caches what they say; `None` when they
/// fail or stay silent.
async fn fetch(f: Fetch) -> Option<Answer> {
    let Fetch {
        set,
        cache,
        rebind_allow,
        metrics,
        name,
        rtype,
    } = f;
    let qname = Name::from(&name);
    let started = Instant::now();
    let lookup =
        tokio::time::timeout(UPSTREAM_DEADLINE, set.resolver.lookup(qname.clone(), rtype)).await;
    let ok = match &lookup {
        Ok(Ok(_)) | Ok(Err(NetError::Dns(DnsError::NoRecordsFound(_)))) => true,
        Ok(Err(NetError::Dns(DnsError::ResponseCode(code)))) => *code != ResponseCode::ServFail,
        _ => false,
    };
    metrics.upstream(started.elapsed(), ok);
    let mut answer = match lookup {
        Err(_) => {
            debug!(name = %qname, "upstreams timed out");
            return None;
        }
        Ok(Ok(l)) => Answer::recursive(ResponseCode::NoError, l.answers().to_vec(), Vec::new()),
        Ok(Err(NetError::Dns(DnsError::NoRecordsFound(nr)))) => {
            let soa = nr
                .soa
                .map(|s| s.into_record_of_rdata())
                .into_iter()
                .collect();
            Answer::recursive(nr.response_code, Vec::new(), soa)
        }
        Ok(Err(NetError::Dns(DnsError::ResponseCode(code)))) if code != ResponseCode::ServFail => {
            Answer::recursive(code, Vec::new(), Vec::new())
        }
        Ok(Err(e)) => {
            debug!(name = %qname, "upstream lookup failed: {e}");
            return None;
        }
    };
    if !set.conditional && rebinds(&rebind_allow, &qname, &answer.answers) {
        // SECURITY: a public name answering with a private address is a DNS rebinding
        // attempt against the LAN; drop the answer (conditional forwarders point at internal
        // servers, so they are exempt).
        debug!(name = %qname, "rebinding protection: private address in a public answer dropped");
        answer = Answer::recursive(ResponseCode::NoError, Vec::new(), Vec::new());
    }
    cache.put(&name, rtype, &answer, Instant::now());
    Some(answer)
}

fn rebinds(allow: &[Name], name: &Name, records: &[Record]) -> bool {
    if allow.iter().any(|d| d.zone_of(name)) {
        return false;
    }
    records.iter().any(|r| match &r.data {
        RData::A(a) => private(IpAddr::V4(a.0)),
        RData::AAAA(a) => private(IpAddr::V6(a.0)),
        _ => false,
    })
}

/// Addresses that belong to a LAN or the host, never to a public name.
pub fn private(ip: IpAddr) -> bool {
    match labgate_config::network::canonical(ip) {
        IpAddr::V4(a) => {
            let [o0, o1, ..] = a.octets();
            a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_unspecified()
                || o0 == 0
                || (o0 == 100 && (64..128).contains(&o1))
        }
        IpAddr::V6(a) => {
            let first = a.segments()[0];
            a.is_loopback()
                || a.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

fn resolver(upstreams: &[Upstream], roots: &[Arc<[u8]>]) -> Result<TokioResolver, NetError> {
    let servers = upstreams.iter().map(name_server).collect();
    let mut opts = ResolverOpts::default();
    opts.timeout = ATTEMPT_TIMEOUT;
    opts.attempts = 2;
    // labgate caches whole answers itself (serve-stale, prefetch); hickory's cache also
    // drops a CNAME whose target it has cached (see ../shared/research/dns.md §3).
    opts.cache_size = 0;
    opts.preserve_intermediates = true;
    opts.ndots = 0;
    // A2: the data plane reads no files; the appliance's /etc/hosts is not the LAN's truth.
    opts.use_hosts_file = ResolveHosts::Never;
    let mut builder = Resolver::builder_with_config(
        ResolverConfig::from_name_servers(servers),
        TokioRuntimeProvider::default(),
    )
    .with_options(opts);
    if !roots.is_empty() {
        builder = builder.with_tls_config(tls_config(roots)?);
    }
    builder.build()
}

/// The public roots plus the configured private CAs, with the ring provider (F1).
fn tls_config(extra: &[Arc<[u8]>]) -> Result<rustls::ClientConfig, NetError> {
    let mut store = rustls::RootCertStore::empty();
    store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for der in extra {
        store
            .add(rustls_pki_types::CertificateDer::from(der.to_vec()))
            .map_err(|e| NetError::Msg(format!("dns.upstream_ca_file: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| NetError::Msg(format!("TLS for upstreams: {e}")))?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(config)
}

fn name_server(u: &Upstream) -> NameServerConfig {
    let conn = |protocol| {
        let mut c = ConnectionConfig::new(protocol);
        c.port = u.addr.port();
        c
    };
    // The config requires a TLS name for tls:// and https://; the IP is a
    // fallback that fails verification loudly rather than silently.
    let server_name = || {
        u.tls_name
            .clone()
            .unwrap_or_else(|| Arc::from(u.addr.ip().to_string()))
    };
    let connections = match u.protocol {
        // UDP first, TCP when an answer is truncated.
        Protocol::Udp => vec![conn(ProtocolConfig::Udp), conn(ProtocolConfig::Tcp)],
        Protocol::Tcp => vec![conn(ProtocolConfig::Tcp)],
        Protocol::Tls => vec![conn(ProtocolConfig::Tls {
            server_name: server_name(),
        })],
        Protocol::Https => vec![conn(ProtocolConfig::Https {
            server_name: server_name(),
            path: u.path.clone().unwrap_or_else(|| Arc::from("/dns-query")),
        })],
    };
    NameServerConfig::new(u.addr.ip(), true, connections)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A set whose resolver is never asked: building one sends nothing.
    fn idle_set() -> Arc<UpstreamSet> {
        let upstreams = vec![Upstream {
            protocol: Protocol::Udp,
            addr: "127.0.0.1:9".parse().expect("addr"),
            tls_name: None,
            path: None,
        }];
        let resolver = resolver(&upstreams, &[]).expect("resolver");
        Arc::new(UpstreamSet {
            upstreams,
            roots: Vec::new(),
            resolver,
            conditional: false,
        })
    }

    #[tokio::test]
    async fn a_forwarder_that_could_not_be_built_fails_its_names_instead_of_leaking_them() {
        let default = idle_set();
        let f = Forwarders {
            default: Some(Arc::clone(&default)),
            conditional: vec![(Name::from_str("home.arpa.").expect("name"), None)],
            ..Forwarders::empty()
        };
        let name = |n: &str| LowerName::from(Name::from_str(n).expect("name"));
        assert!(f.set_for(&name("nas.home.arpa.")).is_none());
        let other = f.set_for(&name("example.com.")).expect("default upstreams");
        assert!(Arc::ptr_eq(other, &default));
        let metrics = Arc::new(Metrics::default());
        let (answer, _) = f
            .resolve(&name("nas.home.arpa."), RecordType::A, &metrics)
            .await;
        assert_eq!(answer.rcode, ResponseCode::ServFail);
    }

    #[test]
    fn private_ranges() {
        for ip in [
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.1",
            "127.0.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "fd00::1",
            "fe80::1",
            "::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(private(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["1.1.1.1", "100.128.0.1", "2606:4700::1111", "172.32.0.1"] {
            assert!(!private(ip.parse().expect("ip")), "{ip}");
        }
    }
}
