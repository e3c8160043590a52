//! Active health checks: a `GET` of the service's `health_check.path` on each backend every
//! `interval`; `fall` failures in a row mark it down, `rise` successes up again. Runs in the
//! control plane; the request path only reads the result (`BackendState::available`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use labgate_config::route::HealthCheck;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::Proxy;
use crate::backends::BackendState;
use crate::head::{HeadError, header_array, parse_response};

/// How often due checks are looked for.
const TICK: Duration = Duration::from_millis(250);

/// Runs health checks until `stop` resolves; the checks in flight then are cancelled.
pub async fn run(proxy: Arc<Proxy>, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(TICK);
    // Each check is a task owned here (bounded by its timeout), so one slow backend does not
    // hold up the others' checks.
    let mut checks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut stop => return,
        }
        while checks.try_join_next().is_some() {}
        let state = proxy.state();
        let now = Instant::now();
        let mut due = Vec::new();
        for (svc, pool) in state.snapshot.services.iter().zip(state.pools.iter()) {
            let Some(hc) = &svc.health_check else {
                continue;
            };
            for b in &pool.backends {
                if b.check_due(now, hc.interval) {
                    // The Host a request gets: a backend that answers only its own name
                    // (`host_header`) would fail every check on the service's name.
                    let host = svc
                        .host_header
                        .clone()
                        .or_else(|| svc.hosts.first().cloned());
                    due.push((Arc::clone(b), hc.clone(), host));
                }
            }
        }
        for (b, hc, host) in due {
            let proxy = Arc::clone(&proxy);
            checks.spawn(async move {
                let ok = check(&proxy, &b, &hc, host.as_deref().unwrap_or("localhost")).await;
                if b.record_check(ok, &hc) {
                    let state = if b.healthy.load(Ordering::Relaxed) {
                        "up"
                    } else {
                        "down"
                    };
                    tracing::warn!(backend = %b.backend.url, "health check: backend is {state}");
                }
            });
        }
    }
}

/// One check: a 2xx or 3xx answer within the timeout.
async fn check(proxy: &Proxy, b: &BackendState, hc: &HealthCheck, host: &str) -> bool {
    let Some(peer) = b.peer() else {
        return false;
    };
    if b.backend.h2c {
        return matches!(
            tokio::time::timeout(hc.timeout, check_h2(proxy, &peer, hc, host)).await,
            Ok(Some(200..=399))
        );
    }
    let attempt = async {
        let mut s = proxy.connector.new_stream(&*peer).await.ok()?;
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: labgate-health-check\r\nConnection: close\r\n\r\n",
            hc.path
        );
        s.write_all(req.as_bytes()).await.ok()?;
        s.flush().await.ok()?;
        let mut buf = Vec::with_capacity(1024);
        loop {
            let mut chunk = [0u8; 1024];
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut headers = header_array();
            match parse_response(&buf, &mut headers) {
                Ok(r) => return Some(r.status),
                Err(HeadError::Partial) => {}
                Err(_) => return None,
            }
        }
    };
    matches!(
        tokio::time::timeout(hc.timeout, attempt).await,
        Ok(Some(200..=399))
    )
}

/// The check over HTTP/2 for an h2c backend: the status of a `GET`.
async fn check_h2(proxy: &Proxy, peer: &HttpPeer, hc: &HealthCheck, host: &str) -> Option<u16> {
    let mut req = RequestHeader::build("GET", hc.path.as_bytes(), None).ok()?;
    req.insert_header("host", host).ok()?;
    req.insert_header("user-agent", "labgate-health-check")
        .ok()?;
    let mut up = proxy.upstream_session(peer, true).await.ok()?;
    up.write_request_header(Box::new(req)).await.ok()?;
    up.finish_request_body().await.ok()?;
    up.read_response_header().await.ok()?;
    let status = up.response_header()?.status.as_u16();
    while let Ok(Some(_)) = up.read_response_body().await {}
    proxy.release_session(up, peer).await;
    Some(status)
}
