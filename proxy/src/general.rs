//! The general path on pingora's own HTTP sessions: HTTP/2 (ALPN h2), and the HTTP/1 requests
//! the fast path hands over (upgrades such as WebSocket, chunked request bodies, `Expect`,
//! HTTP/1.0). Same decision, same forwarding fields, same pages as the fast path.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::client::HttpSession;
use pingora::protocols::http::v1::client::HttpSession as UpSession;
use pingora::protocols::http::{ReusableHttpStream, ServerSession};
use pingora::server::ShutdownWatch;

use crate::backends::InFlight;
use crate::decide::{Decision, Via, decide};
use crate::head::{FORWARDING, is_hop_by_hop, is_websocket_upgrade};
use crate::tunnel::{self, Gate, Passage};
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
        let started = Instant::now();
        let info = ConnInfo::from_digests(
            session.client_addr(),
            session.digest().and_then(|d| d.ssl_digest.as_deref()),
            self.via,
        )?;
        let (client, tls) = (info.client, info.tls);
        let websocket = websocket(session.req_header());
        if !websocket && session.req_header().headers.contains_key(header::UPGRADE) {
            // SECURITY: an upgrade labgate does not honour (h2c, anything but WebSocket) is a
            // plain request: its `Upgrade` goes, so pingora's session frames it as one too.
            session.req_header_mut().remove_header(&header::UPGRADE);
        }
        let req = session.req_header();
        let host: Option<Vec<u8>> = req
            .headers
            .get(header::HOST)
            .map(|h| h.as_bytes().to_vec())
            .or_else(|| req.uri.authority().map(|a| a.as_str().as_bytes().to_vec()));
        let path = req
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        let state = self.proxy.state.load_full();
        let (service, network) = match decide(
            &state.snapshot,
            client,
            self.via,
            info.opened_for(&self.proxy.certs),
            host.as_deref(),
            &path,
        ) {
            Decision::Forward { service, network } => (service, network),
            Decision::Refuse(r) => {
                self.proxy.metrics.refusal(r);
                let body = pages::refusal_body(&state.snapshot, r);
                page(&mut session, r.status(), body, None).await;
                return None;
            }
        };
        if !tls && !state.snapshot.service(service).plain_http && self.via == Via::Direct {
            let method = session.req_header().method.clone();
            let (status, location) = pages::to_https(
                method.as_str(),
                host.as_deref(),
                self.proxy.https_port,
                &path,
            );
            page(
                &mut session,
                status,
                pages::redirect_body(status),
                Some(&location),
            )
            .await;
            return None;
        }
        let passage = self.admit(&mut session, &state, service, &info).await?;
        let host = host.unwrap_or_default();
        let (access_host, access_path) = if self.proxy.access.enabled() {
            (host.clone(), path.clone())
        } else {
            (Vec::new(), String::new())
        };
        let (status, clean) = match self
            .forward(
                &mut session,
                &state,
                service,
                &passage,
                Request {
                    tls,
                    websocket,
                    host,
                    path,
                },
            )
            .await
        {
            Done::Status(s) => (Some(s), true),
            Done::Broken(s) => (s, false),
            Done::Upgraded(up, _in_flight) => {
                // After a 101 both connections become a byte pipe until either side closes.
                if let ServerSession::H1(down) = session {
                    let mut down = down.into_inner();
                    let mut up = up.into_inner();
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                }
                self.proxy.metrics.request(
                    service.index(),
                    network.index(),
                    Some(101),
                    started.elapsed(),
                );
                return None;
            }
        };
        self.proxy
            .metrics
            .request(service.index(), network.index(), status, started.elapsed());
        if self.proxy.access.enabled() {
            self.proxy.access.send(crate::access::Entry {
                client: passage.client,
                ray: passage.ray.clone(),
                service: state.snapshot.service(service).name.to_string(),
                method: session.req_header().method.to_string(),
                host: String::from_utf8_lossy(&access_host).into_owned(),
                path: access_path,
                status,
                took: started.elapsed(),
            });
        }
        if !clean {
            return None;
        }
        session.finish().await.ok().flatten()
    }

    /// The tunnel's part of admitting the request (client address, Access token); `None`
    /// when refused, the 403 sent.
    async fn admit(
        &self,
        session: &mut ServerSession,
        state: &crate::ProxyState,
        service: labgate_config::route::ServiceId,
        info: &ConnInfo,
    ) -> Option<Passage> {
        let svc = state.snapshot.service(service);
        let mut keys_refreshed = false;
        loop {
            let req = session.req_header();
            let field = |name: &str| req.headers.get(name).map(HeaderValue::as_bytes);
            let cookies = req
                .headers
                .get_all(header::COOKIE)
                .iter()
                .map(HeaderValue::as_bytes);
            match tunnel::admit(
                &self.proxy.access_keys,
                svc,
                info,
                field,
                cookies,
                keys_refreshed,
            ) {
                Gate::Pass(p) => return Some(p),
                Gate::RefreshKeys(url) => {
                    self.proxy.access_keys.refresh(&url).await;
                    keys_refreshed = true;
                }
                Gate::Refuse(r) => {
                    self.proxy.metrics.access_refused(r);
                    page(session, 403, pages::access_body(r), None).await;
                    return None;
                }
            }
        }
    }

    /// Forwards one request; returns the status the client got.
    async fn forward(
        &self,
        session: &mut ServerSession,
        state: &crate::ProxyState,
        service: labgate_config::route::ServiceId,
        passage: &Passage,
        request: Request,
    ) -> Done {
        let Request {
            tls,
            websocket: upgrade,
            host,
            path,
        } = request;
        let svc = state.snapshot.service(service);
        let Some(backend) = state.pools.get(service.index()).and_then(|p| p.pick()) else {
            let body = pages::body(503, &format!("service {} has no backend", svc.name));
            return answer(session, 503, body).await;
        };
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
        if upgrade && !svc.websockets {
            let body = pages::body(
                403,
                &format!(
                    "service {} does not accept WebSocket connections (websockets = false)",
                    svc.name
                ),
            );
            return answer(session, 403, body).await;
        }
        // A body of unknown length (chunked HTTP/1.1, or HTTP/2 without content-length) goes
        // upstream chunked.
        let stream_body = !session
            .req_header()
            .headers
            .contains_key(header::CONTENT_LENGTH)
            && !session.is_body_empty();
        let declared = session
            .req_header()
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if let (Some(n), Some(max)) = (declared, svc.max_body)
            && n > max
        {
            return too_large(session, &svc.name, max).await;
        }
        let h2c = backend.backend.h2c;
        if upgrade && h2c {
            return backend_failed(
                session,
                502,
                svc,
                "speaks HTTP/2 (h2c), which cannot carry a WebSocket connection",
            )
            .await;
        }
        let Some(up_req) = upstream_request(
            session.req_header(),
            &path,
            &host,
            Forwarding {
                client: passage.client,
                // Through the tunnel, Cloudflare's edge spoke TLS with the client.
                tls: tls || self.via == Via::Tunnel,
                upgrade,
                // HTTP/2 frames the body itself.
                stream_body: stream_body && !h2c,
                host_header: svc.host_header.as_deref(),
                keep_forwarded_for: self.via == Via::Direct
                    && state.snapshot.trusts(passage.client),
                via: self.via,
                identity: svc
                    .access
                    .as_ref()
                    .map(|a| (&*a.identity_header, passage.identity.as_deref())),
                h2: h2c,
            },
        ) else {
            let body = pages::body(
                400,
                "the request head cannot be passed on: a field in it is not valid in HTTP/1.1",
            );
            return answer(session, 400, body).await;
        };
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
            max: svc.max_body,
        };
        loop {
            // While the body flows, its own reads time out; the backend's silence counts after.
            let waited = if body.done {
                svc.timeout
            } else {
                Duration::MAX
            };
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
                        Err(BodyFault::TooLarge) => return too_large(session, &svc.name, body.max.unwrap_or(0)).await,
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
        up.set_read_timeout(Some(svc.timeout));
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

/// What `forward` takes of a request beyond the session.
struct Request {
    /// It came over TLS.
    tls: bool,
    /// A WebSocket upgrade ([`websocket`]).
    websocket: bool,
    /// The Host (or `:authority`) as sent.
    host: Vec<u8>,
    /// Path and query.
    path: String,
}

/// Whether a request head asks for a WebSocket upgrade, as [`is_websocket_upgrade`] decides
/// for the fast path.
fn websocket(req: &RequestHeader) -> bool {
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

/// Refuses a body over the service's `max_body` with 413.
async fn too_large(session: &mut ServerSession, service: &str, max: u64) -> Done {
    if session.is_http2() {
        // An h2 stream reset before its body is read loses the answer at some clients:
        // drain a bounded amount first.
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
    sent(
        page(session, 413, pages::too_large_body(service, max), None).await,
        413,
    )
}

/// Answers with labgate's page on what the service's backend did.
async fn backend_failed(
    session: &mut ServerSession,
    status: u16,
    svc: &labgate_config::route::Service,
    why: &str,
) -> Done {
    let body = pages::backend_body(status, &svc.name, why);
    answer(session, status, body).await
}

/// Answers with labgate's own page.
async fn answer(session: &mut ServerSession, status: u16, body: String) -> Done {
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

/// What the upstream request head must say beyond the client's fields.
struct Forwarding<'a> {
    client: IpAddr,
    tls: bool,
    upgrade: bool,
    stream_body: bool,
    host_header: Option<&'a str>,
    keep_forwarded_for: bool,
    via: Via,
    /// The service's identity header and the verified identity (see `fast::HeadRewrite`).
    identity: Option<(&'a str, Option<&'a str>)>,
    /// The backend speaks HTTP/2 (h2c).
    h2: bool,
}

/// The request as the backend gets it: HTTP/1.1, hop-by-hop and client forwarding fields
/// removed (upgrade fields kept for an upgrade), labgate's forwarding fields added.
fn upstream_request(
    req: &RequestHeader,
    path: &str,
    host: &[u8],
    f: Forwarding<'_>,
) -> Option<RequestHeader> {
    let Forwarding {
        client,
        tls,
        upgrade,
        stream_body,
        host_header,
        keep_forwarded_for,
        via,
        identity,
        h2,
    } = f;
    let mut out = RequestHeader::build(req.method.clone(), path.as_bytes(), None).ok()?;
    out.set_version(http::Version::HTTP_11);
    let named_by_connection: Vec<String> = req
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .collect();
    // RFC 9113 §8.2.3: an HTTP/2 client may split its cookies into several fields; an
    // HTTP/1.1 backend must get one, joined with "; " (PHP and others join repeated fields
    // with ", " and lose the session).
    // PERF: the usual single field passes as it is, with no list made.
    let split_cookies = req.headers.get_all(header::COOKIE).iter().nth(1).is_some();
    let mut cookies: Vec<&[u8]> = Vec::new();
    for (name, value) in &req.headers {
        if split_cookies && *name == header::COOKIE {
            cookies.push(value.as_bytes());
            continue;
        }
        let n = name.as_str();
        let keep_for_upgrade = upgrade && (n == "upgrade");
        let kept_chain = keep_forwarded_for && n == "x-forwarded-for";
        if (is_hop_by_hop(n) && !keep_for_upgrade)
            || (FORWARDING.contains(&n) && !kept_chain)
            || n == "host"
            // SECURITY: only the tunnel's own fields are believed; nobody else may send them.
            || tunnel::strip(n, via)
            || identity.is_some_and(|(h, _)| h == n)
            || named_by_connection
                .iter()
                .any(|t| t == n && !keep_for_upgrade)
        {
            continue;
        }
        out.append_header(name.clone(), value.clone()).ok()?;
    }
    if !cookies.is_empty() {
        let joined = HeaderValue::from_bytes(&cookies.join(&b"; "[..])).ok()?;
        out.append_header(header::COOKIE, joined).ok()?;
    }
    // gRPC servers refuse a request without `te: trailers`, the one TE an HTTP/2 request may
    // carry (RFC 9113 §8.2.2); for HTTP/1.1 it is hop-by-hop.
    if h2
        && req
            .headers
            .get_all(header::TE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
    {
        out.insert_header(header::TE, "trailers").ok()?;
    }
    if upgrade {
        out.insert_header(header::CONNECTION, "upgrade").ok()?;
    }
    if stream_body {
        out.insert_header(header::TRANSFER_ENCODING, "chunked")
            .ok()?;
    }
    if let Some((name, Some(value))) = identity {
        out.insert_header(name.to_owned(), value).ok()?;
    }
    let sent_host = host_header.map_or(host, str::as_bytes);
    out.insert_header(header::HOST, HeaderValue::from_bytes(sent_host).ok()?)
        .ok()?;
    let mut ok = true;
    crate::fast::forwarding_fields(client, tls, host, |name, parts| {
        let value = HeaderValue::from_bytes(&parts.concat());
        ok &= value.is_ok_and(|v| out.append_header(name, v).is_ok());
    });
    if !ok {
        return None;
    }
    Some(out)
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
