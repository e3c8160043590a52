//! Snapshots from TOML text, for the tests, benches and fuzz targets of this crate and the
//! crates above it. Built with the `test-util` feature, which production never enables.

use crate::loaded::{Found, Loaded};
use crate::{Snapshot, Sources, compile, parse};

/// The snapshot of a configuration held in memory as one file, `test.toml`, naming no file
/// that exists (see [`loaded`] for one that does).
///
/// # Panics
/// When the text does not parse or compile; the message lists every diagnostic.
pub fn snapshot(toml: &str) -> Snapshot {
    compile(&loaded(toml, &[]), 1).unwrap_or_else(|d| panic!("the test configuration: {d}"))
}

/// A configuration held in memory as one file, `test.toml`, with the files it names: each a
/// path as the configuration writes it (relative to the directory of `test.toml`, the
/// current one) and its contents. Other named files are missing.
///
/// # Panics
/// When the text does not parse; the message lists every syntax error.
pub fn loaded(toml: &str, files: &[(&str, &[u8])]) -> Loaded {
    let mut sources = Sources::new();
    let id = sources.add("test.toml", toml);
    let mut loaded = parse(sources).unwrap_or_else(|e| panic!("the test configuration: {e}"));
    for (written, contents) in files {
        let path = loaded.sources.file(id).resolve(written);
        loaded.named.insert(path, Found::Read(contents.to_vec()));
    }
    loaded
}

/// Every diagnostic of compiling `toml` with `files` (as [`loaded`]), one line each:
/// severity, key and message, in file order; empty when it compiles without warnings.
#[cfg(test)]
pub(crate) fn diagnostics(toml: &str, files: &[(&str, &[u8])]) -> Vec<String> {
    diagnostics_of(&loaded(toml, files))
}

/// Every diagnostic of compiling a loaded configuration, as [`diagnostics`].
#[cfg(test)]
pub(crate) fn diagnostics_of(loaded: &Loaded) -> Vec<String> {
    let d = match compile(loaded, 1) {
        Ok(s) => s.warnings,
        Err(d) => d.0,
    };
    d.iter()
        .map(|d| format!("{} `{}`: {}", d.severity, d.key, d.message))
        .collect()
}
