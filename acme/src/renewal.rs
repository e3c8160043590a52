//! When a certificate is renewed, and how long a job waits after a failed order: pure
//! functions of what the manager fetched (the certificate's validity, the CA's suggested
//! window), the time and a seed, so every case is a row in a table.
//!
//! The CA's window wins when it sent a valid one (ACME Renewal Information, RFC 9773 §4.2:
//! a uniformly random point in it; a point already past means now). Without one, a
//! certificate is renewed with a third of its lifetime left, less up to a thirtieth of it,
//! so certificates issued together are not all renewed in the same second.

use std::hash::Hasher;
use std::time::{Duration, SystemTime};

use crate::verify::CertInfo;

/// Wait after the first failed attempt; doubled per failure up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(300);
/// Longest wait between failed attempts (before its jitter of up to a tenth).
pub const MAX_BACKOFF: Duration = Duration::from_secs(12 * 3600);

/// The renewal window a CA suggests for one certificate (RFC 9773 §4.2), as fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Renew no earlier than this.
    pub start: SystemTime,
    /// Renew before this.
    pub end: SystemTime,
}

/// When the certificate `cert` is to be renewed, `now` when there is none: at a point of the
/// CA's `window` drawn from `seed`, else with a third of its lifetime left (less a jitter
/// drawn from `seed`). Never after the certificate's end, never before `now`: a point in the
/// past means at once.
///
/// A window that ends before or when it starts is invalid, and RFC 9773 §4.2 says to treat
/// it as no answer: the lifetime rule applies.
pub fn renewal_due(
    cert: Option<&CertInfo>,
    window: Option<Window>,
    now: SystemTime,
    seed: u64,
) -> SystemTime {
    let Some(cert) = cert else {
        return now;
    };
    let due = match window.filter(|w| w.start < w.end) {
        Some(w) => w.start + jitter(w.end.duration_since(w.start).unwrap_or_default(), seed),
        None => {
            let lifetime = cert
                .not_after
                .duration_since(cert.not_before)
                .unwrap_or_default();
            cert.not_after
                .checked_sub(lifetime / 3 + jitter(lifetime / 30, seed))
                .unwrap_or(now)
        }
    };
    due.min(cert.not_after).max(now)
}

/// The wait after `failures` failed attempts in a row: [`FIRST_BACKOFF`], doubled for each
/// failure after the first up to [`MAX_BACKOFF`], plus up to a tenth of it drawn from `seed`
/// (jobs that failed together do not all try again together).
pub fn backoff(failures: u32, seed: u64) -> Duration {
    let exp = FIRST_BACKOFF.saturating_mul(1 << failures.saturating_sub(1).min(16));
    let wait = exp.min(MAX_BACKOFF);
    wait + jitter(wait / 10, seed)
}

/// A seed from `bytes` (a certificate's chain): the same bytes give the same renewal point,
/// so a plan made twice for one certificate does not move.
pub fn seed(bytes: &[u8]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    h.write(bytes);
    h.finish()
}

/// A duration below `max` (zero when `max` is), spread evenly over seeds, neighbouring ones
/// included (not cryptographic).
fn jitter(max: Duration, seed: u64) -> Duration {
    // splitmix64's finalizer: every bit of the seed moves every bit of the result.
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(z.checked_rem(nanos).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    /// A case: its name, the certificate, the window, now, and the range the point is in.
    type Row<'a> = (
        &'a str,
        Option<&'a CertInfo>,
        Option<Window>,
        SystemTime,
        SystemTime,
        SystemTime,
    );

    /// 90-day certificates issued at day 100 (valid until day 190): the lifetime rule renews
    /// at day 160 less up to 3 days.
    fn cert() -> CertInfo {
        CertInfo {
            not_before: at(100 * DAY),
            not_after: at(190 * DAY),
            issuer: "CN=test CA".into(),
        }
    }

    fn at(since_epoch: Duration) -> SystemTime {
        SystemTime::UNIX_EPOCH + since_epoch
    }

    fn window(start: Duration, end: Duration) -> Option<Window> {
        Some(Window {
            start: at(start),
            end: at(end),
        })
    }

    #[test]
    fn the_renewal_point_follows_rfc_9773_then_the_lifetime_rule() {
        let lifetime_rule = (at(157 * DAY), at(160 * DAY) + Duration::from_nanos(1));
        let expired = CertInfo {
            not_before: at(10 * DAY),
            not_after: at(100 * DAY),
            issuer: String::new(),
        };
        let backwards = CertInfo {
            not_before: at(190 * DAY),
            not_after: at(100 * DAY),
            issuer: String::new(),
        };
        // (case, certificate, window, now, earliest, before)
        #[rustfmt::skip]
        let table: &[Row<'_>] = &[
            ("no certificate: at once", None, None, at(120 * DAY), at(120 * DAY), at(120 * DAY) + Duration::from_nanos(1)),
            ("no certificate, a window: at once", None, window(150 * DAY, 151 * DAY), at(120 * DAY), at(120 * DAY), at(120 * DAY) + Duration::from_nanos(1)),
            ("no window: a third of the lifetime left, less up to a thirtieth", Some(&cert()), None, at(120 * DAY), lifetime_rule.0, lifetime_rule.1),
            ("a window ahead: a point in it", Some(&cert()), window(150 * DAY, 152 * DAY), at(120 * DAY), at(150 * DAY), at(152 * DAY)),
            ("a window ahead wins over the lifetime rule, later too", Some(&cert()), window(170 * DAY, 171 * DAY), at(120 * DAY), at(170 * DAY), at(171 * DAY)),
            ("a window all past: now", Some(&cert()), window(110 * DAY, 115 * DAY), at(120 * DAY), at(120 * DAY), at(120 * DAY) + Duration::from_nanos(1)),
            ("a window around now: not before now", Some(&cert()), window(119 * DAY, 121 * DAY), at(120 * DAY), at(120 * DAY), at(121 * DAY)),
            ("a window that ends where it starts is invalid: the lifetime rule", Some(&cert()), window(150 * DAY, 150 * DAY), at(120 * DAY), lifetime_rule.0, lifetime_rule.1),
            ("a window that ends before it starts is invalid: the lifetime rule", Some(&cert()), window(152 * DAY, 150 * DAY), at(120 * DAY), lifetime_rule.0, lifetime_rule.1),
            ("an inverted window in the past is invalid too", Some(&cert()), window(115 * DAY, 110 * DAY), at(120 * DAY), lifetime_rule.0, lifetime_rule.1),
            ("a window past the end of validity: at the end", Some(&cert()), window(195 * DAY, 196 * DAY), at(120 * DAY), at(190 * DAY), at(190 * DAY) + Duration::from_nanos(1)),
            ("past the lifetime point: now", Some(&cert()), None, at(165 * DAY), at(165 * DAY), at(165 * DAY) + Duration::from_nanos(1)),
            ("expired: now", Some(&expired), None, at(120 * DAY), at(120 * DAY), at(120 * DAY) + Duration::from_nanos(1)),
            ("expired, a window ahead: now", Some(&expired), window(150 * DAY, 151 * DAY), at(120 * DAY), at(120 * DAY), at(120 * DAY) + Duration::from_nanos(1)),
            ("an end before the start (no lifetime): at the end, or now", Some(&backwards), None, at(50 * DAY), at(100 * DAY), at(100 * DAY) + Duration::from_nanos(1)),
        ];
        for &(case, cert, window, now, earliest, before) in table {
            for seed in [0, 1, 7, u64::MAX, seed(b"a chain"), seed(b"another chain")] {
                let due = renewal_due(cert, window, now, seed);
                assert!(
                    earliest <= due && due < before,
                    "{case} (seed {seed}): {due:?} is outside [{earliest:?}, {before:?})"
                );
                assert_eq!(due, renewal_due(cert, window, now, seed), "{case}: stable");
            }
        }
    }

    #[test]
    fn points_spread_over_the_whole_window() {
        // RFC 9773 §4.2: uniformly random within the window. 1000 seeds (neighbours, as a
        // counter would give): each tenth of the window gets some, none gets most.
        let w = window(150 * DAY, 160 * DAY);
        let mut tenths = [0u32; 10];
        for seed in 0..1000 {
            let due = renewal_due(Some(&cert()), w, at(120 * DAY), seed);
            let offset = due.duration_since(at(150 * DAY)).expect("in the window");
            let tenth = usize::try_from(offset.as_secs() / DAY.as_secs()).expect("small");
            tenths[tenth] += 1;
        }
        assert!(tenths.iter().all(|&n| (50..150).contains(&n)), "{tenths:?}");
    }

    #[test]
    fn backoff_doubles_from_five_minutes_to_twelve_hours() {
        let min = |m: u64| Duration::from_secs(60 * m);
        // (failures in a row, wait before jitter)
        let table = [
            (0, min(5)),
            (1, min(5)),
            (2, min(10)),
            (3, min(20)),
            (4, min(40)),
            (8, min(640)),
            (9, MAX_BACKOFF),
            (17, MAX_BACKOFF),
            (40, MAX_BACKOFF),
            (u32::MAX, MAX_BACKOFF),
        ];
        for (failures, base) in table {
            for seed in [0, 1, 2, u64::MAX] {
                let wait = backoff(failures, seed);
                assert!(
                    base <= wait && wait < base + base / 10,
                    "{failures} failures (seed {seed}): {wait:?}, not within a tenth above {base:?}"
                );
            }
        }
        let spread: std::collections::BTreeSet<Duration> =
            (0..100).map(|seed| backoff(1, seed)).collect();
        assert!(spread.len() > 90, "jobs failing together spread out");
    }

    #[test]
    fn jitter_stays_below_its_bound_and_covers_it() {
        // (bound, seeds): the result is below the bound and zero for a zero bound.
        let table = [
            (Duration::ZERO, 0..100),
            (Duration::from_nanos(1), 0..100),
            (Duration::from_nanos(7), 0..100),
            (Duration::from_secs(3600), 0..1000),
            (Duration::MAX, 0..100),
        ];
        for (max, seeds) in table {
            let mut largest = Duration::ZERO;
            for seed in seeds {
                let j = jitter(max, seed);
                assert!(j < max || (max.is_zero() && j.is_zero()), "{max:?}: {j:?}");
                largest = largest.max(j);
            }
            if max == Duration::from_secs(3600) {
                assert!(largest > max * 9 / 10, "reaches the top tenth: {largest:?}");
            }
        }
        assert_eq!(seed(b"chain"), seed(b"chain"));
        assert_ne!(seed(b"chain"), seed(b"chain2"));
    }
}
