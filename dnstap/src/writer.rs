//! [`Dnstap`]: the writer thread. It connects to the collector `[dnstap]` names (a Unix
//! socket or TCP), makes the Frame Streams handshake, and every [`TICK`] (sooner when a lane
//! is half full) writes what the lanes hold. A collector that is away, refuses the handshake
//! or stops reading costs messages (dropped and counted), never answers; connecting is tried
//! again after [`RETRY_MIN`], doubling up to [`RETRY_MAX`]. A reload that changes the
//! collector closes the old connection (STOP, FINISH) and opens the new one.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::time::Instant;

use labgate_config::settings::{DnstapDestination, DnstapSettings};
use labgate_config::{Publish, Snapshot};

use crate::frame::{self, Control};
use crate::tap::Tap;

/// Longest wait between two writes.
pub const TICK: Duration = Duration::from_millis(100);
/// First wait before connecting again after a failure.
pub const RETRY_MIN: Duration = Duration::from_secs(1);
/// Longest wait before connecting again.
pub const RETRY_MAX: Duration = Duration::from_secs(30);
/// Bound on connecting, each handshake step and each write: a collector that stops reading
/// for this long loses its connection.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes gathered before a write.
const BATCH_BYTES: usize = 256 << 10;

/// The dnstap stream: its lanes and its writer thread.
pub struct Dnstap {
    tap: Arc<Tap>,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What the writer and the control plane share.
struct Shared {
    /// The stream's settings now (`None`: no `[dnstap]`).
    settings: Mutex<Option<DnstapSettings>>,
    stop: AtomicBool,
    sent: AtomicU64,
    /// Messages drained while no collector was connected.
    unconnected: AtomicU64,
    /// Messages lost to a failed write.
    failed: AtomicU64,
    connected: AtomicBool,
}

impl Shared {
    fn new(settings: Option<DnstapSettings>) -> Self {
        Self {
            settings: Mutex::new(settings),
            stop: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            unconnected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            connected: AtomicBool::new(false),
        }
    }
}

impl Dnstap {
    /// Starts the writer for `workers` UDP workers with `snapshot`'s `[dnstap]`.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn start(snapshot: &Snapshot, workers: usize) -> std::io::Result<Self> {
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "labgate".into());
        let tap = Arc::new(Tap::new(workers, &host));
        tap.set_active(snapshot.dnstap.is_some());
        let shared = Arc::new(Shared::new(snapshot.dnstap.clone()));
        let thread = {
            let (shared, tap) = (Arc::clone(&shared), Arc::clone(&tap));
            std::thread::Builder::new()
                .name("labgate dnstap".into())
                .spawn(move || run(&shared, &tap))?
        };
        tap.wake(thread.thread().clone());
        Ok(Self {
            tap,
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Where the answering threads leave their messages.
    pub fn tap(&self) -> Arc<Tap> {
        Arc::clone(&self.tap)
    }

    /// Sends what is queued, ends the stream (STOP) and stops the writer (at shutdown).
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = thread {
            t.thread().unpark();
            let _ = t.join();
        }
    }

    /// The stream's counters in Prometheus' text format.
    pub fn render_metrics(&self, out: &mut String) {
        let s = &self.shared;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = write!(
            out,
            "# HELP labgate_dnstap_sent_total dnstap messages written to the collector.\n\
             # TYPE labgate_dnstap_sent_total counter\n\
             labgate_dnstap_sent_total {}\n\
             # HELP labgate_dnstap_dropped_total dnstap messages lost: `full`, a lane was full \
             (the writer fell behind); `unconnected`, no collector was connected; `error`, a \
             write to the collector failed.\n\
             # TYPE labgate_dnstap_dropped_total counter\n\
             labgate_dnstap_dropped_total{{reason=\"full\"}} {}\n\
             labgate_dnstap_dropped_total{{reason=\"unconnected\"}} {}\n\
             labgate_dnstap_dropped_total{{reason=\"error\"}} {}\n\
             # HELP labgate_dnstap_connected Whether a dnstap collector is connected.\n\
             # TYPE labgate_dnstap_connected gauge\n\
             labgate_dnstap_connected {}\n",
            load(&s.sent),
            self.tap.dropped(),
            load(&s.unconnected),
            load(&s.failed),
            u8::from(s.connected.load(Ordering::Relaxed)),
        );
    }
}

impl Publish for Dnstap {
    fn name(&self) -> &'static str {
        "dnstap"
    }

    fn publish(&self, snapshot: Arc<Snapshot>) {
        *self
            .shared
            .settings
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = snapshot.dnstap.clone();
        self.tap.set_active(snapshot.dnstap.is_some());
        if let Some(t) = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            t.thread().unpark();
        }
    }
}

impl Drop for Dnstap {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A connection to a collector, past the handshake.
struct Connection {
    to: DnstapDestination,
    stream: Stream,
}

enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Unix(s) => s.read(buf),
            Self::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Unix(s) => s.write(buf),
            Self::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Unix(s) => s.flush(),
            Self::Tcp(s) => s.flush(),
        }
    }
}

impl Connection {
    /// Connects to `to` and makes the bidirectional handshake: READY, ACCEPT, START.
    fn open(to: &DnstapDestination) -> std::io::Result<Self> {
        let mut stream = match to {
            DnstapDestination::Unix(path) => {
                let s = UnixStream::connect(path)?;
                s.set_read_timeout(Some(IO_TIMEOUT))?;
                s.set_write_timeout(Some(IO_TIMEOUT))?;
                Stream::Unix(s)
            }
            DnstapDestination::Tcp(addr) => {
                let s = TcpStream::connect_timeout(addr, IO_TIMEOUT)?;
                s.set_read_timeout(Some(IO_TIMEOUT))?;
                s.set_write_timeout(Some(IO_TIMEOUT))?;
                s.set_nodelay(true)?;
                Stream::Tcp(s)
            }
        };
        frame::send(&mut stream, Control::Ready)?;
        frame::expect(&mut stream, Control::Accept)?;
        frame::send(&mut stream, Control::Start)?;
        Ok(Self {
            to: to.clone(),
            stream,
        })
    }

    /// Ends the stream: STOP, and the collector's FINISH (not waited for past the timeout).
    fn close(mut self) {
        if frame::send(&mut self.stream, Control::Stop).is_ok() {
            let _ = frame::expect(&mut self.stream, Control::Finish);
        }
    }
}

/// The writer's state between ticks.
struct Writer<'a> {
    shared: &'a Shared,
    conn: Option<Connection>,
    /// When connecting may be tried again, and the wait after that.
    retry: (Instant, Duration),
    /// Whether the failure to connect was said (once per streak).
    said: bool,
    batch: Vec<u8>,
    /// Messages in `batch`.
    pending: u64,
}

fn run(shared: &Shared, tap: &Tap) {
    let mut w = Writer::new(shared);
    loop {
        let stopping = shared.stop.load(Ordering::Relaxed);
        let want = shared
            .settings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|s| s.destination.clone());
        if w.turn(tap, want.as_ref(), stopping) {
            return;
        }
        std::thread::park_timeout(TICK);
    }
}

impl<'a> Writer<'a> {
    fn new(shared: &'a Shared) -> Self {
        Self {
            shared,
            conn: None,
            retry: (Instant::now(), RETRY_MIN),
            said: false,
            batch: Vec::with_capacity(BATCH_BYTES),
            pending: 0,
        }
    }

    /// One turn of the writer with the collector `want`ed now: what the lanes hold goes to
    /// the collector connected (or is counted lost); a collector no longer wanted gets what
    /// was taken for it, then STOP. `stopping`: the last turn, which ends the stream; true
    /// once it has.
    fn turn(&mut self, tap: &Tap, want: Option<&DnstapDestination>, stopping: bool) -> bool {
        // What was taken for a collector still goes to it before the stream ends (a reload
        // pointing elsewhere, or none).
        if self.conn.as_ref().is_some_and(|c| Some(&c.to) != want) {
            self.send(tap);
        }
        if !stopping {
            self.follow(want);
        }
        self.send(tap);
        if stopping {
            if let Some(c) = self.conn.take() {
                c.close();
            }
            self.shared.connected.store(false, Ordering::Relaxed);
        }
        stopping
    }

    /// Closes a connection to a collector no longer wanted and connects to the one wanted
    /// (when its retry time has come).
    fn follow(&mut self, want: Option<&DnstapDestination>) {
        if self.conn.as_ref().is_some_and(|c| Some(&c.to) != want) {
            if let Some(c) = self.conn.take() {
                tracing::info!(collector = %c.to, "dnstap: stream closed");
                c.close();
            }
            self.retry = (Instant::now(), RETRY_MIN);
            self.said = false;
        }
        self.shared
            .connected
            .store(self.conn.is_some(), Ordering::Relaxed);
        let Some(to) = want else { return };
        if self.conn.is_some() || Instant::now() < self.retry.0 {
            return;
        }
        match Connection::open(to) {
            Ok(c) => {
                tracing::info!(collector = %to, "dnstap: connected");
                self.conn = Some(c);
                self.retry = (Instant::now(), RETRY_MIN);
                self.said = false;
                self.shared.connected.store(true, Ordering::Relaxed);
            }
            Err(e) => self.failed(to, &e),
        }
    }

    /// Writes what the lanes hold to the collector, or counts it lost.
    fn send(&mut self, tap: &Tap) {
        tap.drain(|f| {
            self.batch.extend_from_slice(f);
            self.pending += 1;
            if self.batch.len() >= BATCH_BYTES {
                self.flush();
            }
        });
        self.flush();
    }

    /// Writes the batch to the collector, or counts it lost.
    fn flush(&mut self) {
        if self.pending == 0 {
            return;
        }
        let n = std::mem::take(&mut self.pending);
        match self.conn.as_mut().map(|c| c.stream.write_all(&self.batch)) {
            Some(Ok(())) => {
                self.shared.sent.fetch_add(n, Ordering::Relaxed);
            }
            Some(Err(e)) => {
                self.shared.failed.fetch_add(n, Ordering::Relaxed);
                // Part of a frame may be out: the stream cannot go on.
                if let Some(c) = self.conn.take() {
                    self.shared.connected.store(false, Ordering::Relaxed);
                    self.failed(&c.to, &e);
                }
            }
            None => {
                self.shared.unconnected.fetch_add(n, Ordering::Relaxed);
            }
        }
        self.batch.clear();
    }

    /// Says (once per streak) that the collector cannot be reached, and waits longer.
    fn failed(&mut self, to: &DnstapDestination, e: &std::io::Error) {
        if !self.said {
            tracing::warn!(
                collector = %to,
                "dnstap: cannot stream to the collector: {e}; messages are dropped \
                 (labgate_dnstap_dropped_total) and connecting is tried again"
            );
            self.said = true;
        }
        let wait = self.retry.1;
        self.retry = (Instant::now() + wait, (wait * 2).min(RETRY_MAX));
    }
}

#[cfg(test)]
mod tests;
