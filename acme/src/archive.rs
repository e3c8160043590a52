//! The state archive: the part of the state directory that cannot be rebuilt (the local CA,
//! the ACME accounts, the issued certificates and their keys) as one file, which
//! `labgate state export` writes and `labgate state import` checks and restores on another
//! machine. Everything else in the state directory rebuilds by itself and stays out: the DNS
//! query log, the status page's history, the pid file, the upgrade socket, temporary files.
//!
//! ```text
//! state dir ──collect──▶ [File] ──check──▶ seal ──▶ archive file (0600)
//! archive file ──open (checksum, paths, hashes)──▶ [File] ──check (keys)──▶ prepare ──▶ write
//! ```
//!
//! Format, version 1. Text, so a damaged copy can be looked at with a pager (it holds private
//! keys: never paste it anywhere):
//!
//! ```text
//! labgate-state 1
//! {"labgate": "0.1.0", "created": "2026-12-06T14:00:00Z", "files": [
//!   {"path": "local-ca/ca.key", "mode": "0600", "size": 241, "sha256": "…", "data": "<base64>"},
//!   …]}
//! sha256 <SHA-256 of every byte above this line, hex>
//! ```
//!
//! The last line seals the rest: a changed byte anywhere, or a copy cut short, is refused
//! before anything is written. Each file's own size and SHA-256 are checked as well; its path
//! must be one labgate writes ([`select`]: no `..`, no absolute path; the format has no link
//! entries, and links in the target directory are refused); every key must parse and match
//! its certificate ([`check`]).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rcgen::{KeyPair, PublicKeyData};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::{Error, write_atomic};

/// The first word of an archive.
pub const MAGIC: &str = "labgate-state";
/// The format version this labgate writes and reads.
pub const VERSION: u32 = 1;
/// The largest archive read: a homelab's state is a few dozen kilobytes.
pub const MAX_SIZE: usize = 64 << 20;
/// The mode of every file restored (they hold keys, or sit beside them).
pub const FILE_MODE: u32 = 0o600;
/// The mode of every directory import makes.
pub const DIR_MODE: u32 = 0o700;

/// What a file of the state directory is, when it belongs in the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// `local-ca/ca.key`: the local CA's private key.
    CaKey,
    /// `acme/certs/<set>/key.pem`: a certificate's private key.
    CertKey,
    /// `acme/account-<hash>.json`: an ACME account's key and URL.
    Account,
    /// `local-ca/ca.pem`: the local CA's certificate.
    CaCert,
    /// `acme/certs/<set>/chain.pem`: an issued certificate, leaf first.
    Chain,
    /// `acme/certs/<set>/origin.txt`: where and how the certificate was ordered.
    Origin,
}

impl Kind {
    /// A few words for listings.
    pub fn describe(self) -> &'static str {
        match self {
            Self::CaKey => "local CA key",
            Self::CertKey => "certificate key",
            Self::Account => "ACME account",
            Self::CaCert => "local CA certificate",
            Self::Chain => "certificate chain",
            Self::Origin => "certificate origin",
        }
    }
}

/// What export does with a path of the state directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// It cannot be rebuilt: it goes in the archive.
    Keep(Kind),
    /// It stays out, for this reason.
    Leave(&'static str),
}

/// Whether the state directory's file at `rel` (relative, `/`-separated) goes in the archive:
/// only the exact paths labgate writes key material to. Pure.
pub fn select(rel: &str) -> Selection {
    let parts: Vec<&str> = rel.split('/').collect();
    match parts.as_slice() {
        ["local-ca", "ca.key"] => Selection::Keep(Kind::CaKey),
        ["local-ca", "ca.pem"] => Selection::Keep(Kind::CaCert),
        ["acme", file] if is_account_file(file) => Selection::Keep(Kind::Account),
        ["acme", "certs", set, file] if is_set_name(set) => match *file {
            "key.pem" => Selection::Keep(Kind::CertKey),
            "chain.pem" => Selection::Keep(Kind::Chain),
            "origin.txt" => Selection::Keep(Kind::Origin),
            _ => Selection::Leave("not a file labgate writes"),
        },
        [.., last] if last.starts_with('.') && last.contains(".tmp") => {
            Selection::Leave("a temporary file")
        }
        [file] if file.starts_with("querylog.sqlite") => {
            Selection::Leave("the DNS query log: it starts anew")
        }
        [file] if file.starts_with("history.sqlite") => {
            Selection::Leave("the status page's history: it starts anew")
        }
        ["labgate.pid" | "labgate-upgrade.sock"] => Selection::Leave("made at every start"),
        _ => Selection::Leave("not key material labgate keeps"),
    }
}

/// Whether an archive entry's `path` may be restored, and as what: it must be one of the
/// paths [`select`] keeps, so it cannot leave the state directory. Pure.
///
/// # Errors
/// Why the path is refused, in words that follow the path.
pub fn check_path(path: &str) -> Result<Kind, &'static str> {
    if path.is_empty() {
        return Err("is empty");
    }
    if path.starts_with('/') {
        return Err("is absolute");
    }
    if path.len() > 512 {
        return Err("is too long");
    }
    if path.chars().any(|c| c.is_control() || c == '\\') {
        return Err("holds a control character or a backslash");
    }
    for part in path.split('/') {
        if part == ".." {
            return Err("climbs out of the state directory with `..`");
        }
        if part.is_empty() || part == "." {
            return Err("has an empty or `.` component");
        }
    }
    match select(path) {
        Selection::Keep(kind) => Ok(kind),
        Selection::Leave(_) => Err("is not a file labgate keeps in its state directory"),
    }
}

/// One file of the archive. Its content is never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct File {
    /// Relative to the state directory, `/`-separated, checked by [`check_path`].
    pub path: String,
    /// What it is.
    pub kind: Kind,
    /// Its mode in the state directory it was exported from.
    pub mode: u32,
    data: Vec<u8>,
}

impl std::fmt::Debug for File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // SECURITY: the content is key material.
        f.debug_struct("File")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("mode", &format_args!("{:04o}", self.mode))
            .field("size", &self.data.len())
            .finish_non_exhaustive()
    }
}

impl File {
    /// A file for the archive.
    ///
    /// # Errors
    /// [`Error::ArchivePath`] when `path` is not one [`check_path`] accepts.
    pub fn new(path: &str, mode: u32, data: Vec<u8>) -> Result<Self, Error> {
        let kind = check_path(path).map_err(|what| Error::ArchivePath {
            path: path.to_owned(),
            what,
        })?;
        Ok(Self {
            path: path.to_owned(),
            kind,
            mode,
            data,
        })
    }

    /// Its content.
    pub fn data(&self) -> &[u8] {
        &self.data
    }
}

/// What [`collect`] found in a state directory.
#[derive(Debug, Default)]
pub struct Collected {
    /// The files that go in the archive, by path.
    pub files: Vec<File>,
    /// What stays out, and why.
    pub left_out: Vec<(String, &'static str)>,
}

/// Reads the files of `state_dir` that go in the archive ([`select`]). Links are not
/// followed: one where key material belongs is refused, any other is left out.
///
/// # Errors
/// [`Error::Io`] when a directory or file cannot be read; [`Error::StateLink`] for a link
/// where labgate keeps key material.
pub fn collect(state_dir: &Path) -> Result<Collected, Error> {
    let io = |action, path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    };
    let mut out = Collected::default();
    let mut dirs = vec![(state_dir.to_owned(), String::new())];
    while let Some((dir, prefix)) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io("read the directory", &dir))? {
            let entry = entry.map_err(io("read the directory", &dir))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                out.left_out.push((
                    path.display().to_string(),
                    "its name is not UTF-8, so it is not labgate's",
                ));
                continue;
            };
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let meta = std::fs::symlink_metadata(&path).map_err(io("read", &path))?;
            let holds_state = leads_to_state(&rel) || matches!(select(&rel), Selection::Keep(_));
            if meta.file_type().is_symlink() {
                // SECURITY: a link could pull any file of the machine into the archive.
                if holds_state {
                    return Err(Error::StateLink { path });
                }
                out.left_out.push((rel, "a symbolic link: not followed"));
            } else if meta.is_dir() {
                if leads_to_state(&rel) {
                    dirs.push((path, rel));
                } else {
                    out.left_out
                        .push((rel, "a directory labgate keeps no keys in"));
                }
            } else if !meta.is_file() {
                out.left_out.push((rel, "not a regular file"));
            } else {
                match select(&rel) {
                    Selection::Keep(_) => {
                        let data = std::fs::read(&path).map_err(io("read", &path))?;
                        out.files
                            .push(File::new(&rel, meta.permissions().mode() & 0o7777, data)?);
                    }
                    Selection::Leave(why) => out.left_out.push((rel, why)),
                }
            }
        }
    }
    out.files.sort_by(|a, b| a.path.cmp(&b.path));
    out.left_out.sort();
    Ok(out)
}

/// The archive of `files`: made by labgate `version` at `now`.
pub fn seal(files: &[File], version: &str, now: SystemTime) -> Vec<u8> {
    let manifest = Manifest {
        labgate: version.to_owned(),
        created: humantime::format_rfc3339_seconds(now).to_string(),
        files: files
            .iter()
            .map(|f| Entry {
                path: f.path.clone(),
                mode: format!("{:04o}", f.mode),
                size: f.data.len() as u64,
                sha256: hex(&Sha256::digest(&f.data)),
                data: BASE64.encode(&f.data),
            })
            .collect(),
    };
    let mut out = format!("{MAGIC} {VERSION}\n").into_bytes();
    // INVARIANT: a struct of strings and numbers always serializes.
    out.extend(serde_json::to_vec_pretty(&manifest).expect("the manifest serializes"));
    out.push(b'\n');
    let seal = hex(&Sha256::digest(&out));
    out.extend(format!("sha256 {seal}\n").into_bytes());
    out
}

/// An archive read and checked by [`open`].
#[derive(Debug)]
pub struct Archive {
    /// The version of labgate that exported it.
    pub labgate: String,
    /// When, RFC 3339.
    pub created: String,
    /// Its files, each path checked, each size and SHA-256 matching the manifest.
    pub files: Vec<File>,
}

/// Reads an archive: its first line, the checksum of its last line over the rest, then every
/// entry's path, size and SHA-256. Nothing is written.
///
/// # Errors
/// [`Error::ArchiveFormat`] (not an archive, a newer format), [`Error::ArchiveTruncated`]
/// (cut short), [`Error::ArchiveCorrupted`] (changed since export), [`Error::ArchivePath`]
/// (a path labgate never writes).
pub fn open(bytes: &[u8]) -> Result<Archive, Error> {
    let format = |what: String| Error::ArchiveFormat { what };
    if bytes.is_empty() {
        return Err(format("the file is empty".into()));
    }
    if bytes.len() > MAX_SIZE {
        return Err(format(format!("it is larger than {} MiB", MAX_SIZE >> 20)));
    }
    let first_end = bytes
        .iter()
        .take(64)
        .position(|&b| b == b'\n')
        .ok_or_else(|| format(format!("it does not begin with `{MAGIC} {VERSION}`")))?;
    let first = std::str::from_utf8(&bytes[..first_end]).unwrap_or("");
    let version = first
        .strip_prefix(MAGIC)
        .and_then(|v| v.strip_prefix(' '))
        .ok_or_else(|| format(format!("it does not begin with `{MAGIC} {VERSION}`")))?;
    match version.parse::<u32>() {
        Ok(VERSION) => {}
        Ok(v) if v > VERSION => {
            return Err(format(format!(
                "its format version {v} is newer than this labgate reads ({VERSION}): import it with the labgate release that exported it, or a newer one"
            )));
        }
        _ => return Err(format(format!("unknown format version `{version}`"))),
    }
    // The last line: `sha256 <64 hex>\n`, over every byte before it.
    let body_end = match bytes.strip_suffix(b"\n") {
        Some(rest) => rest.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1),
        None => return Err(Error::ArchiveTruncated),
    };
    let seal = std::str::from_utf8(&bytes[body_end..bytes.len() - 1])
        .ok()
        .and_then(|l| l.strip_prefix("sha256 "))
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or(Error::ArchiveTruncated)?;
    if body_end <= first_end {
        return Err(Error::ArchiveTruncated);
    }
    let actual = hex(&Sha256::digest(&bytes[..body_end]));
    if !actual.eq_ignore_ascii_case(seal) {
        return Err(Error::ArchiveCorrupted {
            what: "its checksum (the last line) does not match its content".into(),
        });
    }
    let manifest: Manifest = serde_json::from_slice(&bytes[first_end + 1..body_end])
        .map_err(|e| format(format!("its manifest does not parse ({})", json_error(&e))))?;
    for (field, value) in [
        ("labgate", &manifest.labgate),
        ("created", &manifest.created),
    ] {
        // SECURITY: printed by `state import`; no terminal escapes from a crafted archive.
        if value.len() > 64 || value.chars().any(char::is_control) {
            return Err(format(format!(
                "its manifest's `{field}` is not a version or a time"
            )));
        }
    }
    let mut seen = BTreeSet::new();
    let mut files = Vec::with_capacity(manifest.files.len());
    for entry in manifest.files {
        let path = entry.path;
        let kind = check_path(&path).map_err(|what| Error::ArchivePath {
            path: path.clone(),
            what,
        })?;
        if !seen.insert(path.clone()) {
            return Err(Error::ArchivePath {
                path,
                what: "appears twice",
            });
        }
        let corrupted = |what: &str| Error::ArchiveCorrupted {
            what: format!("{path}: {what}"),
        };
        let mode = u32::from_str_radix(&entry.mode, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| corrupted("its mode is not an octal mode"))?;
        let data = BASE64
            .decode(entry.data.as_bytes())
            .map_err(|_| corrupted("its content is not base64"))?;
        if data.len() as u64 != entry.size {
            return Err(corrupted("its size does not match the manifest"));
        }
        if !hex(&Sha256::digest(&data)).eq_ignore_ascii_case(&entry.sha256) {
            return Err(corrupted("its SHA-256 does not match the manifest"));
        }
        files.push(File {
            path,
            kind,
            mode,
            data,
        });
    }
    Ok(Archive {
        labgate: manifest.labgate,
        created: manifest.created,
        files,
    })
}

/// What the key material of an archive (or a state directory) is, once checked.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Material {
    /// The local CA's subject, when there is one.
    pub ca: Option<String>,
    /// Each ACME account: its file and its URL.
    pub accounts: Vec<(String, String)>,
    /// Each certificate: its directory, its names and its end of validity.
    pub certificates: Vec<Certificate>,
}

/// One issued certificate in the archive.
#[derive(Debug, PartialEq, Eq)]
pub struct Certificate {
    /// `acme/certs/<set>`.
    pub dir: String,
    /// The names it covers.
    pub names: Vec<String>,
    /// When it expires.
    pub not_after: SystemTime,
}

/// Checks that every key parses and matches its certificate: the local CA's key and
/// certificate (both or neither, the certificate a CA), each certificate directory's
/// `key.pem` and the leaf of its `chain.pem` (both present), each account's key. Pure.
///
/// # Errors
/// [`Error::ArchiveMaterial`] naming the file and what is wrong with it.
pub fn check(files: &[File]) -> Result<Material, Error> {
    let by_path: BTreeMap<&str, &File> = files.iter().map(|f| (f.path.as_str(), f)).collect();
    let bad = |path: &str, what: String| Error::ArchiveMaterial {
        path: path.to_owned(),
        what,
    };
    let mut material = Material::default();
    let ca = (
        by_path.get("local-ca/ca.pem"),
        by_path.get("local-ca/ca.key"),
    );
    match ca {
        (None, None) => {}
        (Some(cert), None) => return Err(bad(&cert.path, "has no ca.key beside it".into())),
        (None, Some(key)) => return Err(bad(&key.path, "has no ca.pem beside it".into())),
        (Some(cert), Some(key)) => {
            let (subject, is_ca) = leaf_matches(cert, key)?;
            if !is_ca {
                return Err(bad(&cert.path, "is not a CA certificate".into()));
            }
            material.ca = Some(subject);
        }
    }
    for f in files.iter().filter(|f| f.kind == Kind::Account) {
        let creds: instant_acme::AccountCredentials =
            serde_json::from_slice(&f.data).map_err(|e| {
                bad(
                    &f.path,
                    format!("the account does not parse ({})", json_error(&e)),
                )
            })?;
        KeyPair::try_from(creds.private_key())
            .map_err(|e| bad(&f.path, format!("the account key does not parse ({e})")))?;
        let url = serde_json::from_slice::<serde_json::Value>(&f.data)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_owned))
            .unwrap_or_default();
        // SECURITY: printed by `state import`; no terminal escapes from a crafted archive.
        if url.chars().any(char::is_control) {
            return Err(bad(
                &f.path,
                "the account URL holds control characters".into(),
            ));
        }
        material.accounts.push((f.path.clone(), url));
    }
    let sets: BTreeSet<&str> = files
        .iter()
        .filter(|f| matches!(f.kind, Kind::CertKey | Kind::Chain | Kind::Origin))
        .filter_map(|f| f.path.rsplit_once('/').map(|(dir, _)| dir))
        .collect();
    for dir in sets {
        let chain_path = format!("{dir}/chain.pem");
        let key_path = format!("{dir}/key.pem");
        let (Some(chain), Some(key)) = (
            by_path.get(chain_path.as_str()),
            by_path.get(key_path.as_str()),
        ) else {
            return Err(bad(dir, "needs both chain.pem and key.pem".into()));
        };
        leaf_matches(chain, key)?;
        let pem = std::str::from_utf8(&chain.data).unwrap_or("");
        let leaf = crate::verify::chain(pem).map_err(|e| bad(&chain.path, e.to_string()))?;
        let first = leaf
            .first()
            .ok_or_else(|| bad(&chain.path, "holds no certificate".into()))?;
        let info = crate::verify::info(first).map_err(|e| bad(&chain.path, e.to_string()))?;
        material.certificates.push(Certificate {
            dir: dir.to_owned(),
            names: names_of(first),
            not_after: info.not_after,
        });
    }
    Ok(material)
}

/// A restore checked against its target directory by [`prepare`], ready to [`Plan::write`].
#[derive(Debug)]
pub struct Plan<'a> {
    state_dir: PathBuf,
    files: Vec<&'a File>,
}

/// What happened to one file of a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// There was no such file.
    New,
    /// The same content was there.
    Same,
    /// Other content was there, and is replaced.
    Replaced,
}

/// One file restored.
#[derive(Debug)]
pub struct Restored {
    /// Relative to the state directory.
    pub path: String,
    /// What it is.
    pub kind: Kind,
    /// What was there before.
    pub change: Change,
}

/// Checks `state_dir` before a restore of `files`, writing nothing: no link on the way to
/// any file, and no other local CA there unless `force`.
///
/// # Errors
/// [`Error::StateLink`], [`Error::StateDirOtherCa`], [`Error::Io`] when the directory cannot
/// be read.
pub fn prepare<'a>(files: &'a [File], state_dir: &Path, force: bool) -> Result<Plan<'a>, Error> {
    for f in files {
        no_links(state_dir, &f.path)?;
    }
    if let Some(ca) = files.iter().find(|f| f.kind == Kind::CaCert) {
        let there = state_dir.join(&ca.path);
        match std::fs::read(&there) {
            Ok(existing) if existing != ca.data && !force => {
                return Err(Error::StateDirOtherCa {
                    path: state_dir.to_owned(),
                });
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::Io {
                    action: "read",
                    path: there,
                    source,
                });
            }
        }
    }
    let mut files: Vec<&File> = files.iter().collect();
    // Keys before what they belong to, as labgate itself writes them: a restore cut short
    // leaves a key without its certificate (ordered again), never the reverse.
    files.sort_by(|a, b| (a.kind, &a.path).cmp(&(b.kind, &b.path)));
    Ok(Plan {
        state_dir: state_dir.to_owned(),
        files,
    })
}

impl Plan<'_> {
    /// Writes the files: the state directory made (0700) and checked as labgate's start
    /// checks it, missing directories made 0700, each file written 0600 through a temporary
    /// file and a rename. Run by root into a state directory another user owns (labgate's,
    /// as systemd's `StateDirectory=` makes it), what is written takes that owner, so labgate
    /// can read it.
    ///
    /// # Errors
    /// [`Error::Io`] and the state directory's errors of
    /// [`prepare_state_dir`](crate::store::prepare_state_dir).
    pub fn write(self) -> Result<Vec<Restored>, Error> {
        let io = |action, path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io {
                action,
                path,
                source,
            }
        };
        let owner = adopted_owner(&self.state_dir)?;
        if owner.is_none() {
            crate::store::prepare_state_dir(&self.state_dir)?;
        }
        let adopt = |path: &Path| match owner {
            Some((uid, gid)) => std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(io("change the owner of", path)),
            None => Ok(()),
        };
        let mut done = Vec::with_capacity(self.files.len());
        for f in self.files {
            let target = self.state_dir.join(&f.path);
            // Each missing directory on the way, made 0700 and given the owner.
            let mut at = self.state_dir.clone();
            let parts: Vec<&str> = f.path.split('/').collect();
            for part in &parts[..parts.len().saturating_sub(1)] {
                at.push(part);
                match std::fs::DirBuilder::new().mode(DIR_MODE).create(&at) {
                    Ok(()) => adopt(&at)?,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io("create the directory", &at)(e)),
                }
            }
            let change = match std::fs::read(&target) {
                Ok(existing) if existing == f.data => Change::Same,
                Ok(_) => Change::Replaced,
                Err(_) => Change::New,
            };
            write_atomic(&target, &f.data, FILE_MODE)?;
            adopt(&target)?;
            done.push(Restored {
                path: f.path.clone(),
                kind: f.kind,
                change,
            });
        }
        Ok(done)
    }
}

/// When root restores into a state directory another user owns (labgate's user, as
/// systemd's `StateDirectory=` makes it), that user: what is written takes it as owner. The
/// directory must then be a real directory (or root's link to one) that neither its group
/// nor others can write. `None` in every other case, which
/// [`prepare_state_dir`](crate::store::prepare_state_dir) decides.
fn adopted_owner(state_dir: &Path) -> Result<Option<(u32, u32)>, Error> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let (Ok(link), Ok(dir)) = (
        std::fs::symlink_metadata(state_dir),
        std::fs::metadata(state_dir),
    ) else {
        return Ok(None);
    };
    let foreign_link = link.file_type().is_symlink() && link.uid() != 0;
    if dir.uid() == 0 || !dir.is_dir() || foreign_link {
        return Ok(None);
    }
    // SECURITY: as in `prepare_state_dir`: no one else may plant keys in it.
    if dir.mode() & 0o022 != 0 {
        return Err(Error::StateDirWritable {
            path: state_dir.to_owned(),
        });
    }
    Ok(Some((dir.uid(), dir.gid())))
}

/// The manifest: the archive's JSON.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    labgate: String,
    created: String,
    files: Vec<Entry>,
}

/// One file in the manifest.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    path: String,
    /// Octal, as `ls` and `chmod` write it.
    mode: String,
    size: u64,
    sha256: String,
    /// The content, base64.
    data: String,
}

/// `account-<hex>.json`, as [`crate::account`] names them.
fn is_account_file(name: &str) -> bool {
    name.strip_prefix("account-")
        .and_then(|n| n.strip_suffix(".json"))
        .is_some_and(|tag| {
            !tag.is_empty() && tag.len() <= 64 && tag.bytes().all(|b| b.is_ascii_hexdigit())
        })
}

/// A certificate directory's name as [`crate::store`] makes it: a host name (`*` as `_`),
/// `-` and a tag. Never `.` or `..`.
fn is_set_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// Whether `rel` is a directory on the way to key material (collect descends into it).
fn leads_to_state(rel: &str) -> bool {
    let parts: Vec<&str> = rel.split('/').collect();
    match parts.as_slice() {
        ["local-ca"] | ["acme"] | ["acme", "certs"] => true,
        ["acme", "certs", set] => is_set_name(set),
        _ => false,
    }
}

/// Refuses a link at any existing component between `state_dir` and its file `rel`.
fn no_links(state_dir: &Path, rel: &str) -> Result<(), Error> {
    let mut at = state_dir.to_owned();
    for part in rel.split('/') {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(Error::StateLink { path: at });
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(Error::Io {
                    action: "read",
                    path: at,
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Checks that `key` parses and is the key of the first certificate in `cert`: the leaf's
/// subject and whether it is a CA.
fn leaf_matches(cert: &File, key: &File) -> Result<(String, bool), Error> {
    let bad = |path: &str, what: String| Error::ArchiveMaterial {
        path: path.to_owned(),
        what,
    };
    let key_pem =
        std::str::from_utf8(&key.data).map_err(|_| bad(&key.path, "is not a PEM key".into()))?;
    let pair = KeyPair::from_pem(key_pem)
        .map_err(|e| bad(&key.path, format!("the key does not parse ({e})")))?;
    let der = CertificateDer::from_pem_slice(&cert.data)
        .map_err(|e| bad(&cert.path, format!("the certificate is not PEM ({e})")))?;
    let (_, parsed) = X509Certificate::from_der(der.as_ref())
        .map_err(|e| bad(&cert.path, format!("the certificate does not parse ({e})")))?;
    if parsed.public_key().raw != pair.subject_public_key_info().as_slice() {
        return Err(bad(
            &key.path,
            format!(
                "is not the key of the certificate in {}: the pair comes from two different certificates",
                cert.path
            ),
        ));
    }
    Ok((parsed.subject().to_string(), parsed.is_ca()))
}

/// The DNS names of a certificate's subjectAltName.
fn names_of(leaf: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, cert)) = X509Certificate::from_der(leaf.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some((*d).to_owned()),
            _ => None,
        })
        .collect()
}

/// Where and what kind of JSON error, without serde's text: it may quote a value, and values
/// here are keys.
fn json_error(e: &serde_json::Error) -> String {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected field or value",
        serde_json::error::Category::Eof => "ends early",
    };
    format!("{kind} at line {}, column {}", e.line(), e.column())
}

/// Lower-case hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use time::OffsetDateTime;

    use super::*;
    use crate::local_ca::LocalCa;

    /// A state directory as labgate leaves it: local CA, an account, a certificate, and the
    /// files that rebuild.
    fn state() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("dir");
        let d = dir.path();
        let ca = LocalCa::load_or_create(d).expect("CA");
        let leaf = ca
            .issue(
                &["lab.example.test".into(), "*.lab.example.test".into()],
                OffsetDateTime::now_utc(),
            )
            .expect("leaf");
        let set = d.join("acme/certs/lab.example.test-0a1b2c3d");
        write_atomic(&set.join("key.pem"), leaf.key_pem.as_bytes(), 0o600).expect("key");
        write_atomic(&set.join("chain.pem"), leaf.chain_pem.as_bytes(), 0o644).expect("chain");
        write_atomic(
            &set.join("origin.txt"),
            b"https://acme.test/dir EcdsaP256 -\n",
            0o644,
        )
        .expect("origin");
        write_atomic(&d.join("acme/account-0123456789ab.json"), &account(), 0o600)
            .expect("account");
        for rebuilt in [
            "querylog.sqlite",
            "querylog.sqlite-wal",
            "history.sqlite",
            "labgate.pid",
            "labgate.stderr",
        ] {
            std::fs::write(d.join(rebuilt), "rebuilt").expect("write");
        }
        dir
    }

    /// instant-acme's stored credentials with a fresh key.
    fn account() -> Vec<u8> {
        let key = KeyPair::generate().expect("key");
        serde_json::to_vec(&serde_json::json!({
            "id": "https://acme.test/acct/1",
            "key_pkcs8": URL_SAFE_NO_PAD.encode(key.serialize_der()),
            "directory": "https://acme.test/dir",
        }))
        .expect("json")
    }

    fn file(path: &str, data: &[u8]) -> File {
        File::new(path, 0o600, data.to_vec()).expect("a kept path")
    }

    #[test]
    fn only_what_cannot_be_rebuilt_is_selected() {
        use Selection::{Keep, Leave};
        #[rustfmt::skip]
        let table: &[(&str, Selection)] = &[
            ("local-ca/ca.key", Keep(Kind::CaKey)),
            ("local-ca/ca.pem", Keep(Kind::CaCert)),
            ("acme/account-0123456789ab.json", Keep(Kind::Account)),
            ("acme/certs/lab.example.test-0a1b2c3d/key.pem", Keep(Kind::CertKey)),
            ("acme/certs/_.lab.example.test-0a1b2c3d/chain.pem", Keep(Kind::Chain)),
            ("acme/certs/lab.example.test-0a1b2c3d/origin.txt", Keep(Kind::Origin)),
            ("acme/certs/lab.example.test-0a1b2c3d/.key.pem.tmp42", Leave("not a file labgate writes")),
            ("local-ca/.ca.key.tmp42", Leave("a temporary file")),
            ("acme/.account-0123456789ab.json.tmp7", Leave("a temporary file")),
            ("querylog.sqlite", Leave("the DNS query log: it starts anew")),
            ("querylog.sqlite-wal", Leave("the DNS query log: it starts anew")),
            ("history.sqlite", Leave("the status page's history: it starts anew")),
            ("history.sqlite-shm", Leave("the status page's history: it starts anew")),
            ("labgate.pid", Leave("made at every start")),
            ("labgate-upgrade.sock", Leave("made at every start")),
            ("local-ca/other.pem", Leave("not key material labgate keeps")),
            ("acme/account-xyz.json", Leave("not key material labgate keeps")),
            ("acme/account-.json", Leave("not key material labgate keeps")),
            ("acme/certs/../key.pem", Leave("not key material labgate keeps")),
            ("acme/certs/./key.pem", Leave("not key material labgate keeps")),
            ("acme/certs/a/b/key.pem", Leave("not key material labgate keeps")),
            ("ca.key", Leave("not key material labgate keeps")),
            ("labgate.stderr", Leave("not key material labgate keeps")),
        ];
        for (path, want) in table {
            assert_eq!(select(path), *want, "{path}");
        }
    }

    #[test]
    fn no_path_outside_the_state_directory_is_accepted() {
        #[rustfmt::skip]
        let table: &[(&str, Result<Kind, &str>)] = &[
            ("local-ca/ca.key", Ok(Kind::CaKey)),
            ("acme/certs/lab.example.test-0a1b2c3d/key.pem", Ok(Kind::CertKey)),
            ("", Err("is empty")),
            ("/etc/shadow", Err("is absolute")),
            ("/local-ca/ca.key", Err("is absolute")),
            ("../local-ca/ca.key", Err("climbs out of the state directory with `..`")),
            ("local-ca/../../etc/cron.d/x", Err("climbs out of the state directory with `..`")),
            ("acme/certs/../../../root/.ssh/key.pem", Err("climbs out of the state directory with `..`")),
            ("acme/certs/../certs/x/key.pem", Err("climbs out of the state directory with `..`")),
            ("local-ca//ca.key", Err("has an empty or `.` component")),
            ("./local-ca/ca.key", Err("has an empty or `.` component")),
            ("local-ca/ca.key/", Err("has an empty or `.` component")),
            ("local-ca\\ca.key", Err("holds a control character or a backslash")),
            ("local-ca/ca.key\n", Err("holds a control character or a backslash")),
            ("local-ca/ca\0.key", Err("holds a control character or a backslash")),
            ("querylog.sqlite", Err("is not a file labgate keeps in its state directory")),
            (".bashrc", Err("is not a file labgate keeps in its state directory")),
            ("acme/certs/x/authorized_keys", Err("is not a file labgate keeps in its state directory")),
        ];
        for (path, want) in table {
            assert_eq!(check_path(path), *want, "{path:?}");
        }
        assert!(check_path(&"a/".repeat(300)).is_err());
    }

    #[test]
    fn export_takes_the_keys_and_leaves_what_rebuilds() {
        let dir = state();
        let got = collect(dir.path()).expect("collect");
        let paths: Vec<&str> = got.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "acme/account-0123456789ab.json",
                "acme/certs/lab.example.test-0a1b2c3d/chain.pem",
                "acme/certs/lab.example.test-0a1b2c3d/key.pem",
                "acme/certs/lab.example.test-0a1b2c3d/origin.txt",
                "local-ca/ca.key",
                "local-ca/ca.pem",
            ]
        );
        let left: Vec<&str> = got.left_out.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            left,
            [
                "history.sqlite",
                "labgate.pid",
                "labgate.stderr",
                "querylog.sqlite",
                "querylog.sqlite-wal"
            ]
        );
        let ca_key = got
            .files
            .iter()
            .find(|f| f.kind == Kind::CaKey)
            .expect("key");
        assert_eq!(ca_key.mode, 0o600);
        assert!(
            !format!("{got:?}").contains("PRIVATE"),
            "Debug never shows key material"
        );
        let material = check(&got.files).expect("material");
        assert_eq!(
            material.ca.as_deref(),
            Some("CN=labgate local CA, O=labgate")
        );
        assert_eq!(
            material.accounts,
            [(
                "acme/account-0123456789ab.json".to_owned(),
                "https://acme.test/acct/1".to_owned()
            )]
        );
        assert_eq!(
            material.certificates[0].names,
            ["lab.example.test", "*.lab.example.test"]
        );
    }

    #[test]
    fn a_link_where_keys_belong_is_refused_and_others_are_left_out() {
        let dir = state();
        let outside = tempfile::tempdir().expect("outside");
        std::fs::write(outside.path().join("secret"), "not labgate's").expect("write");
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("notes"))
            .expect("link");
        let got = collect(dir.path()).expect("collect");
        assert!(
            got.left_out
                .contains(&("notes".into(), "a symbolic link: not followed")),
            "{:?}",
            got.left_out
        );
        let key = dir.path().join("local-ca/ca.key");
        std::fs::rename(&key, outside.path().join("ca.key")).expect("move");
        std::os::unix::fs::symlink(outside.path().join("ca.key"), &key).expect("link");
        let e = collect(dir.path()).expect_err("a linked key");
        assert!(
            matches!(&e, Error::StateLink { path } if *path == key),
            "{e}"
        );
        std::fs::remove_file(&key).expect("unlink");
        std::fs::rename(outside.path().join("ca.key"), &key).expect("back");
        let certs = dir.path().join("acme/certs");
        std::fs::rename(&certs, outside.path().join("certs")).expect("move");
        std::os::unix::fs::symlink(outside.path().join("certs"), &certs).expect("link");
        assert!(matches!(collect(dir.path()), Err(Error::StateLink { .. })));
    }

    #[test]
    fn an_archive_round_trips() {
        let dir = state();
        let files = collect(dir.path()).expect("collect").files;
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_765_000_000);
        let bytes = seal(&files, "0.1.0", now);
        let text = String::from_utf8(bytes.clone()).expect("text");
        assert!(text.starts_with("labgate-state 1\n{"), "{text}");
        assert!(text.contains("\"mode\": \"0600\""), "{text}");
        assert!(
            text.contains("\"created\": \"2025-12-06T05:46:40Z\""),
            "{text}"
        );
        let archive = open(&bytes).expect("open");
        assert_eq!(archive.labgate, "0.1.0");
        assert_eq!(archive.files, files);
    }

    #[test]
    fn a_changed_or_cut_archive_is_refused() {
        let dir = state();
        let files = collect(dir.path()).expect("collect").files;
        let bytes = seal(&files, "0.1.0", SystemTime::now());
        // Every byte flipped, one at a time: never accepted.
        for at in 0..bytes.len() {
            let mut changed = bytes.clone();
            changed[at] ^= 0x01;
            let e = open(&changed).expect_err("a flipped byte");
            assert!(
                matches!(
                    e,
                    Error::ArchiveCorrupted { .. }
                        | Error::ArchiveTruncated
                        | Error::ArchiveFormat { .. }
                ),
                "byte {at}: {e}"
            );
        }
        // Every length short of the whole.
        for len in 0..bytes.len() {
            let e = open(&bytes[..len]).expect_err("cut short");
            assert!(
                matches!(
                    e,
                    Error::ArchiveCorrupted { .. }
                        | Error::ArchiveTruncated
                        | Error::ArchiveFormat { .. }
                ),
                "length {len}: {e}"
            );
        }
        let half = open(&bytes[..bytes.len() / 2]).expect_err("half");
        assert!(matches!(half, Error::ArchiveTruncated), "{half}");
        assert!(half.to_string().contains("export it again"), "{half}");
        let mut body = bytes;
        let middle = body.len() / 2;
        body[middle] = if body[middle] == b'A' { b'B' } else { b'A' };
        let e = open(&body).expect_err("changed");
        assert_eq!(
            e.to_string(),
            "the state archive is corrupted: its checksum (the last line) does not match its content; it changed since it was exported: use another copy, or export it again"
        );
    }

    /// An archive whose manifest is edited and sealed again: the seal holds, the entry does
    /// not.
    fn resealed(bytes: &[u8], edit: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
        let text = std::str::from_utf8(bytes).expect("text");
        let (_, rest) = text.split_once('\n').expect("first line");
        let json = &rest[..rest.rfind("sha256 ").expect("seal")];
        let mut manifest: serde_json::Value = serde_json::from_str(json).expect("manifest");
        edit(&mut manifest);
        let mut out = format!("{MAGIC} {VERSION}\n{manifest}\n").into_bytes();
        let seal = hex(&Sha256::digest(&out));
        out.extend(format!("sha256 {seal}\n").into_bytes());
        out
    }

    #[test]
    fn each_entry_is_checked_against_the_manifest() {
        let dir = state();
        let files = collect(dir.path()).expect("collect").files;
        let bytes = seal(&files, "0.1.0", SystemTime::now());
        assert!(open(&resealed(&bytes, |_| {})).is_ok(), "a faithful reseal");
        let data_of = |m: &serde_json::Value, i: usize| {
            BASE64
                .decode(m["files"][i]["data"].as_str().expect("data"))
                .expect("base64")
        };
        #[allow(clippy::type_complexity, reason = "a table")]
        let table: &[(&str, Box<dyn Fn(&mut serde_json::Value)>, &str)] = &[
            (
                "content changed",
                Box::new(|m| {
                    let mut data = data_of(m, 0);
                    data[10] ^= 1;
                    m["files"][0]["data"] = BASE64.encode(&data).into();
                }),
                "the state archive is corrupted: acme/account-0123456789ab.json: its SHA-256 does not match the manifest",
            ),
            (
                "content shortened",
                Box::new(|m| {
                    let data = data_of(m, 0);
                    m["files"][0]["data"] = BASE64.encode(&data[1..]).into();
                }),
                "the state archive is corrupted: acme/account-0123456789ab.json: its size does not match the manifest",
            ),
            (
                "not base64",
                Box::new(|m| m["files"][0]["data"] = "%%%".into()),
                "the state archive is corrupted: acme/account-0123456789ab.json: its content is not base64",
            ),
            (
                "a path out",
                Box::new(|m| m["files"][0]["path"] = "../../etc/cron.d/labgate".into()),
                "the state archive's entry \"../../etc/cron.d/labgate\" climbs out of the state directory with `..`",
            ),
            (
                "an absolute path",
                Box::new(|m| m["files"][0]["path"] = "/root/.ssh/authorized_keys".into()),
                "the state archive's entry \"/root/.ssh/authorized_keys\" is absolute",
            ),
            (
                "twice",
                Box::new(|m| {
                    let first = m["files"][0].clone();
                    m["files"].as_array_mut().expect("files").push(first);
                }),
                "the state archive's entry \"acme/account-0123456789ab.json\" appears twice",
            ),
            (
                "an unknown field (a link, say)",
                Box::new(|m| m["files"][0]["link"] = "/etc/shadow".into()),
                "not a labgate state archive: its manifest does not parse",
            ),
            (
                "an escape in the version",
                Box::new(|m| m["labgate"] = "\u{1b}[2J0.1.0".into()),
                "not a labgate state archive: its manifest's `labgate` is not a version or a time",
            ),
            (
                "a key where a number belongs",
                Box::new(|m| m["files"][0]["size"] = m["files"][0]["data"].clone()),
                "not a labgate state archive: its manifest does not parse (unexpected field or value at line",
            ),
        ];
        for (case, edit, want) in table {
            let e = open(&resealed(&bytes, edit)).expect_err(case);
            assert!(e.to_string().starts_with(want), "{case}: {e}");
            // SECURITY: serde's own text would quote the value.
            assert!(
                e.to_string().len() < 200,
                "{case}: no content in the error: {e}"
            );
        }
        let newer = String::from_utf8(bytes).expect("text").replacen(
            "labgate-state 1",
            "labgate-state 2",
            1,
        );
        let e = open(newer.as_bytes()).expect_err("newer");
        assert!(e.to_string().contains("format version 2 is newer"), "{e}");
        let e = open(b"-----BEGIN PRIVATE KEY-----\n").expect_err("not an archive");
        assert!(matches!(e, Error::ArchiveFormat { .. }), "{e}");
        assert!(matches!(open(b""), Err(Error::ArchiveFormat { .. })));
    }

    #[test]
    fn every_key_must_match_its_certificate() {
        let dir = state();
        let files = collect(dir.path()).expect("collect").files;
        let other = LocalCa::load_or_create(tempfile::tempdir().expect("dir").path())
            .expect("another CA")
            .issue(&["other.test".into()], OffsetDateTime::now_utc())
            .expect("leaf");
        let other_key = other.key_pem.as_bytes();
        let set = "acme/certs/lab.example.test-0a1b2c3d";
        let with = |path: &str, data: Option<&[u8]>| -> Vec<File> {
            let mut out: Vec<File> = files.iter().filter(|f| f.path != path).cloned().collect();
            if let Some(data) = data {
                out.push(file(path, data));
            }
            out
        };
        #[rustfmt::skip]
        let table: Vec<(&str, Vec<File>, String)> = vec![
            ("another key for the CA", with("local-ca/ca.key", Some(other_key)),
             "local-ca/ca.key: is not the key of the certificate in local-ca/ca.pem".into()),
            ("another key for the certificate", with(&format!("{set}/key.pem"), Some(other_key)),
             format!("{set}/key.pem: is not the key of the certificate in {set}/chain.pem")),
            ("a key that does not parse", with("local-ca/ca.key", Some(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")),
             "local-ca/ca.key: the key does not parse".into()),
            ("a chain that does not parse", with(&format!("{set}/chain.pem"), Some(b"garbage")),
             format!("{set}/chain.pem: the certificate is not PEM")),
            ("the CA without its key", with("local-ca/ca.key", None),
             "local-ca/ca.pem: has no ca.key beside it".into()),
            ("a key without its chain", with(&format!("{set}/chain.pem"), None),
             format!("{set}: needs both chain.pem and key.pem")),
            ("a leaf as the CA", with("local-ca/ca.pem", Some(other.chain_pem.as_bytes())).into_iter()
                .filter(|f| f.path != "local-ca/ca.key").chain([file("local-ca/ca.key", other_key)]).collect(),
             "local-ca/ca.pem: is not a CA certificate".into()),
            ("an account that does not parse", with("acme/account-0123456789ab.json", Some(b"{\"id\": 1}")),
             "acme/account-0123456789ab.json: the account does not parse".into()),
        ];
        for (case, files, want) in table {
            let e = check(&files).expect_err(case);
            assert!(matches!(e, Error::ArchiveMaterial { .. }), "{case}: {e:?}");
            assert!(e.to_string().starts_with(&want), "{case}: {e}");
            assert!(
                !e.to_string().contains("PRIVATE"),
                "{case}: no key material"
            );
        }
    }

    #[test]
    fn a_restore_writes_private_files_and_refuses_another_ca() {
        let from = state();
        let files = collect(from.path()).expect("collect").files;
        let root = tempfile::tempdir().expect("dir");
        let to = root.path().join("new-state");
        let done = prepare(&files, &to, false)
            .expect("prepare")
            .write()
            .expect("write");
        assert!(done.iter().all(|r| r.change == Change::New), "{done:?}");
        assert_eq!(done[0].kind, Kind::CaKey, "keys first");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o7777;
        assert_eq!(mode(&to), 0o700);
        for f in &files {
            let p = to.join(&f.path);
            assert_eq!(std::fs::read(&p).expect("read"), f.data(), "{}", f.path);
            assert_eq!(mode(&p), 0o600, "{}", f.path);
            assert_eq!(mode(p.parent().expect("parent")), 0o700, "{}", f.path);
        }
        // The restored directory is what labgate reads.
        let ca = LocalCa::load_or_create(&to).expect("CA");
        assert_eq!(
            ca.cert_pem().as_bytes(),
            std::fs::read(from.path().join("local-ca/ca.pem")).expect("ca")
        );
        // Again: the same CA is no conflict.
        let again = prepare(&files, &to, false)
            .expect("same CA")
            .write()
            .expect("write");
        assert!(again.iter().all(|r| r.change == Change::Same), "{again:?}");
        // Another CA is kept unless forced.
        let other = tempfile::tempdir().expect("dir");
        LocalCa::load_or_create(other.path()).expect("another CA");
        let before = std::fs::read(other.path().join("local-ca/ca.key")).expect("key");
        let e = prepare(&files, other.path(), false).expect_err("another CA");
        assert!(matches!(e, Error::StateDirOtherCa { .. }), "{e}");
        assert!(e.to_string().contains("--force"), "{e}");
        assert_eq!(
            std::fs::read(other.path().join("local-ca/ca.key")).expect("key"),
            before
        );
        let forced = prepare(&files, other.path(), true)
            .expect("forced")
            .write()
            .expect("write");
        assert!(forced.iter().any(|r| r.change == Change::Replaced));
    }

    #[test]
    fn a_restore_through_a_link_writes_nothing() {
        let from = state();
        let files = collect(from.path()).expect("collect").files;
        let to = tempfile::tempdir().expect("dir");
        let elsewhere = tempfile::tempdir().expect("elsewhere");
        std::os::unix::fs::symlink(elsewhere.path(), to.path().join("acme")).expect("link");
        let e = prepare(&files, to.path(), false).expect_err("a link");
        assert!(
            matches!(&e, Error::StateLink { path } if *path == to.path().join("acme")),
            "{e}"
        );
        assert_eq!(
            std::fs::read_dir(elsewhere.path()).expect("dir").count(),
            0,
            "nothing written through the link"
        );
        assert!(
            !to.path().join("local-ca").exists(),
            "nothing written at all"
        );
    }
}
