//! labgate's own HTTP/2 server core (RFC 9113, HPACK RFC 7541), sans I/O: bytes in, events
//! out; calls in, bytes out. The executor that drives it inside a connection's task (TLS,
//! timeouts, the upstream HTTP/1.1 side) is not here.
//!
//! ```text
//!   TLS/TCP bytes ─▶ Connection::recv ─▶ Event::Request { head } ─▶ executor writes an
//!                                                                    HTTP/1.1 upstream head
//!   upstream response head ─▶ send_response (HPACK-encoded) ─▶ Connection::output ─▶ socket
//! ```
//!
//! Why not the `h2` crate: measured 2026-12-06 on h2c prior knowledge, a fixed 1 KiB 200,
//! server pinned to one core, `h2load -c16 -m16` on the other, CPU from /proc per request
//! (median of 9 runs): the `h2` crate's server with every stream driven in the
//! connection's task 8.5 µs (7.6-9.4), HAProxy 2.6 µs (2.5-3.0), a minimal tokio loop
//! around this core 1.0 µs (0.9-1.2). The `h2` crate alone would take half of a 17 µs
//! budget (HAProxy's whole TLS proxy path); this core leaves it to TLS and the upstream.
//! `benches/benches/h2.rs` times the core's share of one request without I/O.
//!
//! What it does not do: server push, RFC 7540 priorities (validated, ignored), PINGs of its
//! own, timeouts (the executor counts time; the core counts events), CONNECT (reported as
//! [`Event::Connect`] for the executor to refuse or hand on).

mod conn;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod hpack;
mod request;
#[cfg(test)]
mod roundtrip;

pub use conn::{ConnError, Connection, Event, Recv, SendError};
pub use request::{Fields, RequestHead};

/// A stream identifier (RFC 9113 §5.1.1): odd, opened by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u32);

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// HTTP/2 error codes (RFC 9113 §7), for RST_STREAM and GOAWAY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// NO_ERROR: graceful.
    NoError,
    /// PROTOCOL_ERROR.
    Protocol,
    /// INTERNAL_ERROR.
    Internal,
    /// FLOW_CONTROL_ERROR.
    FlowControl,
    /// SETTINGS_TIMEOUT.
    SettingsTimeout,
    /// STREAM_CLOSED.
    StreamClosed,
    /// FRAME_SIZE_ERROR.
    FrameSize,
    /// REFUSED_STREAM: not processed, safe to retry.
    RefusedStream,
    /// CANCEL.
    Cancel,
    /// COMPRESSION_ERROR.
    Compression,
    /// CONNECT_ERROR.
    Connect,
    /// ENHANCE_YOUR_CALM: the peer is over a limit.
    EnhanceYourCalm,
    /// INADEQUATE_SECURITY.
    InadequateSecurity,
    /// HTTP_1_1_REQUIRED.
    Http11Required,
    /// A code this implementation does not know (§7: treated like INTERNAL_ERROR).
    Other(u32),
}

impl ErrorCode {
    /// From the wire value.
    pub fn from_u32(v: u32) -> Self {
        match v {
            0x0 => Self::NoError,
            0x1 => Self::Protocol,
            0x2 => Self::Internal,
            0x3 => Self::FlowControl,
            0x4 => Self::SettingsTimeout,
            0x5 => Self::StreamClosed,
            0x6 => Self::FrameSize,
            0x7 => Self::RefusedStream,
            0x8 => Self::Cancel,
            0x9 => Self::Compression,
            0xa => Self::Connect,
            0xb => Self::EnhanceYourCalm,
            0xc => Self::InadequateSecurity,
            0xd => Self::Http11Required,
            v => Self::Other(v),
        }
    }

    /// The wire value.
    pub fn to_u32(self) -> u32 {
        match self {
            Self::NoError => 0x0,
            Self::Protocol => 0x1,
            Self::Internal => 0x2,
            Self::FlowControl => 0x3,
            Self::SettingsTimeout => 0x4,
            Self::StreamClosed => 0x5,
            Self::FrameSize => 0x6,
            Self::RefusedStream => 0x7,
            Self::Cancel => 0x8,
            Self::Compression => 0x9,
            Self::Connect => 0xa,
            Self::EnhanceYourCalm => 0xb,
            Self::InadequateSecurity => 0xc,
            Self::Http11Required => 0xd,
            Self::Other(v) => v,
        }
    }
}

/// Bounds of one connection. Every count is of events, never of time. The defaults are
/// labgate's; each has a unit test.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Limits {
    /// SETTINGS_MAX_CONCURRENT_STREAMS: streams beyond it are refused (REFUSED_STREAM).
    pub max_concurrent_streams: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE (RFC 9113 §6.5.2 size: name + value + 32 per field): a
    /// larger request is [`Event::HeadersTooLarge`] (answer 431), like HTTP/1.1's 16 KiB.
    pub max_header_list_size: u32,
    /// Regular fields in a request, like HTTP/1.1's 96; more is [`Event::HeadersTooLarge`].
    pub max_fields: u32,
    /// Encoded bytes of one field block (HEADERS + CONTINUATION); more is a connection
    /// error (ENHANCE_YOUR_CALM).
    pub max_header_block: u32,
    /// CONTINUATION frames in one field block; more is a connection error.
    pub max_continuations: u32,
    /// SETTINGS_INITIAL_WINDOW_SIZE: request body bytes a stream may have unreleased
    /// (at least 65 535).
    pub stream_window: u32,
    /// The connection window: request body bytes all streams together may have
    /// unreleased, so the executor's buffering is bounded by it (at least 65 535).
    pub connection_window: u32,
    /// Rapid reset (CVE-2023-44487): streams the client may reset before their response
    /// ended, or that the core refuses or resets for a client error, beyond those that
    /// complete: a token bucket of this size, one token back per response completed.
    /// Empty: GOAWAY ENHANCE_YOUR_CALM.
    pub reset_burst: u32,
    /// Frames that carry no request (SETTINGS, PING, PRIORITY, empty DATA, empty
    /// CONTINUATION, WINDOW_UPDATE below 1 KiB, frames on closed streams, unknown types): a
    /// token bucket of this size. Empty: GOAWAY ENHANCE_YOUR_CALM.
    pub flood_burst: u32,
    /// Tokens each request puts back into the `flood_burst` bucket.
    pub flood_refill: u32,
    /// SETTINGS and PING ACKs queued while earlier output is still unwritten; more means
    /// the peer sends without reading: GOAWAY ENHANCE_YOUR_CALM.
    pub max_control_backlog: u32,
    /// Unwritten output bytes above which the core reads no more frames and takes no more
    /// response bytes, until the executor writes the output out.
    pub max_output: u32,
    /// Advertise SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441) and accept `:protocol`.
    pub extended_connect: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 100,
            max_header_list_size: 16 * 1024,
            max_fields: 96,
            max_header_block: 64 * 1024,
            max_continuations: 16,
            stream_window: 256 * 1024,
            connection_window: 1024 * 1024,
            reset_burst: 128,
            flood_burst: 1024,
            flood_refill: 16,
            max_control_backlog: 1024,
            max_output: 256 * 1024,
            extended_connect: false,
        }
    }
}
