//! Services and the route table: Host (and path prefix) to service, and the policy check
//! that the proxy's fast path, its general path and `explain` all call.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::network::{NetworkId, NetworkSet};

/// Index of a service in the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServiceId(pub(crate) u32);

impl ServiceId {
    /// Position in the snapshot's services.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// One application, compiled.
#[derive(Debug, Clone)]
pub struct Service {
    /// Its id.
    pub id: ServiceId,
    /// Short name for logs and metrics.
    pub name: Arc<str>,
    /// Host names, lower-case without trailing dot; the first is the main one.
    pub hosts: Vec<Arc<str>>,
    /// Path prefixes it answers, each starting with `/`.
    pub paths: Vec<Arc<str>>,
    /// Backends, load balanced.
    pub backends: Vec<Backend>,
    /// Networks allowed to reach it.
    pub allow: NetworkSet,
    /// Whether WebSocket upgrades pass.
    pub websockets: bool,
    /// Whether the plain-HTTP listener serves it (else it redirects to HTTPS).
    pub plain_http: bool,
    /// Whether `https://` backends' certificates go unchecked.
    pub danger_accept_invalid_backend_certs: bool,
    /// Connect timeout to a backend.
    pub connect_timeout: Duration,
    /// Longest backend silence.
    pub timeout: Duration,
    /// Active health check.
    pub health_check: Option<HealthCheck>,
    /// How requests spread over the backends.
    pub balance: Balance,
    /// Host header for the backends; `None` passes the client's.
    pub host_header: Option<Arc<str>>,
    /// Largest request body in bytes.
    pub max_body: Option<u64>,
    /// CA certificates (DER) trusted for `https://` backends instead of the public roots.
    pub backend_roots: Vec<Arc<[u8]>>,
    /// The Cloudflare Access application whose token tunnel requests must carry.
    pub access: Option<AccessApp>,
}

/// A Cloudflare Access application: who signs the tokens, for which audience.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessApp {
    /// The team: `<team>.cloudflareaccess.com`.
    pub team: Arc<str>,
    /// Audience tag the token must name.
    pub aud: Arc<str>,
    /// Issuer the token must name: `https://<team>.cloudflareaccess.com`.
    pub issuer: Arc<str>,
    /// Where the team's signing keys are (JWKS).
    pub jwks_url: Arc<str>,
    /// Header carrying the verified e-mail to the backends, lower-case.
    pub identity_header: Arc<str>,
}

/// Load-balancing policy of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Balance {
    /// Each request to the next backend.
    RoundRobin,
    /// Each request to the backend with the fewest requests in flight.
    LeastConnections,
}

/// A backend of a service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Backend {
    /// The URL as written, for messages.
    pub url: Arc<str>,
    /// Whether the backend speaks TLS.
    pub tls: bool,
    /// Whether it speaks HTTP/2 without TLS (prior knowledge; gRPC servers).
    pub h2c: bool,
    /// Where it is.
    pub host: BackendHost,
    /// Its port.
    pub port: u16,
}

/// A backend's address: an IP, or a name resolved by the proxy at run time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BackendHost {
    /// A literal address.
    Ip(IpAddr),
    /// A DNS name (Docker service names, say).
    Name(Arc<str>),
}

/// An active health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Path requested with GET.
    pub path: Arc<str>,
    /// Time between checks.
    pub interval: Duration,
    /// Time one check may take.
    pub timeout: Duration,
    /// Failed checks in a row that take a backend out.
    pub fall: u32,
    /// Passed checks in a row that bring it back.
    pub rise: u32,
}

/// Host → services sharing that host, longest path prefix first.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    hosts: HashMap<Arc<str>, Vec<(Arc<str>, ServiceId)>>,
}

/// The outcome of routing a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// No service has this host: answer 404 without touching a backend.
    UnknownHost,
    /// The host is known but no prefix of its services matches the path: 404.
    UnknownPath,
    /// The service that takes the request.
    Service(ServiceId),
    /// The path names one service as written and another as a backend may read it
    /// (decoded, dot segments resolved, `;` parameters dropped): 400.
    Ambiguous,
}

impl RouteTable {
    pub(crate) fn insert(&mut self, host: Arc<str>, prefix: Arc<str>, id: ServiceId) {
        let v = self.hosts.entry(host).or_default();
        v.push((prefix, id));
        v.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
    }

    /// The service for a normalized host and a path. A prefix matches at a segment
    /// boundary: `/api` matches `/api`, `/api/x` and `/api;x`, never `/apix`.
    pub fn route(&self, host: &str, path: &str) -> Route {
        let Some(entries) = self.hosts.get(host) else {
            return Route::UnknownHost;
        };
        if let [(prefix, id)] = entries.as_slice()
            && &**prefix == "/"
        {
            // PERF: the usual host, one service for every path, needs no reading of it.
            return Route::Service(*id);
        }
        let path = path.split(['?', '#']).next().unwrap_or(path);
        let pick = |path: &str| {
            entries
                .iter()
                .find(|(prefix, _)| path_matches(prefix, path))
                .map_or(Route::UnknownPath, |(_, id)| Route::Service(*id))
        };
        let as_written = pick(path);
        // SECURITY: services on prefixes of one host may have different policies (`/admin`
        // for management, `/` for everyone). Backends read paths differently: nginx and
        // Tomcat resolve `..` (Tomcat after dropping `;` parameters), most decode `%61`
        // (letter case is ignored in both readings). A path that names another service under those readings
        // than as written is refused: no reading of it reaches a service whose policy it
        // did not pass.
        if !needs_normalizing(path) {
            return as_written;
        }
        let as_read = pick(&normalize_path(path));
        if as_read == as_written {
            as_written
        } else {
            Route::Ambiguous
        }
    }

    /// Services that already claim a host with a prefix.
    pub(crate) fn claimant(&self, host: &str, prefix: &str) -> Option<ServiceId> {
        self.hosts
            .get(host)?
            .iter()
            .find(|(p, _)| &**p == prefix)
            .map(|(_, id)| *id)
    }

    /// Every routed host.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.hosts.keys().map(|h| &**h)
    }
}

/// Whether `path` starts with `prefix` (lower-case) at a segment boundary, letter case
/// ignored: Express and IIS route `/ADMIN` to `/admin`.
fn path_matches(prefix: &str, path: &str) -> bool {
    path.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
        && at_boundary(prefix, &path[prefix.len()..])
}

/// Whether what follows a matched prefix starts a new segment; `;` starts a segment's
/// parameters, which Java servers drop (`/admin;x` is `/admin`).
fn at_boundary(prefix: &str, rest: &str) -> bool {
    prefix.ends_with('/') || rest.is_empty() || rest.starts_with(['/', ';'])
}

/// Whether a path (without its query) may read otherwise to a backend: anything
/// [`normalize_path`] changes.
pub(crate) fn needs_normalizing(path: &str) -> bool {
    // PERF: one pass over the bytes, on hosts with several prefixes only.
    let b = path.as_bytes();
    b.first() != Some(&b'/')
        || b.iter().enumerate().any(|(i, &c)| {
            matches!(c, b'%' | b';') || (c == b'/' && matches!(b.get(i + 1), Some(b'/' | b'.')))
        })
}

/// A path as a lenient backend resolves it: percent-decoded, each segment's `;`
/// parameters dropped (as Tomcat does), then RFC 3986 §5.2.4 (as nginx matches its
/// locations): `//` merged, `.` dropped, `..` removing the segment before it, never above
/// the root.
pub(crate) fn normalize_path(path: &str) -> String {
    let raw = path.as_bytes();
    let mut decoded = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = |c: u8| char::from(c).to_digit(16);
        match (
            raw[i],
            raw.get(i + 1).copied().and_then(hex),
            raw.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                decoded.push(u8::try_from(hi * 16 + lo).unwrap_or(b'%'));
                i += 3;
            }
            (c, ..) => {
                decoded.push(c);
                i += 1;
            }
        }
    }
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut last = &b""[..];
    for segment in decoded.split(|&c| c == b'/') {
        let segment = segment.split(|&c| c == b';').next().unwrap_or_default();
        last = segment;
        match segment {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
    }
    let mut out = Vec::with_capacity(decoded.len() + 1);
    for segment in &segments {
        out.push(b'/');
        out.extend_from_slice(segment);
    }
    // A directory stays one: `/a/`, `/a/.` and `/a/b/..` are `/a/`.
    if segments.is_empty() || matches!(last, b"" | b"." | b"..") {
        out.push(b'/');
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The policy decision for a service and a client network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The network is in the service's `allow`.
    Allow,
    /// It is not: the proxy answers 403 (404 through the tunnel).
    Deny,
}

impl Service {
    /// Whether a client of a network may use this service.
    pub fn access(&self, network: NetworkId) -> Access {
        if self.allow.contains(network) {
            Access::Allow
        } else {
            Access::Deny
        }
    }
}

/// The longest host name accepted (RFC 1035: 253 characters in text form).
pub const MAX_HOST_LEN: usize = 253;

/// Normalizes a Host header or SNI value into `buf`: lower-case, port and one trailing dot
/// removed. `None` when it is not a plausible host name (empty, too long, bad characters,
/// a malformed port). Allocates nothing.
pub fn normalize_host<'b>(raw: &[u8], buf: &'b mut [u8; MAX_HOST_LEN]) -> Option<&'b str> {
    let host = strip_port(raw)?;
    let host = host.strip_suffix(b".").unwrap_or(host);
    if host.is_empty() || host.len() > MAX_HOST_LEN {
        return None;
    }
    let bracketed = host.first() == Some(&b'[');
    // Empty labels (`a..b`, `.a`, `..`) name nothing a service could have.
    if !bracketed && host.split(|&c| c == b'.').any(<[u8]>::is_empty) {
        return None;
    }
    for (i, &c) in host.iter().enumerate() {
        let literal =
            bracketed && (c == b':' || (c == b'[' && i == 0) || (c == b']' && i == host.len() - 1));
        if !(c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_') || literal) {
            return None;
        }
        buf[i] = c.to_ascii_lowercase();
    }
    std::str::from_utf8(&buf[..host.len()]).ok()
}

fn strip_port(raw: &[u8]) -> Option<&[u8]> {
    if raw.first() == Some(&b'[') {
        // SECURITY: an IPv6 literal keeps its brackets; only a `:port` after `]` goes.
        let end = raw.iter().position(|&c| c == b']')?;
        let rest = &raw[end + 1..];
        return (rest.is_empty() || valid_port(rest.strip_prefix(b":")?)).then(|| &raw[..=end]);
    }
    match raw.iter().rposition(|&c| c == b':') {
        Some(i) if valid_port(&raw[i + 1..]) => Some(&raw[..i]),
        Some(_) => None,
        None => Some(raw),
    }
}

fn valid_port(p: &[u8]) -> bool {
    !p.is_empty() && p.len() <= 5 && p.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> Option<String> {
        let mut buf = [0u8; MAX_HOST_LEN];
        normalize_host(raw.as_bytes(), &mut buf).map(str::to_owned)
    }

    #[test]
    fn paths_are_matched_as_a_backend_resolves_them() {
        for (raw, resolved) in [
            ("/%61dmin", "/admin"),
            ("//admin", "/admin"),
            ("/x/../admin", "/admin"),
            ("/./admin/", "/admin/"),
            ("/%2e%2e/admin", "/admin"),
            ("/../../admin", "/admin"),
            ("/admin/..", "/"),
            ("/a/b/.", "/a/b/"),
            ("/a%2Fb", "/a/b"),
            ("/public/..;/admin", "/admin"),
            ("/;x/admin", "/admin"),
            ("/admin;x/api", "/admin/api"),
            ("/100%", "/100%"),
            ("/%zz", "/%zz"),
            ("", "/"),
            ("admin", "/admin"),
        ] {
            assert!(needs_normalizing(raw), "{raw}");
            assert_eq!(normalize_path(raw), resolved, "{raw}");
        }
        for plain in ["/", "/admin", "/a/b.c/d", "/a/.b"] {
            assert!(
                !needs_normalizing(plain) || normalize_path(plain) == plain,
                "{plain}"
            );
        }
        assert!(path_matches("/admin", "/admin;jsessionid=1"));
        assert!(!path_matches("/admin", "/administrator"));
    }

    #[test]
    fn hosts_are_lowercased_and_stripped() {
        assert_eq!(
            norm("Cloud.Lab.Example.com"),
            Some("cloud.lab.example.com".into())
        );
        assert_eq!(
            norm("cloud.lab.example.com.:8443"),
            Some("cloud.lab.example.com".into())
        );
        assert_eq!(norm("[fd00::1]:443"), Some("[fd00::1]".into()));
        assert_eq!(norm(""), None);
        assert_eq!(norm("a b"), None);
        assert_eq!(norm("host:port"), None);
        assert_eq!(norm("a:b:80"), None);
        assert_eq!(norm("[fd00::1"), None);
        // Found by the host_normalize fuzz target: `..` became `.`.
        assert_eq!(norm(".."), None);
        assert_eq!(norm("a..b"), None);
        assert_eq!(norm(".a"), None);
        assert_eq!(norm(&"a".repeat(300)), None);
    }

    #[test]
    fn prefixes_match_at_segment_boundaries_longest_first() {
        let mut t = RouteTable::default();
        t.insert("h".into(), "/".into(), ServiceId(0));
        t.insert("h".into(), "/api".into(), ServiceId(1));
        assert_eq!(t.route("h", "/api/v1?x=1"), Route::Service(ServiceId(1)));
        assert_eq!(t.route("h", "/api"), Route::Service(ServiceId(1)));
        assert_eq!(t.route("h", "/apix"), Route::Service(ServiceId(0)));
        assert_eq!(t.route("other", "/"), Route::UnknownHost);
        let mut only_api = RouteTable::default();
        only_api.insert("h".into(), "/api".into(), ServiceId(1));
        assert_eq!(only_api.route("h", "/"), Route::UnknownPath);
    }
}
