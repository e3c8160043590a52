//! The access log: one line per request, written by a control-plane task from a bounded
//! channel, never on the request path. A full channel drops lines (counted) rather than
//! slowing requests.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

/// Lines that may wait for the writer.
const QUEUE: usize = 4096;

/// One request, as logged.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Client address (through the tunnel: the one Cloudflare reported).
    pub client: IpAddr,
    /// Cloudflare's request id, for tunnel requests.
    pub ray: Option<String>,
    /// Service name (empty when none was chosen).
    pub service: String,
    /// The request method as sent.
    pub method: String,
    /// Host as sent.
    pub host: String,
    /// Path and query.
    pub path: String,
    /// Status sent; `None` when no response reached the client (it went away, or the
    /// exchange broke off before a response started). Printed as `-`.
    pub status: Option<u16>,
    /// Time from head to end of response.
    pub took: Duration,
}

/// The sending side, held by the proxy.
#[derive(Debug)]
pub struct AccessLog {
    tx: mpsc::Sender<Entry>,
    enabled: AtomicBool,
    /// Lines dropped because the writer fell behind.
    pub dropped: AtomicU64,
}

impl AccessLog {
    /// A log and the receiver its writer task drains.
    pub fn new() -> (Self, mpsc::Receiver<Entry>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let log = Self {
            tx,
            enabled: AtomicBool::new(true),
            dropped: AtomicU64::new(0),
        };
        (log, rx)
    }

    /// Turns logging on or off (`server.access_log`, applied on every reload). Off as well
    /// when the log filter drops `labgate::access` lines: then no line is built at all.
    pub fn set_enabled(&self, on: bool) {
        let wanted = tracing::enabled!(target: "labgate::access", tracing::Level::INFO);
        self.enabled.store(on && wanted, Ordering::Relaxed);
    }

    /// Whether lines are wanted; callers build an [`Entry`] only then.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Queues a line without waiting.
    pub fn send(&self, e: Entry) {
        if self.tx.try_send(e).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// How often the writer drains the queue. It polls rather than waits, so a request never
/// wakes it (a wake-up per request cost a context switch each on a busy core).
const DRAIN_EVERY: Duration = Duration::from_millis(100);

/// How a request is handed to the log subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// One formatted message, `client service method hostpath status took` (text logs: a
    /// line as short and as cheap as before any other format existed).
    Line,
    /// One field per part (`client`, `service`, `method`, `host`, `path`, `status`,
    /// `took_ms`, `ray`), for a structured (JSON) subscriber; an absent status or service
    /// is no field.
    Fields,
}

/// Refused requests (status 400 to 499) kept for the status page.
pub const RECENT: usize = 100;

/// The last [`RECENT`] requests answered with a 4xx status, with when the writer took them.
#[derive(Debug, Default)]
pub struct Refused {
    entries: std::sync::Mutex<std::collections::VecDeque<(std::time::SystemTime, Entry)>>,
}

impl Refused {
    fn keep(&self, e: &Entry) {
        if !e.status.is_some_and(|s| (400..500).contains(&s)) {
            return;
        }
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() == RECENT {
            entries.pop_front();
        }
        entries.push_back((std::time::SystemTime::now(), e.clone()));
    }

    /// The requests kept, newest first.
    pub fn newest_first(&self) -> Vec<(std::time::SystemTime, Entry)> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.iter().rev().cloned().collect()
    }
}

/// Writes queued lines (target `labgate::access`, level info, in `style`) until `stop`
/// resolves, keeping the refused ones in `refused`.
pub async fn write(
    mut rx: mpsc::Receiver<Entry>,
    (style, refused): (Style, std::sync::Arc<Refused>),
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(DRAIN_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut stop => return,
        }
        while let Ok(e) = rx.try_recv() {
            match style {
                Style::Line => line(&e),
                Style::Fields => fields(&e),
            }
            refused.keep(&e);
        }
    }
}

/// A status as logged: the number, or `-` when none was sent.
struct Status(Option<u16>);

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(s) => s.fmt(f),
            None => f.write_str("-"),
        }
    }
}

fn line(e: &Entry) {
    tracing::info!(
        target: "labgate::access",
        "{} {} {} {}{} {} {:.1}ms{}{}",
        e.client,
        if e.service.is_empty() { "-" } else { &e.service },
        e.method,
        e.host,
        e.path,
        Status(e.status),
        e.took.as_secs_f64() * 1e3,
        if e.ray.is_some() { " cf-ray=" } else { "" },
        e.ray.as_deref().unwrap_or("")
    );
}

fn fields(e: &Entry) {
    tracing::info!(
        target: "labgate::access",
        client = %e.client,
        service = (!e.service.is_empty()).then_some(e.service.as_str()),
        method = e.method.as_str(),
        host = e.host.as_str(),
        path = e.path.as_str(),
        status = e.status,
        // Whole microseconds: `as_secs_f64() * 1e3` prints binary noise (0.7930889999999999).
        took_ms = e.took.as_micros() as f64 / 1e3,
        ray = e.ray.as_deref(),
    );
}
