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
    dns: labgate_dns::Handler,
    tls: Arc<rustls::ClientConfig>,
}

impl Outbound {
    /// Resolution from the current snapshot's records and `dns`'s upstreams.
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>, dns: labgate_dns::Handler) -> Self {
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
    /// bytes.
    ///
    /// # Errors
    /// Why there is no body, in words for a log line.
    pub async fn get(&self, url: &url::Url, limit: usize) -> Result<Bytes, String> {
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
        let req = Request::get(path)
            .header(hyper::header::HOST, authority)
            .header(
                hyper::header::USER_AGENT,
                concat!("labgate/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
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

async fn get<S>(stream: S, req: Request<Empty<Bytes>>, limit: usize) -> Result<Bytes, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        conn.abort();
        return Err(format!("HTTP {}", resp.status()));
    }
    let body = Limited::new(resp.into_body(), limit)
        .collect()
        .await
        .map_err(|e| format!("{e} (the limit is {limit} bytes)"))?
        .to_bytes();
    conn.abort();
    Ok(body)
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
