//! Backends per service: prebuilt pingora peers, round-robin among healthy ones, passive
//! ejection after connect failures. Kept across reloads for backends that did not change.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use labgate_config::Snapshot;
use labgate_config::route::{Backend, BackendHost, Balance, HealthCheck, Service};
use pingora::upstreams::peer::{HttpPeer, Peer};
use tokio::time::Instant;

/// Consecutive connect failures that eject a backend.
const EJECT_AFTER: u32 = 3;
/// How long an ejected backend is skipped.
const EJECT_FOR: Duration = Duration::from_secs(10);
/// Idle time after which a pooled backend connection is closed.
pub const POOL_IDLE: Duration = Duration::from_secs(60);
/// Idle backend connections kept, over all backends. It must exceed the requests in flight:
/// a burst of HTTP/2 streams ends together, and every connection released past this bound is
/// closed and opened again by the next burst. pingora's default of 128 did that to 38 % of
/// the requests of `h2load -c16 -m16` (256 streams), at twice the CPU per request.
pub const POOL_SIZE: usize = 1024;

/// One backend of one service, with its live state.
#[derive(Debug)]
pub struct BackendState {
    /// The configured backend.
    pub backend: Backend,
    /// Its pingora peer; `None` while a host name is unresolved.
    peer: ArcSwapOption<HttpPeer>,
    /// Requests in flight, counted by [`InFlight`] guards only.
    active: AtomicUsize,
    failures: AtomicU32,
    /// Milliseconds since `epoch` until which it is ejected.
    ejected_until: AtomicU64,
    /// Whether active health checks pass (true until `fall` fail in a row).
    pub healthy: AtomicBool,
    /// Consecutive check results against the current state (fails while up, passes while down).
    streak: AtomicU32,
    /// Milliseconds since `epoch` of the next health check.
    next_check: AtomicU64,
    epoch: Instant,
    settings: PeerSettings,
}

/// Peer options that come from the service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PeerSettings {
    connect_timeout: Duration,
    read_timeout: Duration,
    verify: bool,
    roots: Vec<Arc<[u8]>>,
}

impl BackendState {
    fn new(backend: &Backend, settings: PeerSettings) -> Self {
        let s = Self {
            backend: backend.clone(),
            peer: ArcSwapOption::empty(),
            active: AtomicUsize::new(0),
            failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            streak: AtomicU32::new(0),
            next_check: AtomicU64::new(0),
            epoch: Instant::now(),
            settings,
        };
        if let BackendHost::Ip(ip) = backend.host {
            s.set_address(ip);
        }
        s
    }

    /// Sets the resolved address (control plane: start-up and the background resolver).
    pub fn set_address(&self, ip: IpAddr) {
        let addr = SocketAddr::new(ip, self.backend.port);
        // A backend by address is named by its address: rustls then sends no SNI and checks
        // the certificate's IP addresses. With an empty SNI pingora-core 0.9.1 turns
        // verification off and then fails every handshake (connectors/tls/rustls: an empty
        // server name), so `https://<address>` backends got 502 before.
        let sni = match &self.backend.host {
            BackendHost::Name(n) => n.to_string(),
            BackendHost::Ip(ip) => ip.to_string(),
        };
        let mut peer = HttpPeer::new(addr, self.backend.tls, sni);
        peer.options.connection_timeout = Some(self.settings.connect_timeout);
        peer.options.total_connection_timeout = Some(self.settings.connect_timeout);
        peer.options.read_timeout = Some(self.settings.read_timeout);
        peer.options.idle_timeout = Some(POOL_IDLE);
        peer.options.verify_cert = self.settings.verify;
        peer.options.verify_hostname = self.settings.verify;
        if self.backend.h2c {
            // Without TLS there is no ALPN: HTTP/2 by prior knowledge.
            peer.options.alpn = pingora::protocols::ALPN::H2;
        }
        if !self.settings.roots.is_empty() {
            peer.options.ca = pinned_roots(&self.settings.roots);
            // SECURITY: pooled connections are keyed by the peer's hash, which leaves out its
            // roots: a connection verified against one service's CA must not serve another
            // service's requests to the same address that pins a different one.
            let mut roots = std::hash::DefaultHasher::new();
            self.settings.roots.hash(&mut roots);
            peer.group_key = roots.finish();
        }
        self.peer.store(Some(Arc::new(peer)));
    }

    /// Requests in flight to it.
    pub fn load(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Counts a request in flight (least-connections balancing reads it) until the guard
    /// is dropped: the end of its exchange, or of the pipe an upgrade made of it.
    pub fn in_flight(self: &Arc<Self>) -> InFlight {
        self.active.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// The peer to connect to, if its address is known.
    pub fn peer(&self) -> Option<Arc<HttpPeer>> {
        self.peer.load_full()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether requests may go to it now.
    pub fn available(&self) -> bool {
        self.healthy.load(Ordering::Relaxed) && !self.ejected() && self.peer.load().is_some()
    }

    /// Whether passive checks took it out; the clock is read only while one did.
    fn ejected(&self) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        if until == 0 {
            return false;
        }
        if until > self.now_ms() {
            return true;
        }
        let _ = self
            .ejected_until
            .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed);
        false
    }

    /// Records a connect or protocol failure; ejects it for `EJECT_FOR` (10 s) after `EJECT_AFTER` (3) in a row.
    pub fn failed(&self) {
        if self.failures.fetch_add(1, Ordering::Relaxed) + 1 >= EJECT_AFTER {
            let until = self.now_ms() + u64::try_from(EJECT_FOR.as_millis()).unwrap_or(0);
            self.ejected_until.store(until, Ordering::Relaxed);
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Records a success.
    pub fn succeeded(&self) {
        self.failures.store(0, Ordering::Relaxed);
    }

    /// Whether a health check is due at `now`; if so, the next one is scheduled.
    pub fn check_due(&self, now: Instant, interval: Duration) -> bool {
        let now_ms = u64::try_from(now.saturating_duration_since(self.epoch).as_millis())
            .unwrap_or(u64::MAX);
        let next = self.next_check.load(Ordering::Relaxed);
        let interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        now_ms >= next
            && self
                .next_check
                .compare_exchange(
                    next,
                    now_ms.saturating_add(interval_ms),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// Records a health check result; `true` when the backend changed state.
    pub fn record_check(&self, ok: bool, hc: &HealthCheck) -> bool {
        let up = self.healthy.load(Ordering::Relaxed);
        if ok == up {
            self.streak.store(0, Ordering::Relaxed);
            return false;
        }
        let needed = if up { hc.fall } else { hc.rise };
        if self.streak.fetch_add(1, Ordering::Relaxed) + 1 >= needed {
            self.healthy.store(ok, Ordering::Relaxed);
            self.streak.store(0, Ordering::Relaxed);
            return true;
        }
        false
    }
}

/// A pinned CA list in pingora's form; certificates rustls cannot parse are left out.
fn pinned_roots(roots: &[Arc<[u8]>]) -> Option<Arc<pingora::protocols::tls::CaType>> {
    use pingora::utils::tls::WrappedX509;
    let list: Vec<WrappedX509> = roots
        .iter()
        .filter(|der| {
            // pingora's parser panics on bad DER: only pass what webpki accepts.
            let mut store = rustls::RootCertStore::empty();
            store
                .add(rustls_pki_types::CertificateDer::from(der.to_vec()))
                .is_ok()
        })
        .map(|der| WrappedX509::new(der.to_vec(), pingora::utils::tls::parse_x509))
        .collect();
    (!list.is_empty()).then(|| Arc::from(list.into_boxed_slice()))
}

/// A request in flight to a backend, counted until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<BackendState>);

impl std::ops::Deref for InFlight {
    type Target = Arc<BackendState>;

    fn deref(&self) -> &Arc<BackendState> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A service's backends.
#[derive(Debug)]
pub struct Pool {
    /// Its backends, in configuration order.
    pub backends: Vec<Arc<BackendState>>,
    next: AtomicUsize,
    balance: Balance,
}

impl Pool {
    /// The backend for the next request among available ones (round robin, or fewest in
    /// flight); when none is available, the next one anyway (an ejected backend may be back;
    /// a 502 says so if not).
    pub fn pick(&self) -> Option<&Arc<BackendState>> {
        let n = self.backends.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let available = (0..n)
            .map(|i| &self.backends[(start + i) % n])
            .filter(|b| b.available());
        let chosen = match self.balance {
            Balance::RoundRobin => available.take(1).next(),
            Balance::LeastConnections => available.min_by_key(|b| b.load()),
        };
        chosen.or_else(|| self.backends.get(start % n.max(1)))
    }
}

/// Pools for every service of one snapshot, indexed by service id.
#[derive(Debug, Default)]
pub struct Pools {
    by_service: Vec<Arc<Pool>>,
}

impl Pools {
    /// Builds the pools for a snapshot, reusing the state of backends that did not change.
    pub fn build(snapshot: &Snapshot, previous: &Self) -> Self {
        let mut old: HashMap<(&Backend, &PeerSettings), &Arc<BackendState>> = HashMap::new();
        // Resolved addresses of named backends, kept when their settings change: else a
        // changed timeout would leave them unresolved (502) until the background resolver
        // came round again.
        let mut resolved: HashMap<&Backend, IpAddr> = HashMap::new();
        for b in previous.by_service.iter().flat_map(|p| &p.backends) {
            old.insert((&b.backend, &b.settings), b);
            if let Some(addr) = b.peer().and_then(|p| p.address().as_inet().copied()) {
                resolved.insert(&b.backend, addr.ip());
            }
        }
        let by_service = snapshot
            .services
            .iter()
            .map(|svc| {
                let settings = settings(svc);
                let backends = svc
                    .backends
                    .iter()
                    .map(|b| {
                        old.get(&(b, &settings)).map_or_else(
                            || {
                                let fresh = BackendState::new(b, settings.clone());
                                if let Some(ip) = resolved.get(b) {
                                    fresh.set_address(*ip);
                                }
                                Arc::new(fresh)
                            },
                            |s| Arc::clone(s),
                        )
                    })
                    .collect();
                Arc::new(Pool {
                    backends,
                    next: AtomicUsize::new(0),
                    balance: svc.balance,
                })
            })
            .collect();
        Self { by_service }
    }

    /// The pool of a service.
    pub fn get(&self, index: usize) -> Option<&Arc<Pool>> {
        self.by_service.get(index)
    }

    /// Every backend of every service (the binary resolves the named ones).
    pub fn all(&self) -> impl Iterator<Item = &Arc<BackendState>> {
        self.by_service.iter().flat_map(|p| &p.backends)
    }

    /// The pools in service order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Pool>> {
        self.by_service.iter()
    }
}

fn settings(svc: &Service) -> PeerSettings {
    PeerSettings {
        connect_timeout: svc.connect_timeout,
        read_timeout: svc.timeout,
        verify: !svc.danger_accept_invalid_backend_certs,
        roots: svc.backend_roots.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(timeout: &str) -> Snapshot {
        labgate_config::testing::snapshot(&format!(
            "[[network]]\nname = \"lab\"\ncidrs = [\"10.0.0.0/16\"]\naddresses = [\"10.0.0.2\"]\n\
             [[zone]]\nname = \"lab.test\"\n\
             [[service]]\nhost = \"app.lab.test\"\nbackends = [\"http://nas.lab.test:5000\"]\nallow = [\"lab\"]\ntimeout = \"{timeout}\"\n"
        ))
    }

    #[test]
    fn a_named_backend_keeps_its_address_when_its_settings_change() {
        let first = Pools::build(&snapshot("60s"), &Pools::default());
        let backend = &first.by_service[0].backends[0];
        assert!(
            backend.peer().is_none(),
            "a name is resolved in the background"
        );
        backend.set_address(IpAddr::from([10, 0, 20, 5]));
        let second = Pools::build(&snapshot("5s"), &first);
        let kept = &second.by_service[0].backends[0];
        assert!(!Arc::ptr_eq(backend, kept), "new settings make a new state");
        let addr = kept.peer().and_then(|p| p.address().as_inet().copied());
        assert_eq!(addr, Some("10.0.20.5:5000".parse().expect("addr")));
    }
}
