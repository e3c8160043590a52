//! One dnstap message (`dnstap.proto`) encoded as a Frame Streams data frame: the frame's
//! length, then the protocol buffer. Hand-written: the schema is small and fixed, and the
//! encoder writes into the caller's buffer without allocating.

use std::net::{IpAddr, SocketAddr};

use labgate_querylog::Transport;

/// The message types labgate sends (`Message.Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A query as a client sent it.
    ClientQuery = 5,
    /// The response as labgate sent it to the client.
    ClientResponse = 6,
}

/// What one message says.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// Query or response.
    pub kind: Kind,
    /// How the query came.
    pub transport: Transport,
    /// The client's address and port; `None` for a network logged without addresses.
    pub client: Option<SocketAddr>,
    /// labgate's address and port the query was sent to, when known.
    pub server: Option<SocketAddr>,
    /// When the query arrived, microseconds since the Unix epoch.
    pub query_us: i64,
    /// When the response was sent (responses only), microseconds since the Unix epoch.
    pub response_us: Option<i64>,
    /// The DNS message's bytes: the query, or the response.
    pub dns: &'a [u8],
}

/// Protocol buffer wire types.
const VARINT: u32 = 0;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// `Dnstap` fields.
const IDENTITY: u32 = 1;
const VERSION: u32 = 2;
const MESSAGE: u32 = 14;
const TYPE: u32 = 15;
/// `Dnstap.Type.MESSAGE`.
const TYPE_MESSAGE: u64 = 1;

/// `Message` fields.
const M_TYPE: u32 = 1;
const M_FAMILY: u32 = 2;
const M_PROTOCOL: u32 = 3;
const M_QUERY_ADDRESS: u32 = 4;
const M_RESPONSE_ADDRESS: u32 = 5;
const M_QUERY_PORT: u32 = 6;
const M_RESPONSE_PORT: u32 = 7;
const M_QUERY_SEC: u32 = 8;
const M_QUERY_NSEC: u32 = 9;
const M_QUERY_MESSAGE: u32 = 10;
const M_RESPONSE_SEC: u32 = 12;
const M_RESPONSE_NSEC: u32 = 13;
const M_RESPONSE_MESSAGE: u32 = 14;

/// Bytes reserved for the length of the nested `Message`: up to 2^21 - 1 bytes, far above a
/// DNS message's 65,535.
const NESTED_LEN: usize = 3;

/// Appends `m` to `out` as one Frame Streams data frame of a `Dnstap` message naming labgate
/// by `identity` and `version`.
pub fn encode(identity: &[u8], version: &[u8], m: &Message<'_>, out: &mut Vec<u8>) {
    let frame = out.len();
    out.extend_from_slice(&[0; 4]);
    bytes(out, IDENTITY, identity);
    bytes(out, VERSION, version);
    key(out, MESSAGE, LEN);
    let len_at = out.len();
    out.extend_from_slice(&[0; NESTED_LEN]);
    let body = out.len();
    message(m, out);
    let (len, k) = varint_bytes((out.len() - body) as u64);
    debug_assert!(k <= NESTED_LEN);
    out[len_at..len_at + k].copy_from_slice(&len[..k]);
    if k < NESTED_LEN {
        out.copy_within(body.., len_at + k);
        out.truncate(out.len() - (NESTED_LEN - k));
    }
    key(out, TYPE, VARINT);
    varint(out, TYPE_MESSAGE);
    let payload = u32::try_from(out.len() - frame - 4).unwrap_or(u32::MAX);
    out[frame..frame + 4].copy_from_slice(&payload.to_be_bytes());
}

/// The nested `Message`'s fields.
fn message(m: &Message<'_>, out: &mut Vec<u8>) {
    key(out, M_TYPE, VARINT);
    varint(out, m.kind as u64);
    let client = m.client.map(canonical);
    let server = m.server.map(canonical);
    // The family is the client's (else labgate's); an address of the other family is left out.
    let family = client.or(server).map(|a| a.is_ipv4());
    if let Some(v4) = family {
        key(out, M_FAMILY, VARINT);
        varint(out, if v4 { 1 } else { 2 });
    }
    key(out, M_PROTOCOL, VARINT);
    varint(
        out,
        match m.transport {
            Transport::Udp => 1,
            Transport::Tcp => 2,
            Transport::Tls => 3,
        },
    );
    let same = |a: &SocketAddr| Some(a.is_ipv4()) == family;
    if let Some(c) = client {
        address(out, M_QUERY_ADDRESS, c.ip());
    }
    if let Some(s) = server.filter(same) {
        address(out, M_RESPONSE_ADDRESS, s.ip());
    }
    if let Some(c) = client {
        key(out, M_QUERY_PORT, VARINT);
        varint(out, u64::from(c.port()));
    }
    if let Some(s) = server.filter(same) {
        key(out, M_RESPONSE_PORT, VARINT);
        varint(out, u64::from(s.port()));
    }
    time(out, (M_QUERY_SEC, M_QUERY_NSEC), m.query_us);
    match m.kind {
        Kind::ClientQuery => bytes(out, M_QUERY_MESSAGE, m.dns),
        Kind::ClientResponse => {
            if let Some(t) = m.response_us {
                time(out, (M_RESPONSE_SEC, M_RESPONSE_NSEC), t);
            }
            bytes(out, M_RESPONSE_MESSAGE, m.dns);
        }
    }
}

/// An IPv4 address the socket saw as IPv4-mapped IPv6 is written as IPv4.
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

fn address(out: &mut Vec<u8>, field: u32, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => bytes(out, field, &v4.octets()),
        IpAddr::V6(v6) => bytes(out, field, &v6.octets()),
    }
}

/// Seconds and nanoseconds of `us` microseconds since the epoch (a time before it as 0).
fn time(out: &mut Vec<u8>, (sec, nsec): (u32, u32), us: i64) {
    let us = u64::try_from(us).unwrap_or(0);
    key(out, sec, VARINT);
    varint(out, us / 1_000_000);
    key(out, nsec, FIXED32);
    let ns = u32::try_from(us % 1_000_000 * 1000).unwrap_or(0);
    out.extend_from_slice(&ns.to_le_bytes());
}

fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    key(out, field, LEN);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn key(out: &mut Vec<u8>, field: u32, wire: u32) {
    varint(out, u64::from(field << 3 | wire));
}

fn varint(out: &mut Vec<u8>, v: u64) {
    let (b, k) = varint_bytes(v);
    out.extend_from_slice(&b[..k]);
}

/// `v` as a protocol buffer varint: its bytes and how many.
fn varint_bytes(mut v: u64) -> ([u8; 10], usize) {
    let mut b = [0; 10];
    let mut k = 0;
    while v >= 0x80 {
        b[k] = (v as u8 & 0x7f) | 0x80;
        v >>= 7;
        k += 1;
    }
    b[k] = v as u8;
    (b, k + 1)
}

#[cfg(test)]
mod tests;
