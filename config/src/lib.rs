//! labgate's configuration: TOML files in, one immutable [`Snapshot`] out.
//!
//! ```text
//! files ──load──▶ Loaded ──compile──▶ Snapshot ──ArcSwap──▶ dns, proxy, acme
//!                 (RawFile per file,   (pure:      (networks, views,
//!                  spans, the files     validate,   routes, certificates)
//!                  they name)           index)
//! ```
//!
//! This crate reads files ([`load`]: the config itself and the files it names, secret files
//! only opened to check them) but opens no socket and starts no task; [`compile`] reads nothing
//! but what `load` read. It depends on no other labgate crate. Decisions made
//! per request (which network an address is in, what a view answers, which service a host
//! routes to, which certificate covers a name) are pure functions over the snapshot, here,
//! so the DNS server, the proxy and `labgate explain` share one implementation.
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]
#![deny(unused_must_use)]

pub mod admin;
pub mod blocklist;
mod compile;
pub mod diff;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod histogram;
mod load;
mod loaded;
pub mod network;
pub mod pair;
mod publish;
pub mod raw;
pub mod route;
pub mod settings;
mod snapshot;
mod source;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod view;

pub use compile::compile;
pub use error::{Diagnostic, Diagnostics, Error, Severity};
pub use load::{load, parse};
pub use loaded::{Found, Loaded, NamedFiles};
pub use publish::Publish;
pub use snapshot::{CertificatePlan, Snapshot};
pub use source::{ContentHash, FileId, Location, SourceFile, Sources};

/// Loads and compiles a file or directory in one step.
///
/// # Errors
/// As [`load`], plus [`Error::Invalid`] with every compile error.
pub fn load_and_compile(path: &std::path::Path, generation: u64) -> Result<Snapshot, Error> {
    let loaded = load(path)?;
    compile(&loaded, generation).map_err(Error::Invalid)
}
