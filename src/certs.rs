//! The certificates the proxy serves, built from the snapshot's sources: ACME certificates
//! (from the manager, once issued), PEM files (re-read when they change; a broken file keeps
//! the last good certificate) and the local CA (a leaf per routed name that has no other
//! certificate yet). Control plane only: reads files, signs keys.
//!
//! [`Certificates`] is the subsystem the reload task publishes each snapshot to, like the proxy
//! and DNS; [`follow_issuance`] rebuilds the same map when ACME issues a certificate or a PEM
//! file changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use labgate_acme::Manager;
use labgate_acme::local_ca::{LEAF_LIFETIME, LocalCa};
use labgate_config::settings::{CertSource, Coverage};
use labgate_config::{Publish, Snapshot};
use labgate_proxy::certs::certified_key;
use labgate_proxy::{CertMap, CertStore};
use pingora::tls::sign::CertifiedKey;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How often certificate files are looked at for changes: nothing tells labgate when an
/// operator (or certbot) replaces a PEM file, so a change is found by its modification time.
const FILE_CHECK: Duration = Duration::from_secs(5);

/// The certificates the proxy and DNS over TLS serve, as a subsystem that takes snapshots.
pub struct Certificates {
    store: Arc<CertStore>,
    /// The builder and the snapshot last published to it: one lock, so a rebuild on a file
    /// change never serves an older snapshot's names after a reload published a newer one.
    state: Mutex<(CertBuilder, Arc<Snapshot>)>,
}

impl Certificates {
    /// Builds the map for the first snapshot (blocking) and serves it through `store`.
    pub fn new(mut builder: CertBuilder, store: Arc<CertStore>, first: Arc<Snapshot>) -> Self {
        store.publish(builder.build(&first));
        Self {
            store,
            state: Mutex::new((builder, first)),
        }
    }

    /// Where the map is served from (the proxy's and DNS over TLS's resolver).
    pub fn store(&self) -> &Arc<CertStore> {
        &self.store
    }

    /// Serves the certificates `manager` issues, from a rebuild now on (blocking).
    pub fn with_acme(&self, manager: Arc<Manager>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.0.with_acme(manager);
        let (builder, snapshot) = &mut *state;
        self.store.publish(builder.build(snapshot));
    }

    /// Builds the map again for the snapshot last published (blocking): an ACME certificate
    /// was issued or a certificate file may have changed.
    pub fn rebuild(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (builder, snapshot) = &mut *state;
        self.store.publish(builder.build(snapshot));
    }
}

impl Publish for Certificates {
    fn name(&self) -> &'static str {
        "certificates"
    }

    /// Builds the map for `snapshot` (reads files, signs local-CA leaves) and serves it with
    /// one swap.
    fn publish(&self, snapshot: Arc<Snapshot>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.1 = snapshot;
        let (builder, snapshot) = &mut *state;
        self.store.publish(builder.build(snapshot));
    }
}

/// Rebuilds the certificates when the ACME manager issues one (`issued` changes) and every
/// 5 s, for PEM files changed behind labgate's back, until cancelled. A new
/// snapshot needs no trigger here: the reload task publishes it to [`Certificates`].
pub async fn follow_issuance(
    certs: Arc<Certificates>,
    mut issued: tokio::sync::watch::Receiver<u64>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(FILE_CHECK);
    tick.tick().await;
    loop {
        tokio::select! {
            changed = issued.changed() => if changed.is_err() { return },
            _ = tick.tick() => {}
            () = cancel.cancelled() => return,
        }
        let certs = Arc::clone(&certs);
        let _ = tokio::task::spawn_blocking(move || certs.rebuild()).await;
    }
}

/// A local-CA leaf is issued again once this much of its life is gone (a month before it
/// expires), so that a labgate that runs for months never serves an expired one.
const LEAF_RENEW_AFTER: time::Duration = LEAF_LIFETIME.saturating_sub(time::Duration::days(30));

/// Certificate files that failed to load (counted for `/metrics`).
pub static LOAD_FAILURES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A PEM pair as last read.
struct Loaded {
    stamp: (Option<SystemTime>, Option<SystemTime>),
    key: Option<Arc<CertifiedKey>>,
}

/// Builds certificate maps, keeping what it loaded or issued between builds.
pub struct CertBuilder {
    /// Where the local CA lives: made there when `tls.local_ca` is first on.
    state_dir: PathBuf,
    /// The local CA, once loaded or made; nothing of it exists while `tls.local_ca` is off.
    ca: Option<Arc<LocalCa>>,
    acme: Option<Arc<Manager>>,
    /// Local-CA leaves by name, with when they were issued.
    leaves: HashMap<String, (OffsetDateTime, Arc<CertifiedKey>)>,
    files: HashMap<(PathBuf, PathBuf), Loaded>,
    /// ACME certificates as last converted, by name set: the chain and its key.
    issued: HashMap<Vec<Arc<str>>, (String, Arc<CertifiedKey>)>,
}

impl CertBuilder {
    /// A builder for certificates under `state_dir`, with the local CA if it is on (else it
    /// is loaded or made there by the first build that has `tls.local_ca` on).
    pub fn new(state_dir: PathBuf, ca: Option<Arc<LocalCa>>) -> Self {
        Self {
            state_dir,
            ca,
            acme: None,
            leaves: HashMap::new(),
            files: HashMap::new(),
            issued: HashMap::new(),
        }
    }

    /// Serves the certificates `manager` issues for ACME name sets.
    pub fn with_acme(&mut self, manager: Arc<Manager>) {
        self.acme = Some(manager);
    }

    /// The map for a snapshot (blocking: reads files and signs keys). What serves which name
    /// is [`Snapshot::certificate_plan`]'s to say; this loads and signs what it names.
    pub fn build(&mut self, s: &Snapshot) -> CertMap {
        let mut map = CertMap::default();
        let mut ready = Vec::with_capacity(s.certificates.specs.len());
        for spec in &s.certificates.specs {
            let key = match &spec.source {
                CertSource::Files { cert, key } => self.file(cert, key),
                CertSource::Acme { .. } => self.acme_key(&spec.names),
            };
            if let Some(k) = &key {
                map.insert(&spec.names, k);
            }
            ready.push(key.is_some());
        }
        if s.certificates.local_ca && self.local_ca().is_some() {
            let now = OffsetDateTime::now_utc();
            for name in s.certificate_plan(|i| ready[i]) {
                if name.cover == Coverage::LocalCa
                    && let Some(k) = self.leaf(name.name, name.acme_pending, now)
                {
                    map.insert(&[Arc::from(name.name)], &k);
                }
            }
        }
        if let Some(k) = s
            .certificates
            .default_name
            .as_deref()
            .and_then(|d| map.get(d).cloned())
        {
            map.set_default(k);
        }
        map
    }

    /// The local CA, loaded or made on first use (a reload that turns `tls.local_ca` on);
    /// `None`, with a warning, when it cannot be.
    fn local_ca(&mut self) -> Option<Arc<LocalCa>> {
        if self.ca.is_none() {
            match LocalCa::load_or_create(&self.state_dir) {
                Ok(ca) => self.ca = Some(Arc::new(ca)),
                Err(e) => warn!("cannot set up the local CA: {e}; its names have no certificate"),
            }
        }
        self.ca.clone()
    }

    /// The manager's certificate for an ACME name set, converted once per issuance.
    fn acme_key(&mut self, names: &[Arc<str>]) -> Option<Arc<CertifiedKey>> {
        let cert = self.acme.as_ref()?.current(names)?;
        if let Some((chain, k)) = self.issued.get(names)
            && *chain == cert.chain_pem
        {
            return Some(Arc::clone(k));
        }
        let key = certified_key(cert.chain_pem.as_bytes(), cert.key_pem.as_bytes())
            .map_err(|e| {
                let e = anyhow::Error::new(e);
                warn!("ACME certificate for {} unusable: {e:#}", names.join(", "));
            })
            .ok()?;
        let key = Arc::new(key);
        self.issued
            .insert(names.to_vec(), (cert.chain_pem.clone(), Arc::clone(&key)));
        Some(key)
    }

    /// A local-CA leaf for `host`, issued again when it nears its end; `waiting` when an
    /// ACME certificate will replace it.
    fn leaf(
        &mut self,
        host: &str,
        waiting: bool,
        now: OffsetDateTime,
    ) -> Option<Arc<CertifiedKey>> {
        if let Some((at, k)) = self.leaves.get(host)
            && now - *at < LEAF_RENEW_AFTER
        {
            return Some(Arc::clone(k));
        }
        let issued = self
            .local_ca()?
            .issue(&[host.to_owned()], now)
            .map_err(|e| warn!("cannot issue a local-CA certificate for {host}: {e}"))
            .ok()?;
        let key = certified_key(issued.chain_pem.as_bytes(), issued.key_pem.as_bytes())
            .map_err(|e| {
                let e = anyhow::Error::new(e);
                warn!("local-CA certificate for {host} unusable: {e:#}");
            })
            .ok()?;
        if waiting {
            info!(
                "{host}: no ACME certificate yet; serving one from labgate's local CA until it is issued"
            );
        } else {
            info!("{host}: serving a certificate from labgate's local CA");
        }
        let key = Arc::new(key);
        self.leaves.insert(host.to_owned(), (now, Arc::clone(&key)));
        Some(key)
    }

    fn file(&mut self, cert: &Path, key: &Path) -> Option<Arc<CertifiedKey>> {
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let stamp = (mtime(cert), mtime(key));
        let entry = self
            .files
            .entry((cert.to_owned(), key.to_owned()))
            .or_insert(Loaded {
                stamp: (None, None),
                key: None,
            });
        if entry.key.is_some() && entry.stamp == stamp {
            return entry.key.clone();
        }
        entry.stamp = stamp;
        let loaded = std::fs::read(cert)
            .and_then(|c| std::fs::read(key).map(|k| (c, k)))
            .map_err(|e| e.to_string())
            .and_then(|(c, k)| {
                certified_key(&c, &k).map_err(|e| format!("{:#}", anyhow::Error::new(e)))
            });
        match loaded {
            Ok(k) => {
                info!("loaded certificate {}", cert.display());
                entry.key = Some(Arc::new(k));
            }
            Err(e) => {
                LOAD_FAILURES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let then = if entry.key.is_some() {
                    "the previous certificate keeps serving"
                } else {
                    "its names have no certificate"
                };
                warn!(
                    "certificate {} (key {}): {e}; {then}",
                    cert.display(),
                    key.display()
                );
            }
        }
        entry.key.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot whose one service is `host`, served from the local CA.
    fn routing(host: &str) -> Arc<Snapshot> {
        Arc::new(labgate_config::testing::snapshot(&format!(
            "[[network]]\nname = \"lan\"\ncidrs = [\"10.1.0.0/16\"]\naddresses = [\"10.1.0.2\"]\n\n\
             [[zone]]\nname = \"lab.test\"\n\n\
             [[service]]\nhost = \"{host}\"\nbackends = [\"http://10.1.0.9:8080\"]\n\
             allow = [\"lan\"]\n"
        )))
    }

    #[test]
    fn a_rebuild_serves_the_snapshot_published_last() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(CertStore::default());
        let builder = CertBuilder::new(dir.path().to_owned(), None);
        let certs = Certificates::new(builder, Arc::clone(&store), routing("a.lab.test"));
        // (what happens, name the map must cover, name it must not)
        let steps: [(&dyn Fn(), &str, &str); 3] = [
            (&|| {}, "a.lab.test", "b.lab.test"),
            (
                &|| certs.publish(routing("b.lab.test")),
                "b.lab.test",
                "a.lab.test",
            ),
            // A file change or an ACME issuance after the reload: still the new names.
            (&|| certs.rebuild(), "b.lab.test", "a.lab.test"),
        ];
        for (i, (step, covered, gone)) in steps.into_iter().enumerate() {
            step();
            let map = store.current();
            assert!(map.covers(covered), "step {i}: {covered} has a certificate");
            assert!(!map.covers(gone), "step {i}: {gone} has none");
        }
    }

    #[test]
    fn local_ca_leaves_are_issued_again_a_month_before_they_expire() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut certs = CertBuilder::new(dir.path().to_owned(), None);
        let t0 = OffsetDateTime::now_utc();
        let first = certs.leaf("app.lab.test", false, t0).expect("issued");
        let later = certs
            .leaf("app.lab.test", false, t0 + time::Duration::days(59))
            .expect("kept");
        assert!(Arc::ptr_eq(&first, &later), "a young leaf is kept");
        let renewed = certs
            .leaf("app.lab.test", false, t0 + time::Duration::days(61))
            .expect("renewed");
        assert!(
            !Arc::ptr_eq(&first, &renewed),
            "a leaf with 29 days left is replaced"
        );
        assert!(Arc::ptr_eq(
            &renewed,
            &certs
                .leaf("app.lab.test", false, t0 + time::Duration::days(62))
                .expect("kept")
        ));
    }
}
