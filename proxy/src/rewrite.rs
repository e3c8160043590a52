//! The one description of how a request head changes on its way to a backend, and the sinks
//! it is written into: HTTP/1.1 bytes (the fast path) and pingora's `RequestHeader` (its
//! sessions). Every executor writes the upstream head through [`Rewrite::emit`], so the field
//! rules exist once.

use std::net::IpAddr;

use pingora::http::RequestHeader;

use crate::decide::Via;
use crate::head::{FORWARDING, is_hop_by_hop};
use crate::tunnel;

/// A view of a request head: what the plan decides on and the rewrite copies from. The
/// HTTP/1.1 parser's head and pingora's `RequestHeader` each provide one.
pub trait Head {
    /// The method token.
    fn method(&self) -> &str;
    /// Path and query, in origin form.
    fn target(&self) -> &str;
    /// The Host field, else the request's authority (HTTP/2 `:authority`).
    fn host(&self) -> Option<&[u8]>;
    /// The fields in order, Host included, names as sent.
    fn fields(&self) -> impl Iterator<Item = (&str, &[u8])>;
    /// How the request body is delimited.
    fn body(&self) -> Body;
    /// A WebSocket upgrade, as [`crate::head::is_websocket_upgrade`] decides.
    fn websocket(&self) -> bool;
    /// A shape only pingora's session carries on HTTP/1: HTTP/1.0 or an `Expect` field.
    fn session_only(&self) -> bool;
}

/// How a request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// No body.
    Empty,
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// A body whose end only its framing tells: chunked HTTP/1.1, or HTTP/2 without
    /// `content-length`.
    Unknown,
}

/// Every edit a request head gets on its way to a backend, beyond the fixed rules (hop-by-hop
/// fields and client copies of forwarding fields removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite<'a> {
    /// Host sent instead of the client's (the service's `host_header`).
    pub host_header: Option<&'a str>,
    /// The client the forwarding fields name: the peer, or through the tunnel the address
    /// Cloudflare reports.
    pub client: IpAddr,
    /// The client spoke HTTPS (through the tunnel, Cloudflare's edge did).
    pub https: bool,
    /// The listener: only the tunnel's requests keep Cloudflare's fields.
    pub via: Via,
    /// The peer is a trusted proxy: its `X-Forwarded-For` is kept and appended to.
    pub keep_forwarded_for: bool,
    /// The service's identity header, and the identity Access verified: any client copy of
    /// the header is removed, the verified one added.
    pub identity: Option<(&'a str, Option<String>)>,
    /// A WebSocket upgrade: `Upgrade` is kept and `Connection: upgrade` sent.
    pub upgrade: bool,
    /// The body goes upstream chunked (its length is unknown, the backend speaks HTTP/1.1).
    pub chunked: bool,
    /// The backend speaks HTTP/2 (h2c): a client's `te: trailers` is kept (gRPC needs it).
    pub h2_upstream: bool,
}

/// A head that cannot be written upstream (a field pingora's header types refuse, or more
/// `Connection` options than labgate reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unwritable;

/// Where an upstream head is written, field by field; a value may come in several parts.
pub trait Sink {
    /// The request line (or its pseudo-fields).
    ///
    /// # Errors
    /// When the sink cannot carry it.
    fn request_line(&mut self, method: &str, target: &str) -> Result<(), Unwritable>;
    /// Starts a field.
    fn name(&mut self, name: &str);
    /// Appends to the current field's value.
    fn value(&mut self, part: &[u8]);
    /// Ends the current field.
    ///
    /// # Errors
    /// When the sink cannot carry it.
    fn end(&mut self) -> Result<(), Unwritable>;
}

/// Most `Connection` options read (the HTTP/1.1 parser refuses more).
const MAX_TOKENS: usize = 8;

impl Rewrite<'_> {
    /// Writes the upstream head of `head` into `sink`: request line, Host, the client's fields
    /// that go on (cookies joined into one field), then labgate's own.
    ///
    /// # Errors
    /// When the sink refuses a field, or the head names too many `Connection` options.
    pub fn emit<S: Sink>(&self, head: &impl Head, sink: &mut S) -> Result<(), Unwritable> {
        sink.request_line(head.method(), head.target())?;
        let client_host = head.host().unwrap_or_default();
        field(
            sink,
            "Host",
            &[self.host_header.map_or(client_host, str::as_bytes)],
        )?;
        let mut tokens: [&[u8]; MAX_TOKENS] = [&[]; MAX_TOKENS];
        let mut n_tokens = 0;
        let mut cookies = 0;
        let mut te_trailers = false;
        for (name, value) in head.fields() {
            if name.eq_ignore_ascii_case("connection") {
                for t in value.split(|&c| c == b',').map(<[u8]>::trim_ascii) {
                    if !t.is_empty() && !tokens[..n_tokens].contains(&t) {
                        *tokens.get_mut(n_tokens).ok_or(Unwritable)? = t;
                        n_tokens += 1;
                    }
                }
            } else if name.eq_ignore_ascii_case("cookie") {
                cookies += 1;
            } else if name.eq_ignore_ascii_case("te") {
                te_trailers |= value
                    .split(|&c| c == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"));
            }
        }
        let tokens = &tokens[..n_tokens];
        let identity_header = self.identity.as_ref().map(|(name, _)| *name);
        let mut cookies_written = false;
        for (name, value) in head.fields() {
            if cookies > 1 && name.eq_ignore_ascii_case("cookie") {
                // RFC 9113 §8.2.3: an HTTP/2 client may split its cookies into several fields;
                // a backend must get one, joined with "; " (PHP and others join repeated
                // fields with ", " and lose the session).
                if !cookies_written {
                    cookies_written = true;
                    sink.name(name);
                    let values = head
                        .fields()
                        .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
                        .map(|(_, v)| v);
                    for (k, v) in values.enumerate() {
                        if k > 0 {
                            sink.value(b"; ");
                        }
                        sink.value(v);
                    }
                    sink.end()?;
                }
                continue;
            }
            if self.passes(name, tokens, identity_header) {
                field(sink, name, &[value])?;
            }
        }
        if let Some((name, Some(identity))) = &self.identity {
            field(sink, name, &[identity.as_bytes()])?;
        }
        if self.h2_upstream && te_trailers {
            field(sink, "te", &[b"trailers"])?;
        }
        if self.upgrade {
            field(sink, "Connection", &[b"upgrade"])?;
        }
        if self.chunked {
            field(sink, "Transfer-Encoding", &[b"chunked"])?;
        }
        let mut result = Ok(());
        forwarding_fields(self.client, self.https, client_host, |name, parts| {
            if result.is_ok() {
                result = field(sink, name, parts);
            }
        });
        result
    }

    /// Whether a client field goes upstream as it is.
    fn passes(&self, name: &str, tokens: &[&[u8]], identity_header: Option<&str>) -> bool {
        if self.upgrade && name.eq_ignore_ascii_case("upgrade") {
            return true;
        }
        let forwarding = FORWARDING.iter().any(|f| name.eq_ignore_ascii_case(f))
            && !(self.keep_forwarded_for && name.eq_ignore_ascii_case("x-forwarded-for"));
        !(name.eq_ignore_ascii_case("host")
            || is_hop_by_hop(name)
            || forwarding
            // SECURITY: only the tunnel's own fields are believed; nobody else may send them.
            || tunnel::strip(name, self.via)
            || identity_header.is_some_and(|h| name.eq_ignore_ascii_case(h))
            || tokens.iter().any(|t| name.as_bytes().eq_ignore_ascii_case(t)))
    }
}

/// Writes one field of `parts`.
fn field<S: Sink>(sink: &mut S, name: &str, parts: &[&[u8]]) -> Result<(), Unwritable> {
    sink.name(name);
    for p in parts {
        sink.value(p);
    }
    sink.end()
}

/// HTTP/1.1 bytes: `METHOD target HTTP/1.1`, then `Name: value` lines and the blank line the
/// caller adds with [`end_head`].
impl Sink for Vec<u8> {
    fn request_line(&mut self, method: &str, target: &str) -> Result<(), Unwritable> {
        self.extend_from_slice(method.as_bytes());
        self.push(b' ');
        self.extend_from_slice(target.as_bytes());
        self.extend_from_slice(b" HTTP/1.1\r\n");
        Ok(())
    }

    fn name(&mut self, name: &str) {
        self.extend_from_slice(name.as_bytes());
        self.extend_from_slice(b": ");
    }

    fn value(&mut self, part: &[u8]) {
        self.extend_from_slice(part);
    }

    fn end(&mut self) -> Result<(), Unwritable> {
        self.extend_from_slice(b"\r\n");
        Ok(())
    }
}

/// Ends an HTTP/1.1 head written into `out`.
pub fn end_head(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\r\n");
}

/// A pingora `RequestHeader` being built (HTTP/1.1; pingora's h2 client converts it).
#[derive(Debug, Default)]
pub struct HeaderSink {
    head: Option<RequestHeader>,
    name: String,
    value: Vec<u8>,
}

impl HeaderSink {
    /// The head written, once [`Rewrite::emit`] succeeded.
    pub fn into_head(self) -> Option<RequestHeader> {
        self.head
    }
}

impl Sink for HeaderSink {
    fn request_line(&mut self, method: &str, target: &str) -> Result<(), Unwritable> {
        let mut head =
            RequestHeader::build(method, target.as_bytes(), None).map_err(|_| Unwritable)?;
        head.set_version(http::Version::HTTP_11);
        self.head = Some(head);
        Ok(())
    }

    fn name(&mut self, name: &str) {
        self.name.clear();
        self.name.push_str(name);
        self.value.clear();
    }

    fn value(&mut self, part: &[u8]) {
        self.value.extend_from_slice(part);
    }

    fn end(&mut self) -> Result<(), Unwritable> {
        let head = self.head.as_mut().ok_or(Unwritable)?;
        let value = http::HeaderValue::from_bytes(&self.value).map_err(|_| Unwritable)?;
        head.append_header(self.name.clone(), value)
            .map(|_| ())
            .map_err(|_| Unwritable)
    }
}

/// `X-Forwarded-For`, `-Proto`, `-Host` and `Forwarded` (RFC 7239) for one client, each
/// given to `field` as a name and the parts of its value.
pub fn forwarding_fields(
    client: IpAddr,
    https: bool,
    host: &[u8],
    mut field: impl FnMut(&'static str, &[&[u8]]),
) {
    let proto: &[u8] = if https { b"https" } else { b"http" };
    let mut ip = [0u8; 64];
    let ip = ip_text(client, &mut ip);
    field("X-Forwarded-For", &[ip]);
    field("X-Forwarded-Proto", &[proto]);
    field("X-Forwarded-Host", &[host]);
    let (open, close): (&[u8], &[u8]) = if client.is_ipv6() {
        (b"\"[", b"]\"")
    } else {
        (b"", b"")
    };
    let host_ok = host
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || b".-:[]".contains(c));
    let (sep, host): (&[u8], &[u8]) = if host_ok {
        (b";host=", host)
    } else {
        (b"", b"")
    };
    field(
        "Forwarded",
        &[b"for=", open, ip, close, b";proto=", proto, sep, host],
    );
}

/// `client` in text, in `buf`. IPv4 is written by hand: `Display` cost as much as the rest of
/// the forwarding fields together.
fn ip_text(client: IpAddr, buf: &mut [u8; 64]) -> &[u8] {
    let mut n = 0;
    match client {
        IpAddr::V4(v4) => {
            // At most 15 bytes: within `buf`.
            for (k, octet) in v4.octets().into_iter().enumerate() {
                if k > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                let mut digits = [0u8; 20];
                for &d in decimal(octet.into(), &mut digits) {
                    buf[n] = d;
                    n += 1;
                }
            }
        }
        IpAddr::V6(v6) => {
            use std::io::Write as _;
            // The longest IPv6 text is 45 bytes.
            let mut cur = std::io::Cursor::new(&mut buf[..]);
            let _ = write!(cur, "{v6}");
            n = usize::try_from(cur.position()).unwrap_or(0);
        }
    }
    &buf[..n]
}

/// `n` in decimal, in `buf`.
pub(crate) fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::{header_array, parse_request};

    fn rewrite() -> Rewrite<'static> {
        Rewrite {
            host_header: None,
            client: "10.0.3.7".parse().expect("ip"),
            https: true,
            via: Via::Direct,
            keep_forwarded_for: false,
            identity: None,
            upgrade: false,
            chunked: false,
            h2_upstream: false,
        }
    }

    fn emit(raw: &str, r: &Rewrite<'_>) -> String {
        let mut headers = header_array();
        let h = parse_request(raw.as_bytes(), &mut headers).expect("a request head");
        let mut out = Vec::new();
        r.emit(&h, &mut out).expect("writable");
        end_head(&mut out);
        String::from_utf8(out).expect("text")
    }

    const FORWARDED: &str = "X-Forwarded-For: 10.0.3.7\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: a.lab\r\nForwarded: for=10.0.3.7;proto=https;host=a.lab\r\n\r\n";

    #[test]
    fn each_edit_of_the_head() {
        let base = "GET /p?q HTTP/1.1\r\nHost: a.lab\r\n";
        let cases: &[(&str, &str, Rewrite<'_>, &str)] = &[
            (
                "nothing to remove",
                "Accept: */*\r\n",
                rewrite(),
                "Accept: */*\r\n",
            ),
            (
                "hop-by-hop and Connection-named fields go",
                "Connection: keep-alive, x-secret\r\nKeep-Alive: 5\r\nX-Secret: 1\r\nTE: gzip\r\nProxy-Authorization: x\r\nA: 1\r\n",
                rewrite(),
                "A: 1\r\n",
            ),
            (
                "client forwarding fields go",
                "X-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Forwarded-Host: evil\r\n",
                rewrite(),
                "",
            ),
            (
                "a trusted proxy's X-Forwarded-For stays, in place",
                "B: 1\r\nX-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\n",
                Rewrite {
                    keep_forwarded_for: true,
                    ..rewrite()
                },
                "B: 1\r\nX-Forwarded-For: 6.6.6.6\r\n",
            ),
            (
                "Cloudflare fields go on a direct listener",
                "Cf-Connecting-IP: 1.2.3.4\r\nCF-Ray: x\r\nTrue-Client-IP: 1.2.3.4\r\n",
                rewrite(),
                "",
            ),
            (
                "the tunnel keeps Cloudflare's fields but never an unverified identity",
                "Cf-Ray: x\r\nCf-Access-Authenticated-User-Email: a@b\r\n",
                Rewrite {
                    via: Via::Tunnel,
                    ..rewrite()
                },
                "Cf-Ray: x\r\n",
            ),
            (
                "the identity header is replaced by the verified identity",
                "X-User: forged\r\n",
                Rewrite {
                    identity: Some(("X-User", Some("me@lab".to_owned()))),
                    ..rewrite()
                },
                "X-User: me@lab\r\n",
            ),
            (
                "no verified identity: the header is only removed",
                "X-User: forged\r\n",
                Rewrite {
                    identity: Some(("X-User", None)),
                    ..rewrite()
                },
                "",
            ),
            (
                "split cookies are joined at the first",
                "Cookie: a=1\r\nX: y\r\nCookie: b=2\r\n",
                rewrite(),
                "Cookie: a=1; b=2\r\nX: y\r\n",
            ),
            (
                "one cookie passes as it is",
                "Cookie: a=1; b=2\r\n",
                rewrite(),
                "Cookie: a=1; b=2\r\n",
            ),
            (
                "an upgrade keeps Upgrade and says so in Connection",
                "Connection: Upgrade\r\nUpgrade: websocket\r\n",
                Rewrite {
                    upgrade: true,
                    ..rewrite()
                },
                "Upgrade: websocket\r\nConnection: upgrade\r\n",
            ),
            (
                "te: trailers only for an HTTP/2 backend",
                "TE: trailers\r\n",
                Rewrite {
                    h2_upstream: true,
                    ..rewrite()
                },
                "te: trailers\r\n",
            ),
            (
                "a body of unknown length goes chunked",
                "",
                Rewrite {
                    chunked: true,
                    ..rewrite()
                },
                "Transfer-Encoding: chunked\r\n",
            ),
        ];
        for (what, fields, r, kept) in cases {
            let got = emit(&format!("{base}{fields}\r\n"), r);
            let want = format!("GET /p?q HTTP/1.1\r\nHost: a.lab\r\n{kept}{FORWARDED}");
            assert_eq!(got, want, "{what}");
        }
        let host = emit(
            "GET / HTTP/1.1\r\nHost: a.lab\r\n\r\n",
            &Rewrite {
                host_header: Some("inner.local"),
                ..rewrite()
            },
        );
        assert!(
            host.starts_with("GET / HTTP/1.1\r\nHost: inner.local\r\n")
                && host.contains("X-Forwarded-Host: a.lab\r\n"),
            "{host}"
        );
    }

    #[test]
    fn both_sinks_write_the_same_head() {
        let raw = "POST /up HTTP/1.1\r\nHost: a.lab\r\nContent-Length: 3\r\nCookie: a=1\r\nCookie: b=2\r\nX-Forwarded-For: 6.6.6.6\r\nAccept: */*\r\n\r\n";
        let mut headers = header_array();
        let h = parse_request(raw.as_bytes(), &mut headers).expect("a request head");
        // (pingora's header map keeps the values of one name together: a kept client
        // X-Forwarded-For would move labgate's up beside it, which the executors' differential
        // test allows for.)
        let r = Rewrite {
            identity: Some(("X-User", Some("me@lab".to_owned()))),
            ..rewrite()
        };
        let mut bytes = Vec::new();
        r.emit(&h, &mut bytes).expect("writable");
        end_head(&mut bytes);
        let mut sink = HeaderSink::default();
        r.emit(&h, &mut sink).expect("writable");
        let head = sink.into_head().expect("a head");
        let wire = pingora::protocols::http::v1::client::http_req_header_to_wire(&head)
            .expect("wire form");
        assert_eq!(
            String::from_utf8_lossy(&wire),
            String::from_utf8_lossy(&bytes)
        );
    }

    #[test]
    fn ip_text_matches_display() {
        let ips = [
            "0.0.0.0",
            "10.0.3.7",
            "192.168.100.254",
            "255.255.255.255",
            "::1",
            "fd00::1:2",
            "::ffff:10.0.0.1",
            "2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff",
        ];
        for text in ips {
            let ip: IpAddr = text.parse().expect("an address");
            let mut buf = [0u8; 64];
            assert_eq!(ip_text(ip, &mut buf), ip.to_string().as_bytes(), "{text}");
        }
        for n in [0u64, 7, 10, 99, 100, 204, 999, 65535, u64::MAX] {
            let mut buf = [0u8; 20];
            assert_eq!(decimal(n, &mut buf), n.to_string().as_bytes());
        }
    }
}
