//! The labgate binary's wiring: CLI, the run loop, reload pipeline, admin endpoint, `check`
//! and `explain`. Library crates do the work; this crate connects them (and is the only one
//! that uses `anyhow`).
#![forbid(unsafe_code)]
#![deny(unused_must_use)]

pub mod acme;
pub mod admin;
#[allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    reason = "the `listening on` lines on stdout are what tests and operators wait for; the exit \
              after pingora took the process goes with `App::build` (issue 23)"
)]
pub mod app;
pub mod backends;
pub mod blocklists;
pub mod certs;
pub mod certs_cmd;
pub mod check;
pub mod cli;
pub mod demo;
pub mod explain;
pub mod fdstore;
pub mod history;
pub mod listen;
pub mod logging;
pub mod notify;
pub mod outbound;
pub mod page;
pub mod probe;
pub mod process;
pub mod reload;
pub mod revision;
pub mod state_cmd;
pub mod status;
pub mod tunnel_config;
pub mod upgrade;
mod watch;

/// Exit code for an invalid configuration or usage (sysexits `EX_USAGE`).
pub const EX_USAGE: u8 = 64;

/// `labgate <version>` with the versions of the stack it was built on.
pub fn version() -> String {
    format!(
        "labgate {} (pingora 0.9.1, hickory-dns 0.26.3, rustls 0.23 with ring)",
        env!("CARGO_PKG_VERSION")
    )
}
