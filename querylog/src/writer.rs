//! [`QueryLog`]: the writer thread. Every [`TICK`] (sooner when a queue is half full) it
//! drains the [`Sink`], turns the records into rows with the snapshot that decided each
//! (network and list names), and appends them in one transaction; every [`MAINTAIN_EVERY`]
//! (and when the open block is full) it seals and drops blocks ([`Store::maintain`]). All of
//! it within [`CPU_SHARE`] of one core: past it, batches are dropped (counted). A database
//! that cannot be opened or written costs the records (counted), never the answers; opening
//! is tried again every few seconds.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use hickory_proto::rr::RecordType;
use labgate_config::{Publish, Snapshot};

use crate::record::{Flags, Record, Source};
use crate::row::Row;
use crate::sink::Sink;
use crate::store::Store;

/// The database's file name in the state directory.
pub const FILE_NAME: &str = "querylog.sqlite";
/// Longest wait between two batches.
pub const TICK: Duration = Duration::from_millis(100);
/// The share of one core the writer may use on average (inserts, sealing, retention):
/// beyond it, batches are dropped and counted (`labgate_querylog_dropped_total{reason=
/// "over_budget"}`). A homelab asks a few hundred queries a second at most, far below what
/// it pays for (`benches/RESULTS.md`): only a flood meets it.
pub const CPU_SHARE: f64 = 0.05;
/// CPU time the writer may save up for a burst (a block sealed at once).
pub const BURST: Duration = Duration::from_millis(500);
/// Time between two retention passes (and attempts to open a database that would not).
pub const MAINTAIN_EVERY: Duration = Duration::from_secs(60);
/// Time between two attempts to open a database that is not open while the log is on.
const REOPEN_EVERY: Duration = Duration::from_secs(5);
/// Snapshots kept to name the networks of records decided before a reload.
const HISTORY: usize = 16;

/// The query log: its queues and its writer thread.
pub struct QueryLog {
    sink: Arc<Sink>,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What the writer and the control plane share.
struct Shared {
    path: PathBuf,
    /// The snapshots published, newest last.
    snapshots: Mutex<VecDeque<Arc<Snapshot>>>,
    stop: AtomicBool,
    written: AtomicU64,
    /// Records lost to a database error (or one that is not open).
    failed: AtomicU64,
    /// Records dropped because the writer had spent its share of the CPU.
    over_budget: AtomicU64,
    /// Whether the last attempt to open the database failed (said once at error).
    open_failed: AtomicBool,
    /// Rows and bytes in the database after the last write.
    rows: AtomicU64,
    bytes: AtomicU64,
}

impl QueryLog {
    /// Starts the writer for `workers` UDP workers, on `<snapshot.state_dir>/querylog.sqlite`;
    /// the database is opened now (an error is logged, and tried again later) when the log is
    /// on.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn start(snapshot: Arc<Snapshot>, workers: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            path: snapshot.state_dir.join(FILE_NAME),
            snapshots: Mutex::new(VecDeque::from([Arc::clone(&snapshot)])),
            stop: AtomicBool::new(false),
            written: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            over_budget: AtomicU64::new(0),
            open_failed: AtomicBool::new(false),
            rows: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        });
        let sink = Arc::new(Sink::new(workers));
        let store = snapshot.query_log.enabled.then(|| shared.open()).flatten();
        let thread = {
            let (shared, sink) = (Arc::clone(&shared), Arc::clone(&sink));
            std::thread::Builder::new()
                .name("labgate querylog".into())
                .spawn(move || run(&shared, &sink, store))?
        };
        sink.wake(thread.thread().clone());
        Ok(Self {
            sink,
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Where the answering threads leave their records.
    pub fn sink(&self) -> Arc<Sink> {
        Arc::clone(&self.sink)
    }

    /// The database file.
    pub fn path(&self) -> &std::path::Path {
        &self.shared.path
    }

    /// Writes what is queued and stops the writer (at shutdown).
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

    /// The log's counters in Prometheus' text format.
    pub fn render_metrics(&self, out: &mut String) {
        let s = &self.shared;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = write!(
            out,
            "# HELP labgate_querylog_written_total DNS queries written to the query log.\n\
             # TYPE labgate_querylog_written_total counter\n\
             labgate_querylog_written_total {}\n\
             # HELP labgate_querylog_dropped_total DNS queries the query log lost: `full`, a \
             queue was full (the writer fell behind); `over_budget`, the writer had spent its \
             share of the CPU; `error`, the database failed.\n\
             # TYPE labgate_querylog_dropped_total counter\n\
             labgate_querylog_dropped_total{{reason=\"full\"}} {}\n\
             labgate_querylog_dropped_total{{reason=\"over_budget\"}} {}\n\
             labgate_querylog_dropped_total{{reason=\"error\"}} {}\n\
             # HELP labgate_querylog_rows Queries kept in the query log.\n\
             # TYPE labgate_querylog_rows gauge\n\
             labgate_querylog_rows {}\n\
             # HELP labgate_querylog_size_bytes Bytes the query log's database holds.\n\
             # TYPE labgate_querylog_size_bytes gauge\n\
             labgate_querylog_size_bytes {}\n",
            load(&s.written),
            self.sink.dropped(),
            load(&s.over_budget),
            load(&s.failed),
            load(&s.rows),
            load(&s.bytes),
        );
    }
}

impl Drop for QueryLog {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Publish for QueryLog {
    fn name(&self) -> &'static str {
        "query log"
    }

    /// Keeps the snapshot to name the networks and lists of the records it decides; its
    /// retention settings apply from the next maintenance.
    fn publish(&self, snapshot: Arc<Snapshot>) {
        let mut list = self
            .shared
            .snapshots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        list.push_back(snapshot);
        while list.len() > HISTORY {
            list.pop_front();
        }
    }
}

impl Shared {
    /// The database, opened; a failure is logged at error the first time (then at debug
    /// until an open succeeds), and the log's records are counted as lost meanwhile.
    fn open(&self) -> Option<Store> {
        match Store::open(&self.path) {
            Ok(store) => {
                if self.open_failed.swap(false, Ordering::Relaxed) {
                    tracing::info!("the query log {} is open again", self.path.display());
                }
                self.sizes(&store);
                Some(store)
            }
            Err(e) if self.open_failed.swap(true, Ordering::Relaxed) => {
                tracing::debug!("{e}");
                None
            }
            Err(e) => {
                tracing::error!("{e}");
                None
            }
        }
    }

    fn sizes(&self, store: &Store) {
        self.rows
            .store(u64::try_from(store.rows()).unwrap_or(0), Ordering::Relaxed);
        if let Ok(bytes) = store.size() {
            self.bytes.store(bytes, Ordering::Relaxed);
        }
    }

    fn newest(&self) -> Arc<Snapshot> {
        let list = self
            .snapshots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // The list starts with one snapshot and never shrinks below it.
        Arc::clone(list.back().unwrap_or_else(|| unreachable!("never empty")))
    }
}

/// The writer's loop, until `stop`; then one last batch.
fn run(shared: &Shared, sink: &Sink, mut store: Option<Store>) {
    let mut records = Vec::with_capacity(4 * crate::sink::QUEUE_CAPACITY);
    let mut rows = Vec::with_capacity(4 * crate::sink::QUEUE_CAPACITY);
    let mut maintained: Option<Instant> = None;
    let mut budget = Budget::default();
    let mut last = Instant::now();
    loop {
        let stopping = shared.stop.load(Ordering::Relaxed);
        let settings = shared.newest().query_log.clone();
        let now = Instant::now();
        budget.refill(now.saturating_duration_since(last));
        last = now;
        let since = maintained.map(|t| now.saturating_duration_since(t));
        let full = store.as_ref().is_some_and(Store::full);
        // A log turned on by a reload (or a database that would not open) is opened within
        // seconds, not at the next minute's maintenance.
        let closed = store.is_none() && settings.enabled;
        let due = since.is_none_or(|d| d >= MAINTAIN_EVERY || (closed && d >= REOPEN_EVERY));
        if full || due {
            maintained = Some(now);
            if store.is_none() && settings.enabled {
                store = shared.open();
            }
            if let Some(s) = store.as_mut() {
                let age = i64::try_from(settings.max_age.as_micros()).unwrap_or(i64::MAX);
                let done = budget.charge(|| s.maintain(now_us(), age, settings.max_size));
                if let Err(e) = done {
                    tracing::warn!("query log retention: {e}");
                }
                shared.sizes(s);
            }
        }
        records.clear();
        sink.drain(&mut records);
        let n = records.len() as u64;
        if n > 0 && budget.spent() && !stopping {
            // Over its share of the CPU: the batch goes, counted; the answers keep theirs.
            shared.over_budget.fetch_add(n, Ordering::Relaxed);
        } else if n > 0 {
            let written = budget.charge(|| {
                let snapshots = shared
                    .snapshots
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                rows.clear();
                rows.extend(records.iter().map(|r| row(r, &snapshots)));
                drop(snapshots);
                store.as_mut().map(|s| s.insert(&rows))
            });
            match written {
                Some(Ok(())) => {
                    shared.written.fetch_add(n, Ordering::Relaxed);
                }
                Some(Err(e)) => {
                    shared.failed.fetch_add(n, Ordering::Relaxed);
                    tracing::warn!("{e}: {n} queries not logged");
                }
                None => {
                    shared.failed.fetch_add(n, Ordering::Relaxed);
                }
            }
            if let Some(s) = store.as_ref() {
                shared
                    .rows
                    .store(u64::try_from(s.rows()).unwrap_or(0), Ordering::Relaxed);
            }
        }
        if stopping {
            if let Some(Err(e)) = store.as_mut().map(Store::flush) {
                tracing::warn!("query log statistics: {e}");
            }
            return;
        }
        std::thread::park_timeout(TICK);
    }
}

/// The writer's share of one core: its thread's CPU time may average [`CPU_SHARE`] of the
/// time that passes, with at most [`BURST`] saved up. Past it, batches are dropped (counted
/// as `over_budget`) until time has paid the debt back: a flood costs the log its records,
/// never the answers their CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Budget {
    /// CPU time the writer may still spend, in nanoseconds (negative: in debt).
    left_ns: i64,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            left_ns: i64::try_from(BURST.as_nanos()).unwrap_or(i64::MAX),
        }
    }
}

impl Budget {
    /// Adds the share of `wall` that passed, up to the burst.
    fn refill(&mut self, wall: Duration) {
        let earned = (wall.as_nanos() as f64 * CPU_SHARE) as i64;
        let cap = i64::try_from(BURST.as_nanos()).unwrap_or(i64::MAX);
        self.left_ns = self.left_ns.saturating_add(earned).min(cap);
    }

    /// Whether it is spent: the next batch is dropped.
    fn spent(&self) -> bool {
        self.left_ns < 0
    }

    /// Runs `work`, taking the CPU time it used from the budget.
    fn charge<T>(&mut self, work: impl FnOnce() -> T) -> T {
        let before = thread_cpu_ns();
        let out = work();
        self.left_ns = self
            .left_ns
            .saturating_sub(thread_cpu_ns().saturating_sub(before));
        out
    }
}

/// CPU time of the calling thread, in nanoseconds.
fn thread_cpu_ns() -> i64 {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(0, |t| {
        t.tv_sec()
            .saturating_mul(1_000_000_000)
            .saturating_add(t.tv_nsec())
    })
}

fn now_us() -> i64 {
    crate::record::unix_us(SystemTime::now())
}

/// The row of `r`, named with the snapshot of its generation (the newest when it is gone).
fn row(r: &Record, snapshots: &VecDeque<Arc<Snapshot>>) -> Row {
    let snapshot = snapshots
        .iter()
        .rev()
        .find(|s| s.generation as u32 == r.generation)
        .or_else(|| snapshots.back());
    let network = r.network.and_then(|i| {
        let s = snapshot?;
        s.networks
            .iter()
            .nth(usize::from(i))
            .map(|n| n.name.to_string())
    });
    let detail = match r.source {
        Source::Blocked(i) => snapshot
            .and_then(|s| s.dns.blocklists.get(usize::from(i)))
            .map(|l| l.name.to_string()),
        Source::Upstream(0) => Some("upstreams".to_owned()),
        Source::Upstream(i) => snapshot
            .and_then(|s| s.dns.forwarders.get(usize::from(i) - 1))
            .map(|f| f.domain.to_string().trim_end_matches('.').to_owned()),
        _ => None,
    };
    Row {
        time_us: r.time_us,
        client: r.client.map(|c| c.to_string()),
        network,
        name: r.name(),
        qtype: match RecordType::from(r.qtype) {
            RecordType::Unknown(n) => format!("TYPE{n}"),
            t => t.to_string(),
        },
        qclass: match r.qclass {
            1 => "IN".to_owned(),
            3 => "CH".to_owned(),
            4 => "HS".to_owned(),
            254 => "NONE".to_owned(),
            255 => "ANY".to_owned(),
            n => format!("CLASS{n}"),
        },
        transport: r.transport.as_str(),
        rcode: match r.rcode {
            0 => "NOERROR".to_owned(),
            1 => "FORMERR".to_owned(),
            2 => "SERVFAIL".to_owned(),
            3 => "NXDOMAIN".to_owned(),
            4 => "NOTIMP".to_owned(),
            5 => "REFUSED".to_owned(),
            16 => "BADVERS".to_owned(),
            n => format!("RCODE{n}"),
        },
        source: r.source.name(),
        detail,
        answer: r.answer(),
        latency_us: i64::from(r.latency_us),
        dnssec_ok: r.flags.has(Flags::DO),
        truncated: r.flags.has(Flags::TC),
        stale: r.flags.has(Flags::STALE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_a_share_of_the_time_that_passed_with_a_bounded_burst() {
        let ms = Duration::from_millis;
        let mut b = Budget::default();
        // Idle for long: no more than the burst is saved.
        b.refill(ms(3_600_000));
        assert_eq!(b, Budget::default());
        // Spending 10 ms each 100 ms (10 %, twice the share) runs the burst down, then into
        // debt: 500 ms saved (the first round earns nothing: the budget is full), then 5 ms a
        // round net.
        let mut spent_at = None;
        for i in 0..200 {
            b.refill(ms(100));
            b.left_ns -= 10_000_000;
            if b.spent() {
                spent_at = Some(i);
                break;
            }
        }
        assert_eq!(spent_at, Some(99));
        // Dropping (spending nothing) pays the debt back as time passes.
        b.refill(ms(100));
        assert!(!b.spent());
        // The CPU time `charge` measures comes off.
        let before = b.left_ns;
        let sum = b.charge(|| (0..5_000_000u64).fold(0u64, |a, x| a.wrapping_add(x * x)));
        assert!(sum > 0 && b.left_ns < before, "{} {before}", b.left_ns);
    }
}
