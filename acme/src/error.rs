//! The acme crate's error.

use std::path::PathBuf;

/// What went wrong with certificate material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file in the state directory could not be read or written.
    #[error("cannot {action} {}: check the state directory's permissions", path.display())]
    Io {
        /// `read`, `write`...
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A secret file (API token, TSIG secret, EAB key) is missing, unreadable or malformed.
    /// Its content is never part of the message.
    #[error("secret file {}: {what}", path.display())]
    Secret {
        /// The file.
        path: PathBuf,
        /// What is wrong, and what to do.
        what: String,
    },
    /// A DNS provider refused or failed a change.
    #[error("{provider}: {what}")]
    Provider {
        /// The provider's kind and target (`rfc2136 127.0.0.1:53`, `cloudflare`).
        provider: String,
        /// What it answered, and what to change.
        what: String,
    },
    /// The challenge values did not show at the zone's authoritative servers in time.
    #[error("{name}: {what}")]
    Propagation {
        /// The TXT name.
        name: String,
        /// Which server lacked what.
        what: String,
    },
    /// The ACME server refused a request or an order failed.
    #[error("ACME: {0}")]
    Acme(String),
    /// An issued certificate failed the checks made before it is served.
    #[error("issued certificate rejected: {0}")]
    Verify(String),
    /// Key or certificate generation failed, or stored material does not parse.
    #[error("certificate material in {}: {what}; remove the directory to let labgate make a new one", path.display())]
    Material {
        /// Where the material is.
        path: PathBuf,
        /// What failed.
        what: String,
    },
}
