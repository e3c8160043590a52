//! The admin endpoint: `/healthz`, `/readyz`, `/metrics`, `/config`, `/certs`, `POST /reload`.
//! It shows configuration metadata, never secrets. Who may use it is the snapshot's
//! [`AdminPolicy`](labgate_config::admin::AdminPolicy) (`[admin]`), read per request, so a
//! reload applies at once: loopback clients only by default; the probes `/healthz` and
//! `/readyz` are open to all.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use labgate_config::admin::{self as policy, Decision};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::reload::Trigger;
use crate::status::{ReloadReport, Shared};

/// Most concurrent admin connections (C6).
pub const MAX_CONNECTIONS: usize = 32;
/// Time a client has to send its request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a reload asked for by `POST /reload`.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// What the admin handlers need.
#[derive(Clone)]
pub struct Admin {
    /// Shared runtime state.
    pub shared: Arc<Shared>,
    /// The reload pipeline's channel.
    pub reload: mpsc::Sender<Trigger>,
    /// What the status page reads.
    pub ui: crate::page::Ui,
}

/// Serves until cancelled.
pub async fn serve(listener: TcpListener, admin: Admin, cancel: CancellationToken) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = cancel.cancelled() => break,
        };
        while conns.try_join_next().is_some() {}
        let Ok((stream, peer)) = accepted else {
            continue;
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            debug!(%peer, "admin connection refused: too many connections");
            continue;
        };
        let admin = admin.clone();
        conns.spawn(async move {
            let _permit = permit;
            let svc = service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(handle(&admin, peer.ip(), req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                debug!(%peer, "admin connection: {e}");
            }
        });
    }
    conns.shutdown().await;
}

async fn handle(admin: &Admin, peer: IpAddr, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if let Some(refused) = refusal(&admin.shared, peer, &req) {
        return refused;
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") => {
            if !admin.shared.ready.load(Ordering::Acquire) {
                text(StatusCode::SERVICE_UNAVAILABLE, "starting\n")
            } else if let Err(e) = admin.shared.health.fresh() {
                text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n"))
            } else {
                text(StatusCode::OK, "ready\n")
            }
        }
        (&Method::GET, "/metrics") => {
            let mut r = text(StatusCode::OK, admin.shared.metrics());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        (&Method::GET, "/config") => json(StatusCode::OK, &config_view(&admin.shared)),
        (&Method::GET, "/certs") => json(StatusCode::OK, &admin.shared.certificates()),
        (&Method::POST, "/reload") => {
            let (tx, rx) = oneshot::channel();
            if admin.reload.send(Trigger::Admin(tx)).await.is_err() {
                return text(StatusCode::SERVICE_UNAVAILABLE, "reload pipeline stopped\n");
            }
            match tokio::time::timeout(RELOAD_TIMEOUT, rx).await {
                Ok(Ok(report)) => {
                    let status = if report.errors.is_empty() {
                        StatusCode::OK
                    } else {
                        StatusCode::UNPROCESSABLE_ENTITY
                    };
                    json(status, &report)
                }
                _ => text(
                    StatusCode::GATEWAY_TIMEOUT,
                    "reload did not finish in time\n",
                ),
            }
        }
        (_, "/healthz" | "/readyz" | "/metrics" | "/config" | "/certs" | "/reload") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        (&Method::GET, path) => {
            let query = req.uri().query().unwrap_or("");
            match crate::page::render(&admin.ui, path, query).await {
                Some((status, body)) => html(status, body),
                None => not_found(),
            }
        }
        _ => not_found(),
    }
}

/// The answer to a request `[admin]` refuses (403, or 401 with the challenges), `None` when
/// it may be served.
fn refusal(
    shared: &Shared,
    peer: IpAddr,
    req: &Request<Incoming>,
) -> Option<Response<Full<Bytes>>> {
    if policy::is_probe(req.uri().path()) {
        return None;
    }
    let s = shared.snapshot.load();
    let fields = req
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()));
    match s.admin.decide(&s.networks, peer, fields) {
        Decision::Allow => None,
        Decision::Forbidden(why) => {
            debug!(%peer, path = req.uri().path(), "admin request forbidden: {why:?}");
            Some(text(
                StatusCode::FORBIDDEN,
                why.message(&s.networks, &s.admin),
            ))
        }
        Decision::Unauthorized => {
            debug!(%peer, path = req.uri().path(), "admin request without valid credentials");
            let mut r = text(
                StatusCode::UNAUTHORIZED,
                "unauthorized: send a token (`Authorization: Bearer <token>`) or the user and \
                 password of `[admin] auth_file`\n",
            );
            for challenge in s.admin.auth.iter().flat_map(|c| c.challenges()) {
                r.headers_mut().append(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static(challenge),
                );
            }
            Some(r)
        }
    }
}

/// The body of `/config`.
#[derive(Debug, Serialize)]
pub struct ConfigView {
    /// Generation of the serving snapshot.
    pub generation: u64,
    /// Its content hash.
    pub hash: String,
    /// The Git commit it was read from, when the configuration is a checkout: two nodes
    /// serving the same revision show the same commit.
    pub revision: Option<String>,
    /// The last reload attempt.
    pub last_reload: Option<ReloadReport>,
    /// Warnings of the serving snapshot.
    pub warnings: Vec<String>,
    /// Network names.
    pub networks: Vec<String>,
    /// Service names.
    pub services: Vec<String>,
    /// Internal zones.
    pub zones: Vec<String>,
    /// ACME certificates: names, issuer, expiry, next renewal, last attempt and error.
    pub certificates: Vec<labgate_acme::CertStatus>,
    /// This node in `[pair]`, if one is configured.
    pub pair: Option<PairView>,
}

/// This node's place in `[pair]`, as `/config` shows it.
#[derive(Debug, Serialize)]
pub struct PairView {
    /// This node's address.
    pub node: IpAddr,
    /// The other node's.
    pub peer: IpAddr,
    /// `first` (orders the certificates) or `second` (takes the first's).
    pub orders: &'static str,
}

impl From<labgate_config::pair::Role> for PairView {
    fn from(r: labgate_config::pair::Role) -> Self {
        Self {
            node: r.me,
            peer: r.peer,
            orders: if r.first { "first" } else { "second" },
        }
    }
}

fn config_view(shared: &Shared) -> ConfigView {
    let s = shared.snapshot.load();
    ConfigView {
        generation: s.generation,
        hash: s.hash.to_string(),
        revision: s.revision.as_deref().map(str::to_owned),
        last_reload: shared.last(),
        warnings: s.warnings.iter().map(ToString::to_string).collect(),
        networks: s.networks.iter().map(|n| n.name.to_string()).collect(),
        services: s.services.iter().map(|v| v.name.to_string()).collect(),
        zones: s.zones.iter().map(|z| z.name.to_string()).collect(),
        certificates: shared.certificates(),
        pair: shared.pair_role().map(PairView::from),
    }
}

fn not_found() -> Response<Full<Bytes>> {
    text(
        StatusCode::NOT_FOUND,
        "not found: try / (the status page), /healthz /readyz /metrics /config /certs, or POST \
         /reload\n",
    )
}

/// A page of the status page. Its scripts and styles are inline and it loads nothing, from
/// anywhere: the policy says so to the browser.
fn html(status: u16, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = r.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    r
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json(status: StatusCode, body: &impl Serialize) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec_pretty(body).unwrap_or_default();
    let mut r = text(status, bytes);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}
