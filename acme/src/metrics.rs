//! ACME counters for `/metrics`: request latency, renewals by result, and seconds to expiry
//! of each managed certificate (from the manager's status at render time).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use labgate_config::histogram::Histogram;

use crate::status::CertStatus;

/// Upper bounds of the ACME request latency histogram, in seconds.
const BUCKETS: [f64; 8] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// The ACME client's counters.
#[derive(Debug)]
pub struct Metrics {
    requests: Histogram,
    renewed: AtomicU64,
    failed: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Histogram::new(&BUCKETS),
            renewed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Counts one HTTP request to the ACME server.
    pub(crate) fn request(&self, took: Duration) {
        self.requests.observe(took);
    }

    /// Counts one issuance attempt's outcome.
    pub(crate) fn issuance(&self, ok: bool) {
        let c = if ok { &self.renewed } else { &self.failed };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Appends the ACME metrics in Prometheus text format.
    pub fn render(&self, certs: &[CertStatus], now: SystemTime, out: &mut String) {
        let name = "labgate_acme_issuances_total";
        let _ = writeln!(
            out,
            "# HELP {name} Certificate orders by result.\n# TYPE {name} counter\n{name}{{result=\"ok\"}} {}\n{name}{{result=\"failed\"}} {}",
            self.renewed.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed)
        );
        let name = "labgate_certificate_expiry_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Seconds until an ACME certificate expires (negative: expired).\n# TYPE {name} gauge"
        );
        for c in certs {
            if let Some(not_after) = c.not_after {
                let left = match not_after.duration_since(now) {
                    Ok(d) => d.as_secs_f64(),
                    Err(e) => -e.duration().as_secs_f64(),
                };
                let _ = writeln!(out, "{name}{{names=\"{}\"}} {left:.0}", c.names.join(","));
            }
        }
        self.requests.render(
            out,
            "labgate_acme_request_duration_seconds",
            "Latency of requests to the ACME server.",
        );
    }
}
