//! labgate's DNS query log. The answering threads fill a fixed-size [`Record`] per query and
//! leave it in their own queue of the [`Sink`] (no allocation, no lock shared with another
//! worker); the writer thread ([`QueryLog`]) takes them in batches, names their networks and
//! lists with the snapshot that decided them, and appends them to SQLite ([`store`]), where
//! retention drops whole blocks of rows by age and size.
//!
//! ```text
//! UDP worker i ─push─▶ queue i ─┐
//! runtime task ─push─▶ shared ──┴─▶ writer: drain every 100 ms (or a half-full queue) ─▶ store
//!      full queue, or the writer past 5 % of a core: dropped and counted; answers go out as ever
//! ```
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

mod record;
mod row;
pub mod search;
mod sink;
pub mod stats;
pub mod store;
mod writer;

use std::path::PathBuf;

pub use record::{Flags, Record, Source, Transport, unix_us};
pub use row::Row;
pub use search::{Filter, Found, Position, Reader};
pub use sink::{Lane, QUEUE_CAPACITY, Sink};
pub use writer::{BURST, CPU_SHARE, FILE_NAME, MAINTAIN_EVERY, QueryLog, TICK};

/// What can go wrong with the query log's database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database file cannot be created.
    #[error(
        "cannot create the query log {}: {source}; check that labgate's user can write the state \
         directory, or turn the log off with `[query_log] enabled = false`",
        path.display()
    )]
    Create {
        /// The database file.
        path: PathBuf,
        /// The file system's error.
        source: std::io::Error,
    },
    /// The database cannot be opened or set up.
    #[error(
        "cannot open the query log {}: {source}; check that labgate's user can write the state \
         directory, or turn the log off with `[query_log] enabled = false`",
        path.display()
    )]
    Open {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The file holds a schema this labgate does not know.
    #[error(
        "the query log {} has schema version {found}, this labgate writes version 1; move the \
         file away (it is readable with `sqlite3`) and labgate starts a new one",
        path.display()
    )]
    Version {
        /// The database file.
        path: PathBuf,
        /// The version found.
        found: i64,
    },
    /// A write or a retention step failed (a full disk, a damaged file).
    #[error("query log: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

impl Error {
    fn open(path: &std::path::Path, source: rusqlite::Error) -> Self {
        Self::Open {
            path: path.to_owned(),
            source,
        }
    }
}
