//! DNS counters for `/metrics`: lock-free atomics on the query path, rendered as Prometheus
//! text on demand. Queries are counted by network position, type and rcode; the render names
//! networks from the snapshot it is given.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use labgate_config::Snapshot;
use labgate_config::histogram::Histogram;

use crate::admission::{Admission, Limit};

const QTYPES: [RecordType; 11] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::MX,
    RecordType::TXT,
    RecordType::SRV,
    RecordType::PTR,
    RecordType::NS,
    RecordType::SOA,
    RecordType::HTTPS,
    RecordType::ANY,
];
const RCODES: [(ResponseCode, &str); 6] = [
    (ResponseCode::NoError, "NOERROR"),
    (ResponseCode::NXDomain, "NXDOMAIN"),
    (ResponseCode::ServFail, "SERVFAIL"),
    (ResponseCode::Refused, "REFUSED"),
    (ResponseCode::FormErr, "FORMERR"),
    (ResponseCode::NotImp, "NOTIMP"),
];
/// Slots: every network position, plus one for clients in no network.
const NETWORKS: usize = labgate_config::network::MAX_NETWORKS + 1;
const TYPES: usize = QTYPES.len() + 1;
const CODES: usize = RCODES.len() + 1;
/// Upper bounds of the upstream latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// The DNS server's counters.
pub struct Metrics {
    queries: Box<[AtomicU64]>,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    stale_answers: AtomicU64,
    upstream_failures: AtomicU64,
    blocked: AtomicU64,
    fast_answers: AtomicU64,
    fail_fast: AtomicU64,
    coalesced: AtomicU64,
    stream_refused: AtomicU64,
    overload: [AtomicU64; Limit::ALL.len()],
    updates: [AtomicU64; UpdateResult::ALL.len()],
    latency: Histogram,
    /// The places of queries waiting for the upstreams (their number is a gauge).
    pub(crate) admission: std::sync::Arc<Admission>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            queries: (0..NETWORKS * TYPES * CODES)
                .map(|_| AtomicU64::new(0))
                .collect(),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            stale_answers: AtomicU64::new(0),
            upstream_failures: AtomicU64::new(0),
            blocked: AtomicU64::new(0),
            fast_answers: AtomicU64::new(0),
            fail_fast: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
            stream_refused: AtomicU64::new(0),
            overload: std::array::from_fn(|_| AtomicU64::new(0)),
            updates: std::array::from_fn(|_| AtomicU64::new(0)),
            latency: Histogram::new(&LATENCY_BUCKETS),
            admission: std::sync::Arc::default(),
        }
    }
}

/// What became of an RFC 2136 UPDATE from a pair's peer (`update`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpdateResult {
    /// Its changes were applied.
    Applied,
    /// REFUSED: not from a node, prerequisites, or not a challenge value.
    Refused,
    /// NOTAUTH: unsigned, another key, a bad signature or time, not an internal zone.
    NotAuth,
    /// NOTZONE: a record outside its zone.
    NotZone,
    /// REFUSED: it would hold more challenge values than the limits.
    Full,
}

impl UpdateResult {
    /// Every result, in label order.
    pub(crate) const ALL: [Self; 5] = [
        Self::Applied,
        Self::Refused,
        Self::NotAuth,
        Self::NotZone,
        Self::Full,
    ];

    /// The `result` label.
    fn label(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Refused => "refused",
            Self::NotAuth => "notauth",
            Self::NotZone => "notzone",
            Self::Full => "full",
        }
    }
}

/// A cache outcome to count.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CacheEvent {
    Hit,
    Miss,
    Stale,
}

impl Metrics {
    /// Counts one blocked query.
    pub(crate) fn blocked(&self) {
        self.blocked.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one query answered by the fast path (it is counted by `query` too).
    pub(crate) fn fast_answer(&self) {
        self.fast_answers.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one query answered at once because its upstreams are known to be down.
    pub(crate) fn upstream_fail_fast(&self) {
        self.fail_fast.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one query that waited for an equal question already in flight.
    pub(crate) fn coalesced(&self) {
        self.coalesced.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one TCP or TLS connection closed at accept: its client had too many open.
    pub(crate) fn stream_refused(&self) {
        self.stream_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// TCP and TLS connections closed at accept so far.
    #[cfg(test)]
    pub(crate) fn stream_refused_count(&self) -> u64 {
        self.stream_refused.load(Ordering::Relaxed)
    }

    /// Counts one query answered without waiting because it met `limit`.
    pub(crate) fn overload(&self, limit: Limit) {
        self.overload[limit as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one UPDATE from a pair's peer, by what became of it.
    pub(crate) fn update(&self, result: UpdateResult) {
        self.updates[result as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// UPDATEs counted with `result` so far.
    #[cfg(test)]
    pub(crate) fn updates(&self, result: UpdateResult) -> u64 {
        self.updates[result as usize].load(Ordering::Relaxed)
    }

    /// Counts one answered query; `network` is the client's network position, if any.
    pub(crate) fn query(&self, network: Option<usize>, qtype: RecordType, rcode: ResponseCode) {
        let n = network.unwrap_or(NETWORKS - 1).min(NETWORKS - 1);
        let t = QTYPES.iter().position(|q| *q == qtype).unwrap_or(TYPES - 1);
        let c = RCODES
            .iter()
            .position(|(r, _)| *r == rcode)
            .unwrap_or(CODES - 1);
        self.queries[(n * TYPES + t) * CODES + c].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn cache(&self, e: CacheEvent) {
        let c = match e {
            CacheEvent::Hit => &self.cache_hits,
            CacheEvent::Miss => &self.cache_misses,
            CacheEvent::Stale => &self.stale_answers,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one upstream exchange: its latency, or a failure.
    pub(crate) fn upstream(&self, took: Duration, ok: bool) {
        if !ok {
            self.upstream_failures.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.latency.observe(took);
    }

    /// Prometheus text exposition; networks named from `s`.
    pub fn render(&self, s: &Snapshot) -> String {
        let mut out = String::new();
        out.push_str("# HELP labgate_dns_queries_total DNS queries answered, by client network, type and rcode.\n");
        out.push_str("# TYPE labgate_dns_queries_total counter\n");
        let names: Vec<String> = s.networks.iter().map(|n| n.name.to_string()).collect();
        for (i, q) in self.queries.iter().enumerate() {
            let v = q.load(Ordering::Relaxed);
            if v == 0 {
                continue;
            }
            let (n, rest) = (i / (TYPES * CODES), i % (TYPES * CODES));
            let (t, c) = (rest / CODES, rest % CODES);
            let network = match names.get(n) {
                Some(name) if n < NETWORKS - 1 => name.as_str(),
                _ if n == NETWORKS - 1 => "none",
                _ => "unknown",
            };
            let qtype = QTYPES
                .get(t)
                .map_or_else(|| "other".to_owned(), ToString::to_string);
            let rcode = RCODES.get(c).map_or("other", |(_, label)| label);
            let _ = writeln!(
                out,
                "labgate_dns_queries_total{{network=\"{network}\",qtype=\"{qtype}\",rcode=\"{rcode}\"}} {v}"
            );
        }
        let counters = [
            (
                "labgate_dns_cache_hits_total",
                "Forwarded names answered from the cache.",
                &self.cache_hits,
            ),
            (
                "labgate_dns_cache_misses_total",
                "Forwarded names not in the cache.",
                &self.cache_misses,
            ),
            (
                "labgate_dns_stale_answers_total",
                "Expired answers served because upstreams were silent (RFC 8767).",
                &self.stale_answers,
            ),
            (
                "labgate_dns_upstream_failures_total",
                "Upstream exchanges that failed or timed out.",
                &self.upstream_failures,
            ),
            (
                "labgate_dns_blocked_total",
                "Queries answered by a blocklist.",
                &self.blocked,
            ),
            (
                "labgate_dns_fast_path_answers_total",
                "UDP queries answered from precompiled answers.",
                &self.fast_answers,
            ),
            (
                "labgate_dns_upstream_fail_fast_total",
                "Queries answered at once (stale or SERVFAIL) because their upstreams are known to be down.",
                &self.fail_fast,
            ),
            (
                "labgate_dns_coalesced_total",
                "Queries that waited for an equal question already sent to the upstreams.",
                &self.coalesced,
            ),
            (
                "labgate_dns_stream_connections_refused_total",
                "TCP and TLS connections closed at accept because their client had too many open.",
                &self.stream_refused,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.load(Ordering::Relaxed)
            );
        }
        labelled(
            &mut out,
            (
                "labgate_dns_overload_total",
                "Queries answered at once (stale or SERVFAIL) because the bound on queries waiting for upstreams was met, by limit.",
            ),
            "limit",
            Limit::ALL.map(|l| (l.label(), self.overload[l as usize].load(Ordering::Relaxed))),
        );
        labelled(
            &mut out,
            (
                "labgate_dns_updates_total",
                "RFC 2136 updates of ACME challenge values from the pair's peer, by result.",
            ),
            "result",
            UpdateResult::ALL
                .map(|r| (r.label(), self.updates[r as usize].load(Ordering::Relaxed))),
        );
        let _ = writeln!(
            out,
            "# HELP labgate_dns_queries_in_flight Queries waiting for the upstreams now.\n# TYPE labgate_dns_queries_in_flight gauge\nlabgate_dns_queries_in_flight {}",
            self.admission.in_flight()
        );
        self.latency.render(
            &mut out,
            "labgate_dns_upstream_latency_seconds",
            "Latency of successful upstream exchanges.",
        );
        out
    }
}

/// A counter family with one label (`name{key="value"} n`), its HELP and TYPE first.
fn labelled(
    out: &mut String,
    (name, help): (&str, &str),
    key: &str,
    rows: impl IntoIterator<Item = (&'static str, u64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (value, n) in rows {
        let _ = writeln!(out, "{name}{{{key}=\"{value}\"}} {n}");
    }
}
