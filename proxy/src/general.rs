//! The general path on pingora's own HTTP sessions: HTTP/2 (ALPN h2), and the HTTP/1 requests
//! the fast path hands over (upgrades such as WebSocket, chunked request bodies, `Expect`,
//! HTTP/1.0). Same decision, same forwarding fields, same pages as the fast path.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::client::HttpSession;
use pingora::protocols::http::v1::client::HttpSession as UpSession;
use pingora::protocols::http::{ReusableHttpStream, ServerSession};
use pingora::server::ShutdownWatch;

use labgate_config::Snapshot;

use crate::backends::InFlight;
use crate::decide::Via;
use crate::head::{is_hop_by_hop, is_websocket_upgrade};
use crate::plan::{self, Answer, Context, Executor, Forward, Plan};
use crate::rewrite::{Body, Head, HeaderSink};
use crate::upstream::connect_failure;
use crate::{ConnInfo, Proxy, pages};

/// pingora's `HttpServerApp` over the proxy.
#[derive(Debug)]
pub struct General {
    /// The proxy state shared with the fast path.
    pub proxy: Arc<Proxy>,
    /// h2c on: the fast path hands over only plain connections that start with the preface.
    pub options: HttpServerOptions,
    /// The listener it serves.
    via: Via,
}

#[async_trait]
impl HttpServerApp for General {
    async fn process_new_http(
        self: &Arc<Self>,
        session: ServerSession,
        _shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        // h2 streams end here; HTTP/1 connections come through `handle` from the fast path.
        let _ = self.handle(session).await;
        None
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        Some(&self.options)
    }
}

impl General {
    /// The general path over `proxy`.
    pub fn new(proxy: Arc<Proxy>, via: Via) -> Self {
        let mut options = HttpServerOptions::default();
        options.h2c = true;
        // An h2 connection with no stream open is closed as an idle HTTP/1.1 one is (pingora
        // keeps it forever by default).
        options.h2_idle_timeout = Some(crate::fast::IDLE_TIMEOUT);
        Self {
            proxy,
            options,
            via,
        }
    }

    /// Serves one request; an HTTP/1 connection that may carry another comes back, with any
    /// bytes of the next request already read.
    pub(crate) async fn handle(&self, mut session: ServerSession) -> Option<ReusableHttpStream> {
        match session.read_request().await {
            Ok(true) => {}
            Ok(false) | Err(_) => return None,
        }
        let started = crate::record::started();
        let info = ConnInfo::from_digests(
            session.client_addr(),
            session.digest().and_then(|d| d.ssl_digest.as_deref()),
            self.via,
        )?;
        let (websocket, body) = prepare(&mut session);
        let state = self.proxy.state.load_full();
        let s = &state.snapshot;
        let mut keys_refreshed = false;
        let plan = loop {
            let keys = self.proxy.access_keys.current();
            let context = Context {
                state: &state,
                conn: &info,
                keys: &keys,
                now: crate::unix_now(),
                https_port: self.proxy.https_port,
                keys_refreshed,
                pinned: None,
                executor: Executor::Session,
            };
            match plan::plan(
                &context,
                &SessionHead::new(session.req_header(), websocket, body),
            ) {
                Plan::RefreshKeys(url) => {
                    drop(keys);
                    self.proxy.access_keys.refresh(&url).await;
                    keys_refreshed = true;
                }
                plan => break plan,
            }
        };
        let logged = self
            .proxy
            .logged(&SessionHead::new(session.req_header(), websocket, body));
        let (served, done) = match plan {
            Plan::Refuse(r) => {
                let (status, body) = r.page(s);
                self.proxy.refused(r, (info.client, status), logged);
                page(&mut session, status, body, None).await;
                return None;
            }
            // The session carries every request; a plan to refetch keys was carried out above.
            Plan::Handover | Plan::RefreshKeys(_) => return None,
            Plan::Answer(served, a) => {
                let done = answer(&mut session, &s.service(served.service).name, &a).await;
                (served, done)
            }
            Plan::Forward(f) => {
                let mut sink = HeaderSink::default();
                let head = f
                    .rewrite
                    .emit(
                        &SessionHead::new(session.req_header(), websocket, body),
                        &mut sink,
                    )
                    .ok()
                    .and_then(|()| sink.into_head());
                let done = match head {
                    Some(head) => self.forward(&mut session, s, &f, head, websocket).await,
                    None => {
                        let name = &s.service(f.served.service).name;
                        answer(&mut session, name, &Answer::Unwritable).await
                    }
                };
                (f.served, done)
            }
        };
        let (status, clean) = match done {
            Done::Status(s) => (Some(s), true),
            Done::Broken(s) => (s, false),
            Done::Upgraded(up, _in_flight) => {
                // After a 101 both connections become a byte pipe until either side closes.
                if let ServerSession::H1(down) = session {
                    let mut down = down.into_inner();
                    let mut up = up.into_inner();
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                }
                self.proxy
                    .served(s, served, logged, Some(101), started.elapsed());
                return None;
            }
        };
        self.proxy
            .served(s, served, logged, status, started.elapsed());
        if !clean {
            return None;
        }
        session.finish().await.ok().flatten()
    }

    /// Forwards one request with its upstream head; returns how it ended.
    async fn forward(
        &self,
        session: &mut ServerSession,
        s: &Snapshot,
        f: &Forward<'_>,
        up_req: RequestHeader,
        upgrade: bool,
    ) -> Done {
        let svc = s.service(f.served.service);
        let backend = &f.backend;
        // Counted for the whole exchange (a gRPC stream for hours), and an upgrade's pipe.
        let in_flight = backend.in_flight();
        let Some(peer) = backend.peer() else {
            return backend_failed(
                session,
                502,
                svc,
                "has a host name that does not resolve yet",
            )
            .await;
        };
        let h2c = backend.backend.h2c;
        let mut up = match self.proxy.upstream_session(&peer, h2c).await {
            Ok(up) => up,
            Err(e) => {
                backend.failed();
                tracing::warn!(backend = %backend.backend.url, "cannot connect: {e}");
                let (status, why) = connect_failure(&e);
                return backend_failed(session, status, svc, why).await;
            }
        };
        if up.write_request_header(Box::new(up_req)).await.is_err() {
            backend.failed();
            return backend_failed(session, 502, svc, "closed the connection").await;
        }
        // Full duplex: the request body flows while the response is awaited and read, so a
        // backend may answer early and gRPC streams in both directions.
        let mut body = RequestBody {
            done: false,
            sent: 0,
            max: f.max_body,
        };
        loop {
            // While the body flows, its own reads time out; the backend's silence counts after.
            let waited = if body.done { f.timeout } else { Duration::MAX };
            tokio::select! {
                biased;
                head = tokio::time::timeout(waited, up.read_response_header()) => {
                    match head {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::debug!(backend = %backend.backend.url, "no valid response: {e}");
                            return backend_failed(session, 502, svc, "sent no valid response").await;
                        }
                        Err(_) => return backend_failed(session, 504, svc, "did not answer in time").await,
                    }
                    // Interim answers (100 Continue, 103) are not relayed: the response follows.
                    let interim = up.response_header().is_some_and(|r| {
                        r.status.is_informational() && r.status.as_u16() != 101
                    });
                    if !interim {
                        break;
                    }
                }
                piece = body.read(session), if !body.done => {
                    match piece {
                        Ok(piece) => {
                            if send(&mut up, piece).await.is_err() {
                                return backend_failed(session, 502, svc, "stopped reading the request body").await;
                            }
                        }
                        Err(BodyFault::TooLarge) => return answer(session, &svc.name, &Answer::TooLarge(body.max.unwrap_or(0))).await,
                        Err(fault) => {
                            // The response has not started: the client hears why.
                            let status = fault.status();
                            let sent = page(session, status, pages::request_body_refused(status, fault.why()), None).await;
                            return Done::Broken(sent.then_some(status));
                        }
                    }
                }
            }
        }
        backend.succeeded();
        let Some(resp) = up.response_header() else {
            return backend_failed(session, 502, svc, "sent no valid response").await;
        };
        let status = resp.status.as_u16();
        if status == 101 && !upgrade {
            return backend_failed(session, 502, svc, "switched protocols without being asked")
                .await;
        }
        let mut resp = resp.clone();
        strip_response(&mut resp, status == 101);
        if !session.is_http2() {
            // An h2c backend's answer to an HTTP/1.1 client.
            resp.set_version(http::Version::HTTP_11);
        }
        if session.write_response_header(Box::new(resp)).await.is_err() {
            return Done::Broken(None);
        }
        // From here on the client has this status: a failure can only cut the response.
        let cut = Done::Broken(Some(status));
        if status == 101 {
            return match up {
                HttpSession::H1(h1) => Done::Upgraded(Box::new(h1), in_flight),
                _ => cut,
            };
        }
        up.set_read_timeout(Some(f.timeout));
        loop {
            tokio::select! {
                biased;
                chunk = up.read_response_body() => match chunk {
                    Ok(Some(chunk)) => {
                        if session.write_response_body(chunk, false).await.is_err() {
                            return cut;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => return cut,
                },
                piece = body.read(session), if !body.done => {
                    // The response has started: a failure cannot become an error page.
                    let Ok(piece) = piece else {
                        return cut;
                    };
                    if send(&mut up, piece).await.is_err() {
                        return cut;
                    }
                }
            }
        }
        if let HttpSession::H2(h2) = &mut up
            && let Ok(Some(trailers)) = h2.read_trailers().await
            && session.write_response_trailers(trailers).await.is_err()
        {
            return cut;
        }
        let _ = session.finish_body().await;
        if !body.done {
            // The backend answered before the request body ended: nothing is reusable.
            return cut;
        }
        self.proxy.release_session(up, &peer).await;
        Done::Status(status)
    }
}

/// pingora's request head, as the plan reads it.
#[derive(Debug)]
pub struct SessionHead<'a> {
    req: &'a RequestHeader,
    websocket: bool,
    body: Body,
}

impl<'a> SessionHead<'a> {
    /// The view of `req`: a WebSocket upgrade when `websocket` (as [`websocket`] decides), its
    /// body delimited as `body` says (pingora's session knows).
    pub fn new(req: &'a RequestHeader, websocket: bool, body: Body) -> Self {
        Self {
            req,
            websocket,
            body,
        }
    }
}

/// Readies the request `session` read for the plan: whether it is a WebSocket upgrade (any
/// other `Upgrade` is removed), and how its body is delimited.
pub(crate) fn prepare(session: &mut ServerSession) -> (bool, Body) {
    let websocket = websocket(session.req_header());
    if !websocket && session.req_header().headers.contains_key(header::UPGRADE) {
        // SECURITY: an upgrade labgate does not honour (h2c, anything but WebSocket) is a
        // plain request: its `Upgrade` goes, so pingora's session frames it as one too.
        session.req_header_mut().remove_header(&header::UPGRADE);
    }
    (websocket, body(session))
}

/// How the body of the request `session` read is delimited.
fn body(session: &mut ServerSession) -> Body {
    let declared = session
        .req_header()
        .headers
        .get(header::CONTENT_LENGTH)
        .map(|v| v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()));
    match declared {
        // Both parsers in front (labgate's HTTP/1.1 one, the h2 crate) refuse a length
        // that is not a number; were one to pass, it is over any `max_body`.
        Some(n) => match n {
            Some(0) => Body::Empty,
            Some(n) => Body::Length(n),
            None => Body::Length(u64::MAX),
        },
        None if session.is_body_empty() => Body::Empty,
        None => Body::Unknown,
    }
}

impl Head for SessionHead<'_> {
    fn method(&self) -> &str {
        self.req.method.as_str()
    }

    fn target(&self) -> &str {
        self.req.uri.path_and_query().map_or("/", |p| p.as_str())
    }

    fn host(&self) -> Option<&[u8]> {
        self.req
            .headers
            .get(header::HOST)
            .map(HeaderValue::as_bytes)
            .or_else(|| self.req.uri.authority().map(|a| a.as_str().as_bytes()))
    }

    fn fields(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.req
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
    }

    fn body(&self) -> Body {
        self.body
    }

    fn websocket(&self) -> bool {
        self.websocket
    }

    fn session_only(&self) -> bool {
        self.req.version != http::Version::HTTP_11 || self.req.headers.contains_key(header::EXPECT)
    }
}

/// Whether a request head asks for a WebSocket upgrade, as [`is_websocket_upgrade`] decides
/// for the fast path.
pub fn websocket(req: &RequestHeader) -> bool {
    let connection_upgrade = req
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&c| c == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
    is_websocket_upgrade(
        req.method.as_str(),
        req.version == http::Version::HTTP_11,
        connection_upgrade,
        req.headers
            .get_all(header::UPGRADE)
            .iter()
            .map(HeaderValue::as_bytes),
    )
}

/// How a forwarded request ended.
enum Done {
    /// A response with this status was relayed (or labgate's own page sent).
    Status(u16),
    /// The exchange broke off and the connection must close; the client got this status
    /// (`None`: no response reached it).
    Broken(Option<u16>),
    /// The backend switched protocols: the connections become a pipe, still in flight.
    Upgraded(Box<UpSession>, InFlight),
}

/// Longest wait for the next piece of a request body.
const BODY_SILENCE: Duration = Duration::from_secs(30);
// `BodyFault::Silent`'s page names the bound.
const _: () = assert!(BODY_SILENCE.as_secs() == 30);

/// The request body on its way upstream.
struct RequestBody {
    done: bool,
    sent: u64,
    max: Option<u64>,
}

/// Why a request body stopped short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFault {
    /// Its chunked encoding is invalid (a chunk size that is not a hexadecimal number, or
    /// one too large): 400.
    BadChunk,
    /// It ended before its end (the client closed, or the stream broke): 400.
    Cut,
    /// Nothing of it came for [`BODY_SILENCE`]: 408.
    Silent,
    /// Over the service's `max_body`: 413.
    TooLarge,
}

impl BodyFault {
    /// The status that answers it.
    fn status(self) -> u16 {
        match self {
            Self::BadChunk | Self::Cut => 400,
            Self::Silent => 408,
            Self::TooLarge => 413,
        }
    }

    /// What went wrong, for the page.
    fn why(self) -> &'static str {
        match self {
            Self::BadChunk => {
                "its chunked encoding is invalid (a chunk size that is not a hexadecimal number, or is too large)"
            }
            Self::Cut => "it ended before its announced end",
            Self::Silent => "nothing of it came for 30 seconds",
            Self::TooLarge => "it is over the service's max_body",
        }
    }
}

impl RequestBody {
    /// The next piece of the request body from the client; `None` at its end. Cancel-safe.
    async fn read(&mut self, session: &mut ServerSession) -> Result<Option<Bytes>, BodyFault> {
        match tokio::time::timeout(BODY_SILENCE, session.read_request_body()).await {
            Ok(Ok(Some(chunk))) => {
                self.sent += chunk.len() as u64;
                if self.max.is_some_and(|max| self.sent > max) {
                    return Err(BodyFault::TooLarge);
                }
                Ok(Some(chunk))
            }
            Ok(Ok(None)) => {
                self.done = true;
                Ok(None)
            }
            // pingora's v1 body reader names this kind only by its text.
            Ok(Err(e)) if *e.etype() == pingora::ErrorType::Custom("InvalidChunk") => {
                Err(BodyFault::BadChunk)
            }
            Ok(Err(_)) => Err(BodyFault::Cut),
            Err(_) => Err(BodyFault::Silent),
        }
    }
}

/// Sends a piece of the request body upstream, or its end.
async fn send(up: &mut HttpSession, piece: Option<Bytes>) -> pingora::Result<()> {
    match piece {
        Some(chunk) => up.write_request_body(chunk, false).await,
        None => up.finish_request_body().await,
    }
}

/// Answers for service `name` with the plan's page. A 413 on HTTP/2 first drains a bounded
/// part of the body: an h2 stream reset before its body is read loses the answer at some
/// clients.
async fn answer(session: &mut ServerSession, name: &str, a: &Answer) -> Done {
    if matches!(a, Answer::TooLarge(_)) && session.is_http2() {
        let drain = async {
            let mut left: usize = 1 << 20;
            while let Ok(Some(chunk)) = session.read_request_body().await {
                left = left.saturating_sub(chunk.len());
                if left == 0 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
    }
    let status = a.status();
    let (body, location) = a.page(name);
    sent(page(session, status, body, location).await, status)
}

/// Answers with labgate's page on what the service's backend did.
async fn backend_failed(
    session: &mut ServerSession,
    status: u16,
    svc: &labgate_config::route::Service,
    why: &str,
) -> Done {
    let body = pages::backend_body(status, &svc.name, why);
    sent(page(session, status, body, None).await, status)
}

/// How an exchange ended that labgate answered with a page of `status`.
fn sent(sent: bool, status: u16) -> Done {
    if sent {
        Done::Status(status)
    } else {
        Done::Broken(None)
    }
}

/// Sends a plain-text page (pingora's own error responses would add `Server: Pingora`);
/// `false` when it could not be sent.
async fn page(
    session: &mut ServerSession,
    status: u16,
    body: String,
    location: Option<&str>,
) -> bool {
    let Ok(mut resp) = ResponseHeader::build(status, Some(4)) else {
        return false;
    };
    let len = body.len().to_string();
    for (k, v) in [
        ("content-type", "text/plain; charset=utf-8"),
        ("content-length", len.as_str()),
        ("cache-control", "no-store"),
    ]
    .into_iter()
    .chain(location.map(|l| ("location", l)))
    {
        if resp.insert_header(k, v).is_err() {
            return false;
        }
    }
    session.set_keepalive(None);
    session.write_response_header(Box::new(resp)).await.is_ok()
        && session
            .write_response_body(Bytes::from(body), true)
            .await
            .is_ok()
        && session.finish_body().await.is_ok()
}

/// Removes hop-by-hop fields from a backend's response (upgrade fields kept after a 101).
fn strip_response(resp: &mut ResponseHeader, upgraded: bool) {
    let names: Vec<HeaderName> = resp
        .headers
        .keys()
        .filter(|n| {
            let n = n.as_str();
            is_hop_by_hop(n) && !(upgraded && (n == "upgrade" || n == "connection"))
        })
        .cloned()
        .collect();
    for n in names {
        resp.remove_header(&n);
    }
}
