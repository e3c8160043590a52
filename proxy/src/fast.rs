//! The HTTP/1.1 fast path: one loop per downstream connection, on buffers reused for every
//! request, with the upstream connection pinned to the downstream one. It carries out the
//! [`crate::plan`]; requests the plan hands over (see [`Executor::carries`]) go to pingora's
//! sessions with the bytes already read.
//!
//! `mod.rs` holds the connection loop and its buffers, `exchange` the upstream connection
//! (connect, retry, pinning) and the response head, `relay` the bodies by their framing.

mod exchange;
mod relay;

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use labgate_config::Snapshot;
use pingora::protocols::Stream;
use pingora::upstreams::peer::Peer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::backends::BackendState;
use crate::head::{self, Framing, HeadError, RequestHead, header_array};
use crate::idle;
use crate::plan::{self, Answer, Context, Executor, Plan, Served};
use crate::record::Logged;
use crate::rewrite::{Body, Head, end_head};
use crate::watchdog::{Elapsed, Watchdog};
use crate::{ConnInfo, Proxy, ProxyState, pages};

/// Time a client has to send a whole request head once it started (slowloris bound).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
// The refusal pages of `read_step` name these bounds.
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

/// The plan of one request as the fast path carries it out, owning nothing of the head (the
/// upstream head is already written in `out`).
enum Step {
    /// pingora's session takes the connection with the bytes read.
    Handover,
    /// A page, then the connection closes (the request's body, if any, was not read).
    Page(Page),
    /// Refetch the Access keys, then plan the same head again.
    RefreshKeys(Arc<str>),
    /// Forward it.
    Forward(Forward),
}

/// A page labgate answers with.
struct Page {
    status: u16,
    body: String,
    location: Option<String>,
    /// The request reached its service: recorded as served.
    served: Option<(Served, Option<Box<Logged>>)>,
}

/// A request to forward, its upstream head in `out`.
struct Forward {
    served: Served,
    logged: Option<Box<Logged>>,
    backend: Arc<BackendState>,
    /// The service's backend timeout.
    timeout: Duration,
    framing: Framing,
    head_len: usize,
    is_head: bool,
    close: bool,
    retryable: bool,
}

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

/// The HTTP/1.1 parser's head, as the plan reads it.
impl Head for RequestHead<'_> {
    fn method(&self) -> &str {
        self.method
    }

    fn target(&self) -> &str {
        self.path
    }

    fn host(&self) -> Option<&[u8]> {
        self.host
    }

    fn fields(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers.iter().map(|f| (f.name, f.value))
    }

    fn body(&self) -> Body {
        match self.framing {
            Framing::Empty => Body::Empty,
            Framing::Length(n) => Body::Length(n),
            Framing::Chunked | Framing::Close => Body::Unknown,
        }
    }

    fn websocket(&self) -> bool {
        self.websocket
    }

    fn session_only(&self) -> bool {
        self.minor != 1 || self.expect
    }
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
            let (step, state) = match self.read_step(proxy, first).await {
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
            let started = crate::record::started();
            match step {
                Step::RefreshKeys(url) => {
                    // The head stays in the buffer: it is planned again with the new keys.
                    proxy.access_keys.refresh(&url).await;
                    self.keys_refreshed = true;
                    continue;
                }
                Step::Handover => return Some(std::mem::take(&mut self.rbuf)),
                Step::Page(page) => {
                    self.out.clear();
                    let extra = page.location.as_deref().map(|l| ("location", l));
                    pages::write(
                        &mut self.out,
                        page.status,
                        &page.body,
                        true,
                        extra.as_slice(),
                    );
                    let sent = self.flush_out().await;
                    if let Some((served, logged)) = page.served {
                        let status = sent.then_some(page.status);
                        proxy.served(&state.snapshot, served, logged, status, started.elapsed());
                    }
                    return None;
                }
                Step::Forward(mut f) => {
                    let served = f.served.clone();
                    let logged = f.logged.take();
                    // Draining: this response is the connection's last, and says so.
                    f.close |= proxy.draining();
                    let close = f.close;
                    let result = self.exchange(proxy, &state, f).await;
                    // The status the client got, none when nothing reached it.
                    let (status, keep) = match result {
                        Ok((status, keep)) => (Some(status), keep && !close),
                        Err(Failure::Backend(status, why)) => {
                            self.out.clear();
                            let service = &state.snapshot.service(served.service).name;
                            let body = pages::backend_body(status, service, why);
                            pages::write(&mut self.out, status, &body, close, &[]);
                            let sent = self.flush_out().await;
                            (sent.then_some(status), sent && !close)
                        }
                        Err(Failure::Midway(status)) => (Some(status), false),
                        Err(Failure::Client) => (None, false),
                    };
                    proxy.served(&state.snapshot, served, logged, status, started.elapsed());
                    if !keep {
                        return None;
                    }
                }
            }
        }
    }

    /// Reads one request head and plans it. `Err(Some((status, why)))`: refuse and close;
    /// `Err(None)`: the client closed or timed out.
    async fn read_step(
        &mut self,
        proxy: &Proxy,
        first: bool,
    ) -> Result<(Step, Arc<ProxyState>), Option<(u16, &'static str)>> {
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
                        let keys = proxy.access_keys.current();
                        let context = Context {
                            state: &state,
                            conn: &self.info,
                            keys: &keys,
                            now: crate::unix_now(),
                            https_port: proxy.https_port,
                            keys_refreshed: self.keys_refreshed,
                            pinned: self.pinned.as_ref().map(|p| &p.backend),
                            executor: Executor::Fast,
                        };
                        let step = step(
                            proxy,
                            &state.snapshot,
                            plan::plan(&context, &h),
                            (&h, self.info.client),
                            &mut self.out,
                        );
                        return Ok((step, state));
                    }
                    Err(HeadError::TooLarge) => {
                        return Err(Some((431, "it is over 16 KiB or 96 header fields")));
                    }
                    Err(HeadError::Version)
                        if !self.info.tls && self.rbuf.starts_with(H2C_PREFACE_LINE) =>
                    {
                        // HTTP/2 with prior knowledge on plain HTTP: pingora's h2 server.
                        return Ok((Step::Handover, proxy.state.load_full()));
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
}

/// What the fast path does with a plan: pages and the upstream head written while the head
/// is at hand, in `out` for a forward.
fn step(
    proxy: &Proxy,
    s: &Snapshot,
    plan: Plan<'_>,
    (h, client): (&RequestHead<'_>, std::net::IpAddr),
    out: &mut Vec<u8>,
) -> Step {
    let answer = |served: Served, a: Answer| {
        let (body, location) = a.page(&s.service(served.service).name);
        Step::Page(Page {
            status: a.status(),
            location: location.map(str::to_owned),
            body,
            served: Some((served, proxy.logged(h))),
        })
    };
    match plan {
        Plan::Handover => Step::Handover,
        Plan::RefreshKeys(url) => Step::RefreshKeys(url),
        Plan::Refuse(r) => {
            let (status, body) = r.page(s);
            proxy.refused(r, (client, status), proxy.logged(h));
            Step::Page(Page {
                status,
                body,
                location: None,
                served: None,
            })
        }
        Plan::Answer(served, a) => answer(served, a),
        Plan::Forward(f) => {
            out.clear();
            if f.rewrite.emit(h, out).is_err() {
                return answer(f.served, Answer::Unwritable);
            }
            end_head(out);
            Step::Forward(Forward {
                logged: proxy.logged(h),
                served: f.served,
                backend: f.backend,
                timeout: f.timeout,
                framing: h.framing,
                head_len: h.len,
                is_head: h.method == "HEAD",
                close: h.close,
                retryable: f.retryable,
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
}
