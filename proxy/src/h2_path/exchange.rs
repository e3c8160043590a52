//! One stream's exchange on the HTTP/2 path: labgate's own page, or a backend's answer over an
//! HTTP/1.1 connection (its head written from the plan's rewrite, the request body streamed
//! as the client sends it, the response head HPACK-encoded from the parsed upstream head and
//! its body relayed as the stream's window allows).
//!
//! Every way a response ends goes through [`Exchange::finish`]: a request body the client is
//! still sending is stopped (RST_STREAM NO_ERROR, RFC 9113 §8.1) and the window of the body
//! bytes it held goes back, so one stream's end never holds back the others.

use std::collections::VecDeque;
use std::future::Future;
use std::io::Write as _;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use labgate_config::route::ServiceId;
use pingora::protocols::Stream;
use pingora::upstreams::peer::{HttpPeer, Peer};
use tokio::io::AsyncWrite;
use tokio::time::Instant;

use crate::backends::{BackendState, InFlight};
use crate::chunked::Chunked;
use crate::fast::{BODY_TIMEOUT, SEND_TIMEOUT};
use crate::h2::{Connection, ErrorCode, RequestHead, SendError, StreamId};
use crate::head::{self, Framing, HeadError, header_array};
use crate::plan::{Forward, Served};
use crate::record::Logged;
use crate::rewrite::{Body, Head, decimal};
use crate::upstream::connect_failure;
use crate::{ConnInfo, Proxy, ProxyState, idle, pages};

/// Room kept in a stream's upstream read buffer.
const UP_READ: usize = 16 * 1024;
/// Capacity of the buffer towards the backend kept once it drained; more is given back.
const TO_UP_KEPT: usize = 64 * 1024;
/// A request body still coming after its response ended is read and dropped for this long
/// and this much before the stream is reset: a stream reset before its body is read loses
/// the answer at some clients (curl).
const DRAIN_TIME: Duration = Duration::from_secs(5);
const DRAIN_BYTES: usize = 1 << 20;

/// A decoded HTTP/2 request head, as the plan and the rewrite read it.
#[derive(Debug)]
pub struct View<'a> {
    head: RequestHead<'a>,
    method: &'a str,
    path: &'a str,
    body: Body,
}

impl<'a> View<'a> {
    /// The view of `head`; `end_stream` when no body follows.
    ///
    /// # Errors
    /// Why it cannot be forwarded: a pseudo-field that is not text (the core's validation
    /// makes that impossible), or a fragment in `:path`, which HTTP/1.1 refuses too (a
    /// backend could read the path past `#` otherwise than routing did).
    pub fn new(head: RequestHead<'a>, end_stream: bool) -> Result<Self, &'static str> {
        let body = match (end_stream, head.content_length) {
            (true, _) | (false, Some(0)) => Body::Empty,
            (false, Some(n)) => Body::Length(n),
            (false, None) => Body::Unknown,
        };
        let text = "its method or path is not text";
        let path = std::str::from_utf8(head.path).map_err(|_| text)?;
        // SECURITY: as the HTTP/1.1 parser: a fragment is never sent.
        if path.contains('#') {
            return Err("a fragment (#) in the request target");
        }
        Ok(Self {
            method: std::str::from_utf8(head.method).map_err(|_| text)?,
            path,
            head,
            body,
        })
    }
}

impl Head for View<'_> {
    fn method(&self) -> &str {
        self.method
    }

    fn target(&self) -> &str {
        self.path
    }

    fn host(&self) -> Option<&[u8]> {
        self.head.authority
    }

    fn fields(&self) -> impl Iterator<Item = (&str, &[u8])> {
        fn text<'x>((n, v): (&'x [u8], &'x [u8])) -> Option<(&'x str, &'x [u8])> {
            Some((std::str::from_utf8(n).ok()?, v))
        }
        self.head
            .fields()
            .filter_map(text)
            .chain(self.head.cookies().map(|v| ("cookie", v)))
    }

    fn body(&self) -> Body {
        self.body
    }

    fn websocket(&self) -> bool {
        false
    }

    fn session_only(&self) -> bool {
        false
    }
}

/// A stream's exchange.
pub(super) struct Exchange<'p> {
    /// The stream.
    pub(super) stream: StreamId,
    state: Arc<ProxyState>,
    started: std::time::Instant,
    /// How long the response took (the drain of a body still coming is not counted).
    took: Option<Duration>,
    /// The service and client, when the request reached one.
    served: Option<Served>,
    logged: Option<Box<Logged>>,
    source: Source<'p>,
    reply: Reply,
    /// The status sent to the client.
    status: Option<u16>,
    /// A HEAD request: a page goes without its body.
    head_request: bool,
    /// The client's request body ended (END_STREAM seen).
    body_ended: bool,
    /// When the client last sent body bytes (or the request began).
    last_data: Instant,
    /// Since when the stream's window has held its response back without progress.
    blocked_since: Option<Instant>,
    /// The request body went over `max_body` (this one).
    over_limit: Option<u64>,
    /// The response ended before the request body: until when and how many more of its
    /// bytes are read and dropped before the stream is reset.
    draining: Option<(Instant, usize)>,
}

/// Where a response comes from.
enum Source<'p> {
    /// labgate's own page.
    Page(Page),
    /// A backend.
    Upstream(Box<Upstream<'p>>),
    /// Not planned yet: the Access keys are being fetched.
    Keys(Box<KeysWait<'p>>),
}

/// A request waiting for the Access keys its token names, planned again once they came.
struct KeysWait<'p> {
    fetch: Pin<Box<dyn Future<Output = bool> + Send + 'p>>,
    info: ConnInfo,
    head: OwnedHead,
    /// Request body bytes that came meanwhile (their window is not given back yet).
    held: Vec<u8>,
}

/// A request head kept across the wait for Access keys.
struct OwnedHead {
    method: String,
    target: String,
    host: Option<Vec<u8>>,
    fields: Vec<(String, Vec<u8>)>,
    body: Body,
}

impl OwnedHead {
    fn of(head: &impl Head) -> Self {
        Self {
            method: head.method().to_owned(),
            target: head.target().to_owned(),
            host: head.host().map(<[u8]>::to_vec),
            fields: head
                .fields()
                .map(|(n, v)| (n.to_owned(), v.to_vec()))
                .collect(),
            body: head.body(),
        }
    }
}

impl Head for OwnedHead {
    fn method(&self) -> &str {
        &self.method
    }

    fn target(&self) -> &str {
        &self.target
    }

    fn host(&self) -> Option<&[u8]> {
        self.host.as_deref()
    }

    fn fields(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.fields.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    fn body(&self) -> Body {
        self.body
    }

    fn websocket(&self) -> bool {
        false
    }

    fn session_only(&self) -> bool {
        false
    }
}

/// A page and how much of it is sent.
struct Page {
    status: u16,
    body: String,
    location: Option<String>,
    sent: usize,
}

/// How far the response to the client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// No final head sent yet.
    Head,
    /// The head is sent; the body goes on.
    Body,
    /// The response ended (END_STREAM sent), or the stream was reset.
    Done,
}

/// The backend side.
struct Upstream<'p> {
    backend: InFlight,
    peer: Arc<HttpPeer>,
    service: ServiceId,
    timeout: Duration,
    max_body: Option<u64>,
    /// A retry cannot repeat a side effect (the plan's rule).
    retryable: bool,
    conn: Up<'p>,
    /// The connection came from the idle pool (it may have been closed meanwhile).
    reused: bool,
    /// Connections tried (a failed connect moves once to another backend).
    attempts: u8,
    /// Bytes for the backend not written yet, from `to_up_pos` (a request without a body
    /// keeps its head here until the answer comes, for a retry).
    to_up: Vec<u8>,
    to_up_pos: usize,
    /// Written bytes wait in the connection's own buffer (TLS): flush before waiting.
    unflushed: bool,
    /// When a write to the backend last went through (or began waiting).
    last_write: Instant,
    /// Request body bytes written into `to_up` whose window is not given back yet.
    unreleased: usize,
    /// The request body goes chunked.
    chunked: bool,
    /// Request body bytes received.
    received: u64,
    /// Every byte of the request (head, body, last chunk) was written and flushed.
    request_sent: bool,
    /// The backend's bytes not used yet.
    ubuf: BytesMut,
    /// Any byte came from the backend.
    any_byte: bool,
    /// The backend closed its side.
    eof: bool,
    /// When the backend last sent something (or the wait for it began).
    last_read: Instant,
    body: BodyFraming,
    /// The connection can serve another request once this one is done.
    reusable: bool,
}

/// The backend connection.
enum Up<'p> {
    Connecting(Pin<Box<dyn Future<Output = pingora::Result<Stream>> + Send + 'p>>),
    Open(Stream),
    Gone,
}

/// How the response body is delimited, and how far it is.
enum BodyFraming {
    /// Not known yet: the head has not come.
    Unknown,
    /// This many bytes are left.
    Length(u64),
    Chunked {
        scanner: Chunked,
        /// Runs of data in `ubuf` not sent yet, and how much of `ubuf` the scanner has seen.
        runs: VecDeque<Range<usize>>,
        scanned: usize,
    },
    /// Until the backend closes.
    Close,
    /// The body is all sent but its end: END_STREAM goes next.
    Ending,
    /// END_STREAM was sent.
    Done,
}

/// Why an exchange with the backend failed, before or after the response began.
struct Failed {
    status: u16,
    why: &'static str,
}

const CLOSED_MID_REQUEST: Failed = Failed {
    status: 502,
    why: "closed the connection while receiving the request",
};

impl<'p> Exchange<'p> {
    /// An exchange that answers with labgate's page; `served` when the request reached its
    /// service, `end_stream` when the client sends no body.
    pub(super) fn page(
        stream: StreamId,
        state: Arc<ProxyState>,
        served: Option<(Served, Option<Box<Logged>>)>,
        page: (u16, String, Option<String>),
        head_request: bool,
        end_stream: bool,
    ) -> Self {
        let (served, logged) = served.map_or((None, None), |(s, l)| (Some(s), l));
        let (status, body, location) = page;
        Self {
            stream,
            state,
            started: crate::record::started(),
            took: None,
            served,
            logged,
            source: Source::Page(Page {
                status,
                body,
                location,
                sent: 0,
            }),
            reply: Reply::Head,
            status: None,
            head_request,
            body_ended: end_stream,
            last_data: Instant::now(),
            blocked_since: None,
            over_limit: None,
            draining: None,
        }
    }

    /// An exchange that forwards to `f.backend` the upstream head in `head`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward(
        stream: StreamId,
        proxy: &'p Proxy,
        state: Arc<ProxyState>,
        f: Forward<'_>,
        logged: Option<Box<Logged>>,
        head: Vec<u8>,
        head_request: bool,
        end_stream: bool,
    ) -> Self {
        let now = Instant::now();
        let service = f.served.service;
        let source = match Upstream::open(proxy, &f.backend) {
            None => Source::Page(failure_page(
                &state,
                service,
                &Failed {
                    status: 502,
                    why: "has a host name that does not resolve yet",
                },
            )),
            Some((peer, conn, reused)) => Source::Upstream(Box::new(Upstream {
                backend: f.backend.in_flight(),
                peer,
                service,
                timeout: f.timeout,
                max_body: f.max_body,
                retryable: f.retryable,
                conn,
                reused,
                attempts: 1,
                to_up: head,
                to_up_pos: 0,
                unflushed: false,
                last_write: now,
                unreleased: 0,
                chunked: f.rewrite.chunked,
                received: 0,
                request_sent: false,
                ubuf: BytesMut::new(),
                any_byte: false,
                eof: false,
                last_read: now,
                body: BodyFraming::Unknown,
                reusable: false,
            })),
        };
        Self {
            stream,
            state,
            started: crate::record::started(),
            took: None,
            served: Some(f.served),
            logged,
            source,
            reply: Reply::Head,
            status: None,
            head_request,
            body_ended: end_stream,
            last_data: now,
            blocked_since: None,
            over_limit: None,
            draining: None,
        }
    }

    /// An exchange that waits for the Access keys at `url`, then plans `head` again.
    pub(super) fn awaiting_keys(
        proxy: &'p Proxy,
        info: &ConnInfo,
        stream: StreamId,
        head: &impl Head,
        url: Arc<str>,
        end_stream: bool,
    ) -> Self {
        let keys = Arc::clone(&proxy.access_keys);
        let wait = KeysWait {
            fetch: Box::pin(async move { keys.refresh(&url).await }),
            info: info.clone(),
            head: OwnedHead::of(head),
            held: Vec::new(),
        };
        let mut x = Self::page(
            stream,
            proxy.state.load_full(),
            None,
            (0, String::new(), None),
            head.method() == "HEAD",
            end_stream,
        );
        x.source = Source::Keys(Box::new(wait));
        x
    }

    /// Takes request body bytes; `false` when the exchange no longer wants them (the caller
    /// gives their window back at once).
    pub(super) fn take_body(&mut self, data: &[u8], end: bool) -> bool {
        self.last_data = Instant::now();
        if end {
            self.body_ended = true;
        }
        if let Some((_, left)) = &mut self.draining {
            *left = left.saturating_sub(data.len());
            if end {
                self.draining = None;
            }
            return false;
        }
        if let Source::Keys(wait) = &mut self.source {
            // Bounded by the stream's window: none of it is given back while it waits.
            wait.held.extend_from_slice(data);
            return true;
        }
        let Source::Upstream(up) = &mut self.source else {
            return false;
        };
        if self.reply == Reply::Done || up.request_sent {
            return false;
        }
        up.received += data.len() as u64;
        if let Some(max) = up.max_body.filter(|&max| up.received > max) {
            // Answered at the next poll, which has the connection.
            self.over_limit = Some(max);
            return false;
        }
        if !data.is_empty() {
            if up.chunked {
                let _ = write!(up.to_up, "{:x}\r\n", data.len());
                up.to_up.extend_from_slice(data);
                up.to_up.extend_from_slice(b"\r\n");
            } else {
                up.to_up.extend_from_slice(data);
            }
            up.unreleased += data.len();
        }
        if end && up.chunked {
            up.to_up.extend_from_slice(b"0\r\n\r\n");
        }
        true
    }

    /// Whether the exchange is over.
    pub(super) fn finished(&self) -> bool {
        self.reply == Reply::Done && self.draining.is_none()
    }

    /// The nearest time something must happen by, and what it is.
    fn next_deadline(&self) -> Option<(Instant, Wait)> {
        if let Some((until, _)) = self.draining {
            return Some((until, Wait::Drain));
        }
        if self.reply == Reply::Done {
            return None;
        }
        let mut next: Option<(Instant, Wait)> = None;
        let mut at = |t: Instant, w: Wait| {
            if next.is_none_or(|(n, _)| t < n) {
                next = Some((t, w));
            }
        };
        if let Some(t) = self.blocked_since {
            at(t + SEND_TIMEOUT, Wait::ClientWindow);
        }
        if let Source::Upstream(up) = &self.source {
            if up.to_up_pos < up.to_up.len() || up.unflushed {
                at(up.last_write + SEND_TIMEOUT, Wait::BackendReading);
            } else if !self.body_ended && !up.request_sent {
                at(self.last_data + BODY_TIMEOUT, Wait::ClientBody);
            }
            let waiting = match up.body {
                BodyFraming::Unknown => true,
                _ => up.ubuf.is_empty() && up.wants_more(),
            };
            if waiting && self.blocked_since.is_none() {
                at(up.last_read + up.timeout, Wait::Backend);
            }
        }
        next
    }

    /// The nearest deadline.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.next_deadline().map(|(t, _)| t)
    }

    /// Ends what waited past its deadline.
    pub(super) fn timed_out(&mut self, h2: &mut Connection) {
        let Some((_, wait)) = self.next_deadline() else {
            return;
        };
        let (status, why) = match wait {
            Wait::Drain => {
                self.draining = None;
                h2.reset(self.stream, ErrorCode::NoError);
                return;
            }
            Wait::ClientWindow => {
                h2.reset(self.stream, ErrorCode::Cancel);
                self.finish(h2, false);
                return;
            }
            Wait::ClientBody => {
                let page = pages::request_body_refused(408, "nothing of it came for 30 seconds");
                self.fail(
                    h2,
                    &Failed {
                        status: 408,
                        why: "",
                    },
                    Some(page),
                );
                return;
            }
            Wait::BackendReading => (502, "stopped reading the request body"),
            Wait::Backend => (504, "did not answer in time"),
        };
        self.fail(h2, &Failed { status, why }, None);
    }

    /// The exchange failed: labgate's page (`page`, else one naming the backend's failure)
    /// if the response has not begun, else the stream is reset.
    fn fail(&mut self, h2: &mut Connection, f: &Failed, page: Option<String>) {
        let mut unreleased = 0;
        if let Source::Upstream(up) = &self.source {
            if f.status >= 500 {
                up.backend.failed();
            }
            unreleased = up.unreleased;
        }
        if unreleased > 0 {
            // The bytes held for the backend are dropped: their window goes back.
            h2.release(self.stream, unreleased);
        }
        if self.reply == Reply::Head {
            let body = page.unwrap_or_else(|| {
                let service = self.served.as_ref().map(|s| s.service);
                match service {
                    Some(id) => failure_page(&self.state, id, f).body,
                    None => pages::body(f.status, f.why),
                }
            });
            self.source = Source::Page(Page {
                status: f.status,
                body,
                location: None,
                sent: 0,
            });
            self.blocked_since = None;
        } else {
            h2.reset(self.stream, ErrorCode::Internal);
            if let Source::Upstream(up) = &mut self.source {
                up.reusable = false;
            }
            self.finish(h2, false);
        }
    }

    /// The one end of every response: `complete` when END_STREAM went with its end. A
    /// request body the client is still sending is stopped (RFC 9113 §8.1).
    fn finish(&mut self, h2: &mut Connection, complete: bool) {
        self.reply = Reply::Done;
        self.took = Some(self.started.elapsed());
        self.blocked_since = None;
        if let Source::Upstream(up) = &mut self.source {
            up.reusable &= complete && up.request_sent && up.ubuf.is_empty();
            if up.unreleased > 0 {
                h2.release(self.stream, up.unreleased);
                up.unreleased = 0;
            }
        }
        if !self.body_ended {
            if complete {
                self.draining = Some((Instant::now() + DRAIN_TIME, DRAIN_BYTES));
            } else {
                h2.reset(self.stream, ErrorCode::NoError);
            }
        }
    }

    /// Moves the exchange on; whether anything happened.
    pub(super) fn poll(
        &mut self,
        cx: &mut TaskContext<'_>,
        h2: &mut Connection,
        proxy: &'p Proxy,
    ) -> bool {
        if let Some((_, 0)) = self.draining {
            // As much of the body as is read for nothing: the rest is refused.
            self.draining = None;
            h2.reset(self.stream, ErrorCode::NoError);
            return true;
        }
        if self.reply == Reply::Done {
            return false;
        }
        if let Some(max) = self.over_limit.take()
            && let Source::Upstream(up) = &self.source
        {
            let name = &self.state.snapshot.service(up.service).name;
            let page = pages::too_large_body(name, max);
            let too_large = Failed {
                status: 413,
                why: "",
            };
            self.fail(h2, &too_large, Some(page));
        }
        if let Source::Keys(wait) = &mut self.source {
            if wait.fetch.as_mut().poll(cx).is_pending() {
                return false;
            }
            self.replan(h2, proxy);
        }
        if let Source::Upstream(_) = self.source {
            match self.poll_upstream(cx, h2, proxy) {
                Ok(progress) => return progress,
                Err(f) => {
                    self.fail(h2, &f, None);
                }
            }
        }
        if self.reply == Reply::Done {
            return true;
        }
        self.send_page(h2)
    }

    /// Plans the request again now that the Access keys were fetched, and hands it the body
    /// that came meanwhile.
    fn replan(&mut self, h2: &mut Connection, proxy: &'p Proxy) {
        let placeholder = Source::Page(Page {
            status: 0,
            body: String::new(),
            location: None,
            sent: 0,
        });
        let Source::Keys(wait) = std::mem::replace(&mut self.source, placeholder) else {
            return;
        };
        let KeysWait {
            info, head, held, ..
        } = *wait;
        let end = self.body_ended;
        // `begin` asks for no refetch once the keys were refreshed.
        let Ok(mut next) = super::begin(proxy, &info, self.stream, &head, end, true) else {
            h2.reset(self.stream, ErrorCode::Internal);
            return self.finish(h2, false);
        };
        next.body_ended = false;
        next.last_data = self.last_data;
        if !next.take_body(&held, end) && !held.is_empty() {
            h2.release(self.stream, held.len());
        }
        *self = next;
    }

    /// Sends the page as the window allows.
    fn send_page(&mut self, h2: &mut Connection) -> bool {
        let stream = self.stream;
        let head_request = self.head_request;
        let Source::Page(page) = &mut self.source else {
            return false;
        };
        // A HEAD request gets the page's head alone.
        let body_len = if head_request { 0 } else { page.body.len() };
        let mut progress = false;
        if self.reply == Reply::Head {
            let mut len = [0u8; 20];
            let len = decimal(page.body.len() as u64, &mut len);
            let location = page
                .location
                .as_deref()
                .map(|l| (&b"location"[..], l.as_bytes()));
            let fields = [
                (&b"content-type"[..], &b"text/plain; charset=utf-8"[..]),
                (b"content-length", len),
                (b"cache-control", b"no-store"),
            ]
            .into_iter()
            .chain(location);
            match h2.send_response(stream, page.status, fields, body_len == 0) {
                Ok(()) => {
                    self.status = Some(page.status);
                    self.reply = Reply::Body;
                    progress = true;
                }
                Err(SendError::Blocked) => return false,
                Err(_) => {
                    self.finish(h2, false);
                    return true;
                }
            }
            if body_len == 0 {
                self.finish(h2, true);
                return true;
            }
        }
        let Source::Page(page) = &mut self.source else {
            return progress;
        };
        let sent = h2.send_data(stream, &page.body.as_bytes()[page.sent..body_len], true);
        match sent {
            Ok(n) => {
                page.sent += n;
                let done = page.sent == body_len;
                if n > 0 {
                    progress = true;
                    self.blocked_since = None;
                }
                if done {
                    self.finish(h2, true);
                    return true;
                }
                self.blocked_since.get_or_insert_with(Instant::now);
            }
            Err(SendError::Blocked) => {}
            Err(_) => {
                self.finish(h2, false);
                progress = true;
            }
        }
        progress
    }

    /// Drives the backend side: connect, write, read, relay.
    fn poll_upstream(
        &mut self,
        cx: &mut TaskContext<'_>,
        h2: &mut Connection,
        proxy: &'p Proxy,
    ) -> Result<bool, Failed> {
        let stream = self.stream;
        let body_ended = self.body_ended;
        let Source::Upstream(up) = &mut self.source else {
            return Ok(false);
        };
        let mut progress = false;
        if let Up::Connecting(fut) = &mut up.conn {
            match fut.as_mut().poll(cx) {
                Poll::Ready(Ok(s)) => {
                    up.conn = Up::Open(s);
                    up.last_write = Instant::now();
                    up.last_read = up.last_write;
                    progress = true;
                }
                Poll::Ready(Err(e)) => {
                    tracing::warn!(backend = %up.backend.backend.url, "cannot connect: {e}");
                    up.backend.failed();
                    // Nothing was sent: once more on another backend.
                    if up.attempts == 1
                        && let Some(other) = self
                            .state
                            .pools
                            .get(up.service.index())
                            .and_then(|p| p.pick())
                            .filter(|b| !Arc::ptr_eq(b, &up.backend))
                            .cloned()
                        && let Some((peer, conn, reused)) = Upstream::open(proxy, &other)
                    {
                        up.attempts += 1;
                        (up.backend, up.peer, up.conn, up.reused) =
                            (other.in_flight(), peer, conn, reused);
                        return Ok(true);
                    }
                    let (status, why) = connect_failure(&e);
                    up.conn = Up::Gone;
                    return Err(Failed { status, why });
                }
                Poll::Pending => return Ok(false),
            }
        }
        let may_retry = up.may_retry();
        let Up::Open(conn) = &mut up.conn else {
            // A close-delimited body whose backend closed: only its end is left to send.
            return self.relay(h2).map(|p| p || progress);
        };
        // Write what the backend has not got yet, then flush it.
        while up.to_up_pos < up.to_up.len() {
            match Pin::new(&mut *conn).poll_write(cx, &up.to_up[up.to_up_pos..]) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    up.to_up_pos += n;
                    up.unflushed = true;
                    up.last_write = Instant::now();
                    progress = true;
                }
                Poll::Ready(_) if may_retry => return up.retry(proxy).map(|()| true),
                Poll::Ready(_) => return Err(CLOSED_MID_REQUEST),
                Poll::Pending => break,
            }
        }
        if up.to_up_pos == up.to_up.len() && up.unflushed {
            match Pin::new(&mut *conn).poll_flush(cx) {
                Poll::Ready(Ok(())) => {
                    up.unflushed = false;
                    progress = true;
                }
                Poll::Ready(Err(_)) if may_retry => return up.retry(proxy).map(|()| true),
                Poll::Ready(Err(_)) => return Err(CLOSED_MID_REQUEST),
                Poll::Pending => {}
            }
        }
        if up.to_up_pos == up.to_up.len() && !up.unflushed && !up.request_sent {
            // A request without a body keeps its head until the answer, for a retry.
            if !up.retryable {
                up.to_up.clear();
                up.to_up_pos = 0;
                if up.to_up.capacity() > TO_UP_KEPT {
                    up.to_up = Vec::new();
                }
            }
            if up.unreleased > 0 {
                // The backend has these bytes: the client may send more.
                h2.release(stream, up.unreleased);
                up.unreleased = 0;
            }
            if body_ended {
                up.request_sent = true;
                up.last_read = Instant::now();
            }
        }
        // Read the backend's answer while the client can take it.
        loop {
            progress |= self.relay(h2)?;
            if self.reply == Reply::Done {
                return Ok(true);
            }
            let Source::Upstream(up) = &mut self.source else {
                return Ok(progress);
            };
            if !up.wants_more() || up.ubuf.len() >= UP_READ {
                return Ok(progress);
            }
            let may_retry = up.may_retry();
            let Up::Open(conn) = &mut up.conn else {
                return Ok(progress);
            };
            up.ubuf.reserve(UP_READ);
            match tokio_util::io::poll_read_buf(Pin::new(conn), cx, &mut up.ubuf) {
                Poll::Ready(Ok(0)) => {
                    if may_retry {
                        return up.retry(proxy).map(|()| true);
                    }
                    up.eof = true;
                    up.conn = Up::Gone;
                    progress = true;
                    match up.body {
                        // The end of a close-delimited body.
                        BodyFraming::Close => {}
                        _ => {
                            return Err(Failed {
                                status: 502,
                                why: if up.any_byte {
                                    "closed the connection mid-answer"
                                } else {
                                    "closed the connection without answering"
                                },
                            });
                        }
                    }
                }
                Poll::Ready(Ok(_)) => {
                    up.any_byte = true;
                    up.last_read = Instant::now();
                    progress = true;
                }
                Poll::Ready(Err(_)) if may_retry => return up.retry(proxy).map(|()| true),
                Poll::Ready(Err(_)) => {
                    return Err(Failed {
                        status: 502,
                        why: "broke the connection",
                    });
                }
                Poll::Pending => return Ok(progress),
            }
        }
    }

    /// Passes on what the backend sent: the head, then the body as the window allows.
    fn relay(&mut self, h2: &mut Connection) -> Result<bool, Failed> {
        let mut progress = false;
        if self.reply == Reply::Head {
            match self.relay_head(h2)? {
                None => return Ok(false),
                Some(done) => {
                    progress = true;
                    if done || self.reply == Reply::Head {
                        // The end of the response, or an interim head: nothing more now.
                        return Ok(true);
                    }
                }
            }
        }
        let stream = self.stream;
        let Source::Upstream(up) = &mut self.source else {
            return Ok(progress);
        };
        // `sent` is how much of what was offered the window took.
        let send =
            |h2: &mut Connection, data: &[u8], end: bool, blocked: &mut Option<Instant>| match h2
                .send_data(stream, data, end)
            {
                Ok(n) => {
                    if n > 0 || data.is_empty() {
                        *blocked = None;
                    }
                    if n < data.len() {
                        blocked.get_or_insert_with(Instant::now);
                    }
                    Ok(n)
                }
                Err(SendError::Blocked) => Ok(0),
                Err(_) => Err(()),
            };
        loop {
            let before = progress;
            match &mut up.body {
                BodyFraming::Unknown | BodyFraming::Done => break,
                BodyFraming::Ending => {
                    match h2.send_data(stream, &[], true) {
                        Ok(_) => up.body = BodyFraming::Done,
                        Err(SendError::Blocked) => break,
                        Err(_) => {
                            return Err(Failed {
                                status: 502,
                                why: "",
                            });
                        }
                    }
                    progress = true;
                }
                BodyFraming::Length(left) => {
                    let take = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(up.ubuf.len());
                    if take == 0 {
                        break;
                    }
                    let last = take as u64 == *left;
                    let n = send(h2, &up.ubuf[..take], last, &mut self.blocked_since).map_err(
                        |()| Failed {
                            status: 502,
                            why: "",
                        },
                    )?;
                    up.ubuf.advance(n);
                    *left -= n as u64;
                    progress |= n > 0;
                    if *left == 0 {
                        up.body = BodyFraming::Done;
                    }
                }
                BodyFraming::Close => {
                    if up.ubuf.is_empty() {
                        if up.eof {
                            up.body = BodyFraming::Ending;
                            continue;
                        }
                        break;
                    }
                    let n = send(h2, &up.ubuf, false, &mut self.blocked_since).map_err(|()| {
                        Failed {
                            status: 502,
                            why: "",
                        }
                    })?;
                    up.ubuf.advance(n);
                    progress |= n > 0;
                }
                BodyFraming::Chunked {
                    scanner,
                    runs,
                    scanned,
                } => {
                    if *scanned < up.ubuf.len() && !scanner.done() {
                        let base = *scanned;
                        let used = scanner
                            .feed_data(&up.ubuf[base..], |r| {
                                runs.push_back(base + r.start..base + r.end);
                            })
                            .map_err(|_| Failed {
                                status: 502,
                                why: "sent a malformed chunked body",
                            })?;
                        *scanned += used;
                    }
                    while let Some(run) = runs.front_mut() {
                        let n = send(h2, &up.ubuf[run.clone()], false, &mut self.blocked_since)
                            .map_err(|()| Failed {
                                status: 502,
                                why: "",
                            })?;
                        run.start += n;
                        progress |= n > 0;
                        if run.start < run.end {
                            break;
                        }
                        runs.pop_front();
                    }
                    if !runs.is_empty() {
                        break;
                    }
                    let n = *scanned;
                    up.ubuf.advance(n);
                    *scanned = 0;
                    if scanner.done() {
                        up.body = BodyFraming::Ending;
                        continue;
                    }
                    break;
                }
            }
            if progress == before {
                break;
            }
        }
        if matches!(up.body, BodyFraming::Done) {
            self.finish(h2, true);
            return Ok(true);
        }
        Ok(progress)
    }

    /// Reads and sends the response head, once whole: `None` while it is not; `Some(true)`
    /// when the response ended with it (no body).
    fn relay_head(&mut self, h2: &mut Connection) -> Result<Option<bool>, Failed> {
        let stream = self.stream;
        let Source::Upstream(up) = &mut self.source else {
            return Ok(None);
        };
        let mut headers = header_array();
        let r = match head::parse_response(&up.ubuf, &mut headers) {
            Err(HeadError::Partial) => return Ok(None),
            Err(_) => {
                return Err(Failed {
                    status: 502,
                    why: "sent a malformed response",
                });
            }
            Ok(r) => r,
        };
        // HTTP/2 carries a three-digit status; 101 is for an upgrade never asked for.
        if !(100..=599).contains(&r.status) || r.status == 101 {
            return Err(Failed {
                status: 502,
                why: "sent a status HTTP/2 cannot carry",
            });
        }
        let framing = r.framing(if self.head_request { "HEAD" } else { "GET" });
        let interim = r.status < 200;
        let end = !interim && framing == Framing::Empty;
        let fields = r
            .headers
            .iter()
            .filter(|f| {
                !r.is_hop_by_hop(f.name) && !f.name.eq_ignore_ascii_case("transfer-encoding")
            })
            .map(|f| (f.name.as_bytes(), f.value));
        match h2.send_response(stream, r.status, fields, end) {
            Ok(()) => {}
            Err(SendError::Blocked) => return Ok(None),
            Err(_) => {
                return Err(Failed {
                    status: 502,
                    why: "sent a response head HTTP/2 cannot carry",
                });
            }
        }
        let (len, status, close) = (r.len, r.status, r.close);
        up.ubuf.advance(len);
        up.last_read = Instant::now();
        if interim {
            return Ok(Some(false));
        }
        up.backend.succeeded();
        self.status = Some(status);
        self.reply = Reply::Body;
        up.reusable = !close && framing != Framing::Close;
        up.body = match framing {
            Framing::Empty => BodyFraming::Done,
            Framing::Length(n) => BodyFraming::Length(n),
            Framing::Chunked => BodyFraming::Chunked {
                scanner: Chunked::default(),
                runs: VecDeque::new(),
                scanned: 0,
            },
            Framing::Close => BodyFraming::Close,
        };
        if end {
            self.finish(h2, true);
            return Ok(Some(true));
        }
        Ok(Some(false))
    }

    /// Records the exchange once it is over, and keeps a reusable backend connection idle.
    pub(super) fn record(self, proxy: &Proxy) {
        let Self {
            source,
            served,
            logged,
            status,
            state,
            started,
            took,
            ..
        } = self;
        if let Source::Upstream(up) = source {
            let up = *up;
            if up.reusable
                && matches!(up.body, BodyFraming::Done)
                && let Up::Open(stream) = up.conn
            {
                idle::put(up.peer.reuse_hash(), stream, Instant::now());
            }
        }
        if let Some(served) = served {
            let took = took.unwrap_or_else(|| started.elapsed());
            proxy.served(&state.snapshot, served, logged, status, took);
        }
    }

    /// The stream went away (reset, or the connection ended) before its exchange was over:
    /// recorded with the status the client got, if any; the backend connection is closed.
    pub(super) fn abandon(mut self, proxy: &Proxy) {
        if let Source::Upstream(up) = &mut self.source {
            up.reusable = false;
        }
        self.record(proxy);
    }
}

/// What an exchange waits for, past its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// The client to open the stream's window ([`SEND_TIMEOUT`]).
    ClientWindow,
    /// The client's next request body bytes ([`BODY_TIMEOUT`]).
    ClientBody,
    /// The backend to take the request ([`SEND_TIMEOUT`]).
    BackendReading,
    /// The backend's answer (the service's `timeout`).
    Backend,
    /// The end of a request body whose response was sent ([`DRAIN_TIME`]).
    Drain,
}

impl<'p> Upstream<'p> {
    /// The backend's connection for `backend`: an idle one of this thread's, else a new one
    /// being made; `None` when its address is not known yet.
    fn open(proxy: &'p Proxy, backend: &BackendState) -> Option<(Arc<HttpPeer>, Up<'p>, bool)> {
        let peer = backend.peer()?;
        Some(match idle::take(peer.reuse_hash()) {
            Some(s) => (peer, Up::Open(s), true),
            None => {
                let conn = connect(proxy, Arc::clone(&peer));
                (peer, conn, false)
            }
        })
    }

    /// Whether the response still needs bytes from the backend.
    fn wants_more(&self) -> bool {
        match &self.body {
            BodyFraming::Unknown | BodyFraming::Close => !self.eof,
            BodyFraming::Length(left) => (self.ubuf.len() as u64) < *left,
            BodyFraming::Chunked { scanner, .. } => !scanner.done(),
            BodyFraming::Ending | BodyFraming::Done => false,
        }
    }

    /// A reused connection failed before any answer, and the request may be sent again.
    fn may_retry(&self) -> bool {
        self.reused && self.retryable && !self.any_byte
    }

    /// The reused connection was dead before it answered: once more on a fresh one.
    fn retry(&mut self, proxy: &'p Proxy) -> Result<(), Failed> {
        self.reused = false;
        self.to_up_pos = 0;
        self.unflushed = false;
        self.request_sent = false;
        self.ubuf.clear();
        self.conn = connect(proxy, Arc::clone(&self.peer));
        Ok(())
    }
}

/// A new connection to `peer`, as a future the exchange polls.
fn connect(proxy: &Proxy, peer: Arc<HttpPeer>) -> Up<'_> {
    Up::Connecting(Box::pin(
        async move { proxy.new_backend_stream(&peer).await },
    ))
}

/// labgate's page on what service `id`'s backend did.
fn failure_page(state: &ProxyState, id: ServiceId, f: &Failed) -> Page {
    Page {
        status: f.status,
        body: pages::backend_body(f.status, &state.snapshot.service(id).name, f.why),
        location: None,
        sent: 0,
    }
}
