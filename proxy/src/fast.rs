//! The HTTP/1.1 fast path: one loop per downstream connection, on buffers reused for every
//! request, with the upstream connection pinned to the downstream one. Requests it does not
//! take (see [`RequestHead::fast_path`]) go to pingora's sessions with the bytes already read.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use labgate_config::network::NetworkId;
use labgate_config::route::ServiceId;
use pingora::protocols::Stream;
use pingora::upstreams::peer::Peer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::backends::BackendState;
use crate::chunked::Chunked;
use crate::decide::{Decision, Via, decide};
use crate::head::{self, Framing, HeadError, RequestHead, header_array};
use crate::idle;
use crate::tunnel::{self, Gate};
use crate::upstream::connect_failure;
use crate::watchdog::{Elapsed, Watchdog};
use crate::{ConnInfo, Proxy, ProxyState, pages};

/// Time a client has to send a whole request head once it started (slowloris bound).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
// The refusal pages of `read_plan` name these bounds.
const _: () =
    assert!(HEAD_TIMEOUT.as_secs() == 10 && head::MAX_HEAD == 16 * 1024 && head::MAX_HEADERS == 96);
/// Time an idle keep-alive connection is kept.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Time a client has between body bytes.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Time a write to the client or the backend may stall (nginx's `send_timeout`).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle time after which a keep-alive connection gives its buffers back. nginx frees its
/// own at once; keeping them a moment spares a busy connection the allocations.
pub const IDLE_RELEASE: Duration = Duration::from_secs(2);
/// Head buffers (each direction) of a connection that is not idle.
const HEAD_BUF: usize = 8 * 1024;
/// Heads written out.
const OUT_BUF: usize = 2048;
/// The read buffer of a connection that gave its buffers back: most request heads fit.
const IDLE_READ_BUF: usize = 1024;
/// Most body bytes sent in the same write as the response head: one TLS record's payload.
const COALESCE_MAX: usize = 16 * 1024;
/// Read buffer for bodies.
const BODY_BUF: usize = 64 * 1024;

/// The first line of HTTP/2's connection preface (h2c with prior knowledge).
pub const H2C_PREFACE_LINE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// How a connection left the fast path.
pub enum Outcome {
    /// It is finished (closed by either side, or refused).
    Done,
    /// A request the fast path does not take (or an h2c preface, which the bytes start
    /// with): pingora's session continues with these bytes.
    Fallback(Stream, BytesMut),
}

/// The upstream connection pinned to this downstream connection.
struct Pinned {
    stream: Stream,
    backend: Arc<BackendState>,
    /// When its last exchange ended: its idle time counts from here.
    since: tokio::time::Instant,
}

/// Per-connection state and buffers.
struct Conn {
    down: Stream,
    info: ConnInfo,
    /// Bytes from the client not yet used.
    rbuf: BytesMut,
    /// Bytes from the backend not yet used.
    ubuf: BytesMut,
    /// Heads written out.
    out: Vec<u8>,
    body: Vec<u8>,
    pinned: Option<Pinned>,
    /// Bounds every read and write on the connection.
    watch: Watchdog,
    /// The Access keys were refetched for the request at hand (once per request).
    keys_refreshed: bool,
}

/// What to do with one parsed request.
enum Plan {
    Fallback,
    /// labgate answers itself (a refusal, or with `location` a redirect to HTTPS) and closes.
    Refuse {
        status: u16,
        body: String,
        location: Option<String>,
    },
    Forward(Forward),
    /// The Access token names a key not fetched yet: refetch, then plan again.
    RefreshKeys(Arc<str>),
}

struct Forward {
    service: ServiceId,
    network: NetworkId,
    /// The client the request stands for (through the tunnel: `Cf-Connecting-IP`).
    client: IpAddr,
    backend: Arc<BackendState>,
    framing: Framing,
    head_len: usize,
    is_head: bool,
    close: bool,
    retryable: bool,
    /// The access log's fields, when it is on.
    access: Option<Box<Logged>>,
}

/// Method, host, path and CF-Ray of a request, for the access log.
type Logged = (String, String, String, Option<String>);

/// Errors that end an exchange; each knows whether the client got any byte yet.
enum Failure {
    /// The client went away or broke the protocol before its response started: close
    /// silently (no status was sent).
    Client,
    /// The backend failed before the response started: answer this status.
    Backend(u16, &'static str),
    /// The response with this status had started when either side failed: close.
    Midway(u16),
}

/// Serves a downstream HTTP/1.1 connection until it closes or needs pingora's sessions.
/// `resumed` holds the bytes already read when the connection comes back from pingora's
/// session after a request there (its next request is then a keep-alive one).
pub async fn serve(
    proxy: &Proxy,
    down: Stream,
    info: ConnInfo,
    resumed: Option<BytesMut>,
) -> Outcome {
    let first = resumed.is_none();
    let mut rbuf = resumed.unwrap_or_default();
    rbuf.reserve(HEAD_BUF);
    let mut c = Conn {
        down,
        info,
        rbuf,
        ubuf: BytesMut::with_capacity(HEAD_BUF),
        out: Vec::with_capacity(OUT_BUF),
        body: Vec::new(),
        pinned: None,
        watch: Watchdog::new(),
        keys_refreshed: false,
    };
    let outcome = c.run(proxy, first).await;
    if let Some(p) = c.pinned.take() {
        release(p);
    }
    match outcome {
        Some(prefix) => Outcome::Fallback(c.down, prefix),
        None => Outcome::Done,
    }
}

/// Keeps a pinned connection idle on this thread for the next request to its backend.
fn release(p: Pinned) {
    if let Some(peer) = p.backend.peer() {
        idle::put(peer.reuse_hash(), p.stream, p.since);
    }
}

impl Conn {
    /// The request loop; `Some(prefix)` hands the connection to pingora.
    async fn run(&mut self, proxy: &Proxy, mut first: bool) -> Option<BytesMut> {
        loop {
            let (plan, state) = match self.read_plan(proxy, first).await {
                Ok(p) => p,
                Err(refused) => {
                    if let Some((status, why)) = refused {
                        proxy.metrics.refused(status);
                        self.out.clear();
                        let body = pages::head_body(status, why);
                        pages::write(&mut self.out, status, &body, true, &[]);
                        self.flush_out().await;
                    }
                    return None;
                }
            };
            first = false;
            self.keys_refreshed = false;
            match plan {
                Plan::RefreshKeys(url) => {
                    // The head stays in the buffer: it is planned again with the new keys.
                    proxy.access_keys.refresh(&url).await;
                    self.keys_refreshed = true;
                    continue;
                }
                Plan::Fallback => return Some(std::mem::take(&mut self.rbuf)),
                Plan::Refuse {
                    status,
                    body,
                    location,
                } => {
                    // The request's body, if any, was not read: close rather than resync.
                    self.out.clear();
                    let extra = location.as_deref().map(|l| ("location", l));
                    pages::write(&mut self.out, status, &body, true, extra.as_slice());
                    self.flush_out().await;
                    return None;
                }
                Plan::Forward(mut f) => {
                    let started = Instant::now();
                    let access = f.access.take();
                    let client = f.client;
                    let service_id = f.service;
                    let (service, network) = (f.service.index(), f.network.index());
                    let close = f.close;
                    let result = self.exchange(proxy, &state, f).await;
                    // The status the client got, none when nothing reached it.
                    let (status, keep) = match result {
                        Ok((status, keep)) => (Some(status), keep && !close),
                        Err(Failure::Backend(status, why)) => {
                            self.out.clear();
                            let service = &state.snapshot.service(service_id).name;
                            let body = pages::backend_body(status, service, why);
                            pages::write(&mut self.out, status, &body, close, &[]);
                            let sent = self.flush_out().await;
                            (sent.then_some(status), sent && !close)
                        }
                        Err(Failure::Midway(status)) => (Some(status), false),
                        Err(Failure::Client) => (None, false),
                    };
                    proxy
                        .metrics
                        .request(service, network, status, started.elapsed());
                    if let Some(a) = access {
                        let (method, host, path, ray) = *a;
                        proxy.access.send(crate::access::Entry {
                            client,
                            ray,
                            service: state.snapshot.service(service_id).name.to_string(),
                            method,
                            host,
                            path,
                            status,
                            took: started.elapsed(),
                        });
                    }
                    if !keep {
                        return None;
                    }
                }
            }
        }
    }

    /// Reads one request head and decides what to do. `Err(Some((status, why)))`: refuse
    /// and close; `Err(None)`: the client closed or timed out.
    async fn read_plan(
        &mut self,
        proxy: &Proxy,
        first: bool,
    ) -> Result<(Plan, Arc<ProxyState>), Option<(u16, &'static str)>> {
        let idle = if first { HEAD_TIMEOUT } else { IDLE_TIMEOUT };
        // A head begun before this call keeps the idle bound; one begun here must be whole
        // within HEAD_TIMEOUT of its first byte. The deadline is fixed when a begun head
        // first waits for more: most heads never do, and the clock is not read for them.
        let head_limit = if self.rbuf.is_empty() {
            HEAD_TIMEOUT
        } else {
            idle
        };
        let mut head_deadline = None;
        loop {
            {
                let mut headers = header_array();
                match head::parse_request(&self.rbuf, &mut headers) {
                    Err(HeadError::Partial) => {}
                    Ok(h) => {
                        // The state is loaded once the head is here: a keep-alive connection
                        // sees a reload on its next request.
                        let state = proxy.state.load_full();
                        let plan = plan(
                            &state,
                            proxy,
                            &self.info,
                            self.pinned.as_ref(),
                            &mut self.out,
                            &h,
                            self.keys_refreshed,
                        );
                        return Ok((plan, state));
                    }
                    Err(HeadError::TooLarge) => {
                        return Err(Some((431, "it is over 16 KiB or 96 header fields")));
                    }
                    Err(HeadError::Version)
                        if !self.info.tls && self.rbuf.starts_with(H2C_PREFACE_LINE) =>
                    {
                        // HTTP/2 with prior knowledge on plain HTTP: pingora's h2 server.
                        return Ok((Plan::Fallback, proxy.state.load_full()));
                    }
                    Err(HeadError::Version) => {
                        return Err(Some((
                            505,
                            "its HTTP version is neither 1.0 nor 1.1 (HTTP/2 is offered by TLS ALPN)",
                        )));
                    }
                    Err(HeadError::Invalid(why)) => {
                        tracing::debug!(client = %self.info.client, "refused a request head: {why}");
                        return Err(Some((400, why)));
                    }
                }
            }
            let started = !self.rbuf.is_empty();
            let got = if started {
                let deadline =
                    *head_deadline.get_or_insert_with(|| tokio::time::Instant::now() + head_limit);
                let read = self.down.read_buf(&mut self.rbuf);
                self.watch.until(deadline, read).await
            } else {
                self.idle_read(idle).await
            };
            match got {
                Ok(Ok(0)) | Ok(Err(_)) => return Err(None),
                Ok(Ok(_)) => {}
                Err(_) if started => {
                    return Err(Some((408, "it did not arrive whole within 10 seconds")));
                }
                Err(_) => return Err(None),
            }
        }
    }

    /// Waits up to `idle` for a request's first bytes, the connection's buffers given back
    /// while it waits longer than [`IDLE_RELEASE`] and taken again when the request comes.
    async fn idle_read(&mut self, idle: Duration) -> Result<std::io::Result<usize>, Elapsed> {
        let mut released = false;
        let (ubuf, out, body) = (&mut self.ubuf, &mut self.out, &mut self.body);
        let got = idle_read(
            &mut self.watch,
            &mut self.down,
            &mut self.rbuf,
            idle,
            |rbuf| {
                released = true;
                *rbuf = BytesMut::with_capacity(IDLE_READ_BUF);
                *ubuf = BytesMut::new();
                *out = Vec::new();
                *body = Vec::new();
            },
        )
        .await;
        if released && matches!(got, Ok(Ok(n)) if n > 0) {
            self.rbuf.reserve(HEAD_BUF);
            self.ubuf.reserve(HEAD_BUF);
            self.out.reserve(OUT_BUF);
        }
        got
    }

    /// Sends `out` to the client; `false` when it broke off or stalled.
    async fn flush_out(&mut self) -> bool {
        send(&mut self.watch, &mut self.down, &self.out).await
            && flush(&mut self.watch, &mut self.down).await
    }

    /// Sends the request and relays the response. `Ok((status, keep_alive))`.
    async fn exchange(
        &mut self,
        proxy: &Proxy,
        state: &ProxyState,
        f: Forward,
    ) -> Result<(u16, bool), Failure> {
        self.rbuf.advance(f.head_len);
        let svc = state.snapshot.service(f.service);
        let read_timeout = svc.timeout;
        // The backend that has the request, counted in flight: moved with a retry.
        let mut backend = f.backend.in_flight();
        let mut fresh_only = false;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (mut up, reused) = match self.connect(proxy, &backend, fresh_only).await {
                Ok(c) => c,
                Err((status, why)) => {
                    backend.failed();
                    // One retry on another backend when the connect failed: nothing was sent.
                    if attempts == 1
                        && let Some(other) = state
                            .pools
                            .get(f.service.index())
                            .and_then(|p| p.pick())
                            .filter(|b| !Arc::ptr_eq(b, &backend))
                    {
                        backend = other.in_flight();
                        continue;
                    }
                    break Err(Failure::Backend(status, why));
                }
            };
            match self.send_and_relay(&mut up, &f, read_timeout).await {
                Ok((status, keep, reusable)) => {
                    backend.succeeded();
                    if reusable {
                        self.pinned = Some(Pinned {
                            stream: up,
                            backend: Arc::clone(&backend),
                            since: tokio::time::Instant::now(),
                        });
                    }
                    break Ok((status, keep));
                }
                // A reused connection that the backend had closed: retry once, fresh.
                Err(Exchange::Stale) if reused && f.retryable && attempts < 3 => {
                    fresh_only = true;
                }
                Err(Exchange::Stale) => {
                    backend.failed();
                    break Err(Failure::Backend(
                        502,
                        "closed the connection without answering",
                    ));
                }
                Err(Exchange::Fail(e)) => {
                    if matches!(e, Failure::Backend(..)) {
                        backend.failed();
                    }
                    break Err(e);
                }
            }
        }
    }

    /// An upstream connection: the pinned one if it goes to `backend`, else an idle one of
    /// this thread's, else new. `Err((status, why))` when none can be had.
    async fn connect(
        &mut self,
        proxy: &Proxy,
        backend: &Arc<BackendState>,
        fresh_only: bool,
    ) -> Result<(Stream, bool), (u16, &'static str)> {
        if let Some(mut p) = self.pinned.take() {
            if Arc::ptr_eq(&p.backend, backend) && !fresh_only {
                // A backend with a short keep-alive (Node's is 5 s) may have closed it while
                // the client idled.
                if idle::open_and_clean(&mut p.stream) {
                    return Ok((p.stream, true));
                }
            } else {
                release(p);
            }
        }
        let peer = backend
            .peer()
            .ok_or((502, "has a host name that does not resolve"))?;
        if !fresh_only && let Some(stream) = idle::take(peer.reuse_hash()) {
            return Ok((stream, true));
        }
        proxy
            .new_backend_stream(&peer)
            .await
            .map(|s| (s, false))
            .map_err(|e| {
                tracing::warn!(backend = %backend.backend.url, "cannot connect: {e}");
                connect_failure(&e)
            })
    }

    /// Writes the head and body upstream and relays the response.
    async fn send_and_relay(
        &mut self,
        up: &mut Stream,
        f: &Forward,
        read_timeout: Duration,
    ) -> Result<(u16, bool, bool), Exchange> {
        if !send(&mut self.watch, up, &self.out).await {
            return Err(Exchange::Stale);
        }
        if let Framing::Length(n) = f.framing {
            self.copy_request_body(up, n).await?;
        }
        if !flush(&mut self.watch, up).await {
            return Err(Exchange::Stale);
        }
        self.ubuf.clear();
        let mut any_byte = false;
        loop {
            // Read until a full response head.
            let (status, out_framing, backend_close) = loop {
                {
                    let mut headers = header_array();
                    match head::parse_response(&self.ubuf, &mut headers) {
                        Err(HeadError::Partial) => {}
                        Ok(r) => {
                            let framing = r.framing(if f.is_head { "HEAD" } else { "GET" });
                            let close = f.close || r.close || framing == Framing::Close;
                            if r.status == 101 {
                                return Err(Exchange::Fail(Failure::Backend(
                                    502,
                                    "switched protocols without being asked",
                                )));
                            }
                            self.out.clear();
                            write_downstream_head(&mut self.out, &r, close);
                            let len = r.len;
                            let status = r.status;
                            let backend_close = r.close;
                            self.ubuf.advance(len);
                            break (status, framing, backend_close || framing == Framing::Close);
                        }
                        Err(_) => {
                            return Err(Exchange::Fail(Failure::Backend(
                                502,
                                "sent a malformed response",
                            )));
                        }
                    }
                }
                match self
                    .watch
                    .limit(read_timeout, up.read_buf(&mut self.ubuf))
                    .await
                {
                    Ok(Ok(0)) | Ok(Err(_)) if !any_byte => return Err(Exchange::Stale),
                    Ok(Ok(0)) | Ok(Err(_)) => {
                        return Err(Exchange::Fail(Failure::Backend(
                            502,
                            "closed the connection mid-answer",
                        )));
                    }
                    Ok(Ok(_)) => any_byte = true,
                    Err(_) => {
                        return Err(Exchange::Fail(Failure::Backend(
                            504,
                            "did not answer in time",
                        )));
                    }
                }
            };
            let body_framing = self.coalesce_body(out_framing);
            if !send(&mut self.watch, &mut self.down, &self.out).await {
                return Err(Exchange::Fail(Failure::Client));
            }
            if (100..200).contains(&status) {
                // Interim responses (103 Early Hints): pass on, then read the final one.
                continue;
            }
            let complete = self.relay_body(up, body_framing, read_timeout).await;
            let flushed = flush(&mut self.watch, &mut self.down).await;
            let (Ok(complete), true) = (complete, flushed) else {
                return Err(Exchange::Fail(Failure::Midway(status)));
            };
            let keep = complete && !f.close && out_framing != Framing::Close;
            let reusable = complete && !backend_close && self.ubuf.is_empty();
            return Ok((status, keep, reusable));
        }
    }

    /// Moves the body bytes already read behind the response head in `out`, so both leave in
    /// one write: over TLS one record instead of two (a record costs an allocation and a
    /// seal). Returns the framing of what is left to relay.
    fn coalesce_body(&mut self, framing: Framing) -> Framing {
        let Framing::Length(n) = framing else {
            return framing;
        };
        let take = usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(self.ubuf.len())
            .min(COALESCE_MAX);
        self.out.extend_from_slice(&self.ubuf[..take]);
        self.ubuf.advance(take);
        match n - take as u64 {
            0 => Framing::Empty,
            left => Framing::Length(left),
        }
    }

    /// Copies exactly `n` request body bytes from the client upstream.
    async fn copy_request_body(&mut self, up: &mut Stream, n: u64) -> Result<(), Exchange> {
        let mut left = n;
        let have = usize::try_from(left)
            .unwrap_or(usize::MAX)
            .min(self.rbuf.len());
        if !send(&mut self.watch, up, &self.rbuf[..have]).await {
            return Err(Exchange::Stale);
        }
        self.rbuf.advance(have);
        left -= have as u64;
        if left > 0 && self.body.len() < BODY_BUF {
            self.body.resize(BODY_BUF, 0);
        }
        while left > 0 {
            let want = usize::try_from(left).unwrap_or(usize::MAX).min(BODY_BUF);
            let read = self.down.read(&mut self.body[..want]);
            let got = match self.watch.limit(BODY_TIMEOUT, read).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Err(Exchange::Fail(Failure::Client)),
                Ok(Ok(k)) => k,
            };
            if !send(&mut self.watch, up, &self.body[..got]).await {
                return Err(Exchange::Fail(Failure::Backend(
                    502,
                    "closed the connection while receiving the request body",
                )));
            }
            left -= got as u64;
        }
        Ok(())
    }

    /// Relays the response body by its framing. `Ok(true)` when it ended where the framing
    /// said, so the upstream connection can be reused; `Err` when either side failed.
    async fn relay_body(
        &mut self,
        up: &mut Stream,
        framing: Framing,
        read_timeout: Duration,
    ) -> Result<bool, ()> {
        match framing {
            Framing::Empty => Ok(true),
            Framing::Length(n) => {
                let mut left = n;
                loop {
                    let take = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(self.ubuf.len());
                    if !send(&mut self.watch, &mut self.down, &self.ubuf[..take]).await {
                        return Err(());
                    }
                    self.ubuf.advance(take);
                    left -= take as u64;
                    if left == 0 {
                        return Ok(true);
                    }
                    self.read_up(up, read_timeout).await?;
                }
            }
            Framing::Chunked => {
                let mut chunked = Chunked::default();
                loop {
                    let used = chunked.feed(&self.ubuf).map_err(|_| ())?;
                    if !send(&mut self.watch, &mut self.down, &self.ubuf[..used]).await {
                        return Err(());
                    }
                    self.ubuf.advance(used);
                    if chunked.done() {
                        return Ok(true);
                    }
                    self.read_up(up, read_timeout).await?;
                }
            }
            Framing::Close => loop {
                if !send(&mut self.watch, &mut self.down, &self.ubuf).await {
                    return Err(());
                }
                self.ubuf.clear();
                match self
                    .watch
                    .limit(read_timeout, up.read_buf(&mut self.ubuf))
                    .await
                {
                    Ok(Ok(0)) => return Ok(false),
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) | Err(_) => return Err(()),
                }
            },
        }
    }

    /// Reads more backend bytes; `Err` on EOF, error or timeout.
    async fn read_up(&mut self, up: &mut Stream, read_timeout: Duration) -> Result<(), ()> {
        if self.ubuf.capacity() - self.ubuf.len() < 4096 {
            self.ubuf.reserve(BODY_BUF);
        }
        match self
            .watch
            .limit(read_timeout, up.read_buf(&mut self.ubuf))
            .await
        {
            Ok(Ok(n)) if n > 0 => Ok(()),
            _ => Err(()),
        }
    }
}

/// Routes a parsed head and writes the upstream head into `out`.
fn plan(
    state: &ProxyState,
    proxy: &Proxy,
    info: &ConnInfo,
    pinned: Option<&Pinned>,
    out: &mut Vec<u8>,
    h: &RequestHead<'_>,
    keys_refreshed: bool,
) -> Plan {
    if !h.fast_path() {
        return Plan::Fallback;
    }
    let s = &state.snapshot;
    let tls = info.opened_for(&proxy.certs);
    match decide(s, info.client, info.via, tls, h.host, h.path) {
        Decision::Refuse(r) => {
            proxy.metrics.refusal(r);
            Plan::Refuse {
                status: r.status(),
                body: pages::refusal_body(s, r),
                location: None,
            }
        }
        Decision::Forward { service, network } => {
            let svc = s.service(service);
            // Cloudflare's edge did TLS for tunnel requests: nothing to redirect.
            if !info.tls && !svc.plain_http && info.via == Via::Direct {
                let (status, location) =
                    pages::to_https(h.method, h.host, proxy.https_port, h.path);
                return Plan::Refuse {
                    status,
                    body: pages::redirect_body(status),
                    location: Some(location),
                };
            }
            let Some(backend) = state.pools.get(service.index()).and_then(|p| p.pick()) else {
                return Plan::Refuse {
                    status: 503,
                    body: pages::body(503, &format!("service {} has no backend", svc.name)),
                    location: None,
                };
            };
            let field = |name: &str| {
                h.headers
                    .iter()
                    .find(|f| f.name.eq_ignore_ascii_case(name))
                    .map(|f| f.value)
            };
            let cookies = h
                .headers
                .iter()
                .filter(|f| f.name.eq_ignore_ascii_case("cookie"))
                .map(|f| f.value);
            let passage = match tunnel::admit(
                &proxy.access_keys,
                svc,
                info,
                field,
                cookies,
                keys_refreshed,
            ) {
                Gate::Pass(p) => p,
                Gate::RefreshKeys(url) => return Plan::RefreshKeys(url),
                Gate::Refuse(r) => {
                    proxy.metrics.access_refused(r);
                    return Plan::Refuse {
                        status: 403,
                        body: pages::access_body(r),
                        location: None,
                    };
                }
            };
            // Stay on the pinned backend while it serves this service.
            let backend = match pinned {
                Some(p)
                    if p.backend.available()
                        && state.pools.get(service.index()).is_some_and(|pool| {
                            pool.backends.iter().any(|b| Arc::ptr_eq(b, &p.backend))
                        }) =>
                {
                    Arc::clone(&p.backend)
                }
                _ => Arc::clone(backend),
            };
            if backend.backend.h2c {
                // HTTP/2 upstream: pingora's h2 client on the general path.
                return Plan::Fallback;
            }
            if let (Framing::Length(n), Some(max)) = (h.framing, svc.max_body)
                && n > max
            {
                return Plan::Refuse {
                    status: 413,
                    body: pages::too_large_body(&svc.name, max),
                    location: None,
                };
            }
            out.clear();
            let rewrite = HeadRewrite {
                host: svc.host_header.as_deref(),
                keep_forwarded_for: info.via == Via::Direct && s.trusts(info.client),
                client: Some(passage.client),
                identity: svc
                    .access
                    .as_ref()
                    .map(|a| (&*a.identity_header, passage.identity.as_deref())),
            };
            write_upstream_head(out, h, info, &rewrite);
            Plan::Forward(Forward {
                service,
                network,
                client: passage.client,
                backend,
                framing: h.framing,
                head_len: h.len,
                is_head: h.method == "HEAD",
                close: h.close,
                retryable: h.retryable(),
                access: proxy.access.enabled().then(|| {
                    Box::new((
                        h.method.to_owned(),
                        String::from_utf8_lossy(h.host.unwrap_or_default()).into_owned(),
                        h.path.to_owned(),
                        passage.ray,
                    ))
                }),
            })
        }
    }
}

/// Reads into `buf` within `idle`. When nothing came within [`IDLE_RELEASE`] (of a longer
/// `idle`), `release` runs on the (empty) buffer before the wait goes on.
async fn idle_read<R: AsyncRead + Unpin>(
    watch: &mut Watchdog,
    from: &mut R,
    buf: &mut BytesMut,
    idle: Duration,
    release: impl FnOnce(&mut BytesMut),
) -> Result<std::io::Result<usize>, Elapsed> {
    let Some(rest) = idle.checked_sub(IDLE_RELEASE).filter(|r| !r.is_zero()) else {
        return watch.limit(idle, from.read_buf(buf)).await;
    };
    // A read cut off while pending has consumed nothing: the next one gets every byte.
    match watch.limit(IDLE_RELEASE, from.read_buf(buf)).await {
        Err(Elapsed) => {}
        done => return done,
    }
    release(buf);
    watch.limit(rest, from.read_buf(buf)).await
}

/// Writes `bytes` to `to` within [`SEND_TIMEOUT`]; `false` when the peer broke off or stalled.
async fn send(watch: &mut Watchdog, to: &mut Stream, bytes: &[u8]) -> bool {
    matches!(
        watch.limit(SEND_TIMEOUT, to.write_all(bytes)).await,
        Ok(Ok(()))
    )
}

/// Flushes `to` within [`SEND_TIMEOUT`]; `false` when the peer broke off or stalled.
async fn flush(watch: &mut Watchdog, to: &mut Stream) -> bool {
    matches!(watch.limit(SEND_TIMEOUT, to.flush()).await, Ok(Ok(())))
}

/// How an exchange on one upstream connection failed.
enum Exchange {
    /// The connection was dead before any response byte: a retry is safe when idempotent.
    Stale,
    /// Final.
    Fail(Failure),
}

/// How the upstream head differs from the client's beyond the fixed rules.
#[derive(Debug, Default)]
pub struct HeadRewrite<'a> {
    /// Host sent instead of the client's (`host_header`).
    pub host: Option<&'a str>,
    /// The peer is a trusted proxy: its `X-Forwarded-For` is kept and appended to.
    pub keep_forwarded_for: bool,
    /// The client the forwarding fields name, when not the connection's peer (the tunnel).
    pub client: Option<IpAddr>,
    /// The service's identity header, and the identity Access verified: any client copy of
    /// the header is removed, the verified one added.
    pub identity: Option<(&'a str, Option<&'a str>)>,
}

/// The request head as the backend gets it: hop-by-hop fields and client-supplied
/// forwarding fields removed, labgate's forwarding fields added.
pub fn write_upstream_head(
    out: &mut Vec<u8>,
    h: &RequestHead<'_>,
    info: &ConnInfo,
    rewrite: &HeadRewrite<'_>,
) {
    out.extend_from_slice(h.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(h.path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let client_host = h.host.unwrap_or_default();
    out.extend_from_slice(b"Host: ");
    out.extend_from_slice(rewrite.host.map_or(client_host, str::as_bytes));
    out.extend_from_slice(b"\r\n");
    let identity_header = rewrite.identity.map(|(name, _)| name);
    for f in h.headers {
        if h.is_hop_by_hop(f.name)
            || f.name.eq_ignore_ascii_case("host")
            // SECURITY: only the tunnel's own fields are believed; nobody else may send them.
            || tunnel::strip(f.name, info.via)
            || identity_header.is_some_and(|n| f.name.eq_ignore_ascii_case(n))
        {
            continue;
        }
        out.extend_from_slice(f.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(f.value);
        out.extend_from_slice(b"\r\n");
    }
    if rewrite.keep_forwarded_for {
        let prior = h
            .headers
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case("x-forwarded-for"));
        for f in prior {
            out.extend_from_slice(b"X-Forwarded-For: ");
            out.extend_from_slice(f.value);
            out.extend_from_slice(b"\r\n");
        }
    }
    if let Some((name, Some(identity))) = rewrite.identity {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(identity.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // Through the tunnel, Cloudflare's edge spoke TLS with the client.
    let tls = info.tls || info.via == Via::Tunnel;
    write_forwarding(out, rewrite.client.unwrap_or(info.client), tls, client_host);
    out.extend_from_slice(b"\r\n");
}

/// `X-Forwarded-For`, `-Proto`, `-Host` and `Forwarded` (RFC 7239) for one client, each
/// given to `field` as a name and the parts of its value. Both request paths use it.
pub fn forwarding_fields(
    client: IpAddr,
    tls: bool,
    host: &[u8],
    mut field: impl FnMut(&'static str, &[&[u8]]),
) {
    let proto: &[u8] = if tls { b"https" } else { b"http" };
    let mut ip = [0u8; 64];
    let ip = ip_text(client, &mut ip);
    field("X-Forwarded-For", &[ip]);
    field("X-Forwarded-Proto", &[proto]);
    field("X-Forwarded-Host", &[host]);
    let (open, close): (&[u8], &[u8]) = if client.is_ipv6() {
        (b"\"[", b"]\"")
    } else {
        (b"", b"")
    };
    let host_ok = host
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || b".-:[]".contains(c));
    let (sep, host): (&[u8], &[u8]) = if host_ok {
        (b";host=", host)
    } else {
        (b"", b"")
    };
    field(
        "Forwarded",
        &[b"for=", open, ip, close, b";proto=", proto, sep, host],
    );
}

/// `client` in text, in `buf`. IPv4 is written by hand: `Display` cost as much as the rest of
/// the forwarding fields together.
fn ip_text(client: IpAddr, buf: &mut [u8; 64]) -> &[u8] {
    let mut n = 0;
    match client {
        IpAddr::V4(v4) => {
            // At most 15 bytes: within `buf`.
            for (k, octet) in v4.octets().into_iter().enumerate() {
                if k > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                let mut digits = [0u8; 5];
                for &d in decimal(octet.into(), &mut digits) {
                    buf[n] = d;
                    n += 1;
                }
            }
        }
        IpAddr::V6(v6) => {
            use std::io::Write as _;
            // The longest IPv6 text is 45 bytes.
            let mut cur = std::io::Cursor::new(&mut buf[..]);
            let _ = write!(cur, "{v6}");
            n = usize::try_from(cur.position()).unwrap_or(0);
        }
    }
    &buf[..n]
}

/// `n` in decimal, in `buf`.
fn decimal(mut n: u16, buf: &mut [u8; 5]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// [`forwarding_fields`] as header lines.
pub fn write_forwarding(out: &mut Vec<u8>, client: IpAddr, tls: bool, host: &[u8]) {
    forwarding_fields(client, tls, host, |name, parts| {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        for p in parts {
            out.extend_from_slice(p);
        }
        out.extend_from_slice(b"\r\n");
    });
}

/// The response head as the client gets it.
fn write_downstream_head(out: &mut Vec<u8>, r: &head::ResponseHead<'_>, close: bool) {
    let mut status = [0u8; 5];
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(decimal(r.status, &mut status));
    out.push(b' ');
    out.extend_from_slice(r.reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for f in r.headers {
        if r.is_hop_by_hop(f.name) {
            continue;
        }
        out.extend_from_slice(f.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(f.value);
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::{Instant as Clock, sleep};

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_gives_its_buffers_back_and_still_reads_its_next_request() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let t0 = Clock::now();
        tokio::spawn(async move {
            sleep(Duration::from_secs(1)).await;
            client.write_all(b"A").await.expect("write");
            sleep(Duration::from_secs(5)).await;
            client.write_all(b"B").await.expect("write");
            // Silent from here on, and open.
            std::future::pending::<()>().await;
        });
        let mut watch = Watchdog::new();
        let mut buf = BytesMut::with_capacity(HEAD_BUF);
        let mut released = Vec::new();
        let mut read = async |buf: &mut BytesMut, idle: Duration, released: &mut Vec<Duration>| {
            buf.clear();
            idle_read(&mut watch, &mut server, buf, idle, |b| {
                released.push(t0.elapsed());
                *b = BytesMut::with_capacity(IDLE_READ_BUF);
            })
            .await
        };
        // A request within the delay: nothing is given back.
        let got = read(&mut buf, IDLE_TIMEOUT, &mut released).await;
        assert!(matches!(got, Ok(Ok(1))) && buf[..] == *b"A");
        assert!(released.is_empty());
        assert!(buf.capacity() >= HEAD_BUF);
        // Five seconds idle: given back after two, and the request still read whole.
        let got = read(&mut buf, IDLE_TIMEOUT, &mut released).await;
        assert!(matches!(got, Ok(Ok(1))) && buf[..] == *b"B", "{got:?}");
        assert_eq!(released, [Duration::from_secs(1) + IDLE_RELEASE]);
        assert_eq!(t0.elapsed().as_secs(), 6);
        // Silence: the idle limit still holds in all.
        let got = read(&mut buf, Duration::from_secs(10), &mut released).await;
        assert!(got.is_err());
        assert_eq!(t0.elapsed().as_secs(), 16);
        assert_eq!(released.len(), 2);
        // A limit within the delay: no release.
        let got = read(&mut buf, IDLE_RELEASE, &mut released).await;
        assert!(got.is_err());
        assert_eq!(released.len(), 2);
    }

    #[test]
    fn ip_text_matches_display() {
        let ips = [
            "0.0.0.0",
            "10.0.3.7",
            "192.168.100.254",
            "255.255.255.255",
            "::1",
            "fd00::1:2",
            "::ffff:10.0.0.1",
            "2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff",
        ];
        for text in ips {
            let ip: IpAddr = text.parse().expect("an address");
            let mut buf = [0u8; 64];
            assert_eq!(ip_text(ip, &mut buf), ip.to_string().as_bytes(), "{text}");
        }
        for n in [0u16, 7, 10, 99, 100, 204, 999, 65535] {
            let mut buf = [0u8; 5];
            assert_eq!(decimal(n, &mut buf), n.to_string().as_bytes());
        }
    }
}
