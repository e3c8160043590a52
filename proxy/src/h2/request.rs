//! Request and trailer validation (RFC 9113 §8.1-§8.3, §8.5, RFC 8441 §4) and the views the
//! executor reads them through.
//!
//! SECURITY: a request that passes is safe to write as an HTTP/1.1 head: the method is a
//! token, the path has no space or control byte, names are lowercase tokens, values have no
//! CR, LF, NUL or other control byte and no surrounding whitespace, there is no
//! connection-specific field, `:authority` and `Host` agree, and Content-Length is one
//! decimal number. Anything else is malformed (§8.1.1) and never forwarded.

use super::hpack::HeaderList;

/// A validated request head, borrowing the connection's decoded field list.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// `:method`.
    pub method: &'a [u8],
    /// `:scheme`; empty for CONNECT (§8.5).
    pub scheme: &'a [u8],
    /// `:authority`, else the `Host` field; `None` only for schemes without an authority.
    pub authority: Option<&'a [u8]>,
    /// `:path`; empty for CONNECT.
    pub path: &'a [u8],
    /// `:protocol` of an extended CONNECT (RFC 8441).
    pub protocol: Option<&'a [u8]>,
    /// `content-length`, if sent.
    pub content_length: Option<u64>,
    list: &'a HeaderList,
}

impl<'a> RequestHead<'a> {
    /// The regular fields in order, except `host` (see [`authority`](Self::authority)) and
    /// `cookie` (see [`cookies`](Self::cookies)); names are lowercase.
    pub fn fields(&self) -> Fields<'a> {
        Fields {
            list: self.list,
            i: 0,
            mode: Mode::Request,
        }
    }

    /// The values of the `cookie` fields in order. HTTP/2 clients may split the cookie into
    /// several fields; an HTTP/1.1 head must join them with `"; "` (RFC 9113 §8.2.3).
    pub fn cookies(&self) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        Fields {
            list: self.list,
            i: 0,
            mode: Mode::Cookies,
        }
        .map(|(_, v)| v)
    }
}

/// Fields of a block, in order: `(name, value)`.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    list: &'a HeaderList,
    i: usize,
    mode: Mode,
}

impl<'a> Fields<'a> {
    /// Every field of a trailer block.
    pub(crate) fn trailers(list: &'a HeaderList) -> Self {
        Self {
            list,
            i: 0,
            mode: Mode::All,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    All,
    Request,
    Cookies,
}

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (n, v) = self.list.get(self.i)?;
            self.i += 1;
            let keep = match self.mode {
                Mode::All => true,
                Mode::Request => n.first() != Some(&b':') && n != b"host" && n != b"cookie",
                Mode::Cookies => n == b"cookie",
            };
            if keep {
                return Some((n, v));
            }
        }
    }
}

/// Where a validated request's pseudo-headers are in the list, and what it is.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Meta {
    method: usize,
    scheme: Option<usize>,
    authority: Option<usize>,
    path: Option<usize>,
    protocol: Option<usize>,
    /// The `host` field (used when `:authority` is absent).
    host: Option<usize>,
    pub(crate) content_length: Option<u64>,
    /// CONNECT or extended CONNECT: not a request the core hands over for proxying.
    pub(crate) connect: bool,
}

impl Meta {
    /// The head this describes in `list`.
    pub(crate) fn head<'a>(&self, list: &'a HeaderList) -> RequestHead<'a> {
        let value = |i: Option<usize>| i.and_then(|i| list.get(i)).map(|(_, v)| v);
        RequestHead {
            method: value(Some(self.method)).unwrap_or_default(),
            scheme: value(self.scheme).unwrap_or_default(),
            authority: value(self.authority.or(self.host)),
            path: value(self.path).unwrap_or_default(),
            protocol: value(self.protocol),
            content_length: self.content_length,
            list,
        }
    }
}

/// Validates a request's field block (§8.3.1, §8.2): the malformation found, if any.
pub(crate) fn request(list: &HeaderList, extended_connect: bool) -> Result<Meta, &'static str> {
    let mut m = Meta::default();
    let mut method = None;
    let mut regular = false;
    for (i, (n, v)) in list.iter().enumerate() {
        if n.first() == Some(&b':') {
            if regular {
                return Err("pseudo-header after a regular field");
            }
            let slot = match n {
                b":method" => &mut method,
                b":scheme" => &mut m.scheme,
                b":authority" => &mut m.authority,
                b":path" => &mut m.path,
                b":protocol" if extended_connect => &mut m.protocol,
                _ => return Err("unknown pseudo-header"),
            };
            if slot.replace(i).is_some() {
                return Err("duplicate pseudo-header");
            }
            check_value(v)?;
            continue;
        }
        regular = true;
        check_field(n, v)?;
        match n {
            b"host" if m.host.is_some() => return Err("duplicate host"),
            b"host" => m.host = Some(i),
            b"content-length" => {
                let len = content_length(v)?;
                if m.content_length.replace(len).is_some_and(|l| l != len) {
                    return Err("conflicting content-length");
                }
            }
            _ => {}
        }
    }
    let Some(method) = method else {
        return Err("no :method");
    };
    m.method = method;
    let value = |i: Option<usize>| i.and_then(|i| list.get(i)).map(|(_, v)| v);
    let method = value(Some(method)).unwrap_or_default();
    if !method.iter().all(|&c| TCHAR[usize::from(c)]) || method.is_empty() {
        return Err("invalid :method");
    }
    let authority = value(m.authority);
    let host = value(m.host);
    if let (Some(a), Some(h)) = (authority, host)
        && !a.eq_ignore_ascii_case(h)
    {
        return Err(":authority and host disagree");
    }
    if let Some(a) = authority.or(host)
        && (a.is_empty() || a.contains(&b'@') || !a.iter().all(|&c| c > 0x20 && c != 0x7f))
    {
        return Err("invalid authority");
    }
    if method == b"CONNECT" {
        m.connect = true;
        if m.protocol.is_none() {
            // §8.5: only :method and :authority.
            if m.scheme.is_some() || m.path.is_some() || authority.is_none() {
                return Err("CONNECT with :scheme or :path or without :authority");
            }
            return Ok(m);
        }
    } else if m.protocol.is_some() {
        return Err(":protocol without CONNECT");
    }
    // Every other request, and extended CONNECT (RFC 8441 §4): :scheme and :path.
    let (Some(scheme), Some(path)) = (value(m.scheme), value(m.path)) else {
        return Err("no :scheme or :path");
    };
    if scheme.is_empty()
        || !scheme[0].is_ascii_alphabetic()
        || !scheme
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
    {
        return Err("invalid :scheme");
    }
    if path.is_empty() || !path.iter().all(|&c| c > 0x20 && c != 0x7f) {
        return Err("invalid :path");
    }
    let http = scheme == b"http" || scheme == b"https";
    if http {
        if path[0] != b'/' && !(path == b"*" && method == b"OPTIONS") {
            return Err(":path not in origin or asterisk form");
        }
        if authority.or(host).is_none() {
            return Err("no :authority or host");
        }
    }
    if m.protocol.is_some() && authority.is_none() {
        return Err("extended CONNECT without :authority");
    }
    Ok(m)
}

/// Validates a trailer block: regular fields only (§8.1).
pub(crate) fn trailers(list: &HeaderList) -> Result<(), &'static str> {
    for (n, v) in list.iter() {
        if n.first() == Some(&b':') {
            return Err("pseudo-header in trailers");
        }
        check_field(n, v)?;
    }
    Ok(())
}

/// A regular field: name a lowercase token, not connection-specific (§8.2.1, §8.2.2); value
/// clean.
fn check_field(n: &[u8], v: &[u8]) -> Result<(), &'static str> {
    if n.is_empty()
        || !n
            .iter()
            .fold(true, |ok, &c| ok & LOWER_TCHAR[usize::from(c)])
    {
        return Err("field name not a lowercase token");
    }
    match n {
        b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding" | b"upgrade" => {
            return Err("connection-specific field");
        }
        b"te" if !v.eq_ignore_ascii_case(b"trailers") => return Err("te other than trailers"),
        _ => {}
    }
    check_value(v)
}

/// A field value: no control byte but HTAB, no surrounding whitespace (§8.2.1; labgate's
/// HTTP/1.1 parser refuses the same bytes).
fn check_value(v: &[u8]) -> Result<(), &'static str> {
    // Branch-free so that it vectorizes, like `head::check_bytes`.
    let bad = v.iter().fold(false, |bad, &c| {
        bad | ((c < 0x20) & (c != b'\t')) | (c == 0x7f)
    });
    let edge = |c: Option<&u8>| matches!(c, Some(b' ' | b'\t'));
    if bad || edge(v.first()) || edge(v.last()) {
        return Err("field value with a control byte or surrounding whitespace");
    }
    Ok(())
}

/// Content-Length: decimal digits only, at most 19.
fn content_length(v: &[u8]) -> Result<u64, &'static str> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return Err("invalid content-length");
    }
    Ok(v.iter().fold(0u64, |n, &c| n * 10 + u64::from(c - b'0')))
}

/// RFC 9110 §5.6.2 tchar.
const TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        c += 1;
    }
    t
};

/// tchar without uppercase letters (RFC 9113 §8.2.1).
const LOWER_TCHAR: [bool; 256] = {
    let mut t = TCHAR;
    let mut c = b'A';
    while c <= b'Z' {
        t[c as usize] = false;
        c += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::super::hpack::Decoder;
    use super::*;

    /// A list holding these fields, as a client would send them.
    fn list(fields: &[(&str, &str)]) -> HeaderList {
        // The response encoder lowercases names; write literals by hand to keep case.
        let mut block = Vec::new();
        for (n, v) in fields {
            block.push(0);
            block.push(n.len() as u8);
            block.extend_from_slice(n.as_bytes());
            block.push(v.len() as u8);
            block.extend_from_slice(v.as_bytes());
        }
        let mut l = HeaderList::new(16 * 1024, 96, 4096);
        Decoder::new(4096).decode(&block, &mut l).expect("decodes");
        l
    }

    const GET: [(&str, &str); 4] = [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "app.lab.test"),
        (":path", "/x?y"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        GET.iter().chain(extra).copied().collect()
    }

    #[test]
    fn s8_3_1_valid_requests() {
        let cases: Vec<Vec<(&str, &str)>> = vec![
            GET.to_vec(),
            with(&[("te", "trailers"), ("content-length", "12")]),
            with(&[("host", "APP.lab.test")]),
            vec![
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/"),
                ("host", "h"),
            ],
            vec![
                (":method", "OPTIONS"),
                (":scheme", "https"),
                (":authority", "h"),
                (":path", "*"),
            ],
            with(&[("content-length", "5"), ("content-length", "5")]),
        ];
        for c in cases {
            let l = list(&c);
            let m = request(&l, false).unwrap_or_else(|e| panic!("{c:?}: {e}"));
            assert!(!m.connect);
        }
    }

    #[test]
    fn s8_1_1_malformed_requests() {
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (with(&[(":path", "/")]), "duplicate pseudo-header"),
            (
                vec![("accept", "*/*"), (":method", "GET")],
                "pseudo-header after a regular field",
            ),
            (with(&[(":status", "200")]), "unknown pseudo-header"),
            (with(&[(":protocol", "websocket")]), "unknown pseudo-header"),
            (with(&[("Accept", "x")]), "field name not a lowercase token"),
            (with(&[("a b", "x")]), "field name not a lowercase token"),
            (
                with(&[("connection", "close")]),
                "connection-specific field",
            ),
            (with(&[("keep-alive", "1")]), "connection-specific field"),
            (
                with(&[("proxy-connection", "x")]),
                "connection-specific field",
            ),
            (
                with(&[("transfer-encoding", "chunked")]),
                "connection-specific field",
            ),
            (with(&[("upgrade", "h2c")]), "connection-specific field"),
            (with(&[("te", "gzip")]), "te other than trailers"),
            (
                with(&[("x", "a\r\nb: c")]),
                "field value with a control byte or surrounding whitespace",
            ),
            (
                with(&[("x", " a")]),
                "field value with a control byte or surrounding whitespace",
            ),
            (
                with(&[("x", "a\0")]),
                "field value with a control byte or surrounding whitespace",
            ),
            (
                with(&[("host", "other.test")]),
                ":authority and host disagree",
            ),
            (with(&[("host", "a"), ("host", "a")]), "duplicate host"),
            (
                with(&[("content-length", "1"), ("content-length", "2")]),
                "conflicting content-length",
            ),
            (with(&[("content-length", "-1")]), "invalid content-length"),
            (with(&[("content-length", "1,1")]), "invalid content-length"),
            (
                vec![(":scheme", "https"), (":path", "/"), (":authority", "h")],
                "no :method",
            ),
            (
                vec![(":method", "GET"), (":authority", "h"), (":path", "/")],
                "no :scheme or :path",
            ),
            (
                vec![
                    (":method", "GET"),
                    (":scheme", "https"),
                    (":authority", "h"),
                    (":path", ""),
                ],
                "invalid :path",
            ),
            (
                vec![
                    (":method", "GET"),
                    (":scheme", "https"),
                    (":authority", "h"),
                    (":path", "/a b"),
                ],
                "invalid :path",
            ),
            (
                vec![
                    (":method", "GET"),
                    (":scheme", "https"),
                    (":authority", "h"),
                    (":path", "x"),
                ],
                ":path not in origin or asterisk form",
            ),
            (
                vec![(":method", "GET"), (":scheme", "https"), (":path", "/")],
                "no :authority or host",
            ),
            (
                vec![
                    (":method", "GET"),
                    (":scheme", "https"),
                    (":authority", "u@h"),
                    (":path", "/"),
                ],
                "invalid authority",
            ),
            (
                vec![
                    (":method", "G T"),
                    (":scheme", "https"),
                    (":authority", "h"),
                    (":path", "/"),
                ],
                "invalid :method",
            ),
            (
                vec![
                    (":method", "CONNECT"),
                    (":authority", "h:443"),
                    (":path", "/"),
                ],
                "CONNECT with :scheme or :path or without :authority",
            ),
        ];
        for (c, want) in cases {
            let l = list(&c);
            assert_eq!(request(&l, false).err(), Some(want), "{c:?}");
        }
    }

    #[test]
    fn s8_5_connect_and_rfc8441_extended_connect() {
        let l = list(&[(":method", "CONNECT"), (":authority", "h:443")]);
        assert!(request(&l, false).is_ok_and(|m| m.connect));
        let ws = [
            (":method", "CONNECT"),
            (":protocol", "websocket"),
            (":scheme", "https"),
            (":path", "/chat"),
            (":authority", "h"),
        ];
        let l = list(&ws);
        assert_eq!(request(&l, false).err(), Some("unknown pseudo-header"));
        let m = request(&l, true).expect("extended CONNECT");
        assert!(m.connect);
        assert_eq!(m.head(&l).protocol, Some(&b"websocket"[..]));
        let l = list(&[
            (":method", "GET"),
            (":protocol", "websocket"),
            (":scheme", "https"),
            (":path", "/"),
            (":authority", "h"),
        ]);
        assert_eq!(request(&l, true).err(), Some(":protocol without CONNECT"));
    }

    #[test]
    fn s8_2_3_head_view_splits_host_and_cookies() {
        let l = list(&with(&[
            ("cookie", "a=1"),
            ("accept", "*/*"),
            ("host", "app.lab.test"),
            ("cookie", "b=2"),
        ]));
        let h = request(&l, false).expect("valid").head(&l);
        assert_eq!(h.method, b"GET");
        assert_eq!(h.authority, Some(&b"app.lab.test"[..]));
        assert_eq!(h.path, b"/x?y");
        assert_eq!(
            h.fields().collect::<Vec<_>>(),
            [(&b"accept"[..], &b"*/*"[..])]
        );
        assert_eq!(h.cookies().collect::<Vec<_>>(), [&b"a=1"[..], &b"b=2"[..]]);
    }

    #[test]
    fn s8_1_trailers() {
        assert!(trailers(&list(&[("grpc-status", "0")])).is_ok());
        assert!(trailers(&list(&[(":path", "/")])).is_err());
        assert!(trailers(&list(&[("connection", "x")])).is_err());
    }
}
