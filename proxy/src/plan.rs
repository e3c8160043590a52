//! The request plan: one decision for every executor (the HTTP/1.1 fast path, pingora's
//! sessions), from the connection's facts and a view of the request head to what happens to
//! the request: refuse it, answer it for its service (a redirect, no backend, too large),
//! refetch the Access keys, hand it to pingora's session, or forward it (the backend, the head
//! rewrite, the limits).
//!
//! It does no I/O, reads no clock and loads nothing shared: the caller passes the state, the
//! connection's certificate map and the Access keys it loaded, and the time. The one shared
//! thing it reads is the backends' health and load, through the pool's pick. Executors carry
//! the plan out and count what happened through [`crate::Proxy::served`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use labgate_config::Snapshot;
use labgate_config::network::NetworkId;
use labgate_config::route::ServiceId;

use crate::backends::BackendState;
use crate::cf_access::{KeySets, Reason};
use crate::decide::{Decision, Refusal, Via, decide};
use crate::rewrite::{Body, Head, Rewrite};
use crate::tunnel::{self, Gate};
use crate::{ConnInfo, ProxyState, pages};

/// Which executor asks: what it can carry decides whether it hands the request over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Executor {
    /// The HTTP/1.1 fast path: HTTP/1.1 requests with no body or a `Content-Length` one, to
    /// HTTP/1.1 backends, no upgrade, no `Expect`.
    Fast,
    /// The HTTP/2 path: HTTP/2 requests to HTTP/1.1 backends, bodies of any framing.
    H2,
    /// pingora's sessions: everything.
    Session,
}

impl Executor {
    /// Whether it carries a request `head` to a backend that speaks HTTP/2 when `h2c`.
    pub fn carries(self, head: &impl Head, h2c: bool) -> bool {
        match self {
            Self::Fast => {
                !h2c && !head.websocket() && !head.session_only() && head.body() != Body::Unknown
            }
            Self::H2 => !h2c && !head.websocket(),
            Self::Session => true,
        }
    }
}

/// What the plan is made from, beyond the request head: the state (`'s`, which a forward's
/// rewrite borrows from) and the rest (`'c`).
#[derive(Debug, Clone, Copy)]
pub struct Context<'s, 'c> {
    /// The state the request is served with (loaded once the head is here).
    pub state: &'s ProxyState,
    /// The connection.
    pub conn: &'c ConnInfo,
    /// The Cloudflare Access keys fetched so far.
    pub keys: &'c KeySets,
    /// Unix seconds, for Access tokens.
    pub now: u64,
    /// The port HTTPS redirects name.
    pub https_port: u16,
    /// The Access keys were refetched for this request already (once per request).
    pub keys_refreshed: bool,
    /// The backend this connection's last request went to: kept while it serves the service.
    pub pinned: Option<&'c Arc<BackendState>>,
    /// The executor asking.
    pub executor: Executor,
}

/// What happens to a request.
#[derive(Debug)]
pub enum Plan<'a> {
    /// Refused before it reached a service: a page, and the connection closes.
    Refuse(Refused),
    /// labgate answers for the service itself: a page, and the connection closes.
    Answer(Served, Answer),
    /// The Access token names a key not fetched yet: refetch the team's keys, then plan again.
    RefreshKeys(Arc<str>),
    /// The asking executor cannot carry it: pingora's session plans it again and does.
    Handover,
    /// Forward it.
    Forward(Forward<'a>),
}

/// Why a request reached no service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Routing or the network policy refused it.
    Route(Refusal),
    /// Cloudflare Access refused its token: 403.
    Access(Reason),
}

impl Refused {
    /// The status and page.
    pub fn page(self, s: &Snapshot) -> (u16, String) {
        match self {
            Self::Route(r) => (r.status(), pages::refusal_body(s, r)),
            Self::Access(r) => (403, pages::access_body(r)),
        }
    }
}

/// What labgate answers for a service instead of forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Plain HTTP to a service without `plain_http`: a redirect to HTTPS.
    ToHttps {
        /// 301, or 308 for methods other than GET and HEAD.
        status: u16,
        /// Where to.
        location: String,
    },
    /// No backend of the service can be used: 503.
    NoBackend,
    /// A WebSocket upgrade to a service with `websockets = false`: 403.
    NoWebSockets,
    /// A declared body over the service's `max_body`: 413.
    TooLarge(u64),
    /// A WebSocket upgrade to an h2c backend: 502.
    WebSocketToH2c,
    /// The head cannot be written upstream (see [`crate::rewrite::Unwritable`]): 400.
    Unwritable,
}

impl Answer {
    /// The status.
    pub fn status(&self) -> u16 {
        match self {
            Self::ToHttps { status, .. } => *status,
            Self::NoBackend => 503,
            Self::NoWebSockets => 403,
            Self::TooLarge(_) => 413,
            Self::WebSocketToH2c => 502,
            Self::Unwritable => 400,
        }
    }

    /// The page for service `name`, and where a redirect points.
    pub fn page(&self, name: &str) -> (String, Option<&str>) {
        let status = self.status();
        match self {
            Self::ToHttps { location, .. } => (pages::redirect_body(status), Some(location)),
            Self::NoBackend => (
                pages::body(status, &format!("service {name} has no backend")),
                None,
            ),
            Self::NoWebSockets => (
                pages::body(
                    status,
                    &format!(
                        "service {name} does not accept WebSocket connections (websockets = false)"
                    ),
                ),
                None,
            ),
            Self::TooLarge(max) => (pages::too_large_body(name, *max), None),
            Self::WebSocketToH2c => (
                pages::backend_body(
                    status,
                    name,
                    "speaks HTTP/2 (h2c), which cannot carry a WebSocket connection",
                ),
                None,
            ),
            Self::Unwritable => (
                pages::body(
                    status,
                    "the request head cannot be passed on: a field in it is not valid in HTTP/1.1",
                ),
                None,
            ),
        }
    }
}

/// The service a request reached and whom it stands for: what its metrics and access line
/// name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The service.
    pub service: ServiceId,
    /// The client's network.
    pub network: NetworkId,
    /// The client it stands for (through the tunnel: `Cf-Connecting-IP`).
    pub client: IpAddr,
    /// Cloudflare's request id, through the tunnel.
    pub ray: Option<String>,
}

/// A request to forward.
#[derive(Debug)]
pub struct Forward<'a> {
    /// Its service and client.
    pub served: Served,
    /// The backend chosen.
    pub backend: Arc<BackendState>,
    /// How its head changes on the way.
    pub rewrite: Rewrite<'a>,
    /// The service's `max_body`.
    pub max_body: Option<u64>,
    /// The service's backend timeout.
    pub timeout: Duration,
    /// A retry on another connection cannot repeat a side effect: an idempotent method and
    /// no body (RFC 9110 §9.2.2).
    pub retryable: bool,
}

/// Plans a request.
pub fn plan<'s>(c: &Context<'s, '_>, head: &impl Head) -> Plan<'s> {
    let s: &'s Snapshot = &c.state.snapshot;
    let conn = c.conn;
    let (service, network) = match decide(
        s,
        conn.client,
        conn.via,
        conn.opened_for(),
        head.host(),
        head.target(),
    ) {
        Decision::Forward { service, network } => (service, network),
        Decision::Refuse(r) => return Plan::Refuse(Refused::Route(r)),
    };
    let svc = s.service(service);
    // Cloudflare's edge did TLS for tunnel requests: nothing to redirect.
    if !conn.tls && !svc.plain_http && conn.via == Via::Direct {
        let (status, location) =
            pages::to_https(head.method(), head.host(), c.https_port, head.target());
        let served = Served {
            service,
            network,
            client: conn.client,
            ray: None,
        };
        return Plan::Answer(served, Answer::ToHttps { status, location });
    }
    let passage = {
        let field = |name: &str| {
            head.fields()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        };
        let cookies = head
            .fields()
            .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
            .map(|(_, v)| v);
        match tunnel::admit(c.keys, c.now, svc, conn, field, cookies, c.keys_refreshed) {
            Gate::Pass(p) => p,
            Gate::RefreshKeys(url) => return Plan::RefreshKeys(url),
            Gate::Refuse(r) => return Plan::Refuse(Refused::Access(r)),
        }
    };
    let served = Served {
        service,
        network,
        client: passage.client,
        ray: passage.ray,
    };
    let websocket = head.websocket();
    if websocket && !svc.websockets {
        return Plan::Answer(served, Answer::NoWebSockets);
    }
    if let (Body::Length(n), Some(max)) = (head.body(), svc.max_body)
        && n > max
    {
        return Plan::Answer(served, Answer::TooLarge(max));
    }
    let pool = c.state.pools.get(service.index());
    // Stay on the pinned backend while it serves this service.
    let backend = match c.pinned {
        Some(p)
            if p.available()
                && pool.is_some_and(|pool| pool.backends.iter().any(|b| Arc::ptr_eq(b, p))) =>
        {
            Arc::clone(p)
        }
        _ => match pool.and_then(|p| p.pick()) {
            Some(b) => Arc::clone(b),
            None => return Plan::Answer(served, Answer::NoBackend),
        },
    };
    let h2c = backend.backend.h2c;
    if websocket && h2c {
        return Plan::Answer(served, Answer::WebSocketToH2c);
    }
    if !c.executor.carries(head, h2c) {
        return Plan::Handover;
    }
    let rewrite = Rewrite {
        host_header: svc.host_header.as_deref(),
        client: passage.client,
        https: conn.tls || conn.via == Via::Tunnel,
        via: conn.via,
        keep_forwarded_for: conn.via == Via::Direct && s.trusts(conn.client),
        identity: svc
            .access
            .as_ref()
            .map(|a| (&*a.identity_header, passage.identity)),
        upgrade: websocket,
        chunked: head.body() == Body::Unknown && !h2c,
        h2_upstream: h2c,
    };
    Plan::Forward(Forward {
        served,
        backend,
        rewrite,
        max_body: svc.max_body,
        timeout: svc.timeout,
        retryable: matches!(head.method(), "GET" | "HEAD" | "OPTIONS" | "TRACE")
            && head.body() == Body::Empty,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::backends::Pools;
    use crate::head::{Framing, HeadError, header_array, is_hop_by_hop, parse_request};

    const CONFIG: &str = r#"
[server]
trusted_proxies = ["10.0.9.9/32"]
[[network]]
name = "lab"
cidrs = ["10.0.0.0/16"]
addresses = ["10.0.0.2"]
[[network]]
name = "guest"
cidrs = ["10.9.0.0/16"]
addresses = ["10.9.0.2"]
[[zone]]
name = "lab.test"
[[service]]
host = "app.lab.test"
backends = ["http://10.0.0.5:80"]
allow = ["lab"]
max_body = "1K"
websockets = false
host_header = "inner.local"
[[service]]
host = "plain.lab.test"
backends = ["http://10.0.0.6:80"]
allow = ["lab", "guest"]
plain_http = true
[[service]]
name = "site"
host = "site.lab.test"
backends = ["http://10.0.0.7:80"]
allow = ["lab", "guest"]
[[service]]
name = "site-admin"
host = "site.lab.test"
paths = ["/admin"]
backends = ["http://10.0.0.8:80"]
allow = ["lab"]
[[service]]
host = "grpc.lab.test"
backends = ["h2c://10.0.0.9:50051"]
allow = ["lab"]
[[service]]
host = "pub.lab.test"
backends = ["http://10.0.0.10:80"]
allow = ["lab", "tunnel"]
[[service]]
host = "guarded.lab.test"
backends = ["http://10.0.0.11:80"]
allow = ["tunnel"]
access = { team = "t", aud = "aud1", identity_header = "X-User" }
"#;

    /// A state with a service for each kind of plan.
    pub(crate) fn state() -> ProxyState {
        let snapshot = Arc::new(labgate_config::testing::snapshot(CONFIG));
        ProxyState::new(snapshot, &Pools::default())
    }

    /// A connection from `client`.
    pub(crate) fn conn(client: &str, tls: bool, via: Via) -> ConnInfo {
        ConnInfo {
            client: client.parse().expect("ip"),
            tls,
            sni: None,
            cert: None,
            certs: None,
            via,
        }
    }

    /// The plan in words: what happened, and for a forward where to and with which rewrite.
    pub(crate) fn describe(p: &Plan<'_>, s: &Snapshot) -> String {
        let name = |id: ServiceId| s.service(id).name.to_string();
        match p {
            Plan::Refuse(Refused::Route(r)) => format!("refuse {} {r:?}", r.status()),
            Plan::Refuse(Refused::Access(r)) => format!("refuse 403 access {}", r.label()),
            Plan::Answer(served, a) => {
                format!("{} answer {} {a:?}", name(served.service), a.status())
            }
            Plan::RefreshKeys(url) => format!("refresh {url}"),
            Plan::Handover => "handover".to_owned(),
            Plan::Forward(f) => format!(
                "{} forward {} client {} https {} xff {} upgrade {} chunked {} h2 {}",
                name(f.served.service),
                f.backend.backend.url,
                f.rewrite.client,
                f.rewrite.https,
                f.rewrite.keep_forwarded_for,
                f.rewrite.upgrade,
                f.rewrite.chunked,
                f.rewrite.h2_upstream,
            ),
        }
    }

    fn run(
        state: &ProxyState,
        c: &ConnInfo,
        executor: Executor,
        raw: &str,
        refreshed: bool,
    ) -> String {
        let mut headers = header_array();
        let h = parse_request(raw.as_bytes(), &mut headers).expect("a request head");
        let keys = KeySets::default();
        let context = Context {
            state,
            conn: c,
            keys: &keys,
            now: 1_800_000_000,
            https_port: 8443,
            keys_refreshed: refreshed,
            pinned: None,
            executor,
        };
        describe(&plan(&context, &h), &state.snapshot)
    }

    #[test]
    fn every_outcome_of_the_plan() {
        let state = state();
        let lab = conn("10.0.3.7", true, Via::Direct);
        let lab_plain = conn("10.0.3.7", false, Via::Direct);
        let guest = conn("10.9.0.4", true, Via::Direct);
        let stranger = conn("192.0.2.1", true, Via::Direct);
        let proxy = conn("10.0.9.9", true, Via::Direct);
        let tunnel = conn("127.0.0.1", false, Via::Tunnel);
        let outsider_on_tunnel = conn("10.0.3.7", false, Via::Tunnel);
        let get = |host: &str, path: &str| format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
        use Executor::{Fast, Session};
        let cases: Vec<(&str, &ConnInfo, Executor, String, &str)> = vec![
            ("a lab client reaches its service", &lab, Fast, get("app.lab.test", "/"),
             "app forward http://10.0.0.5:80 client 10.0.3.7 https true xff false upgrade false chunked false h2 false"),
            ("no Host", &lab, Fast, "GET / HTTP/1.0\r\n\r\n".to_owned(), "refuse 400 BadHost"),
            ("a client in no network", &stranger, Fast, get("app.lab.test", "/"), "refuse 403 NoNetwork"),
            ("an unknown host", &lab, Fast, get("nope.lab.test", "/"), "refuse 404 UnknownHost"),
            ("a guest where only the lab may go", &guest, Fast, get("app.lab.test", "/"),
             "refuse 403 Denied { service: ServiceId(0), network: NetworkId(1) }"),
            ("a guest on a shared host's open prefix", &guest, Fast, get("site.lab.test", "/x"),
             "site forward http://10.0.0.7:80 client 10.9.0.4 https true xff false upgrade false chunked false h2 false"),
            ("a guest on its admin prefix", &guest, Fast, get("site.lab.test", "/admin/users"),
             "refuse 403 Denied { service: ServiceId(3), network: NetworkId(1) }"),
            ("the admin prefix spelled encoded names another service than as written", &guest, Fast, get("site.lab.test", "/%61dmin"),
             "refuse 400 AmbiguousPath"),
            ("the admin prefix through dot segments", &guest, Fast, get("site.lab.test", "/x/../admin"),
             "refuse 400 AmbiguousPath"),
            ("a lookalike of the prefix is the open service", &guest, Fast, get("site.lab.test", "/administrator"),
             "site forward http://10.0.0.7:80 client 10.9.0.4 https true xff false upgrade false chunked false h2 false"),
            ("plain HTTP is redirected", &lab_plain, Fast, get("app.lab.test", "/a?b"),
             "app answer 301 ToHttps { status: 301, location: \"https://app.lab.test:8443/a?b\" }"),
            ("plain HTTP to a plain_http service", &lab_plain, Fast, get("plain.lab.test", "/"),
             "plain forward http://10.0.0.6:80 client 10.0.3.7 https false xff false upgrade false chunked false h2 false"),
            ("a POST over plain HTTP gets 308", &lab_plain, Fast,
             "POST /f HTTP/1.1\r\nHost: app.lab.test\r\nContent-Length: 1\r\n\r\n".to_owned(),
             "app answer 308 ToHttps { status: 308, location: \"https://app.lab.test:8443/f\" }"),
            ("a declared body over max_body", &lab, Fast,
             "POST / HTTP/1.1\r\nHost: app.lab.test\r\nContent-Length: 1025\r\n\r\n".to_owned(),
             "app answer 413 TooLarge(1024)"),
            ("a declared body at max_body", &lab, Fast,
             "POST / HTTP/1.1\r\nHost: app.lab.test\r\nContent-Length: 1024\r\n\r\n".to_owned(),
             "app forward http://10.0.0.5:80 client 10.0.3.7 https true xff false upgrade false chunked false h2 false"),
            ("a WebSocket to a service without them", &lab, Session,
             "GET /ws HTTP/1.1\r\nHost: app.lab.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n".to_owned(),
             "app answer 403 NoWebSockets"),
            ("a WebSocket to an h2c backend", &lab, Session,
             "GET /ws HTTP/1.1\r\nHost: grpc.lab.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n".to_owned(),
             "grpc answer 502 WebSocketToH2c"),
            ("a WebSocket is handed over by the fast path", &lab, Fast,
             "GET /ws HTTP/1.1\r\nHost: site.lab.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n".to_owned(),
             "handover"),
            ("and carried by the session", &lab, Session,
             "GET /ws HTTP/1.1\r\nHost: site.lab.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n".to_owned(),
             "site forward http://10.0.0.7:80 client 10.0.3.7 https true xff false upgrade true chunked false h2 false"),
            ("a chunked body is handed over", &lab, Fast,
             "POST / HTTP/1.1\r\nHost: site.lab.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_owned(),
             "handover"),
            ("and goes upstream chunked", &lab, Session,
             "POST / HTTP/1.1\r\nHost: site.lab.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_owned(),
             "site forward http://10.0.0.7:80 client 10.0.3.7 https true xff false upgrade false chunked true h2 false"),
            ("Expect is handed over", &lab, Fast,
             "POST / HTTP/1.1\r\nHost: site.lab.test\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n".to_owned(),
             "handover"),
            ("HTTP/1.0 is handed over", &lab, Fast, "GET / HTTP/1.0\r\nHost: site.lab.test\r\n\r\n".to_owned(), "handover"),
            ("an h2c backend is handed over", &lab, Fast, get("grpc.lab.test", "/"), "handover"),
            ("and carried as HTTP/2 upstream", &lab, Session, get("grpc.lab.test", "/"),
             "grpc forward h2c://10.0.0.9:50051 client 10.0.3.7 https true xff false upgrade false chunked false h2 true"),
            ("a trusted proxy keeps its X-Forwarded-For", &proxy, Fast, get("site.lab.test", "/"),
             "site forward http://10.0.0.7:80 client 10.0.9.9 https true xff true upgrade false chunked false h2 false"),
            ("the tunnel's client is Cloudflare's report", &tunnel, Fast,
             "GET / HTTP/1.1\r\nHost: pub.lab.test\r\nCf-Connecting-IP: 203.0.113.9\r\n\r\n".to_owned(),
             "pub forward http://10.0.0.10:80 client 203.0.113.9 https true xff false upgrade false chunked false h2 false"),
            ("a tunnel peer that is no connector", &outsider_on_tunnel, Fast, get("pub.lab.test", "/"), "refuse 403 NotConnector"),
            ("through the tunnel, a service it may not reach is unknown", &tunnel, Fast, get("app.lab.test", "/"),
             "refuse 404 UnknownHost"),
            ("Access without a token", &tunnel, Fast, get("guarded.lab.test", "/"), "refuse 403 access missing"),
            ("Access with a token that is no JWT", &tunnel, Fast,
             "GET / HTTP/1.1\r\nHost: guarded.lab.test\r\nCf-Access-Jwt-Assertion: nonsense\r\n\r\n".to_owned(),
             "refuse 403 access malformed"),
        ];
        for (what, c, executor, raw, want) in cases {
            assert_eq!(run(&state, c, executor, &raw, false), want, "{what}");
        }
        // A token signed by a key not fetched yet: refetch once, then refuse.
        // (header {"alg":"RS256","kid":"k1"}, any payload and signature)
        let token = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.e30.c2ln";
        let raw = format!(
            "GET / HTTP/1.1\r\nHost: guarded.lab.test\r\nCookie: a=b; CF_Authorization={token}\r\n\r\n"
        );
        assert_eq!(
            run(&state, &tunnel, Fast, &raw, false),
            "refresh https://t.cloudflareaccess.com/cdn-cgi/access/certs"
        );
        assert_eq!(
            run(&state, &tunnel, Fast, &raw, true),
            "refuse 403 access unknown_key"
        );
    }

    #[test]
    fn a_pinned_backend_is_kept_while_it_serves_the_service() {
        let state = state();
        let c = conn("10.0.3.7", true, Via::Direct);
        let keys = KeySets::default();
        let site = &state.pools.get(2).expect("site's pool").backends[0];
        let admin = &state.pools.get(3).expect("admin's pool").backends[0];
        let mut headers = header_array();
        let h = parse_request(
            b"GET /x HTTP/1.1\r\nHost: site.lab.test\r\n\r\n",
            &mut headers,
        )
        .expect("head");
        for (pinned, want) in [(site, site), (admin, site)] {
            let context = Context {
                state: &state,
                conn: &c,
                keys: &keys,
                now: 0,
                https_port: 443,
                keys_refreshed: false,
                pinned: Some(pinned),
                executor: Executor::Fast,
            };
            let Plan::Forward(f) = plan(&context, &h) else {
                panic!("forwarded");
            };
            assert!(Arc::ptr_eq(&f.backend, want));
        }
    }

    /// A head's framing, and whether the fast path carries it (to an HTTP/1.1 backend).
    fn req(raw: &str) -> Result<(Framing, bool), HeadError> {
        let mut h = header_array();
        parse_request(raw.as_bytes(), &mut h)
            .map(|r| (r.framing, Executor::Fast.carries(&r, false)))
    }

    #[test]
    fn plain_requests_take_the_fast_path() {
        assert_eq!(
            req("GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Ok((Framing::Empty, true))
        );
        assert_eq!(
            req("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"),
            Ok((Framing::Length(5), true))
        );
        assert_eq!(
            req("POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Ok((Framing::Chunked, false))
        );
        assert_eq!(
            req("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
            Ok((Framing::Empty, false))
        );
        assert_eq!(
            req("GET / HTTP/1.1\r\nHost: a\r\n"),
            Err(HeadError::Partial)
        );
    }

    #[test]
    fn r21_only_a_websocket_upgrade_is_one() {
        let head = |extra: &str| {
            format!(
                "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n{extra}\r\n"
            )
        };
        let websocket = |raw: &str| {
            let mut h = header_array();
            parse_request(raw.as_bytes(), &mut h)
                .map(|r| (r.websocket, Executor::Fast.carries(&r, false)))
        };
        // (request, a WebSocket upgrade): everything else is a plain request, fast path.
        let cases = [
            (head("Upgrade: websocket\r\n"), true),
            (head("Upgrade: WebSocket \r\n"), true),
            (head("Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"), false),
            (head("Upgrade: h2c, websocket\r\n"), false),
            (head("Upgrade: websocket\r\nUpgrade: h2c\r\n"), false),
            (head("Upgrade: TLS/1.2\r\n"), false),
            (head(""), false),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n".to_owned(),
                false,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 1\r\n\r\n"
                    .to_owned(),
                false,
            ),
            (
                "GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n".to_owned(),
                false,
            ),
        ];
        for (raw, upgrade) in cases {
            let plain_fast = !raw.starts_with("GET / HTTP/1.0");
            assert_eq!(
                websocket(&raw),
                Ok((upgrade, !upgrade && plain_fast)),
                "{raw:?}"
            );
        }
        assert!(is_hop_by_hop("HTTP2-Settings") && is_hop_by_hop("upgrade"));
    }
}
