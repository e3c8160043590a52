//! labgate's certificates: the local CA, which issues certificates for names no other source
//! covers (the demo, internal-only names), and ACME DNS-01 issuance and renewal (`manager`)
//! with DNS providers behind one trait (`provider`: Cloudflare's API and RFC 2136 here, the
//! built-in DNS from the binary).
//!
//! This is the only crate besides `config` that touches disk: it persists key material in the
//! state directory (keys 0600, written to a temporary file and renamed), and backs that part
//! of the state directory up and restores it (`archive`, for `labgate state`). It never logs
//! key material.
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]
#![deny(unused_must_use)]

mod account;
pub mod archive;
pub mod cloudflare;
mod error;
mod files;
mod http;
pub mod local_ca;
pub mod manager;
mod metrics;
mod order;
pub mod pair;
pub mod problem;
pub mod propagation;
pub mod provider;
pub mod renewal;
pub mod rfc2136;
pub mod secret;
mod status;
pub mod store;
pub mod verify;

pub use error::Error;
pub use files::write_atomic;
pub use manager::{Helpers, Manager};
pub use metrics::Metrics;
pub use status::CertStatus;
