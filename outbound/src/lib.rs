//! labgate's own HTTP client: how the appliance itself reaches other hosts, for blocklist
//! downloads, Cloudflare Access signing keys, the ACME server and Cloudflare's API.
//!
//! ```text
//! blocklists ──┐                        ┌─ Names: labgate's records, then the upstreams or
//! Access keys ─┤   Client               │  the system's resolver first, by Site
//! ACME ────────┼─▶ (pool, redirects, ──▶ Connector ─▶ Happy Eyeballs (RFC 8305) ─▶ TCP
//! Cloudflare ──┘    body and time limits)│                                         ─▶ TLS
//!                                        └─ webpki roots, plus a private ACME CA's
//! ```
//!
//! One pooled hyper client per set of trusted roots: connections to a host are kept for the
//! next request. Where a name's addresses come from is injected ([`Resolve`]): this crate
//! depends on no other labgate crate, so labgate's DNS, proxy and ACME crates can all use it
//! without depending on each other. It serves nothing, reads no file and never logs a URL's
//! credentials or query ([`Redacted`]).
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]
#![deny(unused_must_use)]

mod client;
mod connect;
mod error;
mod eyeballs;
mod names;
mod redacted;
mod redirect;
mod signatures_only;

pub use client::{Client, Limits, MAX_REDIRECTS};
pub use error::Error;
pub use names::{Names, Resolve, Site};
pub use redacted::Redacted;
pub use signatures_only::SignaturesOnly;
