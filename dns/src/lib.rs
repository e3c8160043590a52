//! labgate's split-horizon DNS server: answers per network view over the compiled snapshot,
//! forwarding for everything else. This crate receives snapshots and bound sockets; it reads
//! no files and no environment.
//!
//! ```text
//! query ─▶ client address ─▶ snapshot.networks.lookup ─▶ view.lookup ─▶ answer
//!                                   │ none: REFUSED             └─ outside: forward
//! ```
//!
//! Built: labgate's own listeners (`udp`: per-core `SO_REUSEPORT` sockets, batched
//! `recvmmsg`/`sendmmsg`; `stream`: TCP and DNS over TLS), the authoritative part (views,
//! NXDOMAIN/NODATA with the SOA, derived PTRs, REFUSED for clients in no network), blocklists,
//! and forwarding through labgate's own cache (serve-stale, prefetch, rebinding protection).
//! hickory parses queries and encodes responses; its `Server` and `RequestHandler` are not
//! used.
//!
//! ```text
//! control plane: snapshot or fetched list ─▶ DnsState::build (off the data path) ─▶ one swap
//! UDP query ─▶ front: precompiled answer or kept cache hit (`fast`, `hits`)
//!                └─ else ─▶ general path (`resolver`: decide, cache, upstreams) ◀─ TCP, TLS
//! ```
//!
//! Each query loads one published `DnsState` and decides with it alone; the general path
//! knows nothing of the fast path, which serves only bytes the general path made.
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]
#![deny(unused_must_use)]

mod admission;
mod answer;
mod cache;
mod challenges;
mod fast;
mod forward;
mod front;
#[doc(hidden)]
pub mod fuzzing;
mod health;
mod hits;
mod log;
mod metrics;
mod resolver;
mod server;
mod state;
mod stream;
mod udp;
mod update;

pub use answer::{Answer, BLOCKED_TTL, Decision, FetchedLists, decide};
pub use cache::{MAX_TTL, STALE_TTL};
pub use challenges::Challenges;
pub use forward::{ATTEMPT_TIMEOUT, STALE_AFTER, UPSTREAM_DEADLINE, private};
pub use front::Dns;
pub use log::PROBE_QUESTION;
pub use metrics::Metrics;
pub use resolver::MAX_UDP_PAYLOAD;
pub use server::{DnsServer, serve};
pub use state::DnsState;
pub use stream::{MAX_CONNECTIONS, MAX_CONNECTIONS_PER_CLIENT, MAX_PIPELINED, TCP_IDLE_TIMEOUT};

use hickory_proto::op::ResponseCode;

/// Why a query was not answered with data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client's address is in no network.
    #[error("client is in no network")]
    UnknownClient,
    /// The client's network may not recurse and the name is not internal.
    #[error("recursion is not allowed for this network")]
    RecursionRefused,
    /// The name does not exist in the client's view.
    #[error("no such name in this view")]
    NxDomain,
    /// Every upstream failed or timed out.
    #[error("upstreams failed")]
    UpstreamFailed,
    /// The query could not be parsed.
    #[error("malformed query")]
    Malformed,
}

impl Error {
    /// The response code a client gets for this outcome (D4).
    pub fn rcode(self) -> ResponseCode {
        match self {
            Self::UnknownClient | Self::RecursionRefused => ResponseCode::Refused,
            Self::NxDomain => ResponseCode::NXDomain,
            Self::UpstreamFailed => ResponseCode::ServFail,
            Self::Malformed => ResponseCode::FormErr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_clients_are_refused_not_served() {
        assert_eq!(Error::UnknownClient.rcode(), ResponseCode::Refused);
        assert_eq!(Error::UpstreamFailed.rcode(), ResponseCode::ServFail);
    }
}
