//! The Git commit a configuration was read from: what a node serves, shown on `/config` and
//! the status page, so two nodes of a pair can be seen to serve the same revision. Read from
//! the `.git` directory's files (no `git` process), when the configuration is compiled.

use std::path::Path;

/// The commit checked out (12 hex digits) in the Git repository holding `config`, if it is in
/// one.
pub fn git_commit(config: &Path) -> Option<String> {
    let start = if config.is_dir() {
        config
    } else {
        config.parent()?
    };
    let git = start
        .ancestors()
        .map(|d| d.join(".git"))
        .find(|g| g.is_dir())?;
    let head = std::fs::read_to_string(git.join("HEAD")).ok()?;
    let head = head.trim();
    let commit = match head.strip_prefix("ref: ") {
        None => head.to_owned(),
        Some(name) => match std::fs::read_to_string(git.join(name)) {
            Ok(c) => c.trim().to_owned(),
            Err(_) => std::fs::read_to_string(git.join("packed-refs"))
                .ok()?
                .lines()
                .find_map(|l| l.strip_suffix(name)?.strip_suffix(' ').map(str::to_owned))?,
        },
    };
    let short: String = commit.chars().take(12).collect();
    (short.len() == 12 && short.chars().all(|c| c.is_ascii_hexdigit())).then_some(short)
}
