//! [`Row`]: one logged query as the database holds it, what the writer stores and a search
//! finds.

/// One row, as text and numbers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Row {
    /// Microseconds since the Unix epoch.
    pub time_us: i64,
    /// Client address, or `None` (anonymous).
    pub client: Option<String>,
    /// Network name, or `None` (no network).
    pub network: Option<String>,
    /// Question name, lower-case, without the final dot.
    pub name: String,
    /// Query type (`A`, `AAAA`, `TYPE65534`).
    pub qtype: String,
    /// Query class (`IN`, `CH`).
    pub qclass: String,
    /// `udp`, `tcp` or `tls`.
    pub transport: &'static str,
    /// Response code (`NOERROR`, `NXDOMAIN`).
    pub rcode: String,
    /// Where the answer came from (`internal`, `cache`, `upstream`, `blocklist`, …).
    pub source: &'static str,
    /// The blocklist's name, or the upstream group (`upstreams`, or a `[[forward]]` domain).
    pub detail: Option<String>,
    /// Answer summary.
    pub answer: String,
    /// Microseconds from reception to answer.
    pub latency_us: i64,
    /// EDNS DO bit.
    pub dnssec_ok: bool,
    /// Answer truncated.
    pub truncated: bool,
    /// Answer served stale.
    pub stale: bool,
}
