//! Keeps every ACME certificate of the snapshot issued and renewed: one task per name set,
//! certificates on disk served at once, renewal by ACME Renewal Information (RFC 9773) when
//! the directory offers it, else when a third of the lifetime remains, with jitter; failures
//! back off exponentially up to a bound. `renewal` decides both; this fetches the CA's window
//! and performs them. A renewal never interrupts serving: the old certificate stays until
//! the new one is verified and stored.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use instant_acme::{Account, CertificateIdentifier};
use labgate_config::Snapshot;
use labgate_config::pair::Role;
use labgate_config::settings::{
    AcmeSettings, CertSource, DnsProvider as ProviderConfig, ProviderKind,
};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::cloudflare::Cloudflare;
use crate::error::report;
use crate::http::AcmeHttp;
use crate::metrics::Metrics;
use crate::order::{self, PendingCleanups, Request};
use crate::pair::{PairJob, Seen, Step};
use crate::problem::ProblemType;
use crate::propagation::{Authorities, Lookup};
use crate::provider::DnsProvider;
use crate::renewal::{self, Window};
use crate::rfc2136::Rfc2136;
use crate::status::CertStatus;
use crate::store::{self, Stored};
use crate::verify::chain;
use crate::{Error, account};

/// Longest one issuance may take, propagation included.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest wait for challenge values to reach the zone's servers.
const PROPAGATION_TIMEOUT: Duration = Duration::from_secs(180);

/// What labgate's own DNS and upstreams lend the manager.
pub struct Helpers {
    /// The `builtin` provider: labgate's DNS serving the challenge values.
    pub builtin: Option<Arc<dyn DnsProvider>>,
    /// Lookups through the upstreams, to find a zone's authoritative servers.
    pub lookup: Option<Arc<dyn Lookup>>,
    /// labgate's own HTTP client, for the ACME server and the DNS providers' APIs.
    pub client: labgate_outbound::Client,
    /// This machine's address in `[pair] nodes`, when given (`--node`); else the one of the
    /// two it has.
    pub node: Option<IpAddr>,
}

/// Everything that makes one certificate's job: a change of any part starts a new job.
#[derive(Debug, Clone, PartialEq)]
struct Job {
    names: Vec<String>,
    provider: ProviderConfig,
    settings: AcmeSettings,
    propagation: Vec<SocketAddr>,
    pair: Option<PairJob>,
}

struct Entry {
    job: Job,
    status: CertStatus,
    current: Option<Arc<Stored>>,
    cancel: CancellationToken,
}

/// The certificates' keeper.
pub struct Manager {
    state_dir: PathBuf,
    metrics: Arc<Metrics>,
    helpers: Helpers,
    entries: Mutex<BTreeMap<Vec<String>, Entry>>,
    /// Bumped whenever a certificate is stored: the proxy's store rebuilds.
    changed: watch::Sender<u64>,
    /// The account, by directory and contact, made once.
    account: tokio::sync::Mutex<Option<(AcmeSettings, Account)>>,
    /// Challenge removals of orders dropped midway, which new orders wait for.
    cleanups: Arc<PendingCleanups>,
    /// The jobs' tasks, one per name set, which [`Manager::shutdown`] cancels and awaits.
    jobs: Mutex<JoinSet<()>>,
    /// This machine's role in the pair of these nodes, once found: an address briefly gone
    /// (a DHCP renewal, a link flap) at a later reload does not change it.
    role: Mutex<Option<([IpAddr; 2], Role)>>,
}

impl Manager {
    /// A manager keeping its state under `state_dir`.
    pub fn new(state_dir: PathBuf, metrics: Arc<Metrics>, helpers: Helpers) -> Arc<Self> {
        Arc::new(Self {
            state_dir,
            metrics,
            helpers,
            entries: Mutex::new(BTreeMap::new()),
            changed: watch::Sender::new(0),
            account: tokio::sync::Mutex::new(None),
            cleanups: Arc::default(),
            jobs: Mutex::default(),
            role: Mutex::default(),
        })
    }

    /// Stops every job (an order midway is dropped, and its challenge values removed) and
    /// returns once the jobs and those removals have ended. Bound it: a provider's removal
    /// may wait for its timeout.
    ///
    /// # Cancel safety
    /// Dropping the future leaves the jobs cancelled and the removals running.
    pub async fn shutdown(&self) {
        if let Ok(entries) = self.entries.lock() {
            for e in entries.values() {
                e.cancel.cancel();
            }
        }
        let mut jobs =
            std::mem::take(&mut *self.jobs.lock().unwrap_or_else(PoisonError::into_inner));
        while jobs.join_next().await.is_some() {}
        self.cleanups.wait().await;
    }

    /// Changes whenever a new certificate is ready to serve.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The verified certificate for this name set, if there is one.
    pub fn current(&self, names: &[Arc<str>]) -> Option<Arc<Stored>> {
        let key: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        self.entries.lock().ok()?.get(&key)?.current.clone()
    }

    /// This machine's role in the configured pair, once found.
    pub fn role(&self) -> Option<Role> {
        let known = self.role.lock().unwrap_or_else(PoisonError::into_inner);
        known.map(|(_, role)| role)
    }

    /// Every managed certificate's state.
    pub fn status(&self) -> Vec<CertStatus> {
        self.entries
            .lock()
            .map(|e| e.values().map(|e| e.status.clone()).collect())
            .unwrap_or_default()
    }

    /// The manager's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Brings the jobs in line with `s`: unchanged certificates keep their task, new or
    /// changed ones get one (certificates on disk are loaded first, and served at once),
    /// removed ones stop. Needs a tokio runtime.
    pub fn reconcile(self: &Arc<Self>, s: &Snapshot) {
        let mut wanted = BTreeMap::new();
        let pair = s.pair.as_ref().and_then(|p| self.pair_job(p, s));
        if let Some(settings) = &s.acme {
            for spec in &s.certificates.specs {
                let CertSource::Acme { provider, .. } = spec.source else {
                    continue;
                };
                let Some(provider) = s.providers.get(provider) else {
                    continue;
                };
                let names: Vec<String> = spec.names.iter().map(|n| n.to_string()).collect();
                wanted.insert(
                    names.clone(),
                    Job {
                        names,
                        provider: provider.clone(),
                        settings: settings.clone(),
                        propagation: settings.propagation_servers.clone(),
                        pair: pair.clone(),
                    },
                );
            }
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        entries.retain(|names, e| {
            let keep = wanted.get(names) == Some(&e.job);
            if !keep {
                e.cancel.cancel();
            }
            keep
        });
        let mut loaded = false;
        for (names, job) in wanted {
            if entries.contains_key(&names) {
                continue;
            }
            let current = store::load(
                &store::dir(&self.state_dir, &names),
                &names,
                &store::origin(&job.settings),
                SystemTime::now(),
            )
            .map(Arc::new);
            if current.is_some() {
                info!("{}: serving the ACME certificate on disk", names.join(", "));
                loaded = true;
            }
            let cancel = CancellationToken::new();
            let status = CertStatus {
                names: names.clone(),
                provider: job.provider.name.to_string(),
                issuer: current.as_ref().map(|c| c.info.issuer.clone()),
                not_after: current.as_ref().map(|c| c.info.not_after),
                next_renewal: None,
                last_attempt: None,
                last_error: None,
                failures: 0,
            };
            entries.insert(
                names.clone(),
                Entry {
                    job: job.clone(),
                    status,
                    current,
                    cancel: cancel.clone(),
                },
            );
            let manager = Arc::clone(self);
            // A panic elsewhere cannot leave the set half-changed: keep using it.
            let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
            while jobs.try_join_next().is_some() {}
            jobs.spawn(async move {
                tokio::select! {
                    () = manager.keep(job) => {}
                    () = cancel.cancelled() => {}
                }
            });
        }
        drop(entries);
        if loaded {
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// One certificate's life: renew when due, retry with backoff on failure.
    async fn keep(self: Arc<Self>, job: Job) {
        loop {
            let due = self.plan(&job).await;
            self.update(&job.names, |s| s.next_renewal = Some(due));
            if let Ok(wait) = due.duration_since(SystemTime::now()) {
                tokio::time::sleep(wait).await;
                // ARI windows move: look again rather than renew on a stale plan.
                if self.plan(&job).await > SystemTime::now() {
                    continue;
                }
            }
            if let Some(pair) = &job.pair
                && self.pair_steps(&job, pair).await == Step::Adopt
            {
                continue;
            }
            let started = SystemTime::now();
            self.update(&job.names, |s| s.last_attempt = Some(started));
            let result = match tokio::time::timeout(ATTEMPT_TIMEOUT, self.attempt(&job)).await {
                Ok(r) => r,
                Err(_) => Err(Error::OrderTimeout(ATTEMPT_TIMEOUT)),
            };
            self.metrics.issuance(result.is_ok());
            match result {
                Ok(cert) => {
                    info!(
                        "{}: certificate issued by {}, valid until {}",
                        job.names.join(", "),
                        cert.info.issuer,
                        humantime::format_rfc3339_seconds(cert.info.not_after)
                    );
                    self.serve(&job.names, cert);
                }
                Err(e) => {
                    // The error with its causes: what the status and the log show.
                    let shown = report(&e);
                    let mut failures = 0;
                    self.update(&job.names, |s| {
                        s.failures += 1;
                        failures = s.failures;
                        s.last_error = Some(shown.clone());
                    });
                    // The clock's nanoseconds: jobs that failed together spread out.
                    let seed = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| u64::from(d.subsec_nanos()) ^ d.as_secs());
                    let wait = renewal::backoff(failures, seed);
                    warn!(
                        "{}: certificate order failed: {shown}; next attempt in {}",
                        job.names.join(", "),
                        humantime::format_duration(Duration::from_secs(wait.as_secs()))
                    );
                    let next = SystemTime::now() + wait;
                    self.update(&job.names, |s| s.next_renewal = Some(next));
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Makes `cert` the one served for `names`.
    fn serve(&self, names: &[String], cert: Stored) {
        let cert = Arc::new(cert);
        if let Ok(mut entries) = self.entries.lock()
            && let Some(e) = entries.get_mut(names)
        {
            e.current = Some(Arc::clone(&cert));
            e.status.issuer = Some(cert.info.issuer.clone());
            e.status.not_after = Some(cert.info.not_after);
            e.status.last_error = None;
            e.status.failures = 0;
        }
        self.changed.send_modify(|n| *n += 1);
    }

    /// A pair's part in the jobs of snapshot `s`, `None` (logged) when this machine is not
    /// one of the nodes or the peer has no listener to look at.
    fn pair_job(&self, p: &labgate_config::pair::PairSettings, s: &Snapshot) -> Option<PairJob> {
        let mut known = self.role.lock().unwrap_or_else(PoisonError::into_inner);
        let role = match *known {
            Some((nodes, role)) if nodes == p.nodes => role,
            _ => {
                let found = labgate_config::pair::this_node(
                    p.nodes,
                    self.helpers.node,
                    crate::pair::is_local,
                );
                match found {
                    Ok(role) => known.insert((p.nodes, role)).1,
                    Err(e) => {
                        error!("[pair]: {e}; certificates are ordered as if alone");
                        return None;
                    }
                }
            }
        };
        drop(known);
        let (Some(https), Some(dns)) = (s.listen.https.first(), s.listen.dns.first()) else {
            error!("[pair] needs `[listen] https` and `dns`; certificates are ordered as if alone");
            return None;
        };
        Some(PairJob {
            role,
            settings: p.clone(),
            peer_https: SocketAddr::new(role.peer, https.port()),
            peer_dns: SocketAddr::new(role.peer, dns.port()),
            zones: s.zones.iter().map(|z| z.name.clone().into()).collect(),
        })
    }

    /// In a pair, what to do about a certificate now due: looks at the peer every
    /// [`crate::pair::PEER_POLL`] until [`crate::pair::decide`] says to adopt its chain (done
    /// here) or to order. The wait is timed from now, and the key read once.
    async fn pair_steps(&self, job: &Job, pair: &PairJob) -> Step {
        // Ordering reads it again and fails with this error, shown and retried.
        let Ok(key) = pair.key() else {
            return Step::Order;
        };
        let since = SystemTime::now();
        let mut first_look = true;
        loop {
            match self.pair_step(job, pair, &key, since, first_look).await {
                Step::Wait(wait) => tokio::time::sleep(wait).await,
                step => return step,
            }
            first_look = false;
        }
    }

    /// One look at the peer for [`Manager::pair_steps`], waiting since `since` (`first_look`:
    /// the first look of this wait, which logs what it found).
    async fn pair_step(
        &self,
        job: &Job,
        pair: &PairJob,
        key: &rcgen::KeyPair,
        since: SystemTime,
        first_look: bool,
    ) -> Step {
        let names = job.names.join(", ");
        let peer = match pair.peer_chain(&job.names, key).await {
            Seen::Usable(cert) => Some(cert),
            Seen::OtherKey => {
                if first_look {
                    warn!(
                        "{names}: the peer {} serves a certificate for another key: give both nodes the same `[pair] key_file` (or the peer's certificate predates `[pair]`: it takes this node's once it renews)",
                        pair.role.peer
                    );
                }
                None
            }
            Seen::Nothing => None,
        };
        let own = self.current_of(&job.names);
        let waited = SystemTime::now().duration_since(since).unwrap_or_default();
        let step = crate::pair::decide(
            own.as_ref().map(|c| &c.info),
            peer.as_ref().map(|c| &c.info),
            pair.role.first,
            waited,
            pair.settings.takeover,
        );
        match (step, peer) {
            (Step::Adopt, Some(cert)) => {
                let saved = store::save(
                    &store::dir(&self.state_dir, &job.names),
                    &cert,
                    &store::origin(&job.settings),
                );
                if let Err(e) = saved {
                    warn!("{names}: cannot keep the peer's certificate: {e}");
                }
                info!(
                    "{names}: serving the certificate of the peer {}, valid until {}",
                    pair.role.peer,
                    humantime::format_rfc3339_seconds(cert.info.not_after)
                );
                self.metrics.adopted();
                self.serve(&job.names, cert);
            }
            (Step::Wait(_), _) if first_look => info!(
                "{names}: waiting up to {} for the first node {} to order",
                humantime::format_duration(pair.settings.takeover),
                pair.role.peer
            ),
            (Step::Order, _) if !pair.role.first => info!(
                "{names}: the first node {} served no new certificate; ordering",
                pair.role.peer
            ),
            _ => {}
        }
        step
    }

    /// When the served certificate should be renewed ([`renewal::renewal_due`]), with the
    /// CA's window fetched first when it offers ARI.
    async fn plan(&self, job: &Job) -> SystemTime {
        let current = self.current_of(&job.names);
        let window = match &current {
            Some(c) => self.renewal_window(job, c).await,
            None => None,
        };
        renewal::renewal_due(
            current.as_ref().map(|c| &c.info),
            window,
            SystemTime::now(),
            current
                .as_ref()
                .map_or(0, |c| renewal::seed(c.chain_pem.as_bytes())),
        )
    }

    /// The CA's suggested renewal window for `current` (RFC 9773), if it offers one.
    async fn renewal_window(&self, job: &Job, current: &Stored) -> Option<Window> {
        let leaf = chain(&current.chain_pem).ok()?.into_iter().next()?;
        let id = CertificateIdentifier::try_from(&leaf).ok()?;
        let account = self.account(&job.settings).await.ok()?;
        let (info, _) = account.renewal_info(&id).await.ok()?;
        Some(Window {
            start: info.suggested_window.start.into(),
            end: info.suggested_window.end.into(),
        })
    }

    async fn attempt(&self, job: &Job) -> Result<Stored, Error> {
        let mut provider = self.provider(&job.provider)?;
        let key = job.pair.as_ref().map(PairJob::key).transpose()?;
        if let (Some(pair), ProviderKind::Builtin) = (&job.pair, &job.provider.kind) {
            provider = Arc::new(pair.with_peer(provider));
        }
        let authorities = match (&job.provider.kind, job.propagation.is_empty()) {
            // labgate's own DNS serves the values the moment they are published.
            (ProviderKind::Builtin, _) => None,
            (_, false) => Some(Authorities::Fixed(job.propagation.clone())),
            (_, true) => self.helpers.lookup.clone().map(Authorities::Discover),
        };
        let current = self.current_of(&job.names);
        let replaces = current
            .as_ref()
            .and_then(|c| chain(&c.chain_pem).ok()?.into_iter().next())
            .and_then(|leaf| {
                CertificateIdentifier::try_from(&leaf)
                    .ok()
                    .map(|id| id.into_owned())
            });
        let mut account = self.account(&job.settings).await?;
        self.check_profile(&account, &job.settings)?;
        let request = |replaces| Request {
            names: &job.names,
            key_type: job.settings.key_type,
            key: key.as_ref(),
            profile: job.settings.profile.as_deref(),
            replaces,
            provider: &provider,
            authorities: authorities.as_ref(),
            propagation_timeout: PROPAGATION_TIMEOUT,
            pending: &self.cleanups,
        };
        let mut result = order::issue(&account, &request(replaces)).await;
        if matches!(&result, Err(Error::Refused(p)) if p.is(&ProblemType::AccountDoesNotExist)) {
            // The CA forgot the account (a reset, a test server's restart): make a new one.
            account::forget(&self.state_dir, &job.settings);
            *self.account.lock().await = None;
            account = self.account(&job.settings).await?;
            result = order::issue(&account, &request(None)).await;
        }
        let cert = result?;
        store::save(
            &store::dir(&self.state_dir, &job.names),
            &cert,
            &store::origin(&job.settings),
        )?;
        Ok(cert)
    }

    fn check_profile(&self, account: &Account, settings: &AcmeSettings) -> Result<(), Error> {
        let Some(wanted) = settings.profile.as_deref() else {
            return Ok(());
        };
        let offered: Vec<&str> = account.profiles().map(|p| p.name).collect();
        if offered.contains(&wanted) {
            return Ok(());
        }
        Err(Error::ProfileNotOffered {
            wanted: wanted.to_owned(),
            directory: settings.directory.to_string(),
            offered: offered.into_iter().map(str::to_owned).collect(),
        })
    }

    async fn account(&self, settings: &AcmeSettings) -> Result<Account, Error> {
        let mut cached = self.account.lock().await;
        if let Some((s, a)) = cached.as_ref()
            && s == settings
        {
            return Ok(a.clone());
        }
        let roots = match &settings.directory_ca {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| Error::Io {
                    action: "read",
                    path: path.clone(),
                    source: e,
                })?;
                chain(&String::from_utf8_lossy(&pem))?
            }
            None => Vec::new(),
        };
        let http = AcmeHttp::new(&self.helpers.client, &roots, Arc::clone(&self.metrics))?;
        let account = account::load_or_create(&self.state_dir, settings, &http).await?;
        *cached = Some((settings.clone(), account.clone()));
        Ok(account)
    }

    fn provider(&self, p: &ProviderConfig) -> Result<Arc<dyn DnsProvider>, Error> {
        match &p.kind {
            ProviderKind::Rfc2136 {
                server,
                key_name,
                algorithm,
                secret_file,
            } => Ok(Arc::new(Rfc2136::new(
                *server,
                key_name.clone(),
                algorithm,
                secret_file,
            )?)),
            ProviderKind::Builtin => self.helpers.builtin.clone().ok_or_else(|| Error::Provider {
                provider: "builtin".into(),
                what: "labgate's DNS is not running".into(),
            }),
            ProviderKind::Cloudflare {
                token_file,
                api_url,
            } => Ok(Arc::new(Cloudflare::new(
                api_url.clone(),
                token_file.clone(),
                self.helpers.client.clone(),
            )?)),
        }
    }

    fn current_of(&self, names: &[String]) -> Option<Arc<Stored>> {
        self.entries.lock().ok()?.get(names)?.current.clone()
    }

    fn update(&self, names: &[String], f: impl FnOnce(&mut CertStatus)) {
        if let Ok(mut entries) = self.entries.lock()
            && let Some(e) = entries.get_mut(names)
        {
            f(&mut e.status);
        }
    }
}
