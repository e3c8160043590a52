//! Errors and diagnostics: what is wrong, where, what was expected, and what to do.

use std::fmt;
use std::path::PathBuf;

use crate::source::Location;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The configuration is served, but probably not as the user meant.
    Warning,
    /// The configuration is rejected.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Warning => "warning",
            Self::Error => "error",
        })
    }
}

/// One finding about the configuration, with everything a user needs to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// File, line and column, when the finding has a place.
    pub location: Option<Location>,
    /// The TOML key path, e.g. `service[2].allow[0]`.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// What was expected there.
    pub expected: Option<String>,
    /// What to do about it.
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = &self.location {
            write!(f, "{loc}: ")?;
        }
        write!(f, "{}: ", self.severity)?;
        if !self.key.is_empty() {
            write!(f, "`{}`: ", self.key)?;
        }
        f.write_str(&self.message)?;
        if let Some(e) = &self.expected {
            write!(f, "\n  expected: {e}")?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

/// Every error of a configuration that failed to compile, plus its warnings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Only the errors.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Error)
    }

    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors().count();
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        write!(
            f,
            "{n} error{} in the configuration",
            if n == 1 { "" } else { "s" }
        )
    }
}

/// The config crate's error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration file or directory could not be read.
    #[error("cannot read {}: check that the path exists and is readable", path.display())]
    Read {
        /// The path that failed.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A configuration directory holds no `*.toml` file.
    #[error("{} holds no *.toml file: put the configuration there, or name a file", path.display())]
    Empty {
        /// The directory.
        path: PathBuf,
    },
    /// The configuration was read but is invalid; every finding is listed.
    #[error("{0}")]
    Invalid(Diagnostics),
    /// The address given (`--node`) is not one of `[pair] nodes`.
    #[error("`--node {given}` is not one of `[pair] nodes` ({}, {}): give one of them", nodes[0], nodes[1])]
    NotANode {
        /// The address given.
        given: std::net::IpAddr,
        /// The pair's addresses.
        nodes: [std::net::IpAddr; 2],
    },
    /// Neither or both of `[pair] nodes` are this machine's addresses.
    #[error(
        "{} of `[pair] nodes` ({}, {}) {} this machine's: say which node this is with `--node ADDRESS`{}",
        if *.local == 0 { "neither" } else { "both" },
        nodes[0],
        nodes[1],
        if *.local == 0 { "is" } else { "are" },
        if *.local == 2 { " (net.ipv4.ip_nonlocal_bind = 1 makes every address look local)" } else { "" }
    )]
    WhichNode {
        /// How many of the two are local.
        local: usize,
        /// The pair's addresses.
        nodes: [std::net::IpAddr; 2],
    },
}
