//! labgate's dnstap stream: every client query and response as a dnstap message
//! (`CLIENT_QUERY`, `CLIENT_RESPONSE`), the DNS field's standard log format, sent over Frame
//! Streams to a collector (Vector, the `dnstap` tool, `fstrm_capture`) on a Unix socket or
//! TCP. The answering thread encodes the message into a buffer from its own lane's pool
//! ([`Tap`]); the writer thread ([`Dnstap`]) sends the frames and gives the buffers back.
//!
//! ```text
//! UDP worker i ─encode─▶ lane i ─┐
//! runtime task ─encode─▶ shared ─┴─▶ writer: every 100 ms (or a half-full lane) ─▶ collector
//!    no buffer free, or no collector, or a failed write: dropped and counted; answers go out
//! ```
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

pub mod frame;
mod message;
mod tap;
mod writer;

pub use message::{Kind, Message, encode};
pub use tap::{LANE_CAPACITY, Tap};
pub use writer::{Dnstap, IO_TIMEOUT, RETRY_MAX, RETRY_MIN, TICK};
