//! Why an outbound request failed.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

/// What failed, each with what to do next. URLs are shown as [`crate::Redacted`] shows them,
/// so no message holds a URL's credentials or query.
///
/// `Clone`, with shared causes: the connector's error reaches the caller boxed inside hyper's,
/// and is taken back out typed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL cannot be requested: a scheme other than `http` and `https`, no host.
    #[error("{url}: {what}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong with it.
        what: &'static str,
    },
    /// No source has an address for the host.
    #[error(
        "cannot resolve {host} through labgate's records, its upstreams or the system's resolver: check the name, and the upstreams in [dns]"
    )]
    Resolve {
        /// The host name.
        host: String,
    },
    /// No address of the host took a TCP connection.
    #[error(
        "cannot connect to {host} port {port} (at {}): check that the server runs there and that no firewall drops labgate's connections",
        list(addresses)
    )]
    Connect {
        /// The host, as the URL names it.
        host: String,
        /// The port.
        port: u16,
        /// The addresses tried, in the order they were.
        addresses: Vec<IpAddr>,
        /// Why the last attempt failed.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The TLS handshake failed.
    #[error(
        "TLS with {host} failed: its certificate must be valid for the name and chain to a public root (or, for a private ACME server, to acme.directory_ca_file)"
    )]
    Tls {
        /// The host.
        host: String,
        /// rustls' error, inside the handshake's I/O error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The server answered with a status the caller does not take.
    #[error("{url} answered {status}: {}", advice(*status))]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: StatusCode,
    },
    /// The body is longer than the caller takes.
    #[error("{url}: the body is longer than {limit} bytes, the most labgate takes there")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit, in bytes.
        limit: usize,
    },
    /// A redirect labgate does not follow: to another scheme, or from HTTPS to HTTP.
    #[error(
        "refused a redirect from {url} to {to}: labgate follows redirects to https, and to http only from http; give the final URL"
    )]
    RedirectRefused {
        /// Where the redirect came from.
        url: String,
        /// Where it led.
        to: String,
    },
    /// A redirect without a `Location` labgate can follow.
    #[error("{url} answered {status} without a usable Location: give the final URL")]
    BadLocation {
        /// The URL.
        url: String,
        /// The redirect's status.
        status: StatusCode,
    },
    /// Redirects went on past the most labgate follows.
    #[error(
        "{url}: more than {max} redirects: the server sends labgate in a circle; `curl -L` on the URL shows where"
    )]
    RedirectLoop {
        /// The URL that redirected once too often.
        url: String,
        /// The most redirects followed.
        max: usize,
    },
    /// The exchange took longer than the caller gives it.
    #[error(
        "{url} did not answer within {after:?}: check that the server is up and reachable from labgate"
    )]
    Timeout {
        /// The URL.
        url: String,
        /// The time given.
        after: Duration,
    },
    /// The exchange failed after the connection was made: the server closed it, or did not
    /// speak HTTP.
    #[error("{url}: the exchange failed; check that the server speaks HTTP at that address")]
    Exchange {
        /// The URL.
        url: String,
        /// hyper's error.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
}

/// What to do about an answer's status.
fn advice(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 | 403 => "check the credentials (a URL's user and password go as Basic authorization)",
        429 | 500..=599 => "the server is failing or busy; labgate tries again later",
        _ => "check the URL",
    }
}

/// `a, b, c`.
fn list(addresses: &[IpAddr]) -> String {
    addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_says_what_to_do() {
        let table = [
            (401, "check the credentials"),
            (403, "check the credentials"),
            (404, "check the URL"),
            (410, "check the URL"),
            (429, "tries again later"),
            (500, "tries again later"),
            (503, "tries again later"),
        ];
        for (code, advice) in table {
            let status = StatusCode::from_u16(code).expect("a status");
            let e = Error::Status {
                url: "https://lists.example/a.txt?…".into(),
                status,
            };
            assert!(e.to_string().contains(advice), "{code}: {e}");
        }
    }

    #[test]
    fn a_failed_connect_names_every_address_tried() {
        let e = Error::Connect {
            host: "nas.lab".into(),
            port: 443,
            addresses: vec![
                "192.0.2.1".parse().expect("v4"),
                "2001:db8::1".parse().expect("v6"),
            ],
            source: Arc::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        };
        assert!(
            e.to_string()
                .starts_with("cannot connect to nas.lab port 443 (at 192.0.2.1, 2001:db8::1)"),
            "{e}"
        );
    }
}
