//! What `load` hands to compilation: the configuration's files parsed, and every
//! file they name (blocklists, CA bundles, certificates and keys, secrets) as it was found.
//! Compiling reads nothing else, so it is a pure function of a [`Loaded`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::raw::RawFile;
use crate::source::{FileId, Sources};

/// A configuration as read: its parsed files and the files they name.
#[derive(Debug)]
pub struct Loaded {
    /// The files' text, for locations and the content hash.
    pub sources: Sources,
    /// Each file's raw tables.
    pub files: Vec<(FileId, RawFile)>,
    /// The files the configuration names, as they were found; empty for a configuration
    /// held in memory, so every file it names is missing.
    pub named: NamedFiles,
}

/// The files a configuration names, by the path a reference resolves to (relative paths
/// start at the naming file's directory, see [`crate::SourceFile::resolve`]).
#[derive(Clone, Default)]
pub struct NamedFiles {
    files: BTreeMap<PathBuf, Found>,
}

/// How a named file was found.
#[derive(Clone, PartialEq, Eq)]
pub enum Found {
    /// Read whole: a blocklist or CA bundle, or a secret the snapshot carries (the admin
    /// endpoint's credentials), whose contents compiling uses.
    Read(Vec<u8>),
    /// A secret read whole that users other than its owner may read too (a mode beyond
    /// 0600): compiling uses it, and warns.
    Shared(Vec<u8>),
    /// Opened, not read: key material and secrets, which only the code that uses them reads.
    Opened,
    /// Neither opened nor read; compiling reports it at every reference.
    Failed(std::io::ErrorKind),
}

impl NamedFiles {
    /// Records how a file was found, replacing what was recorded for its path.
    pub fn insert(&mut self, path: impl Into<PathBuf>, found: Found) {
        self.files.insert(path.into(), found);
    }

    /// How a file was found; `None` when it was not looked at.
    pub fn get(&self, path: &Path) -> Option<&Found> {
        self.files.get(path)
    }
}

// Paths and sizes only: the bytes of a CA bundle or a list would drown a log line.
impl fmt::Debug for NamedFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(&self.files).finish()
    }
}

impl fmt::Debug for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read(bytes) => write!(f, "Read({} bytes)", bytes.len()),
            Self::Shared(bytes) => write!(f, "Shared({} bytes)", bytes.len()),
            Self::Opened => f.write_str("Opened"),
            Self::Failed(kind) => write!(f, "Failed({kind:?})"),
        }
    }
}
