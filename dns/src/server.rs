//! The DNS server: hickory's `Server` for the sockets (UDP, and TCP per RFC 7766), labgate's
//! own `RequestHandler` over the published snapshot.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use hickory_proto::op::{Edns, MessageType, Metadata, OpCode, ResponseCode};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use labgate_config::Snapshot;
use tokio::net::{TcpListener, UdpSocket};
use tracing::debug;

use crate::answer::{Decision, FetchedLists, decide};
use crate::forward::Forwarders;
use crate::metrics::Metrics;

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
        }
    }

    /// Where the control plane publishes blocklists fetched from URLs.
    pub fn fetched_lists(&self) -> Arc<ArcSwap<FetchedLists>> {
        Arc::clone(&self.lists)
    }

    /// Resolves a host name through the upstreams directly (never labgate's own views, so a
    /// list download does not depend on labgate's own DNS).
    pub async fn resolve_upstream(&self, host: &str) -> Vec<std::net::IpAddr> {
        let snapshot = self.snapshot.load_full();
        self.forwarders(&snapshot).addresses(host).await
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

/// Starts serving on already-bound sockets (G3); stop it with `shutdown_gracefully`.
pub fn serve(handler: Handler, udp: Vec<UdpSocket>, tcp: Vec<TcpListener>) -> Server<Handler> {
    let mut server = Server::new(handler);
    for s in udp {
        server.register_socket(s);
    }
    for l in tcp {
        server.register_listener(l, TCP_IDLE_TIMEOUT, usize::from(u16::MAX));
    }
    server
}

#[async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        if request.metadata.message_type == MessageType::Response {
            // SECURITY: answering responses lets two servers loop; drop them silently.
            return unsent(request, ResponseCode::FormErr);
        }
        if request.queries.len() != 1 || compressed(request.queries.as_bytes()) {
            // hickory echoes the question section byte for byte; a compression pointer in it
            // (legal only into earlier names, of which a lone question has none) would point
            // into our response header. Found by the dns_handle fuzz target: stay silent.
            return unsent(request, ResponseCode::FormErr);
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
        let info = match (rcode, request.request_info()) {
            (None, Ok(info)) => {
                let q = info.query;
                let lists = self.lists.load();
                let decision = decide(
                    &snapshot,
                    &lists,
                    info.src.ip(),
                    q.name(),
                    q.query_type(),
                    q.query_class(),
                );
                let a = match decision {
                    Decision::Answer(a) => a,
                    Decision::Forward => {
                        let forwarders = self.forwarders(&snapshot);
                        forwarders
                            .resolve(q.name(), q.query_type(), &self.metrics)
                            .await
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
        info.unwrap_or_else(|e| {
            debug!("dns response not sent: {e}");
            unsent(request, ResponseCode::ServFail)
        })
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
