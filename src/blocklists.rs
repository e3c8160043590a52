//! Fetches URL blocklists in the background: resolved through the upstreams directly (labgate
//! never depends on its own DNS to boot), bounded in size and time, refreshed on each list's
//! interval, and a failed fetch keeps the last good list.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;
use labgate_config::blocklist::BlockSet;
use labgate_config::settings::BlocklistSource;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::status::Shared;

/// Largest list accepted.
pub const MAX_LIST_BYTES: usize = 32 << 20;
/// Longest a whole download may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait before retrying a failed download.
pub const RETRY_AFTER: Duration = Duration::from_secs(60);

/// Runs until cancelled.
pub async fn run(shared: Arc<Shared>, dns: labgate_dns::Handler, cancel: CancellationToken) {
    let lists = dns.fetched_lists();
    let tls = Arc::new(tls_config());
    let mut due: HashMap<String, Instant> = HashMap::new();
    loop {
        let snapshot = shared.snapshot.load_full();
        for l in &snapshot.dns.blocklists {
            let BlocklistSource::Url(url) = &l.source else {
                continue;
            };
            if due.get(url.as_str()).is_some_and(|d| *d > Instant::now()) {
                continue;
            }
            let fetched = tokio::select! {
                r = tokio::time::timeout(FETCH_TIMEOUT, fetch(&dns, &tls, url)) => r,
                () = cancel.cancelled() => return,
            };
            let next = match fetched {
                Ok(Ok(text)) => {
                    let set = BlockSet::parse(&text, l.format);
                    info!(list = %l.name, %url, names = set.len(), skipped = set.skipped, "blocklist fetched");
                    let set = Arc::new(set);
                    lists.rcu(|m| {
                        let mut m = HashMap::clone(m);
                        m.insert(url.to_string(), Arc::clone(&set));
                        m
                    });
                    shared.list_fetches[0].fetch_add(1, Ordering::Relaxed);
                    l.refresh
                }
                failed => {
                    let why = match failed {
                        Ok(Err(e)) => e,
                        _ => format!("no answer within {FETCH_TIMEOUT:?}"),
                    };
                    warn!(list = %l.name, %url, "blocklist fetch failed: {why}; the last good list stays");
                    shared.list_fetches[1].fetch_add(1, Ordering::Relaxed);
                    l.refresh.min(RETRY_AFTER)
                }
            };
            due.insert(url.to_string(), Instant::now() + next);
        }
        // New snapshots may add lists: look again within a second (with nothing due, in a
        // second, not at once: that would spin).
        let relook = Instant::now() + Duration::from_secs(1);
        let wake = due
            .values()
            .min()
            .map_or(relook, |&at| at.clamp(Instant::now(), relook));
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            () = cancel.cancelled() => return,
        }
    }
}

/// One HTTP(S) GET, the body as text.
async fn fetch(
    dns: &labgate_dns::Handler,
    tls: &Arc<rustls::ClientConfig>,
    url: &url::Url,
) -> Result<String, String> {
    let host = url.host_str().ok_or("the URL has no host")?;
    let port = url.port_or_known_default().ok_or("the URL has no port")?;
    let ips = match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(ip) => vec![ip],
        Err(_) => dns.resolve_upstream(host).await,
    };
    let ip = ips
        .first()
        .ok_or_else(|| format!("cannot resolve {host} through the upstreams"))?;
    let tcp = TcpStream::connect((*ip, port))
        .await
        .map_err(|e| format!("cannot connect to {ip}:{port}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let path = &url[url::Position::BeforePath..];
    let req = Request::get(path)
        .header(hyper::header::HOST, host)
        .header(
            hyper::header::USER_AGENT,
            concat!("labgate/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let body = if url.scheme() == "https" {
        let name =
            rustls_pki_types::ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
        let stream = pingora::tls::TlsConnector::from(Arc::clone(tls))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {host}: {e}"))?;
        get(stream, req).await?
    } else {
        get(tcp, req).await?
    };
    String::from_utf8(body.to_vec()).map_err(|_| "the list is not UTF-8 text".to_owned())
}

async fn get<S>(stream: S, req: Request<Empty<Bytes>>) -> Result<Bytes, String>
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
    let body = Limited::new(resp.into_body(), MAX_LIST_BYTES)
        .collect()
        .await
        .map_err(|e| format!("{e} (lists are limited to {MAX_LIST_BYTES} bytes)"))?
        .to_bytes();
    conn.abort();
    Ok(body)
}

fn tls_config() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth()
}
