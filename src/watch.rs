//! Watches the configuration's directory, and the directories of the serving snapshot's
//! blocklist files, and turns relevant changes into reload triggers.
//!
//! The directory is watched, not the file: editors replace files by rename and `git pull`
//! writes many files, and a watch on the old inode would miss both.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use labgate_config::Snapshot;
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::reload::Trigger;
use crate::status::Shared;

/// The configuration's watch; dropping it stops watching.
pub(crate) struct ConfigWatch {
    watcher: RecommendedWatcher,
    /// The configuration's directory, canonical: a list directory is compared by what it
    /// is, not how it is spelled (inotify gives one watch per inode, so watching an alias
    /// of the configuration's directory, then dropping it, would drop that watch too).
    dir: PathBuf,
    mode: RecursiveMode,
    /// Directories watched for blocklist files outside `dir`'s watch.
    extra: Vec<PathBuf>,
}

/// Starts watching. `also` names more files that matter (blocklist files); their
/// directories are watched through [`ConfigWatch::follow`]. Nothing under `state_dir` is a
/// change to the configuration: a state directory inside the configuration's (`state_dir =
/// "state"`) holds the query log, written every 100 ms.
///
/// # Errors
/// When the platform watcher cannot be created or the directory cannot be watched.
pub(crate) fn start(
    config: &Path,
    state_dir: &Path,
    tx: mpsc::Sender<Trigger>,
    also: impl Fn(&Path) -> bool + Send + 'static,
) -> notify::Result<ConfigWatch> {
    let (dir, only) = if config.is_dir() {
        (config.to_owned(), None)
    } else {
        let dir = config
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_owned);
        (dir, config.file_name().map(ToOwned::to_owned))
    };
    let root = dir.clone();
    // Where the state directory lies in the watched one, compared by canonical paths once
    // here: events name paths under `root` as it was given.
    let state = match (state_dir.canonicalize(), dir.canonicalize()) {
        (Ok(state), Ok(canonical)) => state.strip_prefix(&canonical).ok().map(Path::to_owned),
        _ => None,
    };
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        let relevant = event
            .paths
            .iter()
            .any(|p| relevant(&root, p, (only.as_deref(), state.as_deref())) || also(p));
        if relevant {
            // A full channel means a reload is already pending; dropping this one loses nothing.
            let _ = tx.try_send(Trigger::FileChanged);
        }
    })?;
    // A single file's directory may be /etc: watch only that level, not the tree below it.
    let mode = if config.is_dir() {
        RecursiveMode::Recursive
    } else {
        RecursiveMode::NonRecursive
    };
    watcher.watch(&dir, mode)?;
    Ok(ConfigWatch {
        watcher,
        dir: dir.canonicalize().unwrap_or(dir),
        mode,
        extra: Vec::new(),
    })
}

impl ConfigWatch {
    /// Watches, one level deep, the directories of the blocklist files in `dirs` that the
    /// configuration's own watch does not cover, and no longer those left out: called with
    /// each new configuration, which may name lists elsewhere.
    pub(crate) fn follow(&mut self, dirs: &[PathBuf]) {
        let mut wanted: Vec<PathBuf> = dirs
            .iter()
            .filter_map(|d| d.canonicalize().ok())
            .filter(|d| {
                *d != self.dir
                    && !(self.mode == RecursiveMode::Recursive && d.starts_with(&self.dir))
            })
            .collect();
        wanted.sort();
        wanted.dedup();
        for d in std::mem::take(&mut self.extra) {
            if wanted.contains(&d) {
                self.extra.push(d);
            } else {
                let _ = self.watcher.unwatch(&d);
            }
        }
        for d in wanted {
            if self.extra.contains(&d) {
                continue;
            }
            match self.watcher.watch(&d, RecursiveMode::NonRecursive) {
                Ok(()) => self.extra.push(d),
                Err(e) => tracing::warn!(
                    "cannot watch {} for blocklist changes ({e}); reload by SIGHUP after editing its lists",
                    d.display()
                ),
            }
        }
    }
}

/// In a config directory, any file not under a hidden directory such as `.git` (TOML files
/// and the blocklist files kept beside them) nor under the state directory (`state`,
/// relative to `root`); for a single config file, that file. Either way, Kubernetes' swap
/// of a mounted ConfigMap (its `..data` link replaced at once).
fn relevant(
    root: &Path,
    path: &Path,
    (only, state): (Option<&std::ffi::OsStr>, Option<&Path>),
) -> bool {
    let rel = path.strip_prefix(root).unwrap_or(path);
    if state.is_some_and(|s| rel.starts_with(s)) {
        return false;
    }
    if rel.components().any(|c| c.as_os_str() == "..data") {
        return true;
    }
    if rel
        .components()
        .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
    {
        return false;
    }
    match only {
        Some(name) => rel.as_os_str() == name,
        None => true,
    }
}

/// The files of the file blocklists of a configuration.
fn list_files(s: &Snapshot) -> impl Iterator<Item = &Path> {
    s.dns.blocklists.iter().filter_map(|l| match &l.source {
        labgate_config::settings::BlocklistSource::File(p) => Some(p.as_path()),
        labgate_config::settings::BlocklistSource::Url(_) => None,
    })
}

/// The directories of the file blocklists of the running configuration.
fn blocklist_dirs(shared: &Shared) -> Vec<PathBuf> {
    list_files(&shared.snapshot.load())
        .filter_map(|p| p.parent().map(Path::to_owned))
        .collect()
}

/// Keeps the watch on the directories of the serving snapshot's blocklist files (a reload
/// may name lists in a new one) until cancelled, when the watch stops. Subscribed before
/// its first look, so no reload falls in between.
pub(crate) fn follow_list_dirs(
    mut watch: ConfigWatch,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) -> impl Future<Output = ()> {
    let mut published = shared.published.subscribe();
    watch.follow(&blocklist_dirs(&shared));
    async move {
        loop {
            tokio::select! {
                changed = published.changed() => if changed.is_err() { return },
                () = cancel.cancelled() => return,
            }
            watch.follow(&blocklist_dirs(&shared));
        }
    }
}

/// Whether a changed path is a blocklist file of the serving snapshot.
pub(crate) fn blocklist_file(shared: Arc<Shared>) -> impl Fn(&Path) -> bool + Send + 'static {
    move |changed| {
        let Ok(changed) = changed.canonicalize() else {
            return false;
        };
        list_files(&shared.snapshot.load()).any(|p| p.canonicalize().is_ok_and(|p| p == changed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_and_unrelated_paths_are_ignored() {
        let root = Path::new("/cfg");
        let dir = (None, None);
        assert!(relevant(root, Path::new("/cfg/services/a.toml"), dir));
        assert!(relevant(root, Path::new("/cfg/lists/ads.txt"), dir));
        assert!(!relevant(root, Path::new("/cfg/.git/index"), dir));
        assert!(!relevant(root, Path::new("/cfg/.a.toml.swp"), dir));
        // The state directory inside the configuration's: the query log's writes are not
        // changes; a file merely named like it elsewhere is.
        let state = (None, Some(Path::new("state")));
        assert!(!relevant(
            root,
            Path::new("/cfg/state/querylog.sqlite-wal"),
            state
        ));
        assert!(!relevant(root, Path::new("/cfg/state"), state));
        assert!(relevant(root, Path::new("/cfg/statements.toml"), state));
        assert!(relevant(root, Path::new("/cfg/lists/state"), state));
        let file = (Some(std::ffi::OsStr::new("labgate.toml")), None);
        assert!(relevant(root, Path::new("/cfg/labgate.toml"), file));
        assert!(!relevant(root, Path::new("/cfg/other.toml"), file));
        assert!(!relevant(root, Path::new("/cfg/sub/labgate.toml"), file));
        // A ConfigMap update: the files are links through `..data`, which is swapped.
        assert!(relevant(root, Path::new("/cfg/..data"), file));
        assert!(relevant(root, Path::new("/cfg/..data"), dir));
        assert!(!relevant(
            root,
            Path::new("/cfg/..2026_11_30_09_00_00.123"),
            file
        ));
    }
}
