//! labgate's own answers: short plain-text pages that say what happened and which rule
//! decided it. No `Server` header, nothing about the software.

use std::fmt::Write as _;

use labgate_config::Snapshot;

use crate::decide::Refusal;

/// The reason phrase of a status labgate sends itself.
pub fn reason(status: u16) -> &'static str {
    match status {
        301 => "Moved Permanently",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Content Too Large",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// Appends a complete response with a plain-text body to `out`.
pub fn write(out: &mut Vec<u8>, status: u16, body: &str, close: bool, extra: &[(&str, &str)]) {
    let mut head = String::with_capacity(160);
    let _ = write!(
        head,
        "HTTP/1.1 {status} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\ncache-control: no-store\r\n",
        reason(status),
        body.len()
    );
    for (k, v) in extra {
        let _ = write!(head, "{k}: {v}\r\n");
    }
    if close {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body.as_bytes());
}

/// The body of a refusal, naming the rule.
pub fn refusal_body(s: &Snapshot, r: Refusal) -> String {
    let what = match r {
        Refusal::BadHost => "the Host header is missing or not a host name",
        Refusal::NoNetwork => "your address is in no network labgate knows ([[network]] cidrs)",
        Refusal::NotConnector => {
            "this is the Cloudflare Tunnel origin; only `tunnel.connectors` may use it"
        }
        Refusal::AmbiguousPath => {
            "this path leads to another service once decoded or resolved (%xx, `..`, `;`) than as written"
        }
        Refusal::UnknownHost => "no service here has this host name",
        Refusal::UnknownPath => "no service here has this path under this host name",
        Refusal::Misdirected => {
            "this connection's certificate (chosen by its TLS server name) does not cover the Host of the request; open a new connection for it"
        }
        Refusal::Denied { service, network } => {
            return body(
                r.status(),
                &format!(
                    "network {} may not reach service {} (its allow list does not name it)",
                    s.networks.get(network).name,
                    s.service(service).name
                ),
            );
        }
    };
    body(r.status(), what)
}

/// The body when Cloudflare Access refused a token.
pub fn access_body(r: crate::cf_access::Reason) -> String {
    body(
        403,
        &format!(
            "this service requires Cloudflare Access, and the request's token was refused ({})",
            r.label()
        ),
    )
}

/// The body of a page: its status, then what was refused or went wrong and why, in a
/// sentence of its own.
pub fn body(status: u16, what: &str) -> String {
    format!("{status} {}: {what}.\n", reason(status))
}

/// The body when a request head was refused before it was routed: `why` says what is wrong
/// with it.
pub fn head_body(status: u16, why: &str) -> String {
    format!(
        "{status} {}: the request head was refused: {why}.\n",
        reason(status)
    )
}

/// The body when a service's backend failed: `why` completes "the backend of service X".
/// A `why` that sends the reader to labgate's log is only used where a warn line was written.
pub fn backend_body(status: u16, service: &str, why: &str) -> String {
    format!(
        "{status} {}: the backend of service {service} {why}.\n",
        reason(status)
    )
}

/// The body when a request body could not be read on: `why` says what was wrong with it.
pub fn request_body_refused(status: u16, why: &str) -> String {
    format!(
        "{status} {}: the request body was refused: {why}.\n",
        reason(status)
    )
}

/// The body when a request body is over the service's `max_body`.
pub fn too_large_body(service: &str, max: u64) -> String {
    format!(
        "413 Content Too Large: service {service} takes request bodies up to {max} bytes (max_body).\n"
    )
}

/// A redirect to the same host and path over HTTPS: 301 for GET and HEAD, 308 (method and
/// body kept) otherwise. `host` is the Host field `decide` accepted. Returns the status and
/// `Location`.
pub fn to_https(method: &str, host: Option<&[u8]>, https_port: u16, path: &str) -> (u16, String) {
    let mut buf = [0u8; labgate_config::route::MAX_HOST_LEN];
    let host = host
        .and_then(|h| labgate_config::route::normalize_host(h, &mut buf))
        .unwrap_or_default();
    let status = if matches!(method, "GET" | "HEAD") {
        301
    } else {
        308
    };
    let location = if https_port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{https_port}{path}")
    };
    (status, location)
}

/// The body of a redirect to HTTPS.
pub fn redirect_body(status: u16) -> String {
    body(
        status,
        "this service is served over HTTPS only; its address is in the Location header",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r21_every_page_says_what_was_refused_and_why_in_a_sentence() {
        let pages = [
            head_body(400, "bare LF in the head"),
            head_body(408, "it did not arrive whole within 10 seconds"),
            backend_body(502, "app", "sent a malformed response"),
            backend_body(504, "app", "did not answer in time"),
            body(403, "service app does not accept WebSocket connections"),
            request_body_refused(400, "it ended before its announced end"),
            too_large_body("app", 8),
            redirect_body(301),
            access_body(crate::cf_access::Reason::Expired),
        ];
        for p in pages {
            let (status, rest) = p.split_once(": ").expect("status, then the sentence");
            assert!(
                status.len() > 4 && status[..3].parse::<u16>().is_ok(),
                "{p}"
            );
            assert!(
                rest.ends_with(".\n") && !rest.contains(". "),
                "one sentence: {p}"
            );
            assert!(
                !p.contains("log"),
                "no page here has a log line behind it: {p}"
            );
            assert!(!p.contains("the backend this"), "{p}");
        }
    }
    /// The whole response `write` frames: status line, fixed fields, extra fields, the close
    /// when asked, then the body.
    #[test]
    fn write_frames_a_whole_response() {
        /// Status, body, close, extra fields: the response.
        type Row = (
            u16,
            &'static str,
            bool,
            &'static [(&'static str, &'static str)],
            &'static str,
        );
        let cases: &[Row] = &[
            (
                404,
                "gone.\n",
                false,
                &[],
                "HTTP/1.1 404 Not Found\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 6\r\ncache-control: no-store\r\n\r\ngone.\n",
            ),
            (
                308,
                "",
                true,
                &[("location", "https://app.lab.test/")],
                "HTTP/1.1 308 Permanent Redirect\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 0\r\ncache-control: no-store\r\nlocation: https://app.lab.test/\r\nconnection: close\r\n\r\n",
            ),
            (
                599,
                "é",
                false,
                &[],
                "HTTP/1.1 599 Error\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 2\r\ncache-control: no-store\r\n\r\né",
            ),
        ];
        for (status, body, close, extra, expected) in cases {
            let mut out = b"before".to_vec();
            write(&mut out, *status, body, *close, extra);
            assert_eq!(
                std::str::from_utf8(&out).expect("UTF-8"),
                format!("before{expected}"),
                "{status}"
            );
        }
    }

    /// 301 keeps GET and HEAD, 308 keeps every other method and its body; the Host is the
    /// normalized one; the port is written only when it is not 443.
    #[test]
    fn to_https_redirects() {
        /// Method, Host, HTTPS port, path: the status and `Location`.
        type Row = (
            &'static str,
            Option<&'static str>,
            u16,
            &'static str,
            (u16, &'static str),
        );
        let cases: &[Row] = &[
            (
                "GET",
                Some("app.lab.test"),
                443,
                "/",
                (301, "https://app.lab.test/"),
            ),
            (
                "HEAD",
                Some("app.lab.test"),
                443,
                "/a?b",
                (301, "https://app.lab.test/a?b"),
            ),
            (
                "POST",
                Some("app.lab.test"),
                443,
                "/form",
                (308, "https://app.lab.test/form"),
            ),
            (
                "get",
                Some("app.lab.test"),
                443,
                "/",
                (308, "https://app.lab.test/"),
            ),
            (
                "GET",
                Some("App.Lab.Test.:80"),
                8443,
                "/",
                (301, "https://app.lab.test:8443/"),
            ),
            ("GET", None, 443, "/", (301, "https:///")),
            ("GET", Some("bad host"), 443, "/", (301, "https:///")),
        ];
        for (method, host, port, path, (status, location)) in cases {
            let got = to_https(method, host.map(str::as_bytes), *port, path);
            assert_eq!(
                got,
                (*status, (*location).to_owned()),
                "{method} {host:?} {port}"
            );
        }
    }

    /// Each refusal's page carries its status and names the rule that decided it.
    #[test]
    fn refusal_pages() {
        let s = labgate_config::testing::snapshot(
            "[[network]]\nname = \"guests\"\ncidrs = [\"10.9.0.0/16\"]\n[[network]]\nname = \"lab\"\ncidrs = [\"10.0.0.0/16\"]\naddresses = [\"10.0.0.2\"]\n[[zone]]\nname = \"lab.test\"\n[[service]]\nhost = \"app.lab.test\"\nallow = [\"lab\"]\nbackends = [\"http://10.0.0.9\"]\n",
        );
        let labgate_config::route::Route::Service(service) = s.route("app.lab.test", "/") else {
            panic!("app.lab.test is routed");
        };
        let network = s
            .networks
            .lookup("10.9.0.1".parse().expect("IP"))
            .expect("in guests")
            .network;
        let cases: &[(Refusal, &str)] = &[
            (
                Refusal::BadHost,
                "400 Bad Request: the Host header is missing or not a host name.\n",
            ),
            (
                Refusal::NoNetwork,
                "403 Forbidden: your address is in no network labgate knows ([[network]] cidrs).\n",
            ),
            (
                Refusal::NotConnector,
                "403 Forbidden: this is the Cloudflare Tunnel origin; only `tunnel.connectors` may use it.\n",
            ),
            (
                Refusal::AmbiguousPath,
                "400 Bad Request: this path leads to another service once decoded or resolved (%xx, `..`, `;`) than as written.\n",
            ),
            (
                Refusal::UnknownHost,
                "404 Not Found: no service here has this host name.\n",
            ),
            (
                Refusal::UnknownPath,
                "404 Not Found: no service here has this path under this host name.\n",
            ),
            (
                Refusal::Misdirected,
                "421 Misdirected Request: this connection's certificate (chosen by its TLS server name) does not cover the Host of the request; open a new connection for it.\n",
            ),
            (
                Refusal::Denied { service, network },
                "403 Forbidden: network guests may not reach service app (its allow list does not name it).\n",
            ),
        ];
        for (r, expected) in cases {
            assert_eq!(refusal_body(&s, *r), *expected, "{r:?}");
        }
        assert_eq!(
            access_body(crate::cf_access::Reason::Audience),
            "403 Forbidden: this service requires Cloudflare Access, and the request's token was refused (audience).\n"
        );
    }
}
