//! The DNS server's general path over the published snapshot (`Handler::plan`: everything
//! decided without waiting; the upstreams only for forwarded cache misses), its encoding and
//! truncation, and the start of the listeners (UDP workers in `udp`, TCP and TLS in `stream`).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;
use hickory_server::server::default_tls_server_config;
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder};
use labgate_config::Snapshot;
use rustls::server::ResolvesServerCert;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::admission::{Limit, Ticket, WorkerShare};
use crate::answer::{Answer, Decision, FetchedLists, decide};
use crate::cache::Lifetime;
use crate::challenges::Challenges;
use crate::fast::{self, FastTable};
use crate::forward::{Asking, Forwarders, Now};
use crate::hits::HitTable;
use crate::metrics::{CacheEvent, Metrics};
use crate::stream::{DRAIN, MAX_CONNECTIONS, Streams};

/// Idle time after which a TCP connection is closed.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest UDP response: the DNS Flag Day 2020 size (RFC 9715), or the client's smaller size.
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// Answers queries from the snapshot current when each query arrives (C3).
#[derive(Clone)]
pub struct Handler {
    snapshot: Arc<ArcSwap<Snapshot>>,
    lists: Arc<ArcSwap<FetchedLists>>,
    metrics: Arc<Metrics>,
    forwarders: Arc<ArcSwap<Forwarders>>,
    rebuilding: Arc<Mutex<()>>,
    /// The fast path's answers, for the generation they name.
    fast: Arc<ArcSwap<FastTable>>,
    /// The generation whose table is being built (0: none yet).
    fast_building: Arc<AtomicU64>,
    /// The fast path's cache hits.
    hits: Arc<HitTable>,
    /// ACME challenge values of the `builtin` provider.
    challenges: Arc<Challenges>,
}

impl Handler {
    /// A handler reading the given snapshot handle and counting into `metrics`.
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>, metrics: Arc<Metrics>) -> Self {
        Self {
            snapshot,
            lists: Arc::new(ArcSwap::from_pointee(FetchedLists::new())),
            metrics,
            forwarders: Arc::new(ArcSwap::from_pointee(Forwarders::empty())),
            rebuilding: Arc::new(Mutex::new(())),
            fast: Arc::new(ArcSwap::from_pointee(FastTable::default())),
            fast_building: Arc::new(AtomicU64::new(0)),
            hits: Arc::new(HitTable::default()),
            challenges: Arc::new(Challenges::default()),
        }
    }

    /// Its counters.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Where the ACME `builtin` provider publishes challenge values.
    pub fn challenges(&self) -> Arc<Challenges> {
        Arc::clone(&self.challenges)
    }

    /// Answers a UDP query into `out` from the precompiled table or the kept cache hits;
    /// `None` sends it to the general path. A table older than the snapshot is never used:
    /// the first query after a reload starts its rebuild in the background (needs a tokio
    /// runtime).
    pub fn fast_answer(&self, src: IpAddr, query: &[u8], out: &mut [u8]) -> Option<usize> {
        let snapshot = self.snapshot.load();
        let table = self.fast.load();
        if table.generation != snapshot.generation {
            let generation = snapshot.generation;
            if self.fast_building.swap(generation, Ordering::AcqRel) != generation {
                let handler = self.clone();
                let snapshot = Arc::clone(&snapshot);
                tokio::spawn(async move { handler.build_fast(snapshot).await });
            }
            return None;
        }
        let network = snapshot.networks.lookup(src)?.network.index();
        let p = fast::parse(query, u16::try_from(network).ok()?)?;
        let (len, rcode) = match table.answer(&p, query, out) {
            Some(done) => done,
            None => {
                let lists = self.lists.load();
                let hit = self
                    .hits
                    .answer(snapshot.generation, &lists, &p, query, out)?;
                self.metrics.cache(CacheEvent::Hit);
                hit
            }
        };
        self.metrics
            .query(Some(network), RecordType::from(p.qtype), rcode);
        self.metrics.fast_answer();
        Some(len)
    }

    /// Builds the upstreams' resolvers and the fast path's table for the current snapshot now,
    /// unless a query started the table already: at start, and after each reload (the
    /// binary's control task), so that the UDP workers find them made. A query that comes
    /// first still starts the table in the background, and builds the resolvers itself.
    pub async fn prepare(&self) {
        let snapshot = self.snapshot.load_full();
        drop(self.forwarders(&snapshot));
        let generation = snapshot.generation;
        if self.fast_building.swap(generation, Ordering::AcqRel) != generation {
            self.build_fast(snapshot).await;
        }
    }

    /// Compiles the table for `snapshot` and publishes it unless a newer snapshot is serving
    /// by then (an older table must not replace a newer one: no query would rebuild it).
    async fn build_fast(&self, snapshot: Arc<Snapshot>) {
        let table = FastTable::build(&self.frozen(&snapshot), &snapshot).await;
        if self.snapshot.load().generation == table.generation {
            self.fast.store(Arc::new(table));
        }
    }

    /// A handler over one fixed snapshot that counts nothing: the fast table's compiler.
    fn frozen(&self, snapshot: &Arc<Snapshot>) -> Self {
        Self {
            snapshot: Arc::new(ArcSwap::new(Arc::clone(snapshot))),
            metrics: Arc::new(Metrics::default()),
            ..self.clone()
        }
    }

    /// Runs one query's bytes through the general path as a TCP (or TLS) query from `src`:
    /// the whole response, or `None` when the query deserves silence. A query that must wait
    /// for the upstreams takes a place (see `admission`), or is answered at once without one.
    pub(crate) async fn answer_stream(&self, data: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
        let out = match self.plan(data, src, false) {
            Plan::Ready(out, _) => out,
            Plan::Upstream(p) => match self.enter(&p, None) {
                Ok(ticket) => self.complete(*p, Some(ticket)).await,
                Err(limit) => self.answer_over(*p, limit),
            },
        };
        (!out.is_empty()).then_some(out)
    }

    /// Runs one query's bytes through the general path as a UDP query from `src`, waiting for
    /// the upstreams without a bound (the fast table's compiler, fuzzing and tests; the UDP
    /// workers take places): the response bytes, or `None` when the query deserves silence.
    pub async fn answer_bytes(&self, data: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
        let out = match self.plan_udp(data, src) {
            Plan::Ready(out, _) => out,
            Plan::Upstream(p) => self.complete(*p, None).await,
        };
        (!out.is_empty()).then_some(out)
    }

    /// [`Handler::plan`] for a UDP query; a fresh cache hit's response is kept for the fast
    /// path.
    pub(crate) fn plan_udp(&self, data: &[u8], src: SocketAddr) -> Plan {
        let decided_with = self.decision_inputs();
        let plan = self.plan(data, src, true);
        if let Plan::Ready(out, Some(life)) = &plan {
            self.keep_hit(decided_with, src, data, out, *life);
        }
        plan
    }

    /// Takes a place for a query that must wait for the upstreams (over UDP, in its worker's
    /// share), or names the limit it met.
    pub(crate) fn enter(&self, p: &Pending, worker: Option<&WorkerShare>) -> Result<Ticket, Limit> {
        let dns = &p.snapshot.dns;
        self.metrics.admission.enter(
            p.request.src().ip(),
            worker,
            dns.max_in_flight.get(),
            dns.max_in_flight_per_client.get(),
        )
    }

    /// Waits for the upstreams' answer to a planned query, holding `ticket`'s place if it has
    /// one: the response bytes.
    pub(crate) async fn complete(&self, p: Pending, ticket: Option<Ticket>) -> Vec<u8> {
        let Pending {
            request,
            snapshot,
            forwarders,
            asking,
            chain,
            udp,
        } = p;
        let outside = forwarders.ask(asking, &self.metrics).await;
        drop(ticket);
        self.respond(&request, &snapshot, chained(chain, outside), udp)
    }

    /// Answers a query that met `limit` at once: a stale answer, else SERVFAIL.
    pub(crate) fn answer_over(&self, p: Pending, limit: Limit) -> Vec<u8> {
        self.metrics.overload(limit);
        let outside = p.asking.answer_without_waiting(&self.metrics);
        self.respond(&p.request, &p.snapshot, chained(p.chain, outside), p.udp)
    }

    /// The snapshot and fetched lists a decision starting now is made with.
    fn decision_inputs(&self) -> (Arc<Snapshot>, Arc<FetchedLists>) {
        (self.snapshot.load_full(), self.lists.load_full())
    }

    /// Keeps a cache hit's response for the fast path if the query is one it takes and the
    /// decision's inputs did not change while it was made (so they are the ones it used).
    fn keep_hit(
        &self,
        (snapshot, lists): (Arc<Snapshot>, Arc<FetchedLists>),
        src: SocketAddr,
        query: &[u8],
        response: &[u8],
        life: Lifetime,
    ) {
        let (now_snapshot, now_lists) = self.decision_inputs();
        if now_snapshot.generation != snapshot.generation || !Arc::ptr_eq(&now_lists, &lists) {
            return;
        }
        let Some(network) = snapshot.networks.lookup(src.ip()) else {
            return;
        };
        let Some(p) = u16::try_from(network.network.index())
            .ok()
            .and_then(|index| fast::parse(query, index))
        else {
            return;
        };
        self.hits.keep(
            (snapshot.generation, &lists),
            snapshot.dns.cache_size.get(),
            &p,
            response,
            life,
        );
    }

    /// Caches a forwarded answer as if an upstream had given it (fuzzing and tests).
    pub(crate) fn remember(&self, name: &LowerName, rtype: RecordType, answer: &Answer) {
        let snapshot = self.snapshot.load_full();
        self.forwarders(&snapshot).remember(name, rtype, answer);
    }

    /// Where the control plane publishes blocklists fetched from URLs.
    pub fn fetched_lists(&self) -> Arc<ArcSwap<FetchedLists>> {
        Arc::clone(&self.lists)
    }

    /// Resolves a host name through the upstreams directly (never labgate's own views, so a
    /// list download does not depend on labgate's own DNS).
    pub async fn resolve_upstream(&self, host: &str) -> Vec<IpAddr> {
        let snapshot = self.snapshot.load_full();
        self.forwarders(&snapshot).addresses(host).await
    }

    /// The data of `name`'s `rtype` records through the upstreams (never labgate's own views,
    /// never the cache): how ACME finds a zone's authoritative servers.
    pub async fn upstream_records(&self, name: &Name, rtype: RecordType) -> Vec<RData> {
        let snapshot = self.snapshot.load_full();
        self.forwarders(&snapshot).records(name, rtype).await
    }

    /// The resolvers for a snapshot, rebuilt after a reload (keeping unchanged upstreams'
    /// caches). Only one query rebuilds; the others keep using the previous set meanwhile.
    fn forwarders(&self, s: &Snapshot) -> Arc<Forwarders> {
        let current = self.forwarders.load_full();
        if current.generation == s.generation {
            return current;
        }
        let Ok(_guard) = self.rebuilding.try_lock() else {
            return current;
        };
        let current = self.forwarders.load_full();
        if current.generation == s.generation {
            return current;
        }
        let next = Arc::new(Forwarders::build(s, &current));
        self.forwarders.store(Arc::clone(&next));
        next
    }
}

/// The running DNS listeners.
pub struct DnsServer {
    streams: Streams,
    listeners: Vec<tokio::task::JoinHandle<()>>,
    udp: Vec<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl DnsServer {
    /// Stops the UDP workers (within their stop check) and the stream listeners; open TCP
    /// and TLS connections get a few seconds to send the answers they owe.
    pub async fn shutdown(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.streams.stop.cancel();
        let workers = self.udp;
        let _ = tokio::task::spawn_blocking(move || {
            for w in workers {
                let _ = w.join();
            }
        })
        .await;
        for l in self.listeners {
            let _ = l.await;
        }
        // Every connection holds a slot until it has closed.
        let all = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(DRAIN, self.streams.slots.acquire_many(all)).await;
    }
}

/// Starts serving on already-bound sockets (G3): each UDP socket on its own worker thread
/// (labgate's batched loop, fast path first), TCP and DNS over TLS (with `certs`, ALPN `dot`,
/// TLS 1.2 and 1.3) on labgate's stream listeners. Call it within a tokio runtime: the
/// general path runs there.
///
/// # Errors
/// When a worker thread cannot be started, or the TLS configuration cannot be built.
pub fn serve(
    handler: Handler,
    udp: Vec<std::net::UdpSocket>,
    tcp: Vec<TcpListener>,
    (tls, certs): (Vec<TcpListener>, Arc<dyn ResolvesServerCert>),
) -> std::io::Result<DnsServer> {
    let stop = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Handle::current();
    let count = udp.len();
    let mut workers = Vec::with_capacity(count);
    for (i, socket) in udp.into_iter().enumerate() {
        let (handler, rt, stop) = (handler.clone(), rt.clone(), Arc::clone(&stop));
        workers.push(
            std::thread::Builder::new()
                .name(format!("labgate dns udp {i}"))
                .spawn(move || crate::udp::run(&handler, socket, &rt, (&stop, count)))?,
        );
    }
    let streams = Streams {
        handler,
        slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        clients: Arc::default(),
        per_client: crate::MAX_CONNECTIONS_PER_CLIENT,
        stop: CancellationToken::new(),
    };
    let mut listeners: Vec<_> = tcp
        .into_iter()
        .map(|l| tokio::spawn(streams.clone().listen(l, None)))
        .collect();
    if !tls.is_empty() {
        let acceptor = TlsAcceptor::from(Arc::new(default_tls_server_config(b"dot", certs)?));
        listeners.extend(
            tls.into_iter()
                .map(|l| tokio::spawn(streams.clone().listen(l, Some(acceptor.clone())))),
        );
    }
    Ok(DnsServer {
        streams,
        listeners,
        udp: workers,
        stop,
    })
}

/// What the general path makes of one query before any upstream is asked.
pub(crate) enum Plan {
    /// The response (empty: the query deserves silence) and, for a fresh cache hit of a
    /// forwarded name, its lifetime.
    Ready(Vec<u8>, Option<Lifetime>),
    /// The upstreams must be asked.
    Upstream(Box<Pending>),
}

/// A query that must wait for the upstreams, with what its response is made from.
pub(crate) struct Pending {
    request: Request,
    snapshot: Arc<Snapshot>,
    forwarders: Arc<Forwarders>,
    asking: Asking,
    /// The internal start of a CNAME chain the upstreams complete.
    chain: Option<Answer>,
    udp: bool,
}

impl Pending {
    /// Where the query came from.
    pub(crate) fn src(&self) -> SocketAddr {
        self.request.src()
    }
}

impl Handler {
    /// Decides one query's bytes received over UDP (`udp`) or a stream from `src` without
    /// waiting: internal names, blocked names, cache hits, malformed queries and upstreams
    /// known to be down are answered now, in full; forwarded names that miss the cache are
    /// left for the upstreams.
    pub(crate) fn plan(&self, data: &[u8], src: SocketAddr, udp: bool) -> Plan {
        let protocol = if udp { Protocol::Udp } else { Protocol::Tcp };
        let Ok(request) = Request::from_bytes(data.to_vec(), src, protocol) else {
            // RFC 6891 §6.1.1 (two OPT records) and every other message that does not parse
            // past its header.
            return Plan::Ready(self.format_error(data, src, false), None);
        };
        if request.metadata.message_type == MessageType::Response {
            // SECURITY: answering responses lets two servers loop; drop them silently.
            return Plan::Ready(Vec::new(), None);
        }
        let ([query], false) = (
            request.queries.queries(),
            compressed(request.queries.as_bytes()),
        ) else {
            // hickory echoes the question section byte for byte; a compression pointer in it
            // (legal only into earlier names, of which a lone question has none) would point
            // into our response header (found by the dns_handle fuzz target). FORMERR with
            // the header alone (and the OPT an EDNS query gets back) echoes nothing.
            return Plan::Ready(self.format_error(data, src, request.edns.is_some()), None);
        };
        let edns = response_edns(&request);
        let refused = if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            Some(ResponseCode::BADVERS)
        } else if request.metadata.op_code != OpCode::Query {
            Some(ResponseCode::NotImp)
        } else {
            None
        };
        if let Some(rcode) = refused {
            let msg = MessageResponseBuilder::new(&request.queries, edns.as_ref())
                .error_msg(&request.metadata, rcode);
            return Plan::Ready(emit(msg).unwrap_or_default(), None);
        }
        let snapshot = self.snapshot.load_full();
        let (name, rtype) = (query.name(), query.query_type());
        let decision = match self.challenges.answer(name, rtype) {
            Some(challenge) => Decision::Answer(challenge),
            None => decide(
                &snapshot,
                &self.lists.load(),
                src.ip(),
                name,
                rtype,
                query.query_class(),
            ),
        };
        let (chain, target, rtype) = match decision {
            Decision::Answer(a) => {
                return Plan::Ready(self.respond(&request, &snapshot, a, udp), None);
            }
            Decision::Forward => (None, name.clone(), rtype),
            Decision::Chase {
                chain,
                target,
                rtype,
            } => (Some(chain), target, rtype),
        };
        let forwarders = self.forwarders(&snapshot);
        match forwarders.now(&target, rtype, &self.metrics) {
            Now::Answer(outside, life) => {
                // Only a forwarded name's own hit is kept for the fast path.
                let life = life.filter(|_| chain.is_none());
                let out = self.respond(&request, &snapshot, chained(chain, outside), udp);
                Plan::Ready(out, life)
            }
            Now::Ask(asking) => Plan::Upstream(Box::new(Pending {
                request,
                snapshot,
                forwarders,
                asking,
                chain,
                udp,
            })),
        }
    }

    /// The encoded response carrying answer `a` to `request`, counted.
    fn respond(&self, request: &Request, snapshot: &Snapshot, a: Answer, udp: bool) -> Vec<u8> {
        let src = request.src();
        if let Some(q) = request.queries.queries().first() {
            debug!(client = %src, name = %q.name(), qtype = %q.query_type(), rcode = %a.rcode, "dns query");
            let network = snapshot
                .networks
                .lookup(src.ip())
                .map(|m| m.network.index());
            self.metrics.query(network, q.query_type(), a.rcode);
        }
        if a.blocked {
            self.metrics.blocked();
        }
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.authoritative = a.authoritative;
        meta.recursion_available = a.recursion_available;
        meta.response_code = a.rcode;
        encode(request, response_edns(request).as_ref(), meta, &a, udp)
    }

    /// FORMERR for a message that does not parse (see [`format_error`]), counted.
    fn format_error(&self, data: &[u8], src: SocketAddr, edns: bool) -> Vec<u8> {
        let out = format_error(data, edns);
        if !out.is_empty() {
            let network = self
                .snapshot
                .load()
                .networks
                .lookup(src.ip())
                .map(|m| m.network.index());
            self.metrics
                .query(network, RecordType::ZERO, ResponseCode::FormErr);
        }
        out
    }
}

/// The internal start of a CNAME chain completed by what the upstreams said about its
/// target, or their answer alone.
fn chained(chain: Option<Answer>, outside: Answer) -> Answer {
    match chain {
        Some(mut chain) => {
            // RFC 6604: the rcode and the authority section follow the last name.
            chain.rcode = outside.rcode;
            chain.answers.extend(outside.answers);
            chain.soa = outside.soa;
            chain
        }
        None => outside,
    }
}

/// The OPT of the response to an EDNS query: our UDP size (at most the client's), version 0,
/// the DO bit echoed (RFC 3225).
fn response_edns(request: &Request) -> Option<Edns> {
    let req = request.edns.as_ref()?;
    let mut e = Edns::new();
    e.set_max_payload(req.max_payload().clamp(512, MAX_UDP_PAYLOAD));
    e.set_version(0);
    e.set_dnssec_ok(req.flags().dnssec_ok);
    Some(e)
}

/// Encodes a response. Over UDP, one larger than the client's size (512 without EDNS) goes
/// out with TC set, the question and the OPT, and no records (RFC 2181 §9: no partial
/// RRsets; RFC 6891 §7: an EDNS query gets an OPT back), so the client asks again over TCP.
fn encode(
    request: &Request,
    edns: Option<&Edns>,
    mut meta: Metadata,
    a: &Answer,
    udp: bool,
) -> Vec<u8> {
    let max = if udp {
        edns.map_or(512, Edns::max_payload)
    } else {
        u16::MAX
    };
    let builder = || MessageResponseBuilder::new(&request.queries, edns);
    let full = emit(builder().build(meta, a.answers.iter(), [], a.soa.iter(), []));
    if let Some(full) = full.filter(|f| f.len() <= usize::from(max)) {
        return full;
    }
    if udp {
        meta.truncation = true;
    } else {
        // Over 64 KiB: nothing can carry it.
        meta.response_code = ResponseCode::ServFail;
    }
    emit(builder().build_no_records(meta)).unwrap_or_default()
}

/// A response's bytes, whole (no size limit: truncation is [`encode`]'s); `None` if it cannot
/// be encoded.
fn emit<'a>(
    msg: MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut buf);
    msg.destructive_emit(&mut encoder).ok()?;
    Some(buf)
}

/// FORMERR for a message whose header could be read: its ID, opcode, RD and CD, no question
/// (RFC 1035 §4.1.1; RFC 6891 §6.1.1 for two OPT records), and an OPT of ours when the query
/// had a readable one (`edns`, RFC 6891 §7). Empty (silence) for a response, which must never
/// be answered, and for anything shorter than a header.
pub(crate) fn format_error(data: &[u8], edns: bool) -> Vec<u8> {
    let Some(header) = data.get(..12) else {
        return Vec::new();
    };
    if header[2] & 0x80 != 0 {
        return Vec::new();
    }
    let mut out = vec![0; 12];
    out[..2].copy_from_slice(&header[..2]);
    // QR set; opcode and RD kept; CD kept (RFC 4035 §3.2.2).
    out[2] = 0x80 | (header[2] & 0x79);
    out[3] = (header[3] & 0x10) | ResponseCode::FormErr.low();
    if edns {
        out[11] = 1;
        // The root name, OPT, our UDP size, no extended rcode, version 0, no flags or data.
        out.extend_from_slice(&[0, 0, 41]);
        out.extend_from_slice(&MAX_UDP_PAYLOAD.to_be_bytes());
        out.extend_from_slice(&[0; 6]);
    }
    out
}

/// Whether a question section's name uses a compression pointer (or a reserved label type).
fn compressed(question: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&len) = question.get(i) {
        if len == 0 {
            return false;
        }
        if len & 0xC0 != 0 {
            return true;
        }
        i += 1 + usize::from(len);
    }
    false
}
