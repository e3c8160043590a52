//! The general path: one query's bytes decided over the inputs of one published state
//! ([`Inputs`]: snapshot, fetched blocklists, forwarders) without waiting (`Resolver::plan`),
//! the upstreams asked only for forwarded cache misses, and the response encoded and truncated.
//! It knows nothing of the UDP fast path (`front`), which answers from this path's own bytes,
//! nor of sockets (`udp`, `stream`).

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::{Edns, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{Record, RecordType};
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder};
use labgate_config::Snapshot;
use labgate_config::network::NetworkId;
use labgate_config::pair::PairSettings;
use labgate_querylog::{Flags, Lane, Sink, Source};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::admission::{Limit, Ticket, WorkerShare};
use crate::answer::{Answer, Decision, FetchedLists, decide};
use crate::cache::Lifetime;
use crate::challenges::{Challenges, Change, Full};
use crate::forward::{Asking, Forwarders, Now, Served};
use crate::log::{Answered, Arrival, capture};
use crate::metrics::{Metrics, UpdateResult};
use crate::update::{self, Refusal, Verdict};

/// Largest UDP response: the DNS Flag Day 2020 size (RFC 9715), or the client's smaller size.
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// What one query is decided with: a snapshot, the blocklists fetched while it serves, and the
/// forwarders built for it. Published together (in `state::DnsState`), so a decision never
/// mixes two of them.
pub(crate) struct Inputs {
    pub(crate) snapshot: Arc<Snapshot>,
    pub(crate) lists: Arc<FetchedLists>,
    pub(crate) forwarders: Arc<Forwarders>,
}

/// The general path: what it counts into and the ACME challenge values it answers. Every
/// query brings the [`Inputs`] it is decided with.
#[derive(Clone)]
pub(crate) struct Resolver {
    metrics: Arc<Metrics>,
    /// ACME challenge values of the `builtin` provider.
    challenges: Arc<Challenges>,
    /// Where the query log's records go, if it runs.
    log: Option<Arc<Sink>>,
}

impl Resolver {
    /// A resolver counting into `metrics`, answering `challenges`, logging into `log`.
    pub(crate) fn new(
        metrics: Arc<Metrics>,
        challenges: Arc<Challenges>,
        log: Option<Arc<Sink>>,
    ) -> Self {
        Self {
            metrics,
            challenges,
            log,
        }
    }

    /// Where the query log's records go, if it runs.
    pub(crate) fn log(&self) -> Option<&Sink> {
        self.log.as_deref()
    }

    /// Its counters.
    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Where the ACME `builtin` provider publishes challenge values.
    pub(crate) fn challenges(&self) -> &Arc<Challenges> {
        &self.challenges
    }

    /// Runs one query's bytes through the general path as a TCP (or TLS) query from `src`:
    /// the whole response, or `None` when the query deserves silence. A query that must wait
    /// for the upstreams takes a place (see `admission`), or is answered at once without one.
    pub(crate) async fn answer_stream(
        &self,
        inputs: &Arc<Inputs>,
        data: &[u8],
        (src, arrival): (SocketAddr, Arrival),
    ) -> Option<Vec<u8>> {
        let out = match self.plan(inputs, data, src, arrival) {
            Plan::Ready(out, _) => out,
            Plan::Upstream(p) => match self.enter(&p, None) {
                Ok(ticket) => self.complete(*p, Some(ticket)).await,
                Err(limit) => self.answer_over(*p, limit),
            },
        };
        (!out.is_empty()).then_some(out)
    }

    /// Takes a place for a query that must wait for the upstreams (over UDP, in its worker's
    /// share), or names the limit it met.
    pub(crate) fn enter(&self, p: &Pending, worker: Option<&WorkerShare>) -> Result<Ticket, Limit> {
        let dns = &p.inputs.snapshot.dns;
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
            inputs,
            asking,
            chain,
            mut arrival,
        } = p;
        let (outside, served) = inputs.forwarders.ask(asking, &self.metrics).await;
        drop(ticket);
        // Not the worker's queue: this runs on the runtime.
        arrival.lane = Lane::Shared;
        let (source, flags) = forwarded(served);
        let logged = (&arrival, source, flags);
        self.respond(&request, &inputs.snapshot, chained(chain, outside), logged)
    }

    /// Answers a query that met `limit` at once: a stale answer, else SERVFAIL.
    pub(crate) fn answer_over(&self, p: Pending, limit: Limit) -> Vec<u8> {
        self.metrics.overload(limit);
        let (outside, served) = p.asking.answer_without_waiting(&self.metrics);
        let flags = forwarded(served).1;
        self.respond(
            &p.request,
            &p.inputs.snapshot,
            chained(p.chain, outside),
            (&p.arrival, Source::Overload, flags),
        )
    }
}

/// What the general path makes of one query before any upstream is asked.
pub(crate) enum Plan {
    /// The response (empty: the query deserves silence) and, for a fresh cache hit of a
    /// forwarded name, its lifetime (what the fast path needs to keep it).
    Ready(Vec<u8>, Option<Lifetime>),
    /// The upstreams must be asked.
    Upstream(Box<Pending>),
}

/// A query that must wait for the upstreams, with what its response is made from.
pub(crate) struct Pending {
    request: Request,
    inputs: Arc<Inputs>,
    asking: Asking,
    /// The internal start of a CNAME chain the upstreams complete.
    chain: Option<Answer>,
    arrival: Arrival,
}

impl Pending {
    /// Where the query came from.
    pub(crate) fn src(&self) -> SocketAddr {
        self.request.src()
    }
}

impl Resolver {
    /// Decides one query's bytes received over UDP (`udp`) or a stream from `src` with
    /// `inputs`, without waiting: internal names, blocked names, cache hits, malformed queries
    /// and upstreams known to be down are answered now, in full; forwarded names that miss the
    /// cache are left for the upstreams.
    pub(crate) fn plan(
        &self,
        inputs: &Arc<Inputs>,
        data: &[u8],
        src: SocketAddr,
        arrival: Arrival,
    ) -> Plan {
        let protocol = if arrival.udp() {
            Protocol::Udp
        } else {
            Protocol::Tcp
        };
        let snapshot = &inputs.snapshot;
        let Ok(request) = Request::from_bytes(data.to_vec(), src, protocol) else {
            // RFC 6891 §6.1.1 (two OPT records) and every other message that does not parse
            // past its header.
            return Plan::Ready(
                self.format_error(snapshot, data, (src, &arrival), false),
                None,
            );
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
            return Plan::Ready(
                self.format_error(snapshot, data, (src, &arrival), request.edns.is_some()),
                None,
            );
        };
        let edns = response_edns(&request);
        let badvers = request.edns.as_ref().is_some_and(|e| e.version() > 0);
        if !badvers
            && request.metadata.op_code == OpCode::Update
            && let Some(pair) = &snapshot.pair
        {
            return Plan::Ready(self.update(&request, snapshot, pair, edns.as_ref()), None);
        }
        let refused = if badvers {
            Some(ResponseCode::BADVERS)
        } else if request.metadata.op_code != OpCode::Query {
            Some(ResponseCode::NotImp)
        } else {
            None
        };
        if let Some(rcode) = refused {
            let msg = MessageResponseBuilder::new(&request.queries, edns.as_ref())
                .error_msg(&request.metadata, rcode);
            let out = emit(msg).unwrap_or_default();
            let network = snapshot.networks.lookup(src.ip()).map(|m| m.network);
            self.log_answer(
                snapshot,
                (&request, network),
                u16::from(rcode),
                (&arrival, Source::Malformed, 0),
                &out,
            );
            return Plan::Ready(out, None);
        }
        let (name, rtype) = (query.name(), query.query_type());
        let mut source = None;
        let decision = match self.challenges.answer(name, rtype) {
            Some(challenge) => {
                source = Some(Source::Challenge);
                Decision::Answer(challenge)
            }
            None => decide(
                snapshot,
                &inputs.lists,
                src.ip(),
                name,
                rtype,
                query.query_class(),
            ),
        };
        let (chain, target, rtype) = match decision {
            Decision::Answer(a) => {
                let source = source.unwrap_or_else(|| decided(&a));
                let out = self.respond(&request, snapshot, a, (&arrival, source, 0));
                return Plan::Ready(out, None);
            }
            Decision::Forward => (None, name.clone(), rtype),
            Decision::Chase {
                chain,
                target,
                rtype,
            } => (Some(chain), target, rtype),
        };
        match inputs.forwarders.now(&target, rtype, &self.metrics) {
            Now::Answer(outside, served) => {
                // Only a forwarded name's own hit has a lifetime: the one the fast path may
                // keep.
                let life = match served {
                    Served::Hit(life) if chain.is_none() => Some(life),
                    _ => None,
                };
                let (source, flags) = forwarded(served);
                let logged = (&arrival, source, flags);
                let out = self.respond(&request, snapshot, chained(chain, outside), logged);
                Plan::Ready(out, life)
            }
            Now::Ask(asking) => Plan::Upstream(Box::new(Pending {
                request,
                inputs: Arc::clone(inputs),
                asking,
                chain,
                arrival,
            })),
        }
    }

    /// Decides an UPDATE from `request`'s source with the pair's settings (see `update`),
    /// applies its changes to the challenge values all or none, counts and logs it: the
    /// response, signed as the verdict says. Neither the query log nor dnstap records it: it
    /// is no query, and the counter and the log line say what it did.
    fn update(
        &self,
        request: &Request,
        snapshot: &Snapshot,
        pair: &PairSettings,
        edns: Option<&Edns>,
    ) -> Vec<u8> {
        let now = unix_now();
        let Verdict { seal, outcome } = update::decide(request, pair, &snapshot.zones, now);
        let outcome = outcome.and_then(|changes| {
            self.challenges
                .apply(&changes, Instant::now())
                .map(|()| changes)
                .map_err(|Full| Refusal::Full)
        });
        let src = request.src();
        let zone = request
            .queries
            .queries()
            .first()
            .map_or_else(String::new, |q| q.name().to_string());
        let (rcode, result) = match &outcome {
            Ok(changes) => {
                let mut names: Vec<String> = changes.iter().map(|c| c.name().to_string()).collect();
                names.sort_unstable();
                names.dedup();
                let count = |f: fn(&Change) -> bool| changes.iter().filter(|c| f(c)).count();
                info!(
                    source = %src.ip(),
                    zone = %zone,
                    names = %names.join(" "),
                    added = count(|c| matches!(c, Change::Add(..))),
                    removed = count(|c| matches!(c, Change::Remove(..))),
                    cleared = count(|c| matches!(c, Change::Clear(..))),
                    "dns: applied the pair peer's challenge values"
                );
                (ResponseCode::NoError, UpdateResult::Applied)
            }
            Err(refusal) => {
                let rcode = refusal.rcode();
                let result = match (refusal, rcode) {
                    (Refusal::Full, _) => UpdateResult::Full,
                    (_, ResponseCode::NotAuth) => UpdateResult::NotAuth,
                    (_, ResponseCode::NotZone) => UpdateResult::NotZone,
                    _ => UpdateResult::Refused,
                };
                // SECURITY: at debug only: a source address is easily forged, and a flood of
                // forged updates must not flood the journal. The peer that sent a refused
                // update logs why (`the challenge value is not on the peer`); the counter
                // says how many.
                debug!(
                    source = %src.ip(),
                    zone = %zone,
                    reason = refusal.reason(),
                    rcode = %rcode,
                    "dns: update refused"
                );
                (rcode, result)
            }
        };
        self.metrics.update(result);
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.response_code = rcode;
        let build = || MessageResponseBuilder::new(&request.queries, edns).build_no_records(meta);
        let unsigned = emit(build()).unwrap_or_default();
        let Some(tsig) = update::sign(seal, outcome.err(), request.metadata.id, now) else {
            return unsigned;
        };
        match tsig.sign(&unsigned) {
            Ok(record) => {
                let mut signed = build();
                signed.set_signature(record);
                emit(signed).unwrap_or(unsigned)
            }
            Err(error) => {
                warn!(%error, "dns: cannot sign the response to an update");
                unsigned
            }
        }
    }

    /// The encoded response carrying answer `a` to `request`, counted and logged as coming
    /// from `source` with `flags`.
    fn respond(
        &self,
        request: &Request,
        snapshot: &Snapshot,
        a: Answer,
        logged: (&Arrival, Source, u8),
    ) -> Vec<u8> {
        let src = request.src();
        let network = snapshot.networks.lookup(src.ip()).map(|m| m.network);
        if let Some(q) = request.queries.queries().first() {
            debug!(client = %src, name = %q.name(), qtype = %q.query_type(), rcode = %a.rcode, "dns query");
            self.metrics
                .query(network.map(NetworkId::index), q.query_type(), a.rcode);
        }
        if a.blocked.is_some() {
            self.metrics.blocked();
        }
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.authoritative = a.authoritative;
        meta.recursion_available = a.recursion_available;
        meta.response_code = a.rcode;
        let out = encode(
            request,
            response_edns(request).as_ref(),
            meta,
            &a,
            logged.0.udp(),
        );
        self.log_answer(
            snapshot,
            (request, network),
            u16::from(a.rcode),
            logged,
            &out,
        );
        out
    }

    /// Logs the answer `out` to `request` from a client in `network` (with the query's DO and
    /// RD flags), if the log runs.
    fn log_answer(
        &self,
        snapshot: &Snapshot,
        (request, network): (&Request, Option<NetworkId>),
        rcode: u16,
        (arrival, source, flags): (&Arrival, Source, u8),
        out: &[u8],
    ) {
        let (Some(sink), Some(q)) = (self.log(), request.queries.queries().first()) else {
            return;
        };
        let mut flags = flags;
        if request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok) {
            flags |= Flags::DO;
        }
        if request.metadata.recursion_desired {
            flags |= Flags::RD;
        }
        let answered = Answered {
            question: request.queries.as_bytes(),
            qtype: u16::from(q.query_type()),
            qclass: u16::from(q.query_class()),
            rcode,
            source,
            flags,
        };
        let client = (request.src().ip(), network);
        capture(sink, snapshot, arrival, client, &answered, out);
    }

    /// FORMERR for a message that does not parse (see [`format_error`]), counted and logged.
    fn format_error(
        &self,
        snapshot: &Snapshot,
        data: &[u8],
        (src, arrival): (SocketAddr, &Arrival),
        edns: bool,
    ) -> Vec<u8> {
        let out = format_error(data, edns);
        if !out.is_empty() {
            let network = snapshot.networks.lookup(src.ip()).map(|m| m.network);
            self.metrics.query(
                network.map(NetworkId::index),
                RecordType::ZERO,
                ResponseCode::FormErr,
            );
            if let Some(sink) = self.log() {
                let answered = Answered {
                    question: data.get(12..).unwrap_or_default(),
                    qtype: 0,
                    qclass: 0,
                    rcode: u16::from(ResponseCode::FormErr),
                    source: Source::Malformed,
                    flags: 0,
                };
                capture(
                    sink,
                    snapshot,
                    arrival,
                    (src.ip(), network),
                    &answered,
                    &out,
                );
            }
        }
        out
    }
}

/// Seconds since the Unix epoch, as TSIG counts them.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Where an answer decided from the snapshot came from.
fn decided(a: &Answer) -> Source {
    match a.blocked {
        Some(list) => Source::Blocked(u16::try_from(list).unwrap_or(u16::MAX)),
        None if a.rcode == ResponseCode::Refused => Source::Refused,
        None => Source::Internal,
    }
}

/// The log's source and flags of a forwarded answer.
fn forwarded(served: Served) -> (Source, u8) {
    match served {
        Served::Hit(_) => (Source::Cache, 0),
        Served::Stale => (Source::Cache, Flags::STALE),
        Served::Upstream(group) => (Source::Upstream(group), 0),
        Served::NoUpstream => (Source::NoUpstream, 0),
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
