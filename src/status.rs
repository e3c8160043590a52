//! Shared runtime state: the published snapshot, the reload history and the counters that
//! `/config` and `/metrics` show.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use labgate_config::{Publish, Snapshot};
use serde::Serialize;

/// Result of one reload attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReloadResult {
    /// The first load at start-up.
    Initial,
    /// A new snapshot was published.
    Success,
    /// The sources did not change; nothing was published.
    Unchanged,
    /// The configuration was rejected; the old snapshot keeps serving.
    Failure,
}

impl ReloadResult {
    fn label(self) -> &'static str {
        match self {
            Self::Initial => "initial",
            Self::Success => "success",
            Self::Unchanged => "unchanged",
            Self::Failure => "failure",
        }
    }
}

/// What one reload did, as `/config` and `POST /reload` report it.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    /// Outcome.
    pub result: ReloadResult,
    /// Unix time of the attempt.
    pub at_unix: u64,
    /// Generation serving after the attempt.
    pub generation: u64,
    /// Content hash serving after the attempt.
    pub hash: String,
    /// One-line diff when a snapshot was published.
    pub diff: Option<String>,
    /// Every error, when rejected.
    pub errors: Vec<String>,
    /// Whether restart-only settings changed and wait for a restart.
    pub restart_required: bool,
}

/// Everything the control plane shares. Request paths only `load()` the snapshot.
pub struct Shared {
    /// The published snapshot (C1: one swap for the whole runtime configuration), shared
    /// with the DNS server.
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// Whether start-up finished (listeners bound, first snapshot published).
    pub ready: AtomicBool,
    reloads: [AtomicU64; 4],
    last_success_unix: AtomicU64,
    last: Mutex<ReloadReport>,
    /// DNS: the state it serves (built and published with each snapshot) and its counters.
    pub dns: labgate_dns::Dns,
    /// Blocklist downloads: succeeded, failed.
    pub list_fetches: [AtomicU64; 2],
    /// The generation last published, for the tasks that act on a new snapshot (ACME,
    /// blocklists, backends, access keys, the watch on blocklist directories).
    pub published: tokio::sync::watch::Sender<u64>,
    /// The proxy: its state and its metrics.
    pub proxy: Arc<labgate_proxy::Proxy>,
    /// The DNS query log.
    pub querylog: Arc<labgate_querylog::QueryLog>,
    /// The dnstap stream.
    pub dnstap: Arc<labgate_dnstap::Dnstap>,
    /// The last HTTP requests answered with a 4xx status (from the access log).
    pub refused: Arc<labgate_proxy::access::Refused>,
    /// The proxy's last 24 hours by minute, and the certificates' timeline.
    pub http_history: Arc<crate::history::HttpHistory>,
    /// The data plane's self-check (`/readyz`, systemd's watchdog).
    pub health: Arc<crate::probe::Health>,
    /// The subsystems each new snapshot is published to, in this order, before it becomes
    /// visible anywhere else (so they serve it no later than `/config` shows it).
    subsystems: [Arc<dyn Publish>; 5],
    /// The ACME manager, set once at start-up: its certificates' state and metrics.
    pub acme: std::sync::OnceLock<Arc<labgate_acme::Manager>>,
}

impl Shared {
    /// State around the first snapshot (`snapshot` holds it), which `dns`, `proxy` and
    /// `certs` already serve.
    /// Each later snapshot is published to the certificates, the proxy, the query log, dnstap,
    /// then DNS: a name the new snapshot routes has its certificate before the proxy routes
    /// it, and the log knows a snapshot (to name the networks of its records) before DNS
    /// answers with it.
    pub fn new(
        snapshot: Arc<ArcSwap<Snapshot>>,
        dns: labgate_dns::Dns,
        proxy: Arc<labgate_proxy::Proxy>,
        (certs, querylog, dnstap): (
            Arc<crate::certs::Certificates>,
            Arc<labgate_querylog::QueryLog>,
            Arc<labgate_dnstap::Dnstap>,
        ),
    ) -> Arc<Self> {
        let first = snapshot.load();
        let report = ReloadReport {
            result: ReloadResult::Initial,
            at_unix: unix_now(),
            generation: first.generation,
            hash: first.hash.to_string(),
            diff: None,
            errors: Vec::new(),
            restart_required: false,
        };
        let subsystems: [Arc<dyn Publish>; 5] = [
            certs,
            Arc::clone(&proxy) as _,
            Arc::clone(&querylog) as _,
            Arc::clone(&dnstap) as _,
            Arc::new(dns.clone()),
        ];
        Arc::new(Self {
            ready: AtomicBool::new(false),
            reloads: Default::default(),
            last_success_unix: AtomicU64::new(report.at_unix),
            last: Mutex::new(report),
            published: tokio::sync::watch::Sender::new(first.generation),
            proxy,
            subsystems,
            acme: std::sync::OnceLock::new(),
            querylog,
            dnstap,
            refused: Arc::default(),
            http_history: Arc::default(),
            health: Arc::default(),
            dns,
            snapshot,
            list_fetches: Default::default(),
        })
    }

    /// Serves a new snapshot: each subsystem builds its state for it and swaps it in, in a
    /// fixed order; then the reload's `report` is recorded, the snapshot stored (so whoever
    /// sees the new generation sees its report too) and the tasks that follow reloads are
    /// told. Blocking (the certificates read files and sign keys): the reload task calls it
    /// from a blocking thread.
    pub fn publish(&self, snapshot: Arc<Snapshot>, report: ReloadReport) {
        let generation = snapshot.generation;
        for subsystem in &self.subsystems {
            tracing::debug!(generation, "publishing to {}", subsystem.name());
            subsystem.publish(Arc::clone(&snapshot));
        }
        self.record(report);
        self.snapshot.store(snapshot);
        self.published.send_replace(generation);
    }

    /// Records a reload attempt.
    pub fn record(&self, report: ReloadReport) {
        self.reloads[report.result as usize].fetch_add(1, Ordering::Relaxed);
        if matches!(
            report.result,
            ReloadResult::Success | ReloadResult::Unchanged
        ) {
            self.last_success_unix
                .store(report.at_unix, Ordering::Relaxed);
        }
        if let Ok(mut last) = self.last.lock() {
            *last = report;
        }
    }

    /// The last reload attempt.
    pub fn last(&self) -> Option<ReloadReport> {
        self.last.lock().ok().map(|l| l.clone())
    }

    /// Prometheus text exposition of the control plane's metrics.
    pub fn metrics(&self) -> String {
        let snap = self.snapshot.load();
        let mut out = String::new();
        out.push_str(
            "# HELP labgate_config_reloads_total Configuration reload attempts by result.\n",
        );
        out.push_str("# TYPE labgate_config_reloads_total counter\n");
        for r in [
            ReloadResult::Success,
            ReloadResult::Unchanged,
            ReloadResult::Failure,
        ] {
            let n = self.reloads[r as usize].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "labgate_config_reloads_total{{result=\"{}\"}} {n}",
                r.label()
            );
        }
        let gauges = [
            (
                "labgate_config_last_reload_success_timestamp_seconds",
                "Unix time of the last successful (or unchanged) reload.",
                self.last_success_unix.load(Ordering::Relaxed),
            ),
            (
                "labgate_config_generation",
                "Generation of the serving snapshot.",
                snap.generation,
            ),
            (
                "labgate_config_last_reload_successful",
                "1 if the last reload attempt was accepted, 0 if it was rejected.",
                u64::from(
                    self.last()
                        .is_none_or(|l| l.result != ReloadResult::Failure),
                ),
            ),
            (
                "labgate_ready",
                "1 once start-up finished.",
                u64::from(self.ready.load(Ordering::Relaxed)),
            ),
            (
                "labgate_self_check_passing",
                "1 while labgate's check of its own DNS and HTTPS listeners passes (what /readyz and the watchdog follow).",
                u64::from(self.health.fresh().is_ok()),
            ),
            (
                "labgate_services",
                "Services in the serving snapshot.",
                snap.services.len() as u64,
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        let name = "labgate_blocklist_fetches_total";
        let _ = writeln!(
            out,
            "# HELP {name} Blocklist downloads by result.\n# TYPE {name} counter"
        );
        for (i, result) in ["success", "failure"].iter().enumerate() {
            let n = self.list_fetches[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}{{result=\"{result}\"}} {n}");
        }
        let name = "labgate_certificate_load_failures_total";
        let _ = writeln!(
            out,
            "# HELP {name} Certificate files that could not be loaded.\n# TYPE {name} counter\n{name} {}",
            crate::certs::LOAD_FAILURES.load(Ordering::Relaxed)
        );
        let name = "labgate_history_write_failures_total";
        let _ = writeln!(
            out,
            "# HELP {name} Times the status page's history file could not be opened, read or written (the history goes on in memory).\n# TYPE {name} counter\n{name} {}",
            self.http_history.write_failures()
        );
        crate::process::render(&mut out);
        out.push_str(&self.dns.metrics().render(&snap));
        self.querylog.render_metrics(&mut out);
        self.dnstap.render_metrics(&mut out);
        self.proxy.render_metrics(&mut out);
        if let Some(acme) = self.acme.get() {
            acme.metrics()
                .render(&acme.status(), SystemTime::now(), &mut out);
        }
        out
    }

    /// The ACME certificates' state (empty before start-up finished).
    pub fn certificates(&self) -> Vec<labgate_acme::CertStatus> {
        self.acme.get().map(|a| a.status()).unwrap_or_default()
    }

    /// This machine's role in `[pair]`, while one is configured and was found.
    pub fn pair_role(&self) -> Option<labgate_config::pair::Role> {
        self.snapshot.load().pair.as_ref()?;
        self.acme.get()?.role()
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
