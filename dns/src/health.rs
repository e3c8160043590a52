//! A short memory of whether an upstream set answers (Unbound's infrastructure cache, in
//! short): after [`DOWN_AFTER`] exchanges in a row end in silence, with no answer for
//! [`QUIET`], it is known to be down, and queries for it fail at once (a stale answer if there
//! is one, else SERVFAIL) instead of each waiting out [`crate::UPSTREAM_DEADLINE`]. A probe
//! of labgate's own (the root's NS records, which every resolver has cached) goes out
//! [`FIRST_PROBE`] after it went down, then at doubling intervals up to [`MAX_PROBE_INTERVAL`];
//! any answer, from a probe or a query still in flight, brings it back.
//!
//! An upstream that answers, even SERVFAIL or REFUSED, is alive: only silence and broken
//! connections count against it. The quiet bound keeps a flood of names that time out (a
//! random-subdomain flood at a slow zone) from taking down an upstream that still answers
//! everyone else; the probe's own name keeps recovery from depending on the flood's.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Silent exchanges in a row after which an upstream set is down...
pub(crate) const DOWN_AFTER: u32 = 4;
/// ...if nothing it said was heard for this long either.
pub(crate) const QUIET: Duration = Duration::from_secs(2);
/// Wait from going down to the first probe.
pub(crate) const FIRST_PROBE: Duration = Duration::from_millis(500);
/// Longest wait between probes.
pub(crate) const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(8);
/// A probe whose outcome was not heard by then (its task was lost) no longer holds the next
/// one back.
const PROBE_LOST_AFTER: Duration = Duration::from_secs(5);

/// What a query may do with the upstreams now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Ask the upstreams.
    Ask,
    /// Do not wait for them: they are down. Send the probe.
    Probe,
    /// Do not wait for them: they are down.
    FailFast,
}

/// How an exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The upstreams answered (any rcode).
    Answered,
    /// Silence, or a broken connection.
    Silent,
}

/// How the memory of a set changed with an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// It is down now.
    WentDown,
    /// It answers again.
    CameBack,
}

/// The memory of one upstream set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct State {
    /// Silent exchanges in a row.
    silent: u32,
    /// When it last answered.
    heard: Option<Instant>,
    down: Option<Down>,
}

/// A set known to be down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Down {
    /// When the next probe may go.
    next_probe: Instant,
    /// The wait before the probe after that.
    interval: Duration,
    /// When the probe in flight went, if one is.
    probing: Option<Instant>,
}

impl State {
    /// Whether a query may be sent at `now`, and the state after it (A3: pure).
    pub(crate) fn gate(self, now: Instant) -> (Gate, Self) {
        let Some(down) = self.down else {
            return (Gate::Ask, self);
        };
        let probe_free = down
            .probing
            .is_none_or(|sent| now.duration_since(sent) >= PROBE_LOST_AFTER);
        if now >= down.next_probe && probe_free {
            let down = Down {
                probing: Some(now),
                ..down
            };
            return (
                Gate::Probe,
                Self {
                    down: Some(down),
                    ..self
                },
            );
        }
        (Gate::FailFast, self)
    }

    /// The state after an exchange ended with `outcome` at `now`; `probe` when it was the
    /// probe (A3: pure).
    pub(crate) fn record(self, outcome: Outcome, probe: bool, now: Instant) -> Self {
        match (outcome, self.down) {
            (Outcome::Answered, _) => Self {
                heard: Some(now),
                ..Self::default()
            },
            (Outcome::Silent, None) => {
                let silent = self.silent.saturating_add(1);
                let quiet = self
                    .heard
                    .is_none_or(|heard| now.saturating_duration_since(heard) >= QUIET);
                let down = (silent >= DOWN_AFTER && quiet).then_some(Down {
                    next_probe: now + FIRST_PROBE,
                    interval: FIRST_PROBE,
                    probing: None,
                });
                Self {
                    silent,
                    heard: self.heard,
                    down,
                }
            }
            (Outcome::Silent, Some(down)) if probe => {
                let interval = (down.interval * 2).min(MAX_PROBE_INTERVAL);
                Self {
                    silent: self.silent.saturating_add(1),
                    heard: self.heard,
                    down: Some(Down {
                        next_probe: now + interval,
                        interval,
                        probing: None,
                    }),
                }
            }
            // Queries sent before it went down say nothing new.
            (Outcome::Silent, Some(_)) => self,
        }
    }

    /// Whether the set is known to be down.
    pub(crate) fn is_down(self) -> bool {
        self.down.is_some()
    }
}

/// One set's memory, shared by every query for it.
#[derive(Debug, Default)]
pub(crate) struct Health(Mutex<State>);

impl Health {
    /// Whether a query may be sent now (see [`State::gate`]).
    pub(crate) fn gate(&self, now: Instant) -> Gate {
        let Ok(mut state) = self.0.lock() else {
            return Gate::Ask;
        };
        let (gate, next) = state.gate(now);
        *state = next;
        gate
    }

    /// Records how an exchange ended (see [`State::record`]), and how that changed the set.
    pub(crate) fn record(&self, outcome: Outcome, probe: bool, now: Instant) -> Option<Change> {
        let mut state = self.0.lock().ok()?;
        let was = state.is_down();
        *state = state.record(outcome, probe, now);
        match (was, state.is_down()) {
            (false, true) => Some(Change::WentDown),
            (true, false) => Some(Change::CameBack),
            _ => None,
        }
    }

    /// Whether the set is known to be down.
    pub(crate) fn is_down(&self) -> bool {
        self.0.lock().is_ok_and(|s| s.is_down())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn silent(s: State, n: u32, now: Instant) -> State {
        (0..n).fold(s, |s, _| s.record(Outcome::Silent, false, now))
    }

    #[test]
    fn silence_in_a_row_takes_a_set_down_and_an_answer_brings_it_back() {
        let t0 = Instant::now();
        let s = silent(State::default(), DOWN_AFTER - 1, t0);
        assert_eq!(s.gate(t0).0, Gate::Ask, "not yet");
        // An answer in between starts the count again.
        let s = s.record(Outcome::Answered, false, t0);
        let later = t0 + QUIET;
        let s = silent(s, DOWN_AFTER - 1, later);
        assert_eq!(s.gate(later).0, Gate::Ask);
        let s = silent(s, 1, later);
        assert!(s.is_down());
        assert_eq!(s.gate(later).0, Gate::FailFast);
        assert_eq!(s.gate(later + FIRST_PROBE / 2).0, Gate::FailFast);
        // An answer to a query sent before it went down brings it back at once.
        let up = s.record(Outcome::Answered, false, later);
        assert!(!up.is_down());
        assert_eq!(up.gate(later).0, Gate::Ask);
    }

    #[test]
    fn a_set_that_answered_lately_stays_up_whatever_times_out() {
        let t0 = Instant::now();
        let s = State::default().record(Outcome::Answered, false, t0);
        // A flood of names that time out, while the set still answers now and then.
        let s = silent(s, 50, t0 + QUIET / 2);
        assert_eq!(s.gate(t0 + QUIET / 2).0, Gate::Ask);
        // Quiet for long enough, the next silence takes it down.
        let s = silent(s, 1, t0 + QUIET);
        assert!(s.is_down());
    }

    #[test]
    fn one_probe_at_a_time_at_doubling_intervals() {
        let t0 = Instant::now();
        let s = silent(State::default(), DOWN_AFTER, t0);
        let t1 = t0 + FIRST_PROBE;
        let (gate, s) = s.gate(t1);
        assert_eq!(gate, Gate::Probe);
        // Only one probe at a time: the others still fail fast.
        assert_eq!(s.gate(t1).0, Gate::FailFast);
        // Late silences of old queries change nothing.
        assert_eq!(s.record(Outcome::Silent, false, t1), s);
        // The probe's silence doubles the wait.
        let t2 = t1 + Duration::from_secs(3);
        let s = s.record(Outcome::Silent, true, t2);
        assert_eq!(s.gate(t2 + FIRST_PROBE).0, Gate::FailFast);
        let (gate, s) = s.gate(t2 + FIRST_PROBE * 2);
        assert_eq!(gate, Gate::Probe);
        // The probe's answer brings it back.
        let s = s.record(Outcome::Answered, true, t2 + FIRST_PROBE * 3);
        assert_eq!(s.gate(t2 + FIRST_PROBE * 3).0, Gate::Ask);
    }

    #[test]
    fn the_probe_interval_stops_growing() {
        let mut now = Instant::now();
        let mut s = silent(State::default(), DOWN_AFTER, now);
        for _ in 0..10 {
            now += MAX_PROBE_INTERVAL;
            let (gate, next) = s.gate(now);
            assert_eq!(
                gate,
                Gate::Probe,
                "a probe at least every {MAX_PROBE_INTERVAL:?}"
            );
            s = next.record(Outcome::Silent, true, now);
        }
    }

    #[test]
    fn a_probe_never_heard_of_does_not_hold_the_next_back_for_ever() {
        let t0 = Instant::now();
        let s = silent(State::default(), DOWN_AFTER, t0);
        let (gate, s) = s.gate(t0 + FIRST_PROBE);
        assert_eq!(gate, Gate::Probe);
        assert_eq!(
            s.gate(t0 + FIRST_PROBE + PROBE_LOST_AFTER / 2).0,
            Gate::FailFast
        );
        assert_eq!(s.gate(t0 + FIRST_PROBE + PROBE_LOST_AFTER).0, Gate::Probe);
    }
}
