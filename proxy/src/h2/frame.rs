//! HTTP/2 frames (RFC 9113 §4, §6): the 9-byte header, payload checks that do not need
//! connection state, and writers for the frames the server sends.
//!
//! Reading checks only what a frame's own bytes say (lengths, padding, reserved stream 0);
//! what depends on stream or connection state is [`super::Connection`]'s.

use super::ErrorCode;
use super::conn::ConnError;

/// The client connection preface (RFC 9113 §3.4), before the client's first SETTINGS.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Bytes in a frame header.
pub const HEADER_LEN: usize = 9;
/// The smallest SETTINGS_MAX_FRAME_SIZE, and its initial value (RFC 9113 §6.5.2).
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 16_384;
/// The largest SETTINGS_MAX_FRAME_SIZE (RFC 9113 §6.5.2).
pub const MAX_MAX_FRAME_SIZE: u32 = (1 << 24) - 1;
/// The largest flow-control window (RFC 9113 §6.9.1).
pub const MAX_WINDOW: u32 = (1 << 31) - 1;
/// The initial flow-control window of streams and of the connection (RFC 9113 §6.9.2).
pub const DEFAULT_WINDOW: u32 = 65_535;

/// Frame types (RFC 9113 §6, table in §11.2).
pub mod kind {
    /// DATA (§6.1).
    pub const DATA: u8 = 0x0;
    /// HEADERS (§6.2).
    pub const HEADERS: u8 = 0x1;
    /// PRIORITY (§6.3), deprecated but still validated.
    pub const PRIORITY: u8 = 0x2;
    /// RST_STREAM (§6.4).
    pub const RST_STREAM: u8 = 0x3;
    /// SETTINGS (§6.5).
    pub const SETTINGS: u8 = 0x4;
    /// PUSH_PROMISE (§6.6): never valid from a client.
    pub const PUSH_PROMISE: u8 = 0x5;
    /// PING (§6.7).
    pub const PING: u8 = 0x6;
    /// GOAWAY (§6.8).
    pub const GOAWAY: u8 = 0x7;
    /// WINDOW_UPDATE (§6.9).
    pub const WINDOW_UPDATE: u8 = 0x8;
    /// CONTINUATION (§6.10).
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags (RFC 9113 §6).
pub mod flag {
    /// DATA, HEADERS: the last frame the sender sends on the stream.
    pub const END_STREAM: u8 = 0x1;
    /// SETTINGS, PING: an acknowledgement.
    pub const ACK: u8 = 0x1;
    /// HEADERS, CONTINUATION: the field block ends in this frame.
    pub const END_HEADERS: u8 = 0x4;
    /// DATA, HEADERS: a Pad Length byte leads the payload.
    pub const PADDED: u8 = 0x8;
    /// HEADERS: 5 bytes of priority follow the Pad Length.
    pub const PRIORITY: u8 = 0x20;
}

/// SETTINGS identifiers (RFC 9113 §6.5.2, RFC 8441 §3, RFC 9218 §2.1).
pub mod setting {
    /// SETTINGS_HEADER_TABLE_SIZE.
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    /// SETTINGS_ENABLE_PUSH.
    pub const ENABLE_PUSH: u16 = 0x2;
    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    /// SETTINGS_INITIAL_WINDOW_SIZE.
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    /// SETTINGS_MAX_FRAME_SIZE.
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    /// SETTINGS_MAX_HEADER_LIST_SIZE.
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
    /// SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441).
    pub const ENABLE_CONNECT_PROTOCOL: u16 = 0x8;
    /// SETTINGS_NO_RFC7540_PRIORITIES (RFC 9218).
    pub const NO_RFC7540_PRIORITIES: u16 = 0x9;
}

/// A frame header (RFC 9113 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Payload length.
    pub len: u32,
    /// Frame type ([`kind`]).
    pub kind: u8,
    /// Flags ([`flag`]).
    pub flags: u8,
    /// Stream identifier, the reserved bit cleared (§4.1: ignored on receipt).
    pub stream: u32,
}

impl Header {
    /// Reads a header from its 9 bytes.
    pub fn parse(b: &[u8; HEADER_LEN]) -> Self {
        Self {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & MAX_WINDOW,
        }
    }

    /// Whether `f` is set.
    pub fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
}

/// Appends a frame header.
pub fn write_header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    out.extend_from_slice(&header_bytes(len, kind, flags, stream));
}

/// The 9 bytes of a frame header.
pub fn header_bytes(len: usize, kind: u8, flags: u8, stream: u32) -> [u8; HEADER_LEN] {
    debug_assert!(len <= MAX_MAX_FRAME_SIZE as usize);
    let l = (len as u32).to_be_bytes();
    let s = (stream & MAX_WINDOW).to_be_bytes();
    [l[1], l[2], l[3], kind, flags, s[0], s[1], s[2], s[3]]
}

/// The payload of a DATA or HEADERS frame without its padding (§6.1, §6.2).
///
/// # Errors
///
/// PROTOCOL_ERROR (a connection error) when the padding is as long as the payload or longer.
pub fn unpad<'a>(h: &Header, payload: &'a [u8]) -> Result<&'a [u8], ConnError> {
    if !h.has(flag::PADDED) {
        return Ok(payload);
    }
    let Some((&pad, rest)) = payload.split_first() else {
        return Err(ConnError::Protocol("padded frame without a pad length"));
    };
    let pad = usize::from(pad);
    if pad > rest.len() {
        return Err(ConnError::Protocol("padding longer than the frame"));
    }
    Ok(&rest[..rest.len() - pad])
}

/// Priority fields of HEADERS (with the PRIORITY flag) and PRIORITY frames (§6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priority {
    /// The stream this one depends on.
    pub dependency: u32,
}

impl Priority {
    /// Reads the 5 priority bytes.
    pub fn parse(b: &[u8; 5]) -> Self {
        Self {
            dependency: u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & MAX_WINDOW,
        }
    }
}

/// The field block fragment of a HEADERS frame, after padding and priority (§6.2), and the
/// priority if any.
///
/// # Errors
///
/// PROTOCOL_ERROR when the padding or the priority fields do not fit in the payload.
pub fn headers_fragment<'a>(
    h: &Header,
    payload: &'a [u8],
) -> Result<(&'a [u8], Option<Priority>), ConnError> {
    let body = unpad(h, payload)?;
    if !h.has(flag::PRIORITY) {
        return Ok((body, None));
    }
    match body.split_first_chunk::<5>() {
        Some((p, rest)) => Ok((rest, Some(Priority::parse(p)))),
        None => Err(ConnError::Protocol("HEADERS too short for its priority")),
    }
}

/// A u32 from the first four bytes of a payload whose length was checked.
pub fn be_u32(b: &[u8]) -> u32 {
    match b.first_chunk::<4>() {
        Some(c) => u32::from_be_bytes(*c),
        None => 0,
    }
}

/// Appends a SETTINGS frame with these (identifier, value) pairs.
pub fn write_settings(out: &mut Vec<u8>, settings: &[(u16, u32)]) {
    write_header(out, settings.len() * 6, kind::SETTINGS, 0, 0);
    for &(id, v) in settings {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// Appends a SETTINGS acknowledgement.
pub fn write_settings_ack(out: &mut Vec<u8>) {
    write_header(out, 0, kind::SETTINGS, flag::ACK, 0);
}

/// Appends a PING acknowledgement echoing `data`.
pub fn write_ping_ack(out: &mut Vec<u8>, data: &[u8; 8]) {
    write_header(out, 8, kind::PING, flag::ACK, 0);
    out.extend_from_slice(data);
}

/// Appends a WINDOW_UPDATE.
pub fn write_window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    debug_assert!(increment > 0 && increment <= MAX_WINDOW);
    write_header(out, 4, kind::WINDOW_UPDATE, 0, stream);
    out.extend_from_slice(&increment.to_be_bytes());
}

/// Appends a RST_STREAM.
pub fn write_rst_stream(out: &mut Vec<u8>, stream: u32, code: ErrorCode) {
    write_header(out, 4, kind::RST_STREAM, 0, stream);
    out.extend_from_slice(&code.to_u32().to_be_bytes());
}

/// Appends a GOAWAY without debug data.
pub fn write_goaway(out: &mut Vec<u8>, last_stream: u32, code: ErrorCode) {
    write_header(out, 8, kind::GOAWAY, 0, 0);
    out.extend_from_slice(&(last_stream & MAX_WINDOW).to_be_bytes());
    out.extend_from_slice(&code.to_u32().to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s4_1_header_round_trip_and_reserved_bit_ignored() {
        let mut out = Vec::new();
        write_header(&mut out, 0x01_02_03, kind::HEADERS, 0x25, 7);
        let mut b = [0u8; 9];
        b.copy_from_slice(&out);
        assert_eq!(
            Header::parse(&b),
            Header {
                len: 0x01_02_03,
                kind: kind::HEADERS,
                flags: 0x25,
                stream: 7
            }
        );
        b[5] |= 0x80;
        assert_eq!(Header::parse(&b).stream, 7);
    }

    #[test]
    fn s6_1_padding() {
        let padded = |flags| Header {
            len: 0,
            kind: kind::DATA,
            flags,
            stream: 1,
        };
        type Case<'a> = (u8, &'a [u8], Option<&'a [u8]>);
        let cases: &[Case<'_>] = &[
            (0, b"abc", Some(b"abc")),
            (flag::PADDED, b"\x02abcxx", Some(b"abc")),
            (flag::PADDED, b"\x00", Some(b"")),
            (flag::PADDED, b"\x03ab", None),
            (flag::PADDED, b"", None),
        ];
        for &(flags, payload, want) in cases {
            assert_eq!(unpad(&padded(flags), payload).ok(), want, "{payload:?}");
        }
    }

    #[test]
    fn s6_2_headers_priority_fields() {
        let h = Header {
            len: 0,
            kind: kind::HEADERS,
            flags: flag::PRIORITY | flag::PADDED,
            stream: 3,
        };
        let (frag, p) = headers_fragment(&h, b"\x01\x80\x00\x00\x01\x10abc\x00").expect("fits");
        assert_eq!(frag, b"abc");
        assert_eq!(p, Some(Priority { dependency: 1 }));
        assert!(headers_fragment(&h, b"\x00\x00\x00").is_err());
    }
}
