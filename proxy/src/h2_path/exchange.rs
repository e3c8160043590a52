//! One stream's exchange on the HTTP/2 path: labgate's own page, or a backend's answer over an
//! HTTP/1.1 connection (its head written from the plan's rewrite, the request body streamed
//! as the client sends it, the response head HPACK-encoded from the parsed upstream head and
//! its body relayed as the stream's window allows).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use pingora::protocols::Stream;
use pingora::upstreams::peer::{HttpPeer, Peer};
use tokio::io::AsyncWrite;
use tokio::time::Instant;

use crate::backends::InFlight;
use crate::chunked::Chunked;
use crate::fast::{BODY_TIMEOUT, SEND_TIMEOUT};
use crate::h2::{Connection, ErrorCode, RequestHead, SendError, StreamId};
use crate::head::{self, Framing, HeadError, header_array};
use crate::plan::{Forward, Served};
use crate::record::Logged;
use crate::rewrite::{Body, Head};
use crate::upstream::connect_failure;
use crate::{Proxy, ProxyState, idle, pages};

/// Room kept in a stream's upstream read buffer.
const UP_READ: usize = 16 * 1024;

/// A decoded HTTP/2 request head, as the plan and the rewrite read it.
#[derive(Debug)]
pub struct View<'a> {
    head: RequestHead<'a>,
    method: &'a str,
    path: &'a str,
    body: Body,
}

impl<'a> View<'a> {
    /// The view of `head`; `end_stream` when no body follows. `None` when a pseudo-field is
    /// not text (the core's validation makes that impossible).
    pub fn new(head: RequestHead<'a>, end_stream: bool) -> Option<Self> {
        let body = match (end_stream, head.content_length) {
            (true, _) | (false, Some(0)) => Body::Empty,
            (false, Some(n)) => Body::Length(n),
            (false, None) => Body::Unknown,
        };
        Some(Self {
            method: std::str::from_utf8(head.method).ok()?,
            path: std::str::from_utf8(head.path).ok()?,
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
    /// The service and client, when the request reached one.
    served: Option<Served>,
    logged: Option<Box<Logged>>,
    source: Source<'p>,
    reply: Reply,
    /// The status sent to the client.
    status: Option<u16>,
    /// The client's request body ended (or there was none).
    body_ended: bool,
    /// Since when the stream's window has held its response back.
    blocked_since: Option<Instant>,
}

/// Where a response comes from.
enum Source<'p> {
    /// labgate's own page.
    Page(Page),
    /// A backend.
    Upstream(Box<Upstream<'p>>),
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
    timeout: Duration,
    max_body: Option<u64>,
    head_request: bool,
    /// A retry cannot repeat a side effect (idempotent, no body).
    retryable: bool,
    conn: Up<'p>,
    /// The connection came from the idle pool (it may have been closed meanwhile).
    reused: bool,
    /// Bytes for the backend not written yet, from `to_up_pos` (a request without a body
    /// keeps its head here until the answer comes, for a retry).
    to_up: Vec<u8>,
    to_up_pos: usize,
    /// Request body bytes written into `to_up` whose window is not given back yet.
    unreleased: usize,
    /// The request body goes chunked.
    chunked: bool,
    /// Request body bytes received.
    received: u64,
    /// Every byte of the request (head, body, last chunk) was written.
    request_sent: bool,
    /// The backend's bytes not used yet.
    ubuf: BytesMut,
    /// Any byte came from the backend.
    any_byte: bool,
    body: BodyFraming,
    /// When the backend must have said something by.
    deadline: Instant,
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
    Length(u64),
    Chunked {
        scanner: Chunked,
        /// Runs of data in `ubuf` not sent yet, and how much of `ubuf` the scanner has seen.
        runs: Vec<std::ops::Range<usize>>,
        scanned: usize,
    },
    Close,
    /// The body is all sent but its end: END_STREAM goes next.
    Ending,
    /// END_STREAM was sent.
    Done,
}

/// Why an exchange with the backend failed.
struct Failed {
    status: u16,
    why: &'static str,
}

impl<'p> Exchange<'p> {
    /// An exchange that answers with labgate's page.
    pub(super) fn page(
        stream: StreamId,
        state: Arc<ProxyState>,
        served: Option<(Served, Option<Box<Logged>>)>,
        status: u16,
        body: String,
        location: Option<String>,
        body_ended: bool,
    ) -> Self {
        let (served, logged) = served.map_or((None, None), |(s, l)| (Some(s), l));
        Self {
            stream,
            state,
            started: std::time::Instant::now(),
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
            body_ended,
            blocked_since: None,
        }
    }

    /// An exchange that forwards to `f.backend` the upstream head in `head`.
    pub(super) fn forward(
        stream: StreamId,
        proxy: &'p Proxy,
        state: Arc<ProxyState>,
        f: Forward<'_>,
        logged: Option<Box<Logged>>,
        head: Vec<u8>,
        body: Body,
    ) -> Self {
        let backend = f.backend.in_flight();
        let peer = f.backend.peer();
        let retryable = body == Body::Empty;
        let (conn, reused) = match &peer {
            None => (Up::Gone, false),
            Some(peer) => match idle::take(peer.reuse_hash()) {
                Some(s) => (Up::Open(s), true),
                None => (connect(proxy, Arc::clone(peer)), false),
            },
        };
        let source = match peer {
            None => Source::Page(failure_page(
                &state,
                f.served.service,
                Failed {
                    status: 502,
                    why: "has a host name that does not resolve yet",
                },
            )),
            Some(peer) => Source::Upstream(Box::new(Upstream {
                backend,
                peer,
                timeout: f.timeout,
                max_body: f.max_body,
                head_request: false,
                retryable,
                conn,
                reused,
                to_up: head,
                to_up_pos: 0,
                unreleased: 0,
                chunked: f.rewrite.chunked,
                received: 0,
                request_sent: false,
                ubuf: BytesMut::new(),
                any_byte: false,
                body: BodyFraming::Unknown,
                deadline: Instant::now() + f.timeout,
                reusable: false,
            })),
        };
        Self {
            stream,
            state,
            started: std::time::Instant::now(),
            served: Some(f.served),
            logged,
            source,
            reply: Reply::Head,
            status: None,
            body_ended: body == Body::Empty,
            blocked_since: None,
        }
    }

    /// The request is a HEAD: its response has no body whatever its head says.
    pub(super) fn set_head_request(&mut self) {
        if let Source::Upstream(up) = &mut self.source {
            up.head_request = true;
        }
    }

    /// Takes request body bytes; `false` when the exchange no longer wants them (the window
    /// goes back to the client at once).
    pub(super) fn take_body(&mut self, data: &[u8], end: bool) -> bool {
        if end {
            self.body_ended = true;
        }
        let Source::Upstream(up) = &mut self.source else {
            return false;
        };
        if up.request_sent || up.body.is_done() && self.reply == Reply::Done {
            return false;
        }
        up.received += data.len() as u64;
        if let Some(max) = up.max_body.filter(|&max| up.received > max) {
            let name = self.served.as_ref().map_or_else(String::new, |s| {
                self.state.snapshot.service(s.service).name.to_string()
            });
            self.fail_before_head(413, pages::too_large_body(&name, max));
            return false;
        }
        if !data.is_empty() {
            if up.chunked {
                up.to_up
                    .extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
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
        up.deadline = Instant::now() + BODY_TIMEOUT.max(up.timeout);
        true
    }

    /// The client's request body ended (END_STREAM, or trailers).
    pub(super) fn body_ended(&mut self) {
        if !self.body_ended {
            self.take_body(&[], true);
        }
    }

    /// Answers with a page instead of the backend's response, if no head was sent yet;
    /// else ends the stream (the caller resets it).
    fn fail_before_head(&mut self, status: u16, body: String) {
        if self.reply == Reply::Head {
            self.source = Source::Page(Page {
                status,
                body,
                location: None,
                sent: 0,
            });
        } else {
            self.reply = Reply::Done;
            self.source = Source::Page(Page {
                status,
                body: String::new(),
                location: None,
                sent: 0,
            });
        }
    }

    /// Whether the exchange is over.
    pub(super) fn finished(&self) -> bool {
        self.reply == Reply::Done
    }

    /// The nearest time something must happen by.
    pub(super) fn deadline(&self) -> Option<Instant> {
        let blocked = self.blocked_since.map(|t| t + SEND_TIMEOUT);
        let up = match &self.source {
            Source::Upstream(up) if self.reply != Reply::Done => Some(up.deadline),
            _ => None,
        };
        match (blocked, up) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A deadline passed: the backend (or the client's body) was silent, or the client gave
    /// the stream no window.
    pub(super) fn timed_out(&mut self, h2: &mut Connection) {
        if self
            .blocked_since
            .is_some_and(|t| Instant::now() >= t + SEND_TIMEOUT)
        {
            h2.reset(self.stream, ErrorCode::Cancel);
            self.end(false);
            return;
        }
        let waiting_body =
            matches!(&self.source, Source::Upstream(up) if !up.request_sent && !self.body_ended);
        if waiting_body && self.reply == Reply::Head {
            let body = pages::request_body_refused(408, "nothing of it came for 30 seconds");
            self.source = Source::Page(Page {
                status: 408,
                body,
                location: None,
                sent: 0,
            });
            return;
        }
        let failed = Failed {
            status: 504,
            why: "did not answer in time",
        };
        if self.reply == Reply::Head {
            if let Source::Upstream(up) = &self.source {
                up.backend.failed();
            }
            let service = self.served.as_ref().map(|s| s.service);
            self.source = Source::Page(match service {
                Some(id) => failure_page(&self.state, id, failed),
                None => plain_page(failed.status, failed.why),
            });
        } else {
            h2.reset(self.stream, ErrorCode::Cancel);
            self.end(false);
        }
    }

    /// Moves the exchange on; whether anything happened.
    pub(super) fn poll(
        &mut self,
        cx: &mut TaskContext<'_>,
        h2: &mut Connection,
        proxy: &'p Proxy,
    ) -> bool {
        if self.reply == Reply::Done {
            return false;
        }
        match &mut self.source {
            Source::Page(_) => self.send_page(h2),
            Source::Upstream(_) => match self.poll_upstream(cx, h2, proxy) {
                Ok(progress) => progress,
                Err(f) => {
                    if let Source::Upstream(up) = &self.source {
                        up.backend.failed();
                    }
                    match (self.reply, self.served.as_ref()) {
                        (Reply::Head, Some(s)) => {
                            self.source = Source::Page(failure_page(&self.state, s.service, f));
                        }
                        _ => {
                            h2.reset(self.stream, ErrorCode::Internal);
                            self.end(false);
                        }
                    }
                    true
                }
            },
        }
    }

    /// Sends the page as the window allows.
    fn send_page(&mut self, h2: &mut Connection) -> bool {
        let Source::Page(page) = &mut self.source else {
            return false;
        };
        let mut progress = false;
        if self.reply == Reply::Head {
            let len = page.body.len().to_string();
            let mut fields: Vec<(&[u8], &[u8])> = vec![
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", len.as_bytes()),
                (b"cache-control", b"no-store"),
            ];
            if let Some(l) = &page.location {
                fields.push((b"location", l.as_bytes()));
            }
            match h2.send_response(self.stream, page.status, fields, page.body.is_empty()) {
                Ok(()) => {
                    self.status = Some(page.status);
                    self.reply = Reply::Body;
                    progress = true;
                    if page.body.is_empty() {
                        self.end(true);
                        return true;
                    }
                }
                Err(SendError::Blocked) => return false,
                Err(_) => {
                    self.end(false);
                    return true;
                }
            }
        }
        let Source::Page(page) = &mut self.source else {
            return progress;
        };
        match h2.send_data(self.stream, &page.body.as_bytes()[page.sent..], true) {
            Ok(n) => {
                page.sent += n;
                progress |= n > 0;
                if page.sent == page.body.len() {
                    self.end(true);
                    return true;
                }
                self.blocked_since.get_or_insert_with(Instant::now);
            }
            Err(SendError::Blocked) => {}
            Err(_) => {
                self.end(false);
                progress = true;
            }
        }
        progress
    }

    /// The response ended: `complete` when it reached its end. A request body the client
    /// is still sending is stopped (RFC 9113 §8.1).
    fn end(&mut self, complete: bool) {
        self.reply = Reply::Done;
        if !complete && let Source::Upstream(up) = &mut self.source {
            up.reusable = false;
        }
    }

    /// Stops the client's request body when the response ended before it.
    pub(super) fn stop_body(&self, h2: &mut Connection) {
        if !self.body_ended {
            h2.reset(self.stream, ErrorCode::NoError);
        }
    }

    fn poll_upstream(
        &mut self,
        cx: &mut TaskContext<'_>,
        h2: &mut Connection,
        proxy: &'p Proxy,
    ) -> Result<bool, Failed> {
        let stream_id = self.stream;
        let Source::Upstream(up) = &mut self.source else {
            return Ok(false);
        };
        let mut progress = false;
        // Connect.
        if let Up::Connecting(fut) = &mut up.conn {
            match fut.as_mut().poll(cx) {
                Poll::Ready(Ok(s)) => {
                    up.conn = Up::Open(s);
                    progress = true;
                }
                Poll::Ready(Err(e)) => {
                    tracing::warn!(backend = %up.backend.backend.url, "cannot connect: {e}");
                    let (status, why) = connect_failure(&e);
                    up.conn = Up::Gone;
                    return Err(Failed { status, why });
                }
                Poll::Pending => return Ok(false),
            }
        }
        let Up::Open(conn) = &mut up.conn else {
            return Err(Failed {
                status: 502,
                why: "closed the connection",
            });
        };
        // Write what the backend has not got yet.
        while up.to_up_pos < up.to_up.len() {
            match Pin::new(&mut *conn).poll_write(cx, &up.to_up[up.to_up_pos..]) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    up.to_up_pos += n;
                    progress = true;
                }
                Poll::Ready(_) if !up.any_byte && up.reused && up.retryable => {
                    return up.retry(proxy).map(|()| true);
                }
                Poll::Ready(_) => {
                    return Err(Failed {
                        status: 502,
                        why: "closed the connection while receiving the request",
                    });
                }
                Poll::Pending => break,
            }
        }
        if up.to_up_pos == up.to_up.len() && !up.request_sent {
            match Pin::new(&mut *conn).poll_flush(cx) {
                Poll::Ready(Err(_)) => {
                    return Err(Failed {
                        status: 502,
                        why: "closed the connection while receiving the request",
                    });
                }
                Poll::Ready(Ok(())) | Poll::Pending => {}
            }
            // A request without a body keeps its head until the answer, for a retry.
            if !up.retryable {
                up.to_up.clear();
                up.to_up_pos = 0;
            }
            if up.unreleased > 0 {
                h2.release(stream_id, up.unreleased);
                up.unreleased = 0;
            }
            up.request_sent = self.body_ended;
        }
        // Read the backend's answer while the client can take it.
        let mut read_more = true;
        while read_more {
            read_more = false;
            progress |= self.relay(h2)?;
            if self.reply == Reply::Done {
                return Ok(true);
            }
            let Source::Upstream(up) = &mut self.source else {
                return Ok(progress);
            };
            let Up::Open(conn) = &mut up.conn else {
                return Ok(progress);
            };
            if up.ubuf.len() >= UP_READ {
                break;
            }
            up.ubuf.reserve(UP_READ);
            match tokio_util::io::poll_read_buf(Pin::new(conn), cx, &mut up.ubuf) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    if !up.any_byte && up.reused && up.retryable {
                        return up.retry(proxy).map(|()| true);
                    }
                    if matches!(up.body, BodyFraming::Close) {
                        up.body = BodyFraming::Ending;
                        up.conn = Up::Gone;
                        read_more = true;
                        progress = true;
                        continue;
                    }
                    return Err(Failed {
                        status: 502,
                        why: if up.any_byte {
                            "closed the connection mid-answer"
                        } else {
                            "closed the connection without answering"
                        },
                    });
                }
                Poll::Ready(Ok(_)) => {
                    up.any_byte = true;
                    up.deadline = Instant::now() + up.timeout;
                    read_more = true;
                    progress = true;
                }
                Poll::Pending => {}
            }
        }
        Ok(progress)
    }

    /// Passes on what the backend sent: the head, then the body as the window allows.
    fn relay(&mut self, h2: &mut Connection) -> Result<bool, Failed> {
        let stream = self.stream;
        let Source::Upstream(up) = &mut self.source else {
            return Ok(false);
        };
        let mut progress = false;
        if self.reply == Reply::Head {
            let mut headers = header_array();
            let r = match head::parse_response(&up.ubuf, &mut headers) {
                Err(HeadError::Partial) => return Ok(false),
                Err(_) => {
                    return Err(Failed {
                        status: 502,
                        why: "sent a malformed response",
                    });
                }
                Ok(r) => r,
            };
            if r.status == 101 {
                return Err(Failed {
                    status: 502,
                    why: "switched protocols without being asked",
                });
            }
            let framing = r.framing(if up.head_request { "HEAD" } else { "GET" });
            let interim = (100..200).contains(&r.status);
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
                Err(SendError::Blocked) => return Ok(false),
                Err(_) => {
                    self.reply = Reply::Done;
                    return Ok(true);
                }
            }
            let (len, status, close) = (r.len, r.status, r.close);
            up.ubuf.advance(len);
            progress = true;
            if interim {
                return Ok(true);
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
                    runs: Vec::new(),
                    scanned: 0,
                },
                Framing::Close => BodyFraming::Close,
            };
            if end {
                self.finish_body(h2);
                return Ok(true);
            }
        }
        let Source::Upstream(up) = &mut self.source else {
            return Ok(progress);
        };
        loop {
            match &mut up.body {
                BodyFraming::Unknown | BodyFraming::Done => break,
                BodyFraming::Ending => match h2.send_data(stream, &[], true) {
                    Ok(_) => {
                        up.body = BodyFraming::Done;
                        progress = true;
                        break;
                    }
                    Err(SendError::Blocked) => break,
                    Err(_) => {
                        self.reply = Reply::Done;
                        return Ok(true);
                    }
                },
                BodyFraming::Length(left) => {
                    let take = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(up.ubuf.len());
                    let last = take as u64 == *left;
                    if take == 0 && !last {
                        break;
                    }
                    match h2.send_data(stream, &up.ubuf[..take], last) {
                        Ok(n) => {
                            up.ubuf.advance(n);
                            *left -= n as u64;
                            progress |= n > 0;
                            if *left == 0 {
                                up.body = BodyFraming::Done;
                                break;
                            }
                            if n < take {
                                self.blocked_since.get_or_insert_with(Instant::now);
                                break;
                            }
                            self.blocked_since = None;
                            if up.ubuf.is_empty() {
                                break;
                            }
                        }
                        Err(SendError::Blocked) => break,
                        Err(_) => {
                            self.reply = Reply::Done;
                            return Ok(true);
                        }
                    }
                }
                BodyFraming::Close => {
                    if up.ubuf.is_empty() {
                        break;
                    }
                    match h2.send_data(stream, &up.ubuf, false) {
                        Ok(n) => {
                            up.ubuf.advance(n);
                            progress |= n > 0;
                            if !up.ubuf.is_empty() {
                                self.blocked_since.get_or_insert_with(Instant::now);
                                break;
                            }
                            self.blocked_since = None;
                        }
                        Err(SendError::Blocked) => break,
                        Err(_) => {
                            self.reply = Reply::Done;
                            return Ok(true);
                        }
                    }
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
                                runs.push(base + r.start..base + r.end)
                            })
                            .map_err(|_| Failed {
                                status: 502,
                                why: "sent a malformed response",
                            })?;
                        *scanned += used;
                        if scanner.done() && *scanned < up.ubuf.len() {
                            // Bytes after the body: the connection is out of step.
                            up.reusable = false;
                        }
                    }
                    let mut blocked = false;
                    while let Some(run) = runs.first_mut() {
                        match h2.send_data(stream, &up.ubuf[run.clone()], false) {
                            Ok(n) => {
                                run.start += n;
                                progress |= n > 0;
                                if run.start == run.end {
                                    runs.remove(0);
                                } else {
                                    blocked = true;
                                    break;
                                }
                            }
                            Err(SendError::Blocked) => {
                                blocked = true;
                                break;
                            }
                            Err(_) => {
                                self.reply = Reply::Done;
                                return Ok(true);
                            }
                        }
                    }
                    if blocked {
                        self.blocked_since.get_or_insert_with(Instant::now);
                        break;
                    }
                    self.blocked_since = None;
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
        }
        if let Source::Upstream(up) = &self.source
            && matches!(up.body, BodyFraming::Done)
            && self.reply == Reply::Body
        {
            self.finish_body(h2);
            progress = true;
        }
        Ok(progress)
    }

    /// The response body reached its end (END_STREAM was sent with it).
    fn finish_body(&mut self, h2: &mut Connection) {
        self.reply = Reply::Done;
        self.blocked_since = None;
        if let Source::Upstream(up) = &mut self.source {
            up.reusable &= up.request_sent && up.ubuf.is_empty();
        }
        self.stop_body(h2);
    }

    /// Records the exchange once it is over, and keeps a reusable backend connection idle.
    pub(super) fn record(self, proxy: &Proxy) {
        let status = self.status;
        self.close(proxy, status);
    }

    /// The stream went away (reset, or the connection ended) before its exchange was over.
    pub(super) fn abandon(mut self, proxy: &Proxy) {
        self.reply = Reply::Done;
        if let Source::Upstream(up) = &mut self.source {
            up.reusable = false;
        }
        let status = self.status;
        self.close(proxy, status);
    }

    fn close(self, proxy: &Proxy, status: Option<u16>) {
        if let Source::Upstream(up) = self.source {
            let up = *up;
            if up.reusable
                && matches!(up.body, BodyFraming::Done)
                && let Up::Open(stream) = up.conn
            {
                idle::put(up.peer.reuse_hash(), stream, Instant::now());
            }
        }
        if let Some(served) = self.served {
            proxy.served(
                &self.state.snapshot,
                served,
                self.logged,
                status,
                self.started.elapsed(),
            );
        }
    }
}

impl BodyFraming {
    fn is_done(&self) -> bool {
        matches!(self, Self::Done)
    }
}

impl<'p> Upstream<'p> {
    /// The reused connection was dead before it answered: once more on a fresh one.
    fn retry(&mut self, proxy: &'p Proxy) -> Result<(), Failed> {
        self.reused = false;
        self.to_up_pos = 0;
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
fn failure_page(state: &ProxyState, id: labgate_config::route::ServiceId, f: Failed) -> Page {
    Page {
        status: f.status,
        body: pages::backend_body(f.status, &state.snapshot.service(id).name, f.why),
        location: None,
        sent: 0,
    }
}

/// A page with no service to name.
fn plain_page(status: u16, why: &str) -> Page {
    Page {
        status,
        body: pages::body(status, why),
        location: None,
        sent: 0,
    }
}
