//! The reload pipeline (C2): file watcher, SIGHUP and `POST /reload` all feed one channel;
//! one task debounces, compiles on a blocking thread, and publishes (through
//! [`Shared::publish`], on a blocking thread) or keeps the old snapshot.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use labgate_config::diff::Diff;
use labgate_config::{Error, Snapshot, Sources};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::status::{ReloadReport, ReloadResult, Shared, unix_now};

/// Quiet time after a file event before reloading, so a `git checkout` of many files is
/// read once, complete.
pub const DEBOUNCE: Duration = Duration::from_millis(300);
/// Longest wait for quiet: a file written continuously still gets reloaded.
pub const DEBOUNCE_MAX: Duration = Duration::from_secs(2);

/// Why a reload was asked for.
#[derive(Debug)]
pub enum Trigger {
    /// The watcher saw a configuration file change.
    FileChanged,
    /// SIGHUP.
    Signal,
    /// `POST /reload`; the report goes back on the channel.
    Admin(oneshot::Sender<ReloadReport>),
}

/// Where the configuration comes from, and the CLI flags that override it (B7: CLI first).
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// File, directory or memory.
    pub origin: Origin,
    /// `--admin`, `--dns`, `--https`, `--http`, `--state-dir`.
    pub overrides: Overrides,
}

/// Where configuration text lives.
#[derive(Debug, Clone)]
pub enum Origin {
    /// A file or directory.
    Path(PathBuf),
    /// The built-in demo (and anything else held in memory).
    Memory(Sources),
}

/// Settings given on the command line, applied to every compiled snapshot.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replaces `listen.admin`.
    pub admin: Option<SocketAddr>,
    /// Replaces `listen.dns` when not empty.
    pub dns: Vec<SocketAddr>,
    /// Replaces `server.state_dir`.
    pub state_dir: Option<PathBuf>,
    /// Replaces `listen.https` when not empty.
    pub https: Vec<SocketAddr>,
    /// Replaces `listen.http` when not empty.
    pub http: Vec<SocketAddr>,
}

impl ConfigSource {
    /// Reads and compiles the configuration (blocking: call from a blocking thread).
    ///
    /// # Errors
    /// The config crate's error, with every diagnostic.
    pub fn compile(&self, generation: u64) -> Result<Snapshot, Error> {
        let loaded = match &self.origin {
            Origin::Path(p) => labgate_config::load(p)?,
            Origin::Memory(s) => labgate_config::parse(s.clone())?,
        };
        let mut snapshot = labgate_config::compile(&loaded, generation).map_err(Error::Invalid)?;
        if let Origin::Path(p) = &self.origin {
            snapshot.revision = crate::revision::git_commit(p).map(Into::into);
        }
        if let Some(admin) = self.overrides.admin {
            snapshot.listen.admin = admin;
        }
        if !self.overrides.dns.is_empty() {
            snapshot.listen.dns.clone_from(&self.overrides.dns);
        }
        if !self.overrides.https.is_empty() {
            snapshot.listen.https.clone_from(&self.overrides.https);
        }
        if !self.overrides.http.is_empty() {
            snapshot.listen.http.clone_from(&self.overrides.http);
        }
        if let Some(dir) = &self.overrides.state_dir {
            snapshot.state_dir.clone_from(dir);
        }
        Ok(snapshot)
    }

    /// The snapshot of a configuration path, or of the built-in demo without one (the
    /// commands that read a configuration without serving it).
    ///
    /// # Errors
    /// The config crate's error, with every diagnostic.
    pub fn snapshot_of(path: Option<&std::path::Path>) -> Result<Snapshot, Error> {
        Self {
            origin: path.map_or_else(
                || Origin::Memory(crate::demo::sources()),
                |p| Origin::Path(p.to_owned()),
            ),
            overrides: Overrides::default(),
        }
        .compile(1)
    }

    /// The path to watch, if any.
    pub fn path(&self) -> Option<&std::path::Path> {
        match &self.origin {
            Origin::Path(p) => Some(p),
            Origin::Memory(_) => None,
        }
    }
}

/// Runs the pipeline until cancelled or every sender is gone.
pub async fn run(
    source: ConfigSource,
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Trigger>,
    cancel: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            t = rx.recv() => t,
            () = cancel.cancelled() => return,
        };
        let Some(first) = first else { return };
        let mut waiters = Vec::new();
        let debounce = matches!(first, Trigger::FileChanged);
        if let Trigger::Admin(w) = first {
            waiters.push(w);
        }
        if debounce {
            let deadline = tokio::time::Instant::now() + DEBOUNCE_MAX;
            loop {
                let quiet = (tokio::time::Instant::now() + DEBOUNCE).min(deadline);
                match tokio::time::timeout_at(quiet, rx.recv()).await {
                    Ok(Some(Trigger::Admin(w))) => waiters.push(w),
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        }
        let report = reload_once(&source, &shared).await;
        for w in waiters {
            let _ = w.send(report.clone());
        }
    }
}

/// One reload: compile off the runtime, compare, publish or keep.
pub async fn reload_once(source: &ConfigSource, shared: &Arc<Shared>) -> ReloadReport {
    let current = shared.snapshot.load_full();
    let next_generation = current.generation + 1;
    let src = source.clone();
    let compiled = tokio::task::spawn_blocking(move || src.compile(next_generation)).await;
    let mut report = ReloadReport {
        result: ReloadResult::Failure,
        at_unix: unix_now(),
        generation: current.generation,
        hash: current.hash.to_string(),
        diff: None,
        errors: Vec::new(),
        restart_required: false,
    };
    match compiled {
        // A new commit that changes nothing labgate reads is still published: `/config`
        // and the status page name the commit served, the same on every node.
        Ok(Ok(ref new)) if new.same_as(&current) && new.revision == current.revision => {
            report.result = ReloadResult::Unchanged;
            debug!(generation = current.generation, "config unchanged");
        }
        Ok(Ok(mut new)) => {
            let diff = Diff::between(&current, &new);
            if diff.restart_required {
                // B6: restart-only settings are never applied halfway; the rest is.
                warn!(
                    "listen addresses or state_dir changed: restart labgate to apply them; everything else is applied now"
                );
                new.listen = current.listen.clone();
                new.state_dir = current.state_dir.clone();
            }
            for w in &new.warnings {
                warn!("{w}");
            }
            report.result = ReloadResult::Success;
            report.generation = new.generation;
            report.hash = new.hash.to_string();
            report.diff = Some(diff.to_string());
            report.restart_required = diff.restart_required;
            info!(generation = new.generation, hash = %new.hash.short(), "config reloaded: {diff}");
            // Off the runtime: the subsystems build their state (and the certificates read
            // files and sign keys) before each swaps it in.
            let (publisher, published) = (Arc::clone(shared), report.clone());
            match tokio::task::spawn_blocking(move || publisher.publish(Arc::new(new), published))
                .await
            {
                // Recorded with the snapshot.
                Ok(()) => return report,
                // A subsystem's build panicked: the snapshot was not stored, the old one
                // keeps serving where it was not replaced yet.
                Err(join) => {
                    warn!("publishing generation {} failed: {join}", report.generation);
                    report.result = ReloadResult::Failure;
                    report.errors = vec![format!("publishing it failed: {join}")];
                    report.generation = current.generation;
                    report.hash = current.hash.to_string();
                }
            }
        }
        Ok(Err(e)) => {
            report.errors = match &e {
                Error::Invalid(d) => d.errors().map(ToString::to_string).collect(),
                other => vec![format!("{other}")],
            };
            warn!(
                generation = current.generation,
                "config rejected, generation {} keeps serving:\n{e}", current.generation
            );
        }
        Err(join) => {
            report.errors = vec![format!("the compile task failed: {join}")];
            warn!("config reload failed: {join}");
        }
    }
    shared.record(report.clone());
    report
}
