//! The proxy's last 24 hours, a sample a minute, for the status page: each service's requests
//! by status class, its denials by the client's network, how many of its backends took
//! requests, and the certificates' timeline (each host's certificate issued, renewed or
//! replaced, and failed ACME orders). Held in memory ([`MINUTES`] samples, the newest
//! [`timeline::EVENTS`] events) and written to `<state_dir>/history.sqlite` from a blocking
//! thread after each sample, and at shutdown, so a restart keeps the minute under way; read
//! back at start-up. A file that cannot be used is logged and counted
//! (`labgate_history_write_failures_total`) and the history goes on in memory.

pub mod sample;
pub mod store;
pub mod timeline;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use labgate_config::settings::{CertSource, Coverage};
use labgate_proxy::metrics::ServiceCounts;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use sample::{CertEvent, Sample, Seen, ServiceMinute};
use store::Store;
use timeline::{Reading as CertReading, Timeline};

/// Samples kept in memory: a day of minutes.
pub const MINUTES: usize = 1440;
/// Time between samples.
pub const EVERY: Duration = Duration::from_secs(60);
/// How far back the status page looks, and start-up reads the file.
pub const DAY: Duration = Duration::from_secs(24 * 3600);

/// A service's counters at a sample, so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// The service's name.
    pub name: Arc<str>,
    /// Its counts so far.
    pub counts: ServiceCounts,
    /// Its denials so far by network (name), those above zero.
    pub denied: Vec<(Arc<str>, u64)>,
    /// Its backends taking requests.
    pub up: usize,
    /// Its backends.
    pub backends: usize,
}

/// The samples, the counts at the last one, and the certificates' timeline.
#[derive(Debug, Default)]
pub struct HttpHistory {
    inner: Mutex<Inner>,
    write_failures: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    last: HashMap<Arc<str>, Reading>,
    samples: VecDeque<Sample>,
    timeline: Timeline,
}

/// What a service counted between `before` (its reading at the last sample, if it had one)
/// and `now` (a counter lower than before, a slot another service took after a reload, counts
/// from zero).
pub fn minute(before: Option<&Reading>, now: &Reading) -> ServiceMinute {
    let counts = now
        .counts
        .since(before.map(|b| b.counts).unwrap_or_default());
    let denied = now
        .denied
        .iter()
        .filter_map(|(network, n)| {
            let was = before
                .and_then(|b| b.denied.iter().find(|(m, _)| m == network))
                .map_or(0, |(_, c)| *c);
            let d = n.checked_sub(was).unwrap_or(*n);
            (d > 0).then(|| (Arc::clone(network), d))
        })
        .collect();
    ServiceMinute {
        name: Arc::clone(&now.name),
        counts,
        denied,
        up: now.up,
        backends: now.backends,
    }
}

impl HttpHistory {
    /// Records a sample at `at` of the services' readings `now`; returns it.
    pub fn record(&self, at: SystemTime, now: Vec<Reading>) -> Sample {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let services = now
            .iter()
            .map(|r| minute(inner.last.get(&r.name), r))
            .collect();
        inner.last = now.into_iter().map(|r| (Arc::clone(&r.name), r)).collect();
        let sample = Sample { at, services };
        inner.samples.push_back(sample.clone());
        while inner.samples.len() > MINUTES {
            inner.samples.pop_front();
        }
        sample
    }

    /// Takes the certificates' readings at `at`: returns the events, and the timeline after
    /// them when there are any (what the file keeps).
    pub fn observe(
        &self,
        at: SystemTime,
        readings: &[CertReading],
    ) -> (Vec<CertEvent>, Option<Timeline>) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let events = inner.timeline.observe(at, readings);
        let after = (!events.is_empty()).then(|| inner.timeline.clone());
        (events, after)
    }

    /// Puts back what the file held at start-up, before any sample of this run.
    pub fn restore(&self, loaded: store::Loaded) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut samples: VecDeque<Sample> = loaded.samples.into();
        samples.extend(inner.samples.drain(..));
        while samples.len() > MINUTES {
            samples.pop_front();
        }
        inner.samples = samples;
        inner.timeline = loaded.timeline;
    }

    /// What each service in `now` counted since the last sample.
    pub fn since_last(&self, now: &[Reading]) -> HashMap<Arc<str>, ServiceMinute> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        now.iter()
            .map(|r| (Arc::clone(&r.name), minute(inner.last.get(&r.name), r)))
            .collect()
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.samples.iter().cloned().collect()
    }

    /// The newest `n` certificate events of `host`, newest first.
    pub fn certificate_events(&self, host: &str, n: usize) -> Vec<CertEvent> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.timeline.of(host, n).into_iter().cloned().collect()
    }

    /// Times the file could not be opened, read or written.
    pub fn write_failures(&self) -> u64 {
        self.write_failures.load(Ordering::Relaxed)
    }
}

/// The readings of every service `proxy` serves now, with its backends' health.
pub fn now(proxy: &labgate_proxy::Proxy) -> Vec<Reading> {
    let state = proxy.state();
    let health = proxy.backends();
    let networks = &state.snapshot.networks;
    state
        .snapshot
        .services
        .iter()
        .map(|svc| {
            let mine = health.iter().filter(|b| b.service == svc.name);
            let (up, all) = mine.fold((0, 0), |(u, a), b| (u + usize::from(b.up), a + 1));
            let by_network = proxy.metrics.denied_by_network(svc.id.index());
            let denied = networks
                .iter()
                .filter_map(|n| {
                    let c = by_network.get(n.id.index()).copied().unwrap_or(0);
                    (c > 0).then(|| (Arc::clone(&n.name), c))
                })
                .collect();
            Reading {
                name: Arc::clone(&svc.name),
                counts: proxy.metrics.service_counts(svc.id.index()),
                denied,
                up,
                backends: all,
            }
        })
        .collect()
}

/// The certificate each service host of `proxy`'s snapshot is served now, and the error of
/// the last ACME order for it (`acme`: the ACME certificates' state).
pub fn certificates_now(
    proxy: &labgate_proxy::Proxy,
    acme: &[labgate_acme::CertStatus],
) -> Vec<CertReading> {
    let state = proxy.state();
    let s = &state.snapshot;
    let served = proxy.certs.current();
    let mut hosts: Vec<&Arc<str>> = s.services.iter().flat_map(|svc| &svc.hosts).collect();
    hosts.sort_unstable();
    hosts.dedup();
    hosts
        .into_iter()
        .map(|host| {
            let served = served
                .get(host)
                .and_then(|k| k.cert.first())
                .and_then(|der| {
                    let info = labgate_acme::verify::info(der).ok()?;
                    Some(Seen {
                        fingerprint: hex(&Sha256::digest(der.as_ref())),
                        issuer: info.issuer,
                        not_before: info.not_before,
                        not_after: info.not_after,
                    })
                });
            let error = match s.certificate_for(host) {
                Coverage::Spec(i) => s.certificates.specs.get(i).and_then(|spec| {
                    let CertSource::Acme { .. } = spec.source else {
                        return None;
                    };
                    acme.iter()
                        .find(|c| {
                            c.names
                                .iter()
                                .map(String::as_str)
                                .eq(spec.names.iter().map(|n| &**n))
                        })
                        .and_then(|c| c.last_error.clone())
                }),
                Coverage::LocalCa | Coverage::Uncovered => None,
            };
            CertReading {
                host: Arc::clone(host),
                served,
                error,
            }
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The history file, opened when first needed and again after a failure.
struct Persist {
    path: PathBuf,
    store: Option<Store>,
}

impl Persist {
    fn store(&mut self) -> Result<&mut Store, store::Error> {
        match &mut self.store {
            Some(s) => Ok(s),
            none => Ok(none.insert(Store::open(&self.path)?)),
        }
    }

    fn load(&mut self, since: SystemTime) -> Result<store::Loaded, store::Error> {
        let r = self.store().and_then(|s| s.load(since));
        if r.is_err() {
            self.store = None;
        }
        r
    }

    fn write(
        &mut self,
        sample: &Sample,
        events: &[CertEvent],
        timeline: Option<&Timeline>,
    ) -> Result<(), store::Error> {
        let empty = Timeline::default();
        let r = self
            .store()
            .and_then(|s| s.write(sample, events, timeline.unwrap_or(&empty)));
        if r.is_err() {
            self.store = None;
        }
        r
    }
}

/// Where the history goes and where its readings come from.
pub struct Sources {
    /// The state directory: the file is [`store::FILE`] in it.
    pub state_dir: PathBuf,
    /// The proxy: counters, backends, certificates served.
    pub proxy: Arc<labgate_proxy::Proxy>,
    /// The ACME manager: the last error of each order.
    pub acme: Arc<labgate_acme::Manager>,
}

/// Reads the file back into `history`, then takes a sample every [`EVERY`] (the first at
/// once) and one when cancelled, each written to the file.
pub async fn run(history: Arc<HttpHistory>, sources: Sources, cancel: CancellationToken) {
    let path = sources.state_dir.join(store::FILE);
    let fresh = || Persist {
        path: path.clone(),
        store: None,
    };
    let mut persist = fresh();
    let since = SystemTime::now()
        .checked_sub(DAY)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let loaded = tokio::task::spawn_blocking(move || {
        let r = persist.load(since);
        (persist, r)
    })
    .await;
    let mut persist = match loaded {
        Ok((p, Ok(loaded))) => {
            history.restore(loaded);
            p
        }
        Ok((p, Err(e))) => {
            failed(&history, &e, false);
            p
        }
        // INVARIANT: reading does not panic; were it to, the history starts afresh.
        Err(_) => fresh(),
    };
    let mut failing = false;
    let mut tick = tokio::time::interval(EVERY);
    loop {
        let stop = tokio::select! {
            _ = tick.tick() => false,
            () = cancel.cancelled() => true,
        };
        let at = SystemTime::now();
        let sample = history.record(at, now(&sources.proxy));
        let readings = certificates_now(&sources.proxy, &sources.acme.status());
        let (events, timeline) = history.observe(at, &readings);
        let mut p = std::mem::replace(&mut persist, fresh());
        let written = tokio::task::spawn_blocking(move || {
            let r = p.write(&sample, &events, timeline.as_ref());
            (p, r)
        })
        .await;
        match written {
            Ok((p, r)) => {
                persist = p;
                match r {
                    Ok(()) if failing => {
                        tracing::info!("the history file is written again");
                        failing = false;
                    }
                    Ok(()) => {}
                    Err(e) => {
                        failed(&history, &e, failing);
                        failing = true;
                    }
                }
            }
            // INVARIANT: writing does not panic; were it to, the file is opened afresh.
            Err(e) => tracing::error!("the history's write failed: {e}"),
        }
        if stop {
            return;
        }
    }
}

/// Counts a failure of the file and says it, with its causes (at warn the first time in a
/// row).
fn failed(history: &HttpHistory, e: &store::Error, again: bool) {
    history.write_failures.fetch_add(1, Ordering::Relaxed);
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    if again {
        tracing::debug!("{text}");
    } else {
        tracing::warn!("{text}; the status page's history is kept in memory only");
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

    fn reading(app: &Arc<str>, c: ServiceCounts, guest: u64, up: usize) -> Reading {
        let denied = if guest > 0 {
            vec![(Arc::from("guest"), guest)]
        } else {
            Vec::new()
        };
        Reading {
            name: Arc::clone(app),
            counts: c,
            denied,
            up,
            backends: 1,
        }
    }

    #[test]
    fn samples_hold_what_each_minute_counted_and_a_day_at_most() {
        let h = HttpHistory::default();
        let app: Arc<str> = Arc::from("app");
        let t = SystemTime::UNIX_EPOCH;
        h.record(t, vec![reading(&app, counts(10, 1, 2), 2, 1)]);
        h.record(t, vec![reading(&app, counts(15, 1, 2), 2, 0)]);
        // A reload gave the slot to a service whose counts are lower: from zero.
        h.record(t, vec![reading(&app, counts(3, 0, 1), 1, 1)]);
        let s = h.samples();
        assert_eq!(s[0].services[0].counts, counts(10, 1, 2));
        assert_eq!(s[0].services[0].denied, [(Arc::from("guest"), 2)]);
        assert_eq!(s[1].services[0].counts, counts(5, 0, 0));
        assert!(s[1].services[0].denied.is_empty(), "no denial that minute");
        assert_eq!((s[1].services[0].up, s[1].services[0].backends), (0, 1));
        assert_eq!(s[2].services[0].counts, counts(3, 0, 1));
        assert_eq!(s[2].services[0].denied, [(Arc::from("guest"), 1)]);
        assert_eq!(s[0].services[0].counts.requests(), 13);
        let pending = h.since_last(&[reading(&app, counts(7, 1, 3), 3, 1)]);
        assert_eq!(pending[&app].counts, counts(4, 1, 2));
        assert_eq!(pending[&app].denied, [(Arc::from("guest"), 2)]);
        for _ in 0..MINUTES {
            h.record(t, Vec::new());
        }
        assert_eq!(h.samples().len(), MINUTES);
    }

    #[test]
    fn what_the_file_held_comes_before_this_runs_samples() {
        let h = HttpHistory::default();
        let app: Arc<str> = Arc::from("app");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(3600);
        h.record(t, vec![reading(&app, counts(1, 0, 0), 0, 1)]);
        let old = Sample {
            at: t - EVERY,
            services: Vec::new(),
        };
        h.restore(store::Loaded {
            samples: vec![old.clone()],
            timeline: Timeline::default(),
        });
        let s = h.samples();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0], old);
    }

    #[test]
    fn hex_is_lowercase_two_digits_a_byte() {
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
    }
}
