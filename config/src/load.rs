//! Reading configuration files: one file, or every `*.toml` under a directory (sorted, hidden
//! entries such as `.git` skipped), each parsed into a [`RawFile`].

use std::path::{Path, PathBuf};

use crate::error::{Diagnostic, Diagnostics, Error, Severity};
use crate::raw::RawFile;
use crate::source::{FileId, Sources};

/// The parsed files of one configuration, ready for [`crate::compile`].
#[derive(Debug)]
pub struct Loaded {
    /// The files' text, for locations and the content hash.
    pub sources: Sources,
    /// Each file's raw tables.
    pub files: Vec<(FileId, RawFile)>,
}

/// Reads and parses a file or a directory.
///
/// # Errors
/// [`Error::Read`] when a path cannot be read, [`Error::Empty`] for a directory without
/// `*.toml`, and [`Error::Invalid`] with every file's syntax errors.
pub fn load(path: &Path) -> Result<Loaded, Error> {
    let read_err = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    let mut paths = Vec::new();
    if meta.is_dir() {
        collect(path, &mut paths)?;
        if paths.is_empty() {
            return Err(Error::Empty {
                path: path.to_owned(),
            });
        }
        paths.sort();
    } else {
        paths.push(path.to_owned());
    }
    let mut sources = Sources::new();
    for p in paths {
        let text = std::fs::read_to_string(&p).map_err(|source| Error::Read {
            path: p.clone(),
            source,
        })?;
        sources.add(p, text);
    }
    parse(sources)
}

/// Parses sources already in memory (the built-in demo, tests).
///
/// # Errors
/// [`Error::Invalid`] with every file's syntax errors.
pub fn parse(sources: Sources) -> Result<Loaded, Error> {
    let mut files = Vec::new();
    let mut diags = Vec::new();
    for (id, f) in sources.iter() {
        match toml::from_str::<RawFile>(&f.text) {
            Ok(raw) => files.push((id, raw)),
            Err(e) => diags.push(Diagnostic {
                severity: Severity::Error,
                location: e.span().map(|s| sources.locate(id, s)),
                key: String::new(),
                message: e.message().trim_end().to_owned(),
                expected: None,
                hint: None,
            }),
        }
    }
    if diags.is_empty() {
        Ok(Loaded { sources, files })
    } else {
        Err(Error::Invalid(Diagnostics(diags)))
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Read {
        path: dir.to_owned(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| Error::Read {
            path: dir.to_owned(),
            source,
        })?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
    Ok(())
}
