//! How labgate's own clients reach the hosts the configuration names: labgate's own records
//! first (a private ACME server, a list on the NAS), then, for hosts on the internet
//! (blocklist URLs, Cloudflare Access keys, the ACME server, Cloudflare's API), the upstreams
//! before the system's resolver, and for backends the system's resolver (`/etc/hosts`,
//! Docker's names) before the upstreams. On the VM labgate runs on, `/etc/resolv.conf` often
//! points at labgate itself, where the VM's own address is in no network and gets REFUSED:
//! the system's resolver alone would fail there. Reading the snapshot's records needs no
//! running DNS server, so nothing here waits for labgate's own listeners.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use hickory_proto::rr::{LowerName, Name, RData, RecordType};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;
use labgate_config::Snapshot;
use labgate_config::view::Lookup;
use tokio::net::TcpStream;
use tracing::debug;

/// Longest one system lookup may take.
const SYSTEM_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a TCP connect to one address may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most redirects one GET follows: a list moved to a release page or a CDN takes one or two.
const MAX_REDIRECTS: usize = 5;

/// Where a host is expected, which decides whether the upstreams or the system's resolver
/// is asked first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Site {
    /// A public service: the upstreams first.
    Internet,
    /// A backend: the system's resolver first (`/etc/hosts`, container names).
    Local,
}

/// Name resolution and HTTP(S) downloads for labgate's own clients.
#[derive(Clone)]
pub struct Outbound {
    snapshot: Arc<ArcSwap<Snapshot>>,
    dns: labgate_dns::Dns,
    tls: Arc<rustls::ClientConfig>,
}

impl Outbound {
    /// Resolution from the current snapshot's records and `dns`'s upstreams.
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>, dns: labgate_dns::Dns) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self {
            snapshot,
            dns,
            tls: Arc::new(tls),
        }
    }

    /// The addresses of `host` (IPv4 first), from the first source that has any.
    pub async fn addresses(&self, host: &str, site: Site) -> Vec<IpAddr> {
        let host = host.trim_end_matches('.');
        // RFC 6761: localhost is the loopback, whatever a resolver says.
        if host.eq_ignore_ascii_case("localhost") {
            return vec![
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ];
        }
        let own = own_records(&self.snapshot.load(), host);
        if !own.is_empty() {
            debug!("{host} resolved from labgate's own records: {own:?}");
            return own;
        }
        let mut ips = match site {
            Site::Internet => self.dns.resolve_upstream(host).await,
            Site::Local => system(host).await,
        };
        if ips.is_empty() {
            ips = match site {
                Site::Internet => system(host).await,
                Site::Local => self.dns.resolve_upstream(host).await,
            };
        }
        ips.sort_by_key(IpAddr::is_ipv6);
        ips
    }

    /// The body of a successful HTTP/1.1 GET of `url` (`http` or `https`), at most `limit`
    /// bytes, following up to [`MAX_REDIRECTS`] redirects (see [`follow`]). The URL's user
    /// and password, if any, go as Basic credentials.
    ///
    /// # Errors
    /// Why there is no body, in words for a log line (without the URL's secrets).
    pub async fn get(&self, url: &url::Url, limit: usize) -> Result<Bytes, String> {
        let mut url = url.clone();
        let mut redirects = 0;
        loop {
            let location = match self.get_once(&url, limit).await? {
                Got::Body(body) => return Ok(body),
                Got::Moved(location) => location,
            };
            if redirects == MAX_REDIRECTS {
                return Err(format!("more than {MAX_REDIRECTS} redirects"));
            }
            redirects += 1;
            let next = follow(&url, &location)?;
            debug!("{} redirects to {}", Redacted(&url), Redacted(&next));
            url = next;
        }
    }

    /// One GET of `url`: its body, or where it moved.
    async fn get_once(&self, url: &url::Url, limit: usize) -> Result<Got, String> {
        let host = url.host_str().ok_or("the URL has no host")?;
        let port = url.port_or_known_default().ok_or("the URL has no port")?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let ips = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => self.addresses(host, Site::Internet).await,
        };
        if ips.is_empty() {
            return Err(format!(
                "cannot resolve {host} (labgate's records, its upstreams, the system's resolver)"
            ));
        }
        let tcp = connect(&ips, port).await?;
        let _ = tcp.set_nodelay(true);
        let path = &url[url::Position::BeforePath..];
        // RFC 9110 §7.2: the port too, unless it is the scheme's default.
        let authority = &url[url::Position::BeforeHost..url::Position::AfterPort];
        let mut req = Request::get(path)
            .header(hyper::header::HOST, authority)
            .header(
                hyper::header::USER_AGENT,
                concat!("labgate/", env!("CARGO_PKG_VERSION")),
            );
        if !url.username().is_empty() || url.password().is_some() {
            req = req.header(hyper::header::AUTHORIZATION, basic_credentials(url));
        }
        let req = req.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
        if url.scheme() == "https" {
            let name = rustls_pki_types::ServerName::try_from(bare.to_owned())
                .map_err(|e| e.to_string())?;
            let stream = pingora::tls::TlsConnector::from(Arc::clone(&self.tls))
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {host}: {e}"))?;
            get(stream, req, limit).await
        } else {
            get(tcp, req, limit).await
        }
    }
}

#[async_trait]
impl labgate_proxy::cf_access::Fetch for Outbound {
    async fn get(&self, url: &str, limit: usize) -> Result<Bytes, String> {
        let url = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        Self::get(self, &url, limit).await
    }
}

#[async_trait]
impl labgate_acme::Resolve for Outbound {
    async fn addresses(&self, host: &str) -> Vec<IpAddr> {
        Self::addresses(self, host, Site::Internet).await
    }
}

/// A connection to the first of `ips` that answers, each tried for [`CONNECT_TIMEOUT`]: an
/// unreachable IPv4 address does not hide a working IPv6 one.
async fn connect(ips: &[IpAddr], port: u16) -> Result<TcpStream, String> {
    let mut last = String::new();
    for &ip in ips {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((ip, port))).await {
            Ok(Ok(tcp)) => return Ok(tcp),
            Ok(Err(e)) => last = format!("cannot connect to {ip}:{port}: {e}"),
            Err(_) => {
                last =
                    format!("cannot connect to {ip}:{port}: no answer within {CONNECT_TIMEOUT:?}")
            }
        }
    }
    Err(last)
}

/// The system's resolver (`getaddrinfo`: `/etc/hosts`, then `/etc/resolv.conf`).
async fn system(host: &str) -> Vec<IpAddr> {
    let lookup = tokio::net::lookup_host((host, 0));
    match tokio::time::timeout(SYSTEM_LOOKUP_TIMEOUT, lookup).await {
        Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
        _ => Vec::new(),
    }
}

/// What one GET gave.
enum Got {
    Body(Bytes),
    /// A redirect, with its `Location`.
    Moved(String),
}

/// Where a redirect from `from` to `location` leads: never from HTTPS to HTTP nor to another
/// scheme; `from`'s user and password go along to the same host and port only (as curl does).
fn follow(from: &url::Url, location: &str) -> Result<url::Url, String> {
    let mut next = from
        .join(location)
        .map_err(|e| format!("redirected to an invalid URL ({e})"))?;
    match next.scheme() {
        "https" => {}
        "http" if from.scheme() == "http" => {}
        other => {
            return Err(format!(
                "refused a redirect from {} to {other}: {}",
                from.scheme(),
                Redacted(&next)
            ));
        }
    }
    let same_origin = next.host_str() == from.host_str()
        && next.port_or_known_default() == from.port_or_known_default();
    if same_origin && next.username().is_empty() && next.password().is_none() {
        // A relative Location keeps them already; an absolute one to the same place does not.
        let _ = next.set_username(from.username());
        let _ = next.set_password(from.password());
    }
    Ok(next)
}

/// A URL as logs and errors show it: without user and password, and its query as `?…`
/// (private lists carry tokens there).
pub struct Redacted<'a>(pub &'a url::Url);

impl std::fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = self.0;
        let host = &url[url::Position::BeforeHost..url::Position::AfterPath];
        write!(f, "{}://{host}", url.scheme())?;
        if url.query().is_some() {
            f.write_str("?…")?;
        }
        Ok(())
    }
}

/// The `Authorization` value for the URL's user and password (RFC 7617).
fn basic_credentials(url: &url::Url) -> String {
    use base64::Engine;
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let pair = format!(
        "{}:{}",
        decode(url.username()),
        decode(url.password().unwrap_or_default())
    );
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

async fn get<S>(stream: S, req: Request<Empty<Bytes>>, limit: usize) -> Result<Got, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    if !status.is_success() {
        conn.abort();
        if matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
            let location = resp.headers().get(hyper::header::LOCATION);
            return location
                .and_then(|l| l.to_str().ok())
                .map(|l| Got::Moved(l.to_owned()))
                .ok_or_else(|| format!("HTTP {status} without a usable Location"));
        }
        return Err(format!("HTTP {status}"));
    }
    let body = Limited::new(resp.into_body(), limit)
        .collect()
        .await
        .map_err(|e| format!("{e} (the limit is {limit} bytes)"))?
        .to_bytes();
    conn.abort();
    Ok(Got::Body(body))
}

/// The name's A records (else its AAAA records) in the first view that has any.
fn own_records(s: &Snapshot, name: &str) -> Vec<IpAddr> {
    let Ok(mut fqdn) = Name::from_str(name) else {
        return Vec::new();
    };
    fqdn.set_fqdn(true);
    let lower = LowerName::from(fqdn);
    for rtype in [RecordType::A, RecordType::AAAA] {
        for view in &s.views {
            if let Lookup::Answer { records, .. } = view.lookup(&s.zones, &lower, rtype) {
                let ips: Vec<IpAddr> = records
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::A(a) => Some(IpAddr::V4(a.0)),
                        RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                        _ => None,
                    })
                    .collect();
                if !ips.is_empty() {
                    return ips;
                }
            }
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_show_urls_without_credentials_or_query() {
        let url =
            url::Url::parse("https://user:pw@lists.example:8443/a/b.txt?token=t#f").expect("a URL");
        assert_eq!(
            Redacted(&url).to_string(),
            "https://lists.example:8443/a/b.txt?…"
        );
        let plain = url::Url::parse("http://[::1]/list").expect("a URL");
        assert_eq!(Redacted(&plain).to_string(), "http://[::1]/list");
    }

    #[test]
    fn redirects_keep_credentials_on_the_same_host_and_port_only() {
        let from = url::Url::parse("https://u:p@nas.lab/lists/a.txt?t=1").expect("a URL");
        let to = |location: &str| follow(&from, location).map(|u| u.to_string());
        assert_eq!(
            to("b.txt").as_deref(),
            Ok("https://u:p@nas.lab/lists/b.txt")
        );
        assert_eq!(
            to("https://nas.lab:443/c").as_deref(),
            Ok("https://u:p@nas.lab/c")
        );
        assert_eq!(
            to("//cdn.example/c").as_deref(),
            Ok("https://cdn.example/c")
        );
        assert_eq!(
            to("https://nas.lab:8443/c").as_deref(),
            Ok("https://nas.lab:8443/c")
        );
        let downgrade = to("http://nas.lab/c").expect_err("HTTPS to HTTP is refused");
        assert!(!downgrade.contains("u:p"), "{downgrade}");
        assert!(to("ftp://nas.lab/c").is_err());
        let plain = url::Url::parse("http://nas.lab/a").expect("a URL");
        assert!(
            follow(&plain, "https://nas.lab/a").is_ok(),
            "an upgrade is followed"
        );
    }

    #[test]
    fn url_credentials_become_basic_authorization() {
        // RFC 7617's example, with the space percent-encoded as a URL carries it.
        let url = url::Url::parse("https://Aladdin:open%20sesame@lists.example/").expect("a URL");
        assert_eq!(
            basic_credentials(&url),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }
}
