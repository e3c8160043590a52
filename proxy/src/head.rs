//! HTTP/1.1 message heads: strict parsing of request heads from clients and response heads
//! from backends, on borrowed buffers (no allocation).
//!
//! SECURITY: this is edge-facing framing code. A request is refused (400, then close) whenever
//! a backend could read its end differently: Content-Length with Transfer-Encoding, duplicate
//! or non-decimal Content-Length, any Transfer-Encoding other than exactly `chunked`, obs-fold,
//! bare LF or CR, NUL and other control characters.

use std::mem::MaybeUninit;
use std::sync::LazyLock;

/// Most header fields in a request or response head.
pub const MAX_HEADERS: usize = 96;
/// Largest request or response head in bytes (pingora's own limit is about 1 MiB).
pub const MAX_HEAD: usize = 16 * 1024;

/// Why a head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Not complete yet: read more bytes.
    Partial,
    /// Malformed or ambiguous: 400 and close.
    Invalid(&'static str),
    /// Over [`MAX_HEAD`] or [`MAX_HEADERS`]: 431 and close.
    TooLarge,
    /// An HTTP version other than 1.0 and 1.1: 505.
    Version,
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

/// A parsed request head, borrowing the read buffer.
#[derive(Debug)]
pub struct RequestHead<'b> {
    /// Bytes the head takes in the buffer, final CRLF included.
    pub len: usize,
    /// Method token.
    pub method: &'b str,
    /// Path and query (the target, in origin form).
    pub path: &'b str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// The Host header.
    pub host: Option<&'b [u8]>,
    /// How the body is delimited: none, `Content-Length` or chunked.
    pub framing: Framing,
    /// `Connection: close` (or HTTP/1.0 without keep-alive).
    pub close: bool,
    /// A WebSocket upgrade ([`is_websocket_upgrade`]). Any other `Upgrade` is hop-by-hop:
    /// removed, and the request is forwarded as a plain one.
    pub websocket: bool,
    /// An `Expect` header.
    pub expect: bool,
    /// Header fields in order.
    pub headers: &'b [httparse::Header<'b>],
}

/// Forwarding fields labgate sets; client copies are never passed on.
pub const FORWARDING: [&str; 5] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "x-real-ip",
];

/// Whether a request asks for a WebSocket upgrade (RFC 6455 §4.1), the one upgrade labgate
/// passes on: a GET in HTTP/1.1 with `upgrade` among its `Connection` options and a single
/// `Upgrade` field that names `websocket` alone. Both request paths decide with it.
///
/// SECURITY: any other upgrade (`h2c`, `TLS/1.0`, a list of protocols) is not honoured: its
/// fields are hop-by-hop and removed, and the request goes on as a plain one. A backend that
/// accepted an h2c upgrade would hand the client an HTTP/2 connection that no later request
/// on it passes labgate's checks on (the h2c smuggling shape).
pub fn is_websocket_upgrade<'a>(
    method: &str,
    http11: bool,
    connection_upgrade: bool,
    mut upgrade: impl Iterator<Item = &'a [u8]>,
) -> bool {
    let only = upgrade.next();
    method == "GET"
        && http11
        && connection_upgrade
        && only.is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"websocket"))
        && upgrade.next().is_none()
}

/// RFC 9110 §7.6.1 hop-by-hop fields, plus the legacy `Proxy-Connection` and h2c's
/// `HTTP2-Settings` (RFC 7540 §3.2.1: connection-specific, and labgate honours no h2c
/// upgrade).
pub fn is_hop_by_hop(name: &str) -> bool {
    const HOP: [&str; 10] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "http2-settings",
    ];
    HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// Rejects bare LF, bare CR and control characters other than HTAB in a head.
pub(crate) fn check_bytes(head: &[u8]) -> Result<(), HeadError> {
    // Branch-free passes the compiler vectorizes: a byte-at-a-time walk cost more than the
    // rest of the head's handling together. Every CR must be followed by LF and every LF
    // preceded by CR: compare each byte with the next.
    let control = head.iter().fold(false, |bad, &c| {
        bad | ((c < 0x20) & (c != b'\t') & (c != b'\r') & (c != b'\n')) | (c == 0x7f)
    });
    let unpaired = head
        .iter()
        .zip(head.iter().skip(1))
        .fold(false, |bad, (&a, &b)| bad | ((a == b'\r') != (b == b'\n')));
    let ends_bare = head.first() == Some(&b'\n') || head.last() == Some(&b'\r');
    if !control && !unpaired && !ends_bare {
        return Ok(());
    }
    first_bad_byte(head)
}

/// The first offence in a head [`check_bytes`] refused, for its message.
pub(crate) fn first_bad_byte(head: &[u8]) -> Result<(), HeadError> {
    let mut prev = 0u8;
    for (i, &c) in head.iter().enumerate() {
        match c {
            b'\n' if prev != b'\r' => return Err(HeadError::Invalid("bare LF in the head")),
            b'\r' if head.get(i + 1) != Some(&b'\n') => {
                return Err(HeadError::Invalid("bare CR in the head"));
            }
            b'\r' | b'\n' | b'\t' => {}
            0..=0x1f | 0x7f => return Err(HeadError::Invalid("control character in the head")),
            _ => {}
        }
        prev = c;
    }
    Ok(())
}

/// Where the head ends (after CRLFCRLF), if it is complete.
fn head_end(buf: &[u8]) -> Option<usize> {
    static END: LazyLock<memchr::memmem::Finder<'static>> =
        LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n\r\n"));
    END.find(buf).map(|p| p + 4)
}

/// Parses a decimal Content-Length strictly: digits only, no sign, no spaces inside.
fn content_length(value: &[u8]) -> Result<u64, HeadError> {
    let v = value.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return Err(HeadError::Invalid("invalid Content-Length"));
    }
    v.iter()
        .try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .ok_or(HeadError::Invalid("invalid Content-Length"))
}

/// Framing fields shared by requests and responses.
#[derive(Default)]
struct FramingFields<'b> {
    length: Option<u64>,
    chunked: bool,
    close: bool,
    keep_alive: bool,
    upgrade_token: bool,
    tokens: [&'b [u8]; 8],
}

fn framing_fields<'b>(headers: &[httparse::Header<'b>]) -> Result<FramingFields<'b>, HeadError> {
    let mut f = FramingFields::default();
    let mut n_tokens = 0;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            if f.length.is_some() {
                return Err(HeadError::Invalid("more than one Content-Length"));
            }
            f.length = Some(content_length(h.value)?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // SECURITY: exactly one `chunked` and nothing else; `chunked, identity`,
            // `xchunked` or a second field are obfuscation, refused.
            if f.chunked || !h.value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err(HeadError::Invalid("unsupported Transfer-Encoding"));
            }
            f.chunked = true;
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&c| c == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    f.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    f.keep_alive = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    f.upgrade_token = true;
                } else if !token.is_empty() {
                    let slot = f
                        .tokens
                        .get_mut(n_tokens)
                        .ok_or(HeadError::Invalid("too many Connection options"))?;
                    *slot = token;
                    n_tokens += 1;
                }
            }
        }
    }
    if f.chunked && f.length.is_some() {
        return Err(HeadError::Invalid(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    Ok(f)
}

/// Parses a request head at the start of `buf` into `headers`.
///
/// # Errors
/// [`HeadError::Partial`] when more bytes are needed; the other variants are final.
pub fn parse_request<'b>(
    buf: &'b [u8],
    headers: &'b mut HeaderSlots<'b>,
) -> Result<RequestHead<'b>, HeadError> {
    let Some(len) = head_end(buf) else {
        return Err(if buf.len() >= MAX_HEAD {
            HeadError::TooLarge
        } else {
            // Catch a bare LF early rather than waiting for a CRLFCRLF that never comes.
            check_bytes(buf.strip_suffix(b"\r").unwrap_or(buf))?;
            HeadError::Partial
        });
    };
    if len > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    check_bytes(&buf[..len])?;
    let mut req = httparse::Request::new(&mut []);
    match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut req,
        &buf[..len],
        headers,
    ) {
        Ok(httparse::Status::Complete(n)) if n == len => {}
        Ok(_) => return Err(HeadError::Invalid("malformed request head")),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(httparse::Error::Version) if well_formed_request_line(buf) => {
            return Err(HeadError::Version);
        }
        Err(_) => return Err(HeadError::Invalid("malformed request head")),
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Invalid("malformed request line"));
    };
    let headers: &'b [httparse::Header<'b>] = req.headers;
    let f = framing_fields(headers)?;
    let mut host = None;
    let mut expect = false;
    for h in headers {
        if h.name.eq_ignore_ascii_case("host") {
            if host.is_some() {
                return Err(HeadError::Invalid("more than one Host"));
            }
            host = Some(h.value.trim_ascii());
        } else if h.name.eq_ignore_ascii_case("expect") {
            expect = true;
        }
    }
    if minor == 0 && f.chunked {
        return Err(HeadError::Invalid("Transfer-Encoding in HTTP/1.0"));
    }
    // SECURITY: origin form only (and `OPTIONS *`). Absolute-form targets are what forward
    // proxies get; pingora's own session refuses them too (found by the differential test).
    if !(target.starts_with('/') || (method == "OPTIONS" && target == "*")) {
        return Err(HeadError::Invalid("unsupported request target"));
    }
    // A fragment is never sent (RFC 9112 §3.2): routing reads the path before `#`, and a
    // backend could read it otherwise.
    if target.contains('#') {
        return Err(HeadError::Invalid("a fragment (#) in the request target"));
    }
    let path = target;
    if minor == 1 && host.is_none() {
        return Err(HeadError::Invalid("HTTP/1.1 request without Host"));
    }
    let framing = match (f.chunked, f.length) {
        (true, _) => Framing::Chunked,
        (false, Some(0) | None) => Framing::Empty,
        (false, Some(n)) => Framing::Length(n),
    };
    Ok(RequestHead {
        len,
        method,
        path,
        minor,
        host,
        framing,
        close: f.close || (minor == 0 && !f.keep_alive),
        websocket: is_websocket_upgrade(
            method,
            minor == 1,
            f.upgrade_token,
            headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("upgrade"))
                .map(|h| h.value),
        ),
        expect,
        headers,
    })
}

/// Whether the request line at the start of `buf` has the grammar of RFC 9112 §3: three
/// parts split by single spaces, the last `HTTP/` DIGIT `.` DIGIT. httparse reports any
/// trouble after the target as a version error, but only a well-formed line with a version
/// labgate does not speak is a 505; anything else (a space inside the target) is a 400.
fn well_formed_request_line(buf: &[u8]) -> bool {
    let line = buf.split(|&c| c == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&c| c == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    matches!(version, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
        if major.is_ascii_digit() && minor.is_ascii_digit())
        && !method.is_empty()
        && !target.is_empty()
}

/// A parsed response head from a backend.
#[derive(Debug)]
pub struct ResponseHead<'b> {
    /// Bytes the head takes, final CRLF included.
    pub len: usize,
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: &'b str,
    /// Header fields.
    pub headers: &'b [httparse::Header<'b>],
    /// `Content-Length`, if any.
    pub length: Option<u64>,
    /// `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// `Connection: close` or HTTP/1.0 without keep-alive.
    pub close: bool,
    /// Field names the `Connection` header lists.
    pub connection_tokens: [&'b [u8]; 8],
}

impl ResponseHead<'_> {
    /// The body's framing for a request method (RFC 9112 §6.3).
    pub fn framing(&self, method: &str) -> Framing {
        if method == "HEAD" || (100..200).contains(&self.status) || matches!(self.status, 204 | 304)
        {
            Framing::Empty
        } else if self.chunked {
            Framing::Chunked
        } else {
            match self.length {
                Some(0) => Framing::Empty,
                Some(n) => Framing::Length(n),
                None => Framing::Close,
            }
        }
    }

    /// Whether a header must not travel back to the client.
    pub fn is_hop_by_hop(&self, name: &str) -> bool {
        // Transfer-Encoding stays: chunked bodies pass through unchanged.
        (is_hop_by_hop(name) && !name.eq_ignore_ascii_case("transfer-encoding"))
            || self
                .connection_tokens
                .iter()
                .any(|t| !t.is_empty() && name.as_bytes().eq_ignore_ascii_case(t))
    }
}

/// Parses a backend's response head.
///
/// # Errors
/// [`HeadError::Partial`] when more bytes are needed; the other variants are final (502).
pub fn parse_response<'b>(
    buf: &'b [u8],
    headers: &'b mut HeaderSlots<'b>,
) -> Result<ResponseHead<'b>, HeadError> {
    let Some(len) = head_end(buf) else {
        return Err(if buf.len() >= MAX_HEAD {
            HeadError::TooLarge
        } else {
            HeadError::Partial
        });
    };
    if len > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    check_bytes(&buf[..len])?;
    let mut res = httparse::Response::new(&mut []);
    match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut res,
        &buf[..len],
        headers,
    ) {
        Ok(httparse::Status::Complete(n)) if n == len => {}
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        _ => return Err(HeadError::Invalid("malformed response head")),
    }
    let (Some(status), Some(minor)) = (res.code, res.version) else {
        return Err(HeadError::Invalid("malformed status line"));
    };
    let headers: &'b [httparse::Header<'b>] = res.headers;
    let f = framing_fields(headers)?;
    Ok(ResponseHead {
        len,
        status,
        reason: res.reason.unwrap_or(""),
        headers,
        length: f.length,
        chunked: f.chunked,
        close: f.close || (minor == 0 && !f.keep_alive),
        connection_tokens: f.tokens,
    })
}

/// Room for a head's header fields, filled by the parsers.
pub type HeaderSlots<'b> = [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS];

/// Header slots for the parsers, left uninitialized: zeroing 3 KiB per head cost a sixth of
/// the fast path's head handling.
pub fn header_array<'b>() -> HeaderSlots<'b> {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(raw: &str) -> Result<Framing, HeadError> {
        let mut h = header_array();
        parse_request(raw.as_bytes(), &mut h).map(|r| r.framing)
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        let bad = [
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
            "GET / HTTP/1.1\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET x HTTP/1.1\r\nHost: a\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
        ];
        for raw in bad {
            assert!(
                matches!(req(raw), Err(HeadError::Invalid(_))),
                "{raw:?} gave {:?}",
                req(raw)
            );
        }
        assert_eq!(
            req("GET / HTTP/2.0\r\nHost: a\r\n\r\n"),
            Err(HeadError::Version)
        );
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD)
        );
        assert_eq!(req(&big), Err(HeadError::TooLarge));
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("X{i}: y\r\n"))
            .collect();
        assert_eq!(
            req(&format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n")),
            Err(HeadError::TooLarge)
        );
    }

    #[test]
    fn r21_a_space_in_the_target_is_a_bad_request_not_a_version() {
        for raw in [
            "GET /a-x b HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1 x\r\nHost: a\r\n\r\n",
            "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/11\r\nHost: a\r\n\r\n",
            "GET / http/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert!(
                matches!(req(raw), Err(HeadError::Invalid(_))),
                "{raw:?} gave {:?}",
                req(raw)
            );
        }
        for raw in [
            "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
            "GET / HTTP/3.1\r\nHost: a\r\n\r\n",
        ] {
            assert_eq!(req(raw), Err(HeadError::Version), "{raw:?}");
        }
    }

    #[test]
    fn absolute_form_is_refused() {
        let raw = b"GET http://App.Lab/x?y HTTP/1.1\r\nHost: other\r\n\r\n";
        let mut h = header_array();
        assert!(matches!(
            parse_request(raw, &mut h),
            Err(HeadError::Invalid(_))
        ));
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let mut h = header_array();
        let r =
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", &mut h).expect("valid");
        assert_eq!(r.framing("GET"), Framing::Length(3));
        assert_eq!(r.framing("HEAD"), Framing::Empty);
        let mut h = header_array();
        let r = parse_response(b"HTTP/1.1 200 OK\r\n\r\n", &mut h).expect("valid");
        assert_eq!(r.framing("GET"), Framing::Close);
        let mut h = header_array();
        let r = parse_response(
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
            &mut h,
        )
        .expect("valid");
        assert_eq!(r.framing("GET"), Framing::Empty);
    }
}
