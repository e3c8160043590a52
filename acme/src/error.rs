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
    /// Key or certificate generation failed, or stored material does not parse.
    #[error("certificate material in {}: {what}; remove the directory to let labgate make a new one", path.display())]
    Material {
        /// Where the material is.
        path: PathBuf,
        /// What failed.
        what: String,
    },
}
