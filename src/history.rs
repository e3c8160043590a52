//! The proxy's last 24 hours, a sample a minute, for the status page: each service's requests
//! by status class and its denials in that minute, and how many of its backends took
//! requests. Kept in memory (a restart starts it afresh; Prometheus keeps the long history),
//! bounded to [`MINUTES`] samples.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use labgate_proxy::metrics::ServiceCounts;
use tokio_util::sync::CancellationToken;

/// Samples kept: a day of minutes.
pub const MINUTES: usize = 1440;
/// Time between samples.
pub const EVERY: Duration = Duration::from_secs(60);

/// One service in one sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceMinute {
    /// The service's name.
    pub name: Arc<str>,
    /// What it counted since the sample before.
    pub counts: ServiceCounts,
    /// Its backends taking requests at the sample, of `backends`.
    pub up: usize,
    /// Its backends.
    pub backends: usize,
}

/// One sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// When it was taken.
    pub at: SystemTime,
    /// Every service.
    pub services: Vec<ServiceMinute>,
}

/// The samples, and the counts at the last one.
#[derive(Debug, Default)]
pub struct HttpHistory {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    last: HashMap<Arc<str>, ServiceCounts>,
    samples: VecDeque<Sample>,
}

impl HttpHistory {
    /// Records a sample at `at` of the services' counts now (`now`: name, counts so far, up,
    /// backends).
    pub fn record(&self, at: SystemTime, now: Vec<(Arc<str>, ServiceCounts, usize, usize)>) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let services = now
            .iter()
            .map(|(name, counts, up, backends)| ServiceMinute {
                name: Arc::clone(name),
                counts: counts.since(inner.last.get(name).copied().unwrap_or_default()),
                up: *up,
                backends: *backends,
            })
            .collect();
        inner.last = now.into_iter().map(|(n, c, _, _)| (n, c)).collect();
        inner.samples.push_back(Sample { at, services });
        while inner.samples.len() > MINUTES {
            inner.samples.pop_front();
        }
    }

    /// What each service in `now` counted since the last sample.
    pub fn since_last(
        &self,
        now: &[(Arc<str>, ServiceCounts, usize, usize)],
    ) -> HashMap<Arc<str>, ServiceCounts> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        now.iter()
            .map(|(name, counts, _, _)| {
                let before = inner.last.get(name).copied().unwrap_or_default();
                (Arc::clone(name), counts.since(before))
            })
            .collect()
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.samples.iter().cloned().collect()
    }
}

/// The counts of every service `proxy` serves now, with its backends' health.
pub fn now(proxy: &labgate_proxy::Proxy) -> Vec<(Arc<str>, ServiceCounts, usize, usize)> {
    let state = proxy.state();
    let health = proxy.backends();
    state
        .snapshot
        .services
        .iter()
        .map(|svc| {
            let mine = health.iter().filter(|b| b.service == svc.name);
            let (up, all) = mine.fold((0, 0), |(u, a), b| (u + usize::from(b.up), a + 1));
            (
                Arc::clone(&svc.name),
                proxy.metrics.service_counts(svc.id.index()),
                up,
                all,
            )
        })
        .collect()
}

/// Takes a sample of `proxy` into `history` every [`EVERY`] (the first at once) until
/// cancelled.
pub async fn run(
    history: Arc<HttpHistory>,
    proxy: Arc<labgate_proxy::Proxy>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = cancel.cancelled() => return,
        }
        history.record(SystemTime::now(), now(&proxy));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(two: u64, five: u64, denied: u64) -> ServiceCounts {
        ServiceCounts {
            outcomes: [0, two, 0, 0, five, 0],
            denied,
        }
    }

    #[test]
    fn samples_hold_what_each_minute_counted_and_a_day_at_most() {
        let h = HttpHistory::default();
        let app: Arc<str> = Arc::from("app");
        let t = SystemTime::UNIX_EPOCH;
        h.record(t, vec![(Arc::clone(&app), counts(10, 1, 2), 1, 1)]);
        h.record(t, vec![(Arc::clone(&app), counts(15, 1, 2), 0, 1)]);
        // A reload gave the slot to a service whose counts are lower: from zero.
        h.record(t, vec![(Arc::clone(&app), counts(3, 0, 0), 1, 1)]);
        let s = h.samples();
        assert_eq!(s[0].services[0].counts, counts(10, 1, 2));
        assert_eq!(s[1].services[0].counts, counts(5, 0, 0));
        assert_eq!((s[1].services[0].up, s[1].services[0].backends), (0, 1));
        assert_eq!(s[2].services[0].counts, counts(3, 0, 0));
        assert_eq!(s[0].services[0].counts.requests(), 13);
        let pending = h.since_last(&[(Arc::clone(&app), counts(7, 1, 0), 1, 1)]);
        assert_eq!(pending[&app], counts(4, 1, 0));
        for _ in 0..MINUTES {
            h.record(t, Vec::new());
        }
        assert_eq!(h.samples().len(), MINUTES);
    }
}
