//! Proxy counters: atomics on the request path, rendered as Prometheus text by the admin
//! endpoint. Services and networks are labelled by name at render time.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use labgate_config::Snapshot;
use labgate_config::histogram::Histogram;
use labgate_config::network::MAX_NETWORKS;

use crate::cf_access::Reason;

/// Services and networks counted by position; more than this share the last slot.
const SLOTS: usize = 256;
/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// Why a TLS handshake did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// Not done within 10 s of the accept (the handshake bound).
    Timeout,
    /// The ClientHello asked for a name no certificate covers (or none, without a default).
    UnknownName,
    /// rustls refused it, or the client went away.
    Error,
}

impl HandshakeFailure {
    /// Every reason, in the order of their counters.
    pub const ALL: [Self; 3] = [Self::Timeout, Self::UnknownName, Self::Error];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::UnknownName => "unrecognized_name",
            Self::Error => "error",
        }
    }
}

/// Failed handshakes by [`HandshakeFailure`].
#[derive(Debug, Default)]
pub struct HandshakeFailures([AtomicU64; HandshakeFailure::ALL.len()]);

impl HandshakeFailures {
    /// Counts one.
    pub(crate) fn count(&self, why: HandshakeFailure) {
        self.0[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// How many failed for a reason.
    pub fn get(&self, why: HandshakeFailure) -> u64 {
        self.0[why as usize].load(Ordering::Relaxed)
    }
}

/// How an HTTP/2 connection on labgate's own path ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum H2End {
    /// The client closed it or went away (the usual end).
    Closed,
    /// No stream for the idle bound: labgate sent GOAWAY.
    Idle,
    /// A bound ran out: the preface, a frame or header block begun, or output unread.
    Timeout,
    /// The client broke the protocol (a connection error other than the next).
    ProtocolError,
    /// The client went over a limit (ENHANCE_YOUR_CALM): floods of control frames, rapid
    /// resets, empty frames, CONTINUATION or HPACK abuse.
    OverLimit,
    /// labgate was stopping: GOAWAY, then its streams finished.
    Shutdown,
}

impl H2End {
    /// Every reason, in the order of their counters.
    pub const ALL: [Self; 6] = [
        Self::Closed,
        Self::Idle,
        Self::Timeout,
        Self::ProtocolError,
        Self::OverLimit,
        Self::Shutdown,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Idle => "idle",
            Self::Timeout => "timeout",
            Self::ProtocolError => "protocol_error",
            Self::OverLimit => "over_limit",
            Self::Shutdown => "shutdown",
        }
    }
}

/// Status classes 1xx..5xx.
type Classes = [AtomicU64; 5];

/// Status classes of forwarded requests: 1xx..5xx, then `none` (no response reached the
/// client: it went away, or the exchange broke off before a response started).
type Outcomes = [AtomicU64; 6];

/// Labels of [`Outcomes`]; the first five are those of [`Classes`].
const CLASS_LABELS: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

/// One sample per status class of a labelled counter.
fn render_classes(out: &mut String, metric: &str, label: &str, value: &str, c: &[AtomicU64]) {
    for (class, n) in CLASS_LABELS.iter().zip(c) {
        let _ = writeln!(
            out,
            "{metric}{{{label}=\"{value}\",class=\"{class}\"}} {}",
            n.load(Ordering::Relaxed)
        );
    }
}

/// A service's requests so far, by what the client got (1xx..5xx, then none), and the
/// requests its policy denied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceCounts {
    /// Forwarded requests by status class; the last: no response reached the client.
    pub outcomes: [u64; 6],
    /// Requests refused by the service's network policy.
    pub denied: u64,
}

impl ServiceCounts {
    /// What was counted since `before` (the counts at an earlier time; a slot reused by
    /// another service after a reload counts from zero).
    pub fn since(self, before: Self) -> Self {
        let mut d = Self::default();
        for (i, o) in d.outcomes.iter_mut().enumerate() {
            *o = self.outcomes[i]
                .checked_sub(before.outcomes[i])
                .unwrap_or(self.outcomes[i]);
        }
        d.denied = self
            .denied
            .checked_sub(before.denied)
            .unwrap_or(self.denied);
        d
    }

    /// Every request counted.
    pub fn requests(self) -> u64 {
        self.outcomes.iter().sum::<u64>() + self.denied
    }
}

/// The proxy's counters.
#[derive(Debug)]
pub struct Metrics {
    by_service: Box<[Outcomes]>,
    by_network: Box<[Outcomes]>,
    /// Denials by service and network: the service's slot times [`MAX_NETWORKS`] plus the
    /// network's position (a network id is below [`MAX_NETWORKS`]: 128 KiB, allocated once).
    denied: Box<[AtomicU64]>,
    /// Requests refused before routing (bad head, unknown host, no network), by status class.
    pub refused: Classes,
    latency: Histogram,
    /// Completed TLS handshakes.
    pub handshakes: AtomicU64,
    /// Failed TLS handshakes, by reason.
    pub handshake_failures: HandshakeFailures,
    /// Cloudflare Access refusals, by [`Reason::ALL`] position.
    access_refused: [AtomicU64; Reason::ALL.len()],
    /// HTTP/2 connections on labgate's own path that ended, by [`H2End`].
    h2_ended: [AtomicU64; H2End::ALL.len()],
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            by_service: (0..SLOTS).map(|_| Outcomes::default()).collect(),
            by_network: (0..SLOTS).map(|_| Outcomes::default()).collect(),
            denied: (0..SLOTS * MAX_NETWORKS)
                .map(|_| AtomicU64::new(0))
                .collect(),
            refused: Classes::default(),
            latency: Histogram::new(&BUCKETS),
            handshakes: AtomicU64::new(0),
            handshake_failures: HandshakeFailures::default(),
            access_refused: Default::default(),
            h2_ended: Default::default(),
        }
    }
}

/// The [`Metrics::denied`] cell of a service and a network.
fn denied_cell(service: usize, network: usize) -> usize {
    service.min(SLOTS - 1) * MAX_NETWORKS + network.min(MAX_NETWORKS - 1)
}

fn class(status: u16) -> usize {
    usize::from(status / 100).clamp(1, 5) - 1
}

/// The [`Outcomes`] slot of what a client got.
fn outcome(status: Option<u16>) -> usize {
    status.map_or(CLASS_LABELS.len() - 1, class)
}

impl Metrics {
    /// Counts an HTTP/2 connection that ended, and why.
    pub fn h2_ended(&self, why: H2End) {
        self.h2_ended[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// HTTP/2 connections that ended for a reason.
    pub fn h2_ended_count(&self, why: H2End) -> u64 {
        self.h2_ended[why as usize].load(Ordering::Relaxed)
    }

    /// Counts a forwarded request's outcome (the status the client got, `None` when none
    /// reached it) and latency.
    pub fn request(&self, service: usize, network: usize, status: Option<u16>, took: Duration) {
        let slot = outcome(status);
        self.by_service[service.min(SLOTS - 1)][slot].fetch_add(1, Ordering::Relaxed);
        self.by_network[network.min(SLOTS - 1)][slot].fetch_add(1, Ordering::Relaxed);
        self.latency.observe(took);
    }

    /// The counts of the service at `service` (its index in the serving snapshot).
    pub fn service_counts(&self, service: usize) -> ServiceCounts {
        let slot = service.min(SLOTS - 1);
        let mut c = ServiceCounts {
            denied: self.denied_by_network(service).iter().sum(),
            ..ServiceCounts::default()
        };
        for (o, n) in c.outcomes.iter_mut().zip(&self.by_service[slot]) {
            *o = n.load(Ordering::Relaxed);
        }
        c
    }

    /// The denials of the service at `service` so far, by network position.
    pub fn denied_by_network(&self, service: usize) -> [u64; MAX_NETWORKS] {
        let first = denied_cell(service, 0);
        let mut out = [0; MAX_NETWORKS];
        for (o, n) in out
            .iter_mut()
            .zip(&self.denied[first..first + MAX_NETWORKS])
        {
            *o = n.load(Ordering::Relaxed);
        }
        out
    }

    /// Counts a request refused by policy: the service at `service` does not allow the
    /// network at `network`.
    pub fn denied(&self, service: usize, network: usize) {
        self.denied[denied_cell(service, network)].fetch_add(1, Ordering::Relaxed);
        self.by_network[network.min(SLOTS - 1)][class(403)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request whose Cloudflare Access token was refused.
    pub fn access_refused(&self, r: Reason) {
        if let Some(i) = Reason::ALL.iter().position(|x| *x == r) {
            self.access_refused[i].fetch_add(1, Ordering::Relaxed);
        }
        self.refused(403);
    }

    /// Counts a request refused before a service was chosen.
    pub fn refused(&self, status: u16) {
        self.refused[class(status)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refusal from [`crate::decide::decide`]: by service when policy denied it.
    pub fn refusal(&self, r: crate::decide::Refusal) {
        match r {
            crate::decide::Refusal::Denied { service, network } => {
                self.denied(service.index(), network.index());
            }
            other => self.refused(other.status()),
        }
    }

    /// Appends the Prometheus text, labelling positions with the serving snapshot's names.
    pub fn render(&self, s: &Snapshot, out: &mut String) {
        out.push_str("# HELP labgate_http_access_refused_total Requests through the tunnel whose Cloudflare Access token was refused, by reason.\n# TYPE labgate_http_access_refused_total counter\n");
        for (r, n) in Reason::ALL.iter().zip(&self.access_refused) {
            let _ = writeln!(
                out,
                "labgate_http_access_refused_total{{reason=\"{}\"}} {}",
                r.label(),
                n.load(Ordering::Relaxed)
            );
        }
        out.push_str("# TYPE labgate_http_requests_total counter\n");
        for svc in &s.services {
            let c = &self.by_service[svc.id.index().min(SLOTS - 1)];
            render_classes(out, "labgate_http_requests_total", "service", &svc.name, c);
        }
        out.push_str("# TYPE labgate_http_network_requests_total counter\n");
        for net in s.networks.iter() {
            let c = &self.by_network[net.id.index().min(SLOTS - 1)];
            render_classes(
                out,
                "labgate_http_network_requests_total",
                "network",
                &net.name,
                c,
            );
        }
        // A service's networks that its policy refuses, and any other that has a count (it
        // was refused before a reload allowed it): the only pairs a denial can be counted
        // in, so a thousand services over sixty networks do not write 60,000 zeros.
        out.push_str("# HELP labgate_http_denied_total Requests refused by a service's network policy, by service and the client's network.\n# TYPE labgate_http_denied_total counter\n");
        for svc in &s.services {
            let counts = self.denied_by_network(svc.id.index());
            for net in s.networks.iter() {
                let n = counts[net.id.index().min(MAX_NETWORKS - 1)];
                if n > 0 || !svc.allow.contains(net.id) {
                    let _ = writeln!(
                        out,
                        "labgate_http_denied_total{{service=\"{}\",network=\"{}\"}} {n}",
                        svc.name, net.name
                    );
                }
            }
        }
        out.push_str("# TYPE labgate_http_refused_total counter\n");
        for (i, c) in self.refused.iter().enumerate() {
            let _ = writeln!(
                out,
                "labgate_http_refused_total{{class=\"{}\"}} {}",
                CLASS_LABELS[i],
                c.load(Ordering::Relaxed)
            );
        }
        self.latency.render(
            out,
            "labgate_http_request_duration_seconds",
            "Time from request head to the end of the response, forwarded requests.",
        );
        let _ = writeln!(
            out,
            "# TYPE labgate_tls_handshakes_total counter\nlabgate_tls_handshakes_total {}",
            self.handshakes.load(Ordering::Relaxed)
        );
        out.push_str("# HELP labgate_tls_handshake_failures_total TLS handshakes that did not complete: not within 10 s, a server name no certificate covers, or refused by rustls (or the client left).\n# TYPE labgate_tls_handshake_failures_total counter\n");
        for why in HandshakeFailure::ALL {
            let _ = writeln!(
                out,
                "labgate_tls_handshake_failures_total{{reason=\"{}\"}} {}",
                why.label(),
                self.handshake_failures.get(why)
            );
        }
        out.push_str("# HELP labgate_http2_connections_ended_total HTTP/2 connections (labgate's own path) that ended: closed by the client, idle, a bound ran out, a protocol error, over a limit (floods, rapid reset), or at shutdown.\n# TYPE labgate_http2_connections_ended_total counter\n");
        for why in H2End::ALL {
            let _ = writeln!(
                out,
                "labgate_http2_connections_ended_total{{reason=\"{}\"}} {}",
                why.label(),
                self.h2_ended_count(why)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[[network]]
name = "lab"
cidrs = ["10.0.10.0/24"]
addresses = ["10.0.10.2"]

[[network]]
name = "guest"
cidrs = ["10.0.50.0/24"]
addresses = ["10.0.50.2"]

[[zone]]
name = "lab.test"

[[service]]
host = "app.lab.test"
backends = ["http://127.0.0.1:9"]
allow = ["lab"]
"#;

    #[test]
    fn denials_are_counted_by_service_and_network() {
        let s = labgate_config::testing::snapshot(CONFIG);
        let m = Metrics::default();
        let app = s.services[0].id.index();
        let (lab, guest) = (
            s.networks.by_name("lab").expect("lab").id.index(),
            s.networks.by_name("guest").expect("guest").id.index(),
        );
        m.denied(app, guest);
        m.denied(app, guest);
        // A network past the last position shares the last cell; nothing is lost.
        m.denied(app, MAX_NETWORKS + 3);
        let by = m.denied_by_network(app);
        assert_eq!((by[guest], by[lab], by[MAX_NETWORKS - 1]), (2, 0, 1));
        assert_eq!(m.service_counts(app).denied, 3);
        assert_eq!(m.denied_by_network(app + 1), [0; MAX_NETWORKS]);
        let mut out = String::new();
        m.render(&s, &mut out);
        assert!(
            out.contains("labgate_http_denied_total{service=\"app\",network=\"guest\"} 2"),
            "{out}"
        );
        // The network the policy allows has no series (nothing can be denied there).
        assert!(
            !out.contains("labgate_http_denied_total{service=\"app\",network=\"lab\"}"),
            "{out}"
        );
    }
}
