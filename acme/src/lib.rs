//! labgate's certificates. Today: the local CA, which issues certificates for names no other
//! source covers (the demo, internal-only names). Next: ACME DNS-01 issuance and renewal.
//!
//! This is the only crate besides `config` that touches disk: it persists key material in the
//! state directory (keys 0600, written to a temporary file and renamed). It never logs key
//! material.
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]
#![deny(unused_must_use)]

mod error;
mod files;
pub mod local_ca;

pub use error::Error;
pub use files::write_atomic;
