//! ACME counters for `/metrics`: request latency, renewals by result, and seconds to expiry
//! and failed orders in a row of each managed certificate (from the manager's status at
//! render time).

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
    adopted: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Histogram::new(&BUCKETS),
            renewed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            adopted: AtomicU64::new(0),
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

    /// Counts one certificate taken from the pair's peer instead of ordered.
    pub(crate) fn adopted(&self) {
        self.adopted.fetch_add(1, Ordering::Relaxed);
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
        let name = "labgate_acme_adopted_total";
        let _ = writeln!(
            out,
            "# HELP {name} Certificates taken from the pair's peer instead of ordered.\n# TYPE {name} counter\n{name} {}",
            self.adopted.load(Ordering::Relaxed)
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
        let name = "labgate_certificate_renewal_failures";
        let _ = writeln!(
            out,
            "# HELP {name} Failed orders in a row of each ACME certificate (0 after a success); /certs says why.\n# TYPE {name} gauge"
        );
        for c in certs {
            let _ = writeln!(
                out,
                "{name}{{names=\"{}\"}} {}",
                c.names.join(","),
                c.failures
            );
        }
        self.requests.render(
            out,
            "labgate_acme_request_duration_seconds",
            "Latency of requests to the ACME server.",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(names: &[&str], not_after: Option<SystemTime>, failures: u32) -> CertStatus {
        CertStatus {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            provider: "dns".to_owned(),
            issuer: None,
            not_after,
            next_renewal: None,
            last_attempt: None,
            last_error: None,
            failures,
        }
    }

    #[test]
    fn each_certificate_has_its_expiry_and_its_failures_in_a_row() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let certs = [
            cert(
                &["*.lab.test", "lab.test"],
                Some(now + Duration::from_secs(86_400)),
                0,
            ),
            cert(&["new.test"], None, 3),
        ];
        let m = Metrics::default();
        m.issuance(true);
        m.issuance(false);
        m.issuance(false);
        m.adopted();
        let mut out = String::new();
        m.render(&certs, now, &mut out);
        for line in [
            "labgate_acme_issuances_total{result=\"ok\"} 1\n",
            "labgate_acme_issuances_total{result=\"failed\"} 2\n",
            "labgate_acme_adopted_total 1\n",
            "labgate_certificate_expiry_seconds{names=\"*.lab.test,lab.test\"} 86400\n",
            "labgate_certificate_renewal_failures{names=\"*.lab.test,lab.test\"} 0\n",
            // Never issued: no expiry, but its failures show.
            "labgate_certificate_renewal_failures{names=\"new.test\"} 3\n",
        ] {
            assert!(out.contains(line), "{line} not in\n{out}");
        }
        assert!(!out.contains("expiry_seconds{names=\"new.test\"}"), "{out}");
    }
}
