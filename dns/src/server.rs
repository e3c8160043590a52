//! The DNS server: hickory's `Server` for the sockets (UDP, and TCP per RFC 7766), labgate's
//! own `RequestHandler` over the published snapshot.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use hickory_proto::op::{Edns, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::NetError;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::default_tls_server_config;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder};
use labgate_config::Snapshot;
use rustls::server::ResolvesServerCert;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::answer::{Answer, Decision, FetchedLists, decide};
use crate::cache::Lifetime;
use crate::challenges::Challenges;
use crate::fast::{self, FastTable};
use crate::forward::Forwarders;
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

    /// Builds the fast path's table for the current snapshot now (start-up and tests; after a
    /// reload the first UDP query starts it).
    pub async fn prepare_fast(&self) {
        let snapshot = self.snapshot.load_full();
        self.fast_building
            .store(snapshot.generation, Ordering::Release);
        self.build_fast(snapshot).await;
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
    /// the whole response, or `None` when the message does not parse as a request or
    /// deserves silence.
    pub(crate) async fn answer_stream(&self, data: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
        let (out, _) = self.answer_as(Protocol::Tcp, data, src).await?;
        (!out.is_empty()).then_some(out)
    }

    /// Runs one query's bytes through the general path as a UDP query from `src`; the
    /// response bytes (truncated to the UDP size with TC set), or `None` when the packet does
    /// not parse as a request or deserves silence. A fresh cache hit's response is kept for
    /// the fast path.
    pub async fn answer_bytes(&self, data: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
        let decided_with = self.decision_inputs();
        let (out, hit) = self.answer_as(Protocol::Udp, data, src).await?;
        if let Some(life) = hit {
            self.keep_hit(decided_with, src, data, &out, life);
        }
        (!out.is_empty()).then_some(out)
    }

    /// The general path's encoded response to `data` received over `protocol` (empty when it
    /// deserves silence), and the cache lifetime when it was a fresh cache hit.
    async fn answer_as(
        &self,
        protocol: Protocol,
        data: &[u8],
        src: SocketAddr,
    ) -> Option<(Vec<u8>, Option<Lifetime>)> {
        let request = Request::from_bytes(data.to_vec(), src, protocol).ok()?;
        let reply = Reply::new(protocol == Protocol::Udp);
        let (_, hit) = self.respond(&request, reply.clone()).await;
        let out = std::mem::take(&mut *reply.out.lock().ok()?);
        Some((out, hit))
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
    let mut workers = Vec::with_capacity(udp.len());
    for (i, socket) in udp.into_iter().enumerate() {
        let (handler, rt, stop) = (handler.clone(), rt.clone(), Arc::clone(&stop));
        workers.push(
            std::thread::Builder::new()
                .name(format!("labgate dns udp {i}"))
                .spawn(move || crate::udp::run(&handler, socket, &rt, &stop))?,
        );
    }
    let streams = Streams {
        handler,
        slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
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

#[async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response: R,
    ) -> ResponseInfo {
        self.respond(request, response).await.0
    }
}

impl Handler {
    /// Answers one request; with a fresh cache hit, the lifetime of the answer sent.
    async fn respond<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
    ) -> (ResponseInfo, Option<Lifetime>) {
        if request.metadata.message_type == MessageType::Response {
            // SECURITY: answering responses lets two servers loop; drop them silently.
            return (unsent(request, ResponseCode::FormErr), None);
        }
        if request.queries.len() != 1 || compressed(request.queries.as_bytes()) {
            // hickory echoes the question section byte for byte; a compression pointer in it
            // (legal only into earlier names, of which a lone question has none) would point
            // into our response header. Found by the dns_handle fuzz target: stay silent.
            return (unsent(request, ResponseCode::FormErr), None);
        }
        let snapshot = self.snapshot.load_full();
        let mut edns = None;
        if let Some(req) = &request.edns {
            let mut e = Edns::new();
            e.set_max_payload(req.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            e.set_version(0);
            // RFC 3225: echo the DO bit.
            e.set_dnssec_ok(req.flags().dnssec_ok);
            edns = Some(e);
        }
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let rcode = if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            Some(ResponseCode::BADVERS)
        } else if request.metadata.op_code != OpCode::Query {
            Some(ResponseCode::NotImp)
        } else {
            None
        };
        let mut hit = None;
        let info = match (rcode, request.request_info()) {
            (None, Ok(info)) => {
                let q = info.query;
                let lists = self.lists.load();
                let decision = match self.challenges.answer(q.name(), q.query_type()) {
                    Some(challenge) => Decision::Answer(challenge),
                    None => decide(
                        &snapshot,
                        &lists,
                        info.src.ip(),
                        q.name(),
                        q.query_type(),
                        q.query_class(),
                    ),
                };
                let a = match decision {
                    Decision::Answer(a) => a,
                    Decision::Forward => {
                        let forwarders = self.forwarders(&snapshot);
                        let (a, life) = forwarders
                            .resolve(q.name(), q.query_type(), &self.metrics)
                            .await;
                        hit = life;
                        a
                    }
                    Decision::Chase {
                        mut chain,
                        target,
                        rtype,
                    } => {
                        let forwarders = self.forwarders(&snapshot);
                        let (outside, _) = forwarders.resolve(&target, rtype, &self.metrics).await;
                        // RFC 6604: the rcode and the authority section follow the last name.
                        chain.rcode = outside.rcode;
                        chain.answers.extend(outside.answers);
                        chain.soa = outside.soa;
                        chain
                    }
                };
                debug!(client = %info.src, name = %q.name(), qtype = %q.query_type(), rcode = %a.rcode, "dns query");
                let network = snapshot
                    .networks
                    .lookup(info.src.ip())
                    .map(|m| m.network.index());
                self.metrics.query(network, q.query_type(), a.rcode);
                if a.blocked {
                    self.metrics.blocked();
                }
                let mut meta = Metadata::response_from_request(&request.metadata);
                meta.authoritative = a.authoritative;
                meta.recursion_available = a.recursion_available;
                meta.response_code = a.rcode;
                let msg = builder.build(meta, a.answers.iter(), [], a.soa.iter(), []);
                response.send_response(msg).await
            }
            (rcode, _) => {
                let msg =
                    builder.error_msg(&request.metadata, rcode.unwrap_or(ResponseCode::FormErr));
                response.send_response(msg).await
            }
        };
        let info = info.unwrap_or_else(|e| {
            debug!("dns response not sent: {e}");
            unsent(request, ResponseCode::ServFail)
        });
        (info, hit)
    }
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

/// What the server reports for a request it did not (or could not) answer.
fn unsent(request: &Request, rcode: ResponseCode) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = rcode;
    ResponseInfo::from(hickory_proto::op::Header {
        metadata,
        counts: Default::default(),
    })
}

/// A response handler that keeps the encoded response: for UDP at most the client's EDNS
/// size (512 without EDNS), truncated with TC set beyond; for a stream, whole.
#[derive(Clone)]
pub(crate) struct Reply {
    out: Arc<Mutex<Vec<u8>>>,
    udp: bool,
}

impl Reply {
    /// For a UDP answer when `udp`, else for a TCP or TLS one.
    fn new(udp: bool) -> Self {
        Self {
            out: Arc::default(),
            udp,
        }
    }
}

#[async_trait]
impl ResponseHandler for Reply {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let max = if self.udp {
            response.edns().map_or(512, Edns::max_payload)
        } else {
            u16::MAX
        };
        let mut buf = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut buf);
        encoder.set_max_size(max);
        let info = response
            .destructive_emit(&mut encoder)
            .map_err(NetError::from)?;
        if let Ok(mut out) = self.out.lock() {
            *out = buf;
        }
        Ok(info)
    }
}
