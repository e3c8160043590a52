//! `labgate state export|import|check`: the state directory's key material (the local CA,
//! the ACME accounts, the issued certificates) backed up to one archive and restored on a new
//! machine, so it serves at once with the same CA and account. The format and every check
//! are `labgate_acme::archive`'s; this module finds the state directory, reads and writes the
//! archive's file and says what happened. No key material is ever printed.
#![allow(
    clippy::disallowed_macros,
    reason = "a subcommand: it prints what was asked"
)]

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use labgate_acme::archive::{self, Change, Material};

use crate::EX_USAGE;
use crate::cli::{StateCommand, StateDirArgs, StateExportArgs, StateImportArgs};
use crate::reload::ConfigSource;

/// Runs one `labgate state` command.
///
/// # Errors
/// An invalid configuration (exit 64); a state directory or archive that cannot be read or
/// written, or that fails a check (exit 1), with what to do.
pub fn run(command: &StateCommand) -> anyhow::Result<ExitCode> {
    match command {
        StateCommand::Export(args) => export(args),
        StateCommand::Import(args) => import(args),
        StateCommand::Check(args) => check(args),
    }
}

/// `labgate state export`.
fn export(args: &StateExportArgs) -> anyhow::Result<ExitCode> {
    let Some(dir) = state_dir(&args.dir)? else {
        return Ok(usage());
    };
    let to_stdout = args.output.as_os_str() == "-";
    if to_stdout && std::io::stdout().is_terminal() {
        // SECURITY: the archive holds private keys; a terminal keeps them in its scrollback.
        anyhow::bail!(
            "refusing to write private keys to a terminal: give --output FILE, or redirect stdout"
        );
    }
    let collected = archive::collect(&dir)
        .with_context(|| format!("cannot read the state directory {}", dir.display()))?;
    if collected.files.is_empty() {
        anyhow::bail!(
            "{} holds no local CA, ACME account or certificate: nothing to export (is it the state directory labgate runs with? --state-dir or the configuration's server.state_dir)",
            dir.display()
        );
    }
    let material = archive::check(&collected.files).with_context(|| {
        format!(
            "the state directory {} holds unusable key material, nothing was exported; remove that certificate's directory (labgate orders it again) and export again",
            dir.display()
        )
    })?;
    let bytes = archive::seal(
        &collected.files,
        env!("CARGO_PKG_VERSION"),
        SystemTime::now(),
    );
    let target = if to_stdout {
        let mut out = std::io::stdout().lock();
        out.write_all(&bytes)
            .and_then(|()| out.flush())
            .context("cannot write the archive to stdout: it is incomplete")?;
        "stdout".to_owned()
    } else {
        labgate_acme::write_atomic(&args.output, &bytes, archive::FILE_MODE)
            .context("cannot write the archive")?;
        args.output.display().to_string()
    };
    // On stderr: stdout may be the archive.
    eprintln!(
        "labgate: exported {} files from {} to {target} ({}); it holds private keys: keep it with the secrets, never in Git",
        collected.files.len(),
        dir.display(),
        summary(&material),
    );
    for (path, why) in &collected.left_out {
        eprintln!("  left out {path}: {why}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `labgate state import`.
fn import(args: &StateImportArgs) -> anyhow::Result<ExitCode> {
    let Some(dir) = state_dir(&args.dir)? else {
        return Ok(usage());
    };
    let from = if args.input.as_os_str() == "-" {
        "stdin".to_owned()
    } else {
        args.input.display().to_string()
    };
    let bytes = read_input(&args.input).with_context(|| format!("cannot read {from}"))?;
    let refused = || format!("{from}: refused, nothing was written");
    let opened = archive::open(&bytes).with_context(refused)?;
    let material = archive::check(&opened.files).with_context(refused)?;
    let plan = archive::prepare(&opened.files, &dir, args.force).with_context(refused)?;
    let restored = plan
        .write()
        .with_context(|| format!("cannot restore into {}", dir.display()))?;
    println!(
        "labgate: restored {} files into {} from {from} (exported by labgate {} at {}):",
        restored.len(),
        dir.display(),
        opened.labgate,
        opened.created,
    );
    for r in &restored {
        let change = match r.change {
            Change::New => "new",
            Change::Same => "unchanged",
            Change::Replaced => "replaced",
        };
        println!("  {change:<9} {} ({})", r.path, r.kind.describe());
    }
    describe(&material);
    println!("labgate: start labgate on this state directory to serve them");
    Ok(ExitCode::SUCCESS)
}

/// `labgate state check`.
fn check(args: &StateDirArgs) -> anyhow::Result<ExitCode> {
    let Some(dir) = state_dir(args)? else {
        return Ok(usage());
    };
    let collected = archive::collect(&dir)
        .with_context(|| format!("cannot read the state directory {}", dir.display()))?;
    let material = archive::check(&collected.files)
        .with_context(|| format!("the state directory {} fails its check", dir.display()))?;
    println!(
        "labgate: {}: {} files of key material check out ({})",
        dir.display(),
        collected.files.len(),
        summary(&material)
    );
    describe(&material);
    Ok(ExitCode::SUCCESS)
}

/// The state directory: `--state-dir`, else the configuration's; `None` without either.
fn state_dir(args: &StateDirArgs) -> anyhow::Result<Option<PathBuf>> {
    if let Some(dir) = &args.state_dir {
        return Ok(Some(dir.clone()));
    }
    match &args.config {
        Some(config) => Ok(Some(ConfigSource::snapshot_of(Some(config))?.state_dir)),
        None => Ok(None),
    }
}

/// Says which flag is missing; exit 64.
fn usage() -> ExitCode {
    eprintln!(
        "Error: which state directory? give --state-dir DIR, or --config PATH (or LABGATE_CONFIG) for its server.state_dir"
    );
    ExitCode::from(EX_USAGE)
}

/// The archive's bytes from a file or stdin (`-`), refusing one larger than any archive.
fn read_input(path: &Path) -> std::io::Result<Vec<u8>> {
    let limit = archive::MAX_SIZE as u64 + 1;
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .take(limit)
            .read_to_end(&mut bytes)?;
    } else {
        std::fs::File::open(path)?
            .take(limit)
            .read_to_end(&mut bytes)?;
    }
    Ok(bytes)
}

/// `local CA, 1 ACME account, 2 certificates`.
fn summary(m: &Material) -> String {
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let mut parts = Vec::new();
    if m.ca.is_some() {
        parts.push("local CA".to_owned());
    }
    parts.push(plural(m.accounts.len(), "ACME account"));
    parts.push(plural(m.certificates.len(), "certificate"));
    parts.join(", ")
}

/// One line per CA, account and certificate: what each is, never its key.
fn describe(m: &Material) {
    if let Some(ca) = &m.ca {
        println!("  local CA: {}", printable(ca));
    }
    for (path, url) in &m.accounts {
        println!("  ACME account {url} ({path})");
    }
    let now = SystemTime::now();
    for c in &m.certificates {
        let days = c.not_after.duration_since(now).map_or_else(
            |_| "EXPIRED: labgate orders a new one".to_owned(),
            |left| format!("expires in {} days", left.as_secs() / 86_400),
        );
        println!(
            "  certificate {}: {days} ({})",
            printable(&c.names.join(", ")),
            c.dir
        );
    }
}

/// `text` with control characters shown as `?`: names and subjects come from certificates,
/// which a crafted archive could fill with terminal escapes.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}
