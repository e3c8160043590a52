//! The certificates' timeline: each sample compares the certificate served for each service
//! host with the one seen before, and the host's ACME error with the one recorded; a change
//! is an event. Pure: the sample's readings and time come in, the events go out.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use super::sample::{CertEvent, CertEventKind, Seen};

/// Events kept in memory and in the file, newest last.
pub const EVENTS: usize = 1000;

/// A host at a sample: the certificate it is served, and the error of the ACME order for
/// its certificate, if the last one failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// The service host.
    pub host: Arc<str>,
    /// The certificate a handshake for it gets (`None`: none).
    pub served: Option<Seen>,
    /// The last ACME order's error, for a host an ACME certificate covers.
    pub error: Option<String>,
}

/// What changed between the certificate seen before (`last`) and the one served now: `None`
/// when it is the same one.
pub fn change(last: Option<&Seen>, now: &Seen) -> Option<CertEventKind> {
    match last {
        None => Some(CertEventKind::Issued),
        Some(l) if l.fingerprint == now.fingerprint => None,
        Some(l) if l.issuer == now.issuer && now.not_before > l.not_before => {
            Some(CertEventKind::Renewed)
        }
        Some(_) => Some(CertEventKind::Replaced),
    }
}

/// Whether an ACME error read now is a new failure: one, and not the one recorded last
/// (`recorded`). Orders retried with the same error are one failure until a success (no
/// error) clears it.
pub fn new_failure(recorded: Option<&str>, now: Option<&str>) -> bool {
    now.is_some_and(|e| recorded != Some(e))
}

/// The last certificate and error of each host, and the events.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Timeline {
    /// The certificate each host was served at the last sample that saw one.
    pub seen: HashMap<Arc<str>, Seen>,
    /// The ACME error recorded last for each host, until a success.
    pub failed: HashMap<Arc<str>, String>,
    /// The events, oldest first, [`EVENTS`] at most.
    pub events: VecDeque<CertEvent>,
}

impl Timeline {
    /// Takes the readings of a sample at `at`; returns its events (also kept).
    pub fn observe(&mut self, at: SystemTime, readings: &[Reading]) -> Vec<CertEvent> {
        let mut out = Vec::new();
        for r in readings {
            if let Some(now) = &r.served
                && let Some(kind) = change(self.seen.get(&r.host), now)
            {
                out.push(CertEvent {
                    at,
                    host: Arc::clone(&r.host),
                    kind,
                    cert: Some(now.clone()),
                    error: None,
                });
                self.seen.insert(Arc::clone(&r.host), now.clone());
            }
            let recorded = self.failed.get(&r.host).map(String::as_str);
            if new_failure(recorded, r.error.as_deref()) {
                out.push(CertEvent {
                    at,
                    host: Arc::clone(&r.host),
                    kind: CertEventKind::Failed,
                    cert: None,
                    error: r.error.clone(),
                });
            }
            match &r.error {
                Some(e) => {
                    self.failed.insert(Arc::clone(&r.host), e.clone());
                }
                None => {
                    self.failed.remove(&r.host);
                }
            }
        }
        self.events.extend(out.iter().cloned());
        while self.events.len() > EVENTS {
            self.events.pop_front();
        }
        out
    }

    /// The newest `n` events of `host`, newest first.
    pub fn of(&self, host: &str, n: usize) -> Vec<&CertEvent> {
        self.events
            .iter()
            .rev()
            .filter(|e| &*e.host == host)
            .take(n)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cert(fingerprint: &str, issuer: &str, from_secs: u64) -> Seen {
        let from = SystemTime::UNIX_EPOCH + Duration::from_secs(from_secs);
        Seen {
            fingerprint: fingerprint.into(),
            issuer: issuer.into(),
            not_before: from,
            not_after: from + Duration::from_secs(90 * 86_400),
        }
    }

    #[test]
    fn a_certificate_change_is_named_by_what_changed() {
        let a = cert("aa", "CN=Pebble", 1000);
        let cases: [(Option<Seen>, Seen, Option<CertEventKind>); 5] = [
            (None, a.clone(), Some(CertEventKind::Issued)),
            (Some(a.clone()), a.clone(), None),
            (
                Some(a.clone()),
                cert("bb", "CN=Pebble", 2000),
                Some(CertEventKind::Renewed),
            ),
            (
                Some(a.clone()),
                cert("bb", "CN=labgate local CA", 2000),
                Some(CertEventKind::Replaced),
            ),
            // Same issuer, but not newer: a file put back, not a renewal.
            (
                Some(a),
                cert("bb", "CN=Pebble", 500),
                Some(CertEventKind::Replaced),
            ),
        ];
        for (last, now, want) in cases {
            assert_eq!(change(last.as_ref(), &now), want, "{last:?} then {now:?}");
        }
    }

    #[test]
    fn an_acme_error_is_one_failure_until_a_success() {
        let cases = [
            (None, None, false),
            (None, Some("rate limited"), true),
            (Some("rate limited"), Some("rate limited"), false),
            (Some("rate limited"), Some("dns timeout"), true),
            (Some("rate limited"), None, false),
        ];
        for (recorded, now, want) in cases {
            assert_eq!(
                new_failure(recorded, now),
                want,
                "{recorded:?} then {now:?}"
            );
        }
    }

    #[test]
    fn the_timeline_keeps_each_hosts_events_in_order_and_a_bounded_number() {
        let host: Arc<str> = Arc::from("app.lab.test");
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        let at = |m: u64| t0 + Duration::from_secs(60 * m);
        let read = |served: Option<Seen>, error: Option<&str>| Reading {
            host: Arc::clone(&host),
            served,
            error: error.map(str::to_owned),
        };
        let mut t = Timeline::default();
        let local = cert("l1", "CN=labgate local CA", 100);
        let acme = cert("p1", "CN=Pebble", 9000);
        assert_eq!(
            t.observe(at(0), &[read(Some(local.clone()), None)]).len(),
            1
        );
        assert!(t.observe(at(1), &[read(Some(local), None)]).is_empty());
        let failed = t.observe(at(2), &[read(None, Some("order failed"))]);
        assert_eq!(failed[0].kind, CertEventKind::Failed);
        assert!(
            t.observe(at(3), &[read(None, Some("order failed"))])
                .is_empty()
        );
        let replaced = t.observe(at(4), &[read(Some(acme), None)]);
        assert_eq!(replaced[0].kind, CertEventKind::Replaced);
        let kinds: Vec<_> = t.of(&host, 10).iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                CertEventKind::Replaced,
                CertEventKind::Failed,
                CertEventKind::Issued
            ]
        );
        assert_eq!(t.of(&host, 1).len(), 1);
        assert!(t.of("other.lab.test", 10).is_empty());
        for i in 0..EVENTS as u64 {
            t.observe(
                at(5 + i),
                &[read(Some(cert(&i.to_string(), "CN=x", i)), None)],
            );
        }
        assert_eq!(t.events.len(), EVENTS);
    }
}
