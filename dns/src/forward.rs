//! Forwarding names outside the internal zones to upstream resolvers (hickory-resolver: UDP
//! with TCP on truncation, TCP, DoT, DoH), with its cache (TTL countdown, negative caching),
//! conditional forwarders, a bounded wait, and rebinding protection.
//!
//! Resolvers outlive snapshots: a reload that keeps an upstream list keeps its resolver, its
//! health memory and the cache.
//!
//! A question is taken in two steps: [`Forwarders::now`] says what can be answered without
//! waiting (a fresh cache hit; for upstreams known to be down, a stale answer or SERVFAIL),
//! and [`Forwarders::ask`] waits for the upstreams. Equal questions in flight are sent once:
//! later askers wait for the first one's answer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
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
use tokio::sync::broadcast;
use tokio::time::Instant;
use tracing::debug;

use crate::answer::Answer;
use crate::cache::{Cache, Cached, Lifetime};
use crate::health::{Change, Gate, Health, Outcome};
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
    /// Whether it answers lately.
    health: Health,
}

/// A question in flight: the upstream set it went to (its address: the set outlives the
/// question, which holds it), its name and its type.
type Question = (usize, LowerName, RecordType);
/// Questions in flight, each with the channel its answer goes out on (`None`: no answer).
type InFlight = Mutex<HashMap<Question, broadcast::Sender<Option<Answer>>>>;

/// The resolvers for one snapshot: the default upstreams and each conditional forwarder.
pub(crate) struct Forwarders {
    default: Option<Arc<UpstreamSet>>,
    /// `None`: the forwarder's resolver could not be built. Its names then get SERVFAIL,
    /// never the default upstreams: they may be internal names that must not leak.
    conditional: Vec<(Name, Option<Arc<UpstreamSet>>)>,
    rebind_allow: Vec<Name>,
    cache: Arc<Cache>,
    in_flight: Arc<InFlight>,
}

/// Where a forwarded answer came from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Served {
    /// A fresh cache hit, with its lifetime (what the fast path needs to keep it).
    Hit(Lifetime),
    /// An expired answer from the cache: the upstreams are down, silent, or not waited for.
    Stale,
    /// The upstreams of a group (0: `[dns] upstreams`, `i + 1`: `[[forward]]` `i`) answered,
    /// or failed or were known to be down (SERVFAIL).
    Upstream(u16),
    /// No upstream serves the name: SERVFAIL.
    NoUpstream,
}

/// What the forwarders can say about a question without waiting.
pub(crate) enum Now {
    /// Answered now: a fresh cache hit, or a stale answer or SERVFAIL when no upstream can be
    /// asked.
    Answer(Answer, Served),
    /// The upstreams must be asked.
    Ask(Asking),
}

/// A question the upstreams must be asked.
pub(crate) struct Asking {
    set: Arc<UpstreamSet>,
    /// The set's group (see [`Served::Upstream`]).
    group: u16,
    name: LowerName,
    rtype: RecordType,
    /// An expired answer to fall back on.
    stale: Option<Answer>,
}

impl Asking {
    /// The answer for a query that may not wait (the bound on queries in flight is met): the
    /// stale one, else SERVFAIL.
    pub(crate) fn answer_without_waiting(self, metrics: &Metrics) -> (Answer, Served) {
        stale_or_servfail(self.stale, metrics, Served::Upstream(self.group))
    }
}

/// A stale answer (counted) if there is one, else SERVFAIL, said to come from `failed`.
fn stale_or_servfail(stale: Option<Answer>, metrics: &Metrics, failed: Served) -> (Answer, Served) {
    match stale {
        Some(stale) => {
            metrics.cache(CacheEvent::Stale);
            (stale, Served::Stale)
        }
        None => (Answer::servfail(), failed),
    }
}

impl Forwarders {
    /// No upstreams at all: what the first snapshot's forwarders are built over.
    pub(crate) fn empty() -> Self {
        Self {
            default: None,
            conditional: Vec::new(),
            rebind_allow: Vec::new(),
            cache: Arc::new(Cache::new(1, Duration::ZERO)),
            in_flight: Arc::default(),
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
                    health: Health::default(),
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
            cache,
            default: set(&s.dns.upstreams, false),
            conditional: s
                .dns
                .forwarders
                .iter()
                .map(|f| (f.domain.clone(), set(&f.upstreams, true)))
                .collect(),
            rebind_allow: s.dns.rebind_allow.clone(),
            in_flight: Arc::clone(&previous.in_flight),
        }
    }

    /// What can be said about a question without waiting: a fresh cache hit; with no
    /// upstreams for the name, or upstreams known to be down, a stale answer or SERVFAIL at
    /// once; else the upstreams (the conditional forwarder whose domain holds the name,
    /// longest first, else the default ones) must be asked.
    pub(crate) fn now(&self, name: &LowerName, rtype: RecordType, metrics: &Arc<Metrics>) -> Now {
        let now = Instant::now();
        let stale = match self.cache.get(name, rtype, now) {
            Cached::Fresh {
                answer,
                life,
                prefetch,
            } => {
                metrics.cache(CacheEvent::Hit);
                if prefetch {
                    self.prefetch(name, rtype, metrics);
                }
                return Now::Answer(answer, Served::Hit(life));
            }
            Cached::Stale(a) => Some(a),
            Cached::Miss => None,
        };
        metrics.cache(CacheEvent::Miss);
        let (group, Some(set)) = self.set_for(name) else {
            let (answer, served) = stale_or_servfail(stale, metrics, Served::NoUpstream);
            return Now::Answer(answer, served);
        };
        match set.health.gate(now) {
            Gate::Ask => Now::Ask(Asking {
                set: Arc::clone(set),
                group,
                name: name.clone(),
                rtype,
                stale,
            }),
            gate => {
                if gate == Gate::Probe {
                    probe(set);
                }
                metrics.upstream_fail_fast();
                let (answer, served) = stale_or_servfail(stale, metrics, Served::Upstream(group));
                Now::Answer(answer, served)
            }
        }
    }

    /// Waits for the upstreams' answer to a question [`Forwarders::now`] could not answer:
    /// with a stale answer, at most [`STALE_AFTER`] before sending it (a late answer still
    /// refreshes the cache); without, SERVFAIL when they fail or stay silent within
    /// [`UPSTREAM_DEADLINE`].
    pub(crate) async fn ask(&self, asking: Asking, metrics: &Arc<Metrics>) -> (Answer, Served) {
        let mut answer = self.send(&asking, metrics);
        let wait = if asking.stale.is_some() {
            STALE_AFTER
        } else {
            // The question itself ends within the deadline; the margin only keeps a lost
            // sender from holding the query.
            UPSTREAM_DEADLINE + Duration::from_millis(500)
        };
        match tokio::time::timeout(wait, answer.recv()).await {
            Ok(Ok(Some(fresh))) => (fresh, Served::Upstream(asking.group)),
            _ => stale_or_servfail(asking.stale, metrics, Served::Upstream(asking.group)),
        }
    }

    /// [`Forwarders::now`], then [`Forwarders::ask`] if it must.
    #[cfg(test)]
    pub(crate) async fn resolve(
        &self,
        name: &LowerName,
        rtype: RecordType,
        metrics: &Arc<Metrics>,
    ) -> Answer {
        match self.now(name, rtype, metrics) {
            Now::Answer(a, _) => a,
            Now::Ask(asking) => self.ask(asking, metrics).await.0,
        }
    }

    /// Caches an answer as if the upstreams had just given it (fuzzing and tests: they run
    /// without upstreams).
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn remember(&self, name: &LowerName, rtype: RecordType, answer: &Answer) {
        self.cache.put(name, rtype, answer, Instant::now());
    }

    /// Sends a question to its upstreams, unless an equal one is in flight: either way, the
    /// channel its answer comes on.
    fn send(&self, asking: &Asking, metrics: &Arc<Metrics>) -> broadcast::Receiver<Option<Answer>> {
        let question = (
            Arc::as_ptr(&asking.set) as usize,
            asking.name.clone(),
            asking.rtype,
        );
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(sent) = in_flight.get(&question) {
            metrics.coalesced();
            return sent.subscribe();
        }
        let (tx, rx) = broadcast::channel(1);
        in_flight.insert(question.clone(), tx);
        drop(in_flight);
        // Its own task: the question ends within UPSTREAM_DEADLINE whoever waits for it.
        drop(tokio::spawn(fetch(Fetch {
            set: Arc::clone(&asking.set),
            cache: Arc::clone(&self.cache),
            rebind_allow: self.rebind_allow.clone(),
            metrics: Arc::clone(metrics),
            sent: Sent {
                in_flight: Arc::clone(&self.in_flight),
                question,
                done: false,
            },
        })));
        rx
    }

    /// A host's addresses from the upstreams for its domain, empty on failure.
    pub(crate) async fn addresses(&self, host: &str) -> Vec<IpAddr> {
        let Ok(mut name) = Name::from_str(host) else {
            return Vec::new();
        };
        // A name from the configuration is complete: no search domains.
        name.set_fqdn(true);
        let (_, Some(set)) = self.set_for(&LowerName::new(&name)) else {
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
        let (_, Some(set)) = self.set_for(&LowerName::new(name)) else {
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

    /// The upstreams for a name and their group (see [`Served::Upstream`]): the conditional
    /// forwarder whose domain holds it, longest first, else the default ones.
    fn set_for(&self, name: &LowerName) -> (u16, Option<&Arc<UpstreamSet>>) {
        let name = Name::from(name);
        match self.conditional.iter().position(|(d, _)| d.zone_of(&name)) {
            Some(i) => (
                u16::try_from(i + 1).unwrap_or(u16::MAX),
                self.conditional[i].1.as_ref(),
            ),
            None => (0, self.default.as_ref()),
        }
    }

    /// Refreshes a popular answer before it expires, unless its upstreams are down.
    fn prefetch(&self, name: &LowerName, rtype: RecordType, metrics: &Arc<Metrics>) {
        if let (group, Some(set)) = self.set_for(name)
            && !set.health.is_down()
        {
            let asking = Asking {
                set: Arc::clone(set),
                group,
                name: name.clone(),
                rtype,
                stale: None,
            };
            // Nobody waits for it: the answer goes to the cache.
            drop(self.send(&asking, metrics));
        }
    }
}

/// One upstream question and what it needs, owned so it can outlive the client's wait.
struct Fetch {
    set: Arc<UpstreamSet>,
    cache: Arc<Cache>,
    rebind_allow: Vec<Name>,
    metrics: Arc<Metrics>,
    sent: Sent,
}

/// A question's place in the map of questions in flight, taken out when its answer goes, or
/// when its task ends without one (a panic, the runtime stopping): its askers then hear at
/// once that no answer comes, and the next asker sends it again.
struct Sent {
    in_flight: Arc<InFlight>,
    question: Question,
    done: bool,
}

impl Sent {
    /// Takes the question out of the map: the channel its answer goes on.
    fn take(mut self) -> Option<broadcast::Sender<Option<Answer>>> {
        self.done = true;
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.question)
    }
}

impl Drop for Sent {
    fn drop(&mut self) {
        if !self.done {
            // Dropping the channel tells the askers.
            drop(
                self.in_flight
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&self.question),
            );
        }
    }
}

/// Asks the upstreams, then gives the answer to everyone waiting for the question.
async fn fetch(f: Fetch) {
    let answer = exchange(&f).await;
    if let Some(waiting) = f.sent.take() {
        // Nobody may be left waiting (a prefetch, or askers that gave up): nothing to do.
        let _ = waiting.send(answer);
    }
}

/// How an upstream exchange ended, for the metrics (`ok`: an answer that is not SERVFAIL)
/// and the health memory.
fn outcome<T>(
    lookup: &Result<Result<T, NetError>, tokio::time::error::Elapsed>,
) -> (bool, Outcome) {
    match lookup {
        Ok(Ok(_)) | Ok(Err(NetError::Dns(DnsError::NoRecordsFound(_)))) => {
            (true, Outcome::Answered)
        }
        // SERVFAIL is an answer: the upstream is alive, the name is what fails.
        Ok(Err(NetError::Dns(DnsError::ResponseCode(code)))) => {
            (*code != ResponseCode::ServFail, Outcome::Answered)
        }
        _ => (false, Outcome::Silent),
    }
}

/// Records how an exchange with `set` ended, and says so when that took it down or back.
fn heard(set: &UpstreamSet, outcome: Outcome, probe: bool) {
    let named = || {
        let names: Vec<String> = set.upstreams.iter().map(ToString::to_string).collect();
        names.join(", ")
    };
    match set.health.record(outcome, probe, Instant::now()) {
        Some(Change::WentDown) => tracing::warn!(
            upstreams = %named(),
            "upstreams stopped answering: their queries fail at once (stale answers or \
             SERVFAIL) until a probe is answered"
        ),
        Some(Change::CameBack) => tracing::info!(upstreams = %named(), "upstreams answer again"),
        None => {}
    }
}

/// Asks a set known to be down for the root's NS records, which every resolver has cached
/// (any answer, whatever its rcode, is life), and records the outcome as its probe.
fn probe(set: &Arc<UpstreamSet>) {
    let set = Arc::clone(set);
    // Bounded by UPSTREAM_DEADLINE; nothing waits for it.
    drop(tokio::spawn(async move {
        let lookup = set.resolver.lookup(Name::root(), RecordType::NS);
        let lookup = tokio::time::timeout(UPSTREAM_DEADLINE, lookup).await;
        heard(&set, outcome(&lookup).1, true);
    }));
}

/// Asks the upstreams within [`UPSTREAM_DEADLINE`], remembers whether they answered, caches
/// what they say; `None` when they fail or stay silent.
async fn exchange(f: &Fetch) -> Option<Answer> {
    let Fetch {
        set,
        cache,
        rebind_allow,
        metrics,
        sent: Sent {
            question: (_, name, rtype),
            ..
        },
    } = f;
    let rtype = *rtype;
    let qname = Name::from(name);
    let started = Instant::now();
    let lookup =
        tokio::time::timeout(UPSTREAM_DEADLINE, set.resolver.lookup(qname.clone(), rtype)).await;
    let (ok, said) = outcome(&lookup);
    heard(set, said, false);
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
    if !set.conditional && rebinds(rebind_allow, &qname, &answer.answers) {
        // SECURITY: a public name answering with a private address is a DNS rebinding
        // attempt against the LAN; drop the answer (conditional forwarders point at internal
        // servers, so they are exempt).
        debug!(name = %qname, "rebinding protection: private address in a public answer dropped");
        answer = Answer::recursive(ResponseCode::NoError, Vec::new(), Vec::new());
    }
    cache.put(name, rtype, &answer, Instant::now());
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
            health: Health::default(),
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
        assert_eq!(f.set_for(&name("nas.home.arpa.")).0, 1);
        assert!(f.set_for(&name("nas.home.arpa.")).1.is_none());
        let (group, other) = f.set_for(&name("example.com."));
        assert_eq!(group, 0);
        let other = other.expect("default upstreams");
        assert!(Arc::ptr_eq(other, &default));
        let metrics = Arc::new(Metrics::default());
        let answer = f
            .resolve(&name("nas.home.arpa."), RecordType::A, &metrics)
            .await;
        assert_eq!(answer.rcode, ResponseCode::ServFail);
    }

    #[test]
    fn a_question_whose_task_ends_unanswered_leaves_the_map_and_tells_its_askers() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let metrics = Arc::new(Metrics::default());
        let name = LowerName::from(Name::from_str("example.com.").expect("name"));
        let (f, mut answer) = rt.block_on(async {
            let f = Forwarders {
                default: Some(idle_set()),
                ..Forwarders::empty()
            };
            let Now::Ask(asking) = f.now(&name, RecordType::A, &metrics) else {
                panic!("a miss with upstreams is asked")
            };
            let answer = f.send(&asking, &metrics);
            (f, answer)
        });
        assert_eq!(f.in_flight.lock().expect("lock").len(), 1);
        // The runtime stops with the question's task never run to its end.
        drop(rt);
        assert!(
            f.in_flight.lock().expect("lock").is_empty(),
            "entry left behind"
        );
        assert!(matches!(
            answer.try_recv(),
            Err(broadcast::error::TryRecvError::Closed)
        ));
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
