//! The HTTP/2 path: labgate's own executor for HTTPS connections that negotiate h2, driving
//! the sans-I/O core ([`crate::h2`]) inside the connection's task. No task per stream: one
//! poll loop reads the client's frames, plans each request ([`crate::plan`]), writes its
//! HTTP/1.1 head straight into its upstream buffer, and relays both bodies with flow control
//! per stream, so a slow reader or a slow backend holds back only its own stream. Upstream
//! connections come from, and go back to, the fast path's per-thread idle pool.
//!
//! What it does not carry (h2c backends: the plan hands those over) it answers with 421, so
//! the client retries on a new connection; a connection whose server name belongs to such a
//! service goes to pingora's session from the start ([`crate::ProxyState`] knows those hosts).
//!
//! Bounds: the core's (streams, header sizes, floods, windows); here the client gets
//! [`HEAD_TIMEOUT`] for its preface and for a frame or header block it began,
//! [`IDLE_TIMEOUT`] with no stream open, and [`SEND_TIMEOUT`] to read what is written to
//! it; a request body may pause [`BODY_TIMEOUT`](crate::fast::BODY_TIMEOUT); a backend gets its service's `timeout`.

mod exchange;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use pingora::protocols::Stream;
use tokio::io::AsyncWrite;
use tokio::time::{Instant, Sleep};

use crate::fast::{HEAD_TIMEOUT, IDLE_RELEASE, IDLE_TIMEOUT, SEND_TIMEOUT};
use crate::h2::{ConnError, Connection, ErrorCode, Event, Limits, StreamId};
use crate::metrics::H2End;
use crate::plan::{self, Answer, Context, Executor, Plan};
use crate::rewrite::Head;
use crate::{ConnInfo, Proxy, pages};
use exchange::Exchange;
pub use exchange::View;

/// Bytes read from the client at a time while no large frame is pending.
const READ_CHUNK: usize = 8 * 1024;
/// The read buffer of an idle connection that gave its buffers back.
const IDLE_READ: usize = 512;
/// Between the first GOAWAY of a stopping process (any stream id: "open no more") and the
/// last (the highest stream taken): streams the client sent before it read the first are
/// still served (RFC 9113 §6.8), so no request in flight is refused. Half the process's 1 s
/// grace (`src/app.rs`): the streams taken have the other half to finish before the
/// runtimes stop (a round trip on a LAN is well under it).
const GOAWAY_NOTICE: Duration = Duration::from_millis(500);

/// Serves an HTTP/2 connection (ALPN h2, TLS done) until it closes. When `shutdown` turns
/// true (the process is stopping), a GOAWAY tells the client to open no more streams, and
/// [`GOAWAY_NOTICE`] later a second names the last stream taken; the open ones finish within
/// pingora's grace period.
pub(crate) async fn serve(
    proxy: &Proxy,
    down: Stream,
    info: ConnInfo,
    mut shutdown: pingora::server::ShutdownWatch,
) {
    let stopping = Box::pin(async move {
        // An error means the sender is gone: the process is stopping too.
        let _ = shutdown.wait_for(|stop| *stop).await;
    });
    let mut conn = Conn {
        proxy,
        info,
        down,
        h2: Connection::new(Limits::default()),
        input: BytesMut::with_capacity(READ_CHUNK),
        read_closed: false,
        goaway: false,
        preface_read: false,
        exchanges: Vec::new(),
        timer: Box::pin(tokio::time::sleep(HEAD_TIMEOUT)),
        timer_at: None,
        idle_since: Instant::now(),
        unwritten_since: None,
        partial_since: Some(Instant::now()),
        failed: false,
        flushed: true,
        stopping: Some(stopping),
        final_goaway: None,
        released: false,
        end: None,
    };
    std::future::poll_fn(|cx| conn.poll(cx)).await;
    proxy.metrics.h2_ended(conn.end.unwrap_or(H2End::Closed));
    for x in conn.exchanges.drain(..) {
        x.abandon(proxy);
    }
}

/// One HTTP/2 connection.
struct Conn<'p> {
    proxy: &'p Proxy,
    info: ConnInfo,
    down: Stream,
    h2: Connection,
    /// Client bytes not yet taken by the core.
    input: BytesMut,
    /// The client closed its side (or reading failed).
    read_closed: bool,
    /// The client sent GOAWAY: it opens no more streams.
    goaway: bool,
    /// The core took the client's first bytes (its preface).
    preface_read: bool,
    /// The open streams' exchanges.
    exchanges: Vec<Exchange<'p>>,
    /// Wakes the loop at the nearest deadline.
    timer: Pin<Box<Sleep>>,
    timer_at: Option<Instant>,
    /// When the last stream closed (or the connection opened).
    idle_since: Instant,
    /// Since when output waits unwritten with no write going through.
    unwritten_since: Option<Instant>,
    /// Since when the input holds part of a frame (or the preface has not come).
    partial_since: Option<Instant>,
    /// The connection failed (a connection error, a timeout): write what is queued, close.
    failed: bool,
    /// Nothing written since the last flush.
    flushed: bool,
    /// The idle connection gave its buffers back (taken again with its next frame).
    released: bool,
    /// Ready when the process stops: then a GOAWAY, once.
    stopping: Option<Pin<Box<dyn Future<Output = ()> + Send + 'p>>>,
    /// When the last GOAWAY of a stopping process is due.
    final_goaway: Option<Instant>,
    /// Why the connection ends, once known (counted when it has).
    end: Option<H2End>,
}

impl Conn<'_> {
    /// Runs the connection until it is over.
    fn poll(&mut self, cx: &mut TaskContext<'_>) -> Poll<()> {
        if let Some(stop) = &mut self.stopping
            && stop.as_mut().poll(cx).is_ready()
        {
            self.stopping = None;
            // The client opens new streams elsewhere; those already on their way are taken
            // until the last GOAWAY, and the open ones finish.
            self.h2.go_away_notice();
            self.final_goaway = Some(Instant::now() + GOAWAY_NOTICE);
            self.end.get_or_insert(H2End::Shutdown);
        }
        loop {
            let mut progress = false;
            if self.write(cx, &mut progress).is_err() {
                return Poll::Ready(());
            }
            if !self.failed && !self.read_closed {
                progress |= self.read(cx);
            }
            if !self.failed {
                progress |= self.frames();
                progress |= self.drive(cx);
            }
            // Over once everything queued for the client is written and flushed.
            let drained = self.h2.output().is_empty() && self.flushed;
            if drained && self.failed {
                return Poll::Ready(());
            }
            if drained && (self.read_closed || self.goaway) && self.exchanges.is_empty() {
                return Poll::Ready(());
            }
            if !progress {
                break;
            }
        }
        if self.check_deadlines(cx) {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Writes the core's output to the client and flushes it. `Err` when the client is gone.
    fn write(&mut self, cx: &mut TaskContext<'_>, progress: &mut bool) -> Result<(), ()> {
        while !self.h2.output().is_empty() {
            match Pin::new(&mut self.down).poll_write(cx, self.h2.output()) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Err(()),
                Poll::Ready(Ok(n)) => {
                    self.h2.advance(n);
                    self.flushed = false;
                    self.unwritten_since = None;
                    if self.exchanges.is_empty() {
                        // Idle time counts from when the client has read everything.
                        self.idle_since = Instant::now();
                    }
                    *progress = true;
                }
                Poll::Pending => {
                    self.unwritten_since.get_or_insert_with(Instant::now);
                    return Ok(());
                }
            }
        }
        if !self.flushed {
            match Pin::new(&mut self.down).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.flushed = true,
                Poll::Ready(Err(_)) => return Err(()),
                Poll::Pending => {
                    self.unwritten_since.get_or_insert_with(Instant::now);
                }
            }
        }
        Ok(())
    }

    /// Reads what the client sent; whether anything came.
    fn read(&mut self, cx: &mut TaskContext<'_>) -> bool {
        // A frame larger than what is held needs room for the whole of it; an idle connection
        // that gave its buffers back waits on a small one.
        let want = if self.input.len() >= READ_CHUNK {
            Connection::MIN_INPUT
        } else if self.released && self.input.is_empty() {
            IDLE_READ
        } else {
            READ_CHUNK
        };
        if self.input.len() >= want {
            return false;
        }
        self.input.reserve(want - self.input.len());
        match tokio_util::io::poll_read_buf(Pin::new(&mut self.down), cx, &mut self.input) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                self.read_closed = true;
                true
            }
            Poll::Ready(Ok(_)) => {
                self.released = false;
                true
            }
            Poll::Pending => false,
        }
    }

    /// Hands the input to the core and carries out its events; whether any happened.
    fn frames(&mut self) -> bool {
        let mut progress = false;
        loop {
            let (consumed, work) = {
                let recv = match self.h2.recv(&self.input) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::debug!(client = %self.info.client, "http/2 connection error: {e}");
                        self.end.get_or_insert(match e {
                            ConnError::Calm(_) => H2End::OverLimit,
                            _ => H2End::ProtocolError,
                        });
                        self.failed = true;
                        return true;
                    }
                };
                let work = recv
                    .event
                    .map(|e| on_event(e, self.proxy, &self.info, &mut self.exchanges));
                (recv.consumed, work)
            };
            self.input.advance(consumed);
            if consumed > 0 {
                self.preface_read = true;
                // A frame went through: what is held now began with it (a header block
                // keeps its first frame's time).
                if !self.h2.mid_block() {
                    self.partial_since = None;
                }
            }
            let Some(work) = work else { break };
            progress = true;
            match work {
                Work::Start(x) => {
                    self.released = false;
                    self.exchanges.push(*x);
                }
                Work::Release { stream, len } => self.h2.release(stream, len),
                Work::Reset(stream) => {
                    if let Some(i) = self.exchanges.iter().position(|x| x.stream == stream) {
                        let x = self.exchanges.swap_remove(i);
                        x.abandon(self.proxy);
                        self.closed_one();
                    }
                }
                Work::GoAway => self.goaway = true,
                Work::None => {}
            }
        }
        // Until the preface is read, while part of a frame is held, and while a header block
        // waits for its CONTINUATION, the client is mid-message.
        self.partial_since = if self.input.is_empty() && self.preface_read && !self.h2.mid_block() {
            None
        } else {
            Some(self.partial_since.unwrap_or_else(Instant::now))
        };
        progress
    }

    /// Drives every exchange; whether any moved.
    fn drive(&mut self, cx: &mut TaskContext<'_>) -> bool {
        let mut progress = false;
        let mut i = 0;
        while i < self.exchanges.len() {
            let x = &mut self.exchanges[i];
            progress |= x.poll(cx, &mut self.h2, self.proxy);
            if x.finished() {
                let x = self.exchanges.swap_remove(i);
                x.record(self.proxy);
                self.closed_one();
                progress = true;
            } else {
                i += 1;
            }
        }
        progress
    }

    /// A stream closed: the connection may be idle from now.
    fn closed_one(&mut self) {
        if self.exchanges.is_empty() {
            self.idle_since = Instant::now();
        }
    }

    /// Ends the connection with a GOAWAY of `code`, written out before it closes (within
    /// [`SEND_TIMEOUT`]); `true` when nothing is left to write.
    fn give_up(&mut self, cx: &mut TaskContext<'_>, code: ErrorCode) -> bool {
        if self.failed {
            return self.h2.output().is_empty();
        }
        self.h2.go_away(code);
        self.failed = true;
        self.partial_since = None;
        cx.waker().wake_by_ref();
        self.h2.output().is_empty()
    }

    /// Enforces the deadlines and arms the timer for the nearest; `true` when the connection
    /// is over.
    fn check_deadlines(&mut self, cx: &mut TaskContext<'_>) -> bool {
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if let Some(due) = self.final_goaway {
            if now >= due {
                self.final_goaway = None;
                self.h2.go_away(ErrorCode::NoError);
                self.goaway = true;
                cx.waker().wake_by_ref();
            } else {
                at(due);
            }
        }
        if let Some(since) = self.unwritten_since {
            if now >= since + SEND_TIMEOUT {
                self.end.get_or_insert(H2End::Timeout);
                return true;
            }
            at(since + SEND_TIMEOUT);
        }
        // A failed connection only writes out what is queued, within the send bound.
        if !self.failed {
            if let Some(since) = self.partial_since {
                if now >= since + HEAD_TIMEOUT {
                    self.end.get_or_insert(H2End::Timeout);
                    return self.give_up(cx, ErrorCode::Protocol);
                }
                at(since + HEAD_TIMEOUT);
            }
            // Idle: no exchange, and nothing left for the client to read.
            if self.exchanges.is_empty() && self.h2.output().is_empty() {
                if now >= self.idle_since + IDLE_TIMEOUT {
                    self.end.get_or_insert(H2End::Idle);
                    return self.give_up(cx, ErrorCode::NoError);
                }
                at(self.idle_since + IDLE_TIMEOUT);
                // As the fast path: an idle connection gives its buffers back after a moment.
                if !self.released && self.input.is_empty() && !self.h2.mid_block() {
                    if now >= self.idle_since + IDLE_RELEASE {
                        self.h2.release_memory();
                        self.input = BytesMut::new();
                        self.exchanges = Vec::new();
                        self.released = true;
                    } else {
                        at(self.idle_since + IDLE_RELEASE);
                    }
                }
            }
            for x in &mut self.exchanges {
                if let Some(d) = x.deadline() {
                    if now >= d {
                        // It moves to a page or ends: the next pass carries that out.
                        x.timed_out(&mut self.h2);
                        cx.waker().wake_by_ref();
                    } else {
                        at(d);
                    }
                }
            }
        }
        if let Some(t) = next {
            // PERF: the timer is moved only to an earlier deadline (or once it went off):
            // deadlines move later with every read and write, and each reset of a tokio timer
            // takes its wheel's lock. A timer that goes off early finds nothing due here and
            // is armed again for the real deadline.
            if self.timer_at.is_none_or(|armed| t < armed || armed <= now) {
                self.timer.as_mut().reset(t);
                self.timer_at = Some(t);
            }
            if self.timer.as_mut().poll(cx).is_ready() {
                self.timer_at = None;
                cx.waker().wake_by_ref();
            }
        }
        false
    }
}

/// What an event leaves to do once the core's borrow ends.
enum Work<'p> {
    /// A request's exchange begins.
    Start(Box<Exchange<'p>>),
    /// Request body bytes no exchange takes: their window goes back.
    Release { stream: StreamId, len: usize },
    /// The stream is gone.
    Reset(StreamId),
    /// The client opens no more streams: finish the open ones, then close.
    GoAway,
    /// Nothing to do until the next event.
    None,
}

/// Carries out what an event says, as far as it can while the core is borrowed.
fn on_event<'p>(
    event: Event<'_>,
    proxy: &'p Proxy,
    info: &ConnInfo,
    exchanges: &mut [Exchange<'p>],
) -> Work<'p> {
    match event {
        Event::Request {
            stream,
            head,
            end_stream,
        } => Work::Start(Box::new(start(proxy, info, stream, head, end_stream))),
        Event::Connect {
            stream, end_stream, ..
        } => refused(
            proxy,
            stream,
            501,
            pages::body(501, "labgate does not carry CONNECT over HTTP/2"),
            end_stream,
        ),
        // The core discards the body and resets the stream once the answer is sent.
        Event::HeadersTooLarge { stream } => refused(
            proxy,
            stream,
            431,
            pages::head_body(431, "it is over 16 KiB or 96 header fields"),
            true,
        ),
        Event::Data {
            stream,
            data,
            end_stream,
        } => {
            let taken = exchanges
                .iter_mut()
                .find(|x| x.stream == stream)
                .is_some_and(|x| x.take_body(data, end_stream));
            if taken {
                Work::None
            } else {
                Work::Release {
                    stream,
                    len: data.len(),
                }
            }
        }
        Event::Trailers { stream, .. } => {
            // Trailers of a request are not passed on: its body ends here.
            if let Some(x) = exchanges.iter_mut().find(|x| x.stream == stream) {
                x.take_body(&[], true);
            }
            Work::None
        }
        Event::Reset { stream, .. } => Work::Reset(stream),
        Event::GoAway { .. } => Work::GoAway,
        // Capacity: the next pass of the exchanges sends more.
        _ => Work::None,
    }
}

/// A request refused before it is planned (counted by its status): its page.
fn refused<'p>(
    proxy: &'p Proxy,
    stream: StreamId,
    status: u16,
    body: String,
    end_stream: bool,
) -> Work<'p> {
    proxy.metrics.refused(status);
    let state = proxy.state.load_full();
    let page = (status, body, None);
    Work::Start(Box::new(Exchange::page(
        stream, state, None, page, false, end_stream,
    )))
}

/// Begins the exchange of a request the core decoded.
fn start<'p>(
    proxy: &'p Proxy,
    info: &ConnInfo,
    stream: StreamId,
    head: crate::h2::RequestHead<'_>,
    end_stream: bool,
) -> Exchange<'p> {
    let head_request = head.method == b"HEAD";
    let view = match View::new(head, end_stream) {
        Ok(v) => v,
        Err(why) => {
            proxy.metrics.refused(400);
            let page = (400, pages::head_body(400, why), None);
            let state = proxy.state.load_full();
            return Exchange::page(stream, state, None, page, head_request, end_stream);
        }
    };
    match begin(proxy, info, stream, &view, end_stream, false) {
        Ok(x) => x,
        // The Access token names a key not fetched yet: the exchange waits for the keys
        // with a copy of the head (a rare path), then plans again.
        Err(url) => Exchange::awaiting_keys(proxy, info, stream, &view, url, end_stream),
    }
}

/// Plans a request and begins its exchange: labgate's page, or the backend's answer.
/// `Err(url)`: the Access keys at `url` must be fetched first (not when `keys_refreshed`).
fn begin<'p>(
    proxy: &'p Proxy,
    info: &ConnInfo,
    stream: StreamId,
    head: &impl Head,
    end_stream: bool,
    keys_refreshed: bool,
) -> Result<Exchange<'p>, Arc<str>> {
    let state = proxy.state.load_full();
    let head_request = head.method() == "HEAD";
    let keys = proxy.access_keys.current();
    let context = Context {
        state: &state,
        conn: info,
        keys: &keys,
        now: crate::unix_now(),
        https_port: proxy.https_port,
        keys_refreshed,
        pinned: None,
        executor: Executor::H2,
    };
    let s = &state.snapshot;
    let page = |status, body, location, served| {
        Exchange::page(
            stream,
            Arc::clone(&state),
            served,
            (status, body, location),
            head_request,
            end_stream,
        )
    };
    Ok(match plan::plan(&context, head) {
        Plan::Refuse(r) => {
            let (status, body) = r.page(s);
            proxy.refused(r, (info.client, status), proxy.logged(head));
            page(status, body, None, None)
        }
        Plan::Answer(served, a) => {
            let (body, location) = a.page(&s.service(served.service).name);
            let location = location.map(str::to_owned);
            page(
                a.status(),
                body,
                location,
                Some((served, proxy.logged(head))),
            )
        }
        Plan::RefreshKeys(url) => return Err(url),
        Plan::Handover => {
            proxy.metrics.refused(421);
            let body = pages::body(
                421,
                "this HTTP/2 connection cannot carry requests for this host (its backend speaks h2c): open a new connection for it",
            );
            page(421, body, None, None)
        }
        Plan::Forward(f) => {
            let mut out = Vec::with_capacity(1024);
            if f.rewrite.emit(head, &mut out).is_err() {
                let served = Some((f.served.clone(), proxy.logged(head)));
                let (body, _) = Answer::Unwritable.page(&s.service(f.served.service).name);
                return Ok(page(400, body, None, served));
            }
            crate::rewrite::end_head(&mut out);
            let logged = proxy.logged(head);
            Exchange::forward(
                stream,
                proxy,
                Arc::clone(&state),
                f,
                logged,
                out,
                head_request,
                end_stream,
            )
        }
    })
}
