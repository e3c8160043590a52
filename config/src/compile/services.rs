//! `[[service]]`: routes, policy and the DNS records each service derives.

use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::dns::{ca_certs, report, require_zone, unknown_network};
use super::values;
use super::views::{Origin, ViewsBuilder, address_record};
use super::{Ctx, Explain, items};
use crate::network::{NetworkKind, NetworkSet, Networks};
use crate::raw::{RawAccess, RawFile, RawService};
use crate::route::{
    AccessApp, Backend, BackendHost, Balance, HealthCheck, RouteTable, Service, ServiceId,
};
use crate::source::FileId;
use crate::view::Zone;

pub(super) fn compile(
    cx: &mut Ctx<'_>,
    files: &[(FileId, RawFile)],
    networks: &Networks,
    zones: &[Zone],
    views: &mut ViewsBuilder,
) -> (Vec<Service>, RouteTable) {
    let mut services: Vec<Service> = Vec::new();
    let mut routes = RouteTable::default();
    let mut places: Vec<String> = Vec::new();
    let jwks_url = access_jwks_url(cx, files);
    let jwks_url = jwks_url.as_deref();
    for (file, i, raw) in items(files, |f| &f.service) {
        let key = format!("service[{i}]");
        let mut hosts = Vec::new();
        for (h, hkey) in std::iter::once((&raw.host, format!("{key}.host"))).chain(
            raw.aliases
                .iter()
                .enumerate()
                .map(|(j, a)| (a, format!("{key}.aliases[{j}]"))),
        ) {
            let Some((name, text)) = report(cx, file, h, &hkey, values::host(h.get_ref())) else {
                continue;
            };
            if let Some(zone) = require_zone(cx, zones, &name, file, h.span(), &hkey) {
                hosts.push((name, Arc::<str>::from(text), zone.ttl, h, hkey));
            }
        }
        let name: Arc<str> = match (&raw.name, hosts.first()) {
            (Some(n), _) => Arc::from(n.get_ref().as_str()),
            (None, Some((_, text, ..))) => Arc::from(text.split('.').next().unwrap_or(text)),
            (None, None) => Arc::from(raw.host.get_ref().as_str()),
        };
        let allow = allow(cx, networks, file, raw, &key, &name);
        let backends = backends(cx, file, raw, &key);
        let paths = paths(cx, file, raw, &key);
        let id = ServiceId(services.len() as u32);
        for (host_name, text, ttl, h, hkey) in &hosts {
            for p in &paths {
                if let Some(other) = routes.claimant(text, p) {
                    let at = &places[other.index()];
                    cx.error(
                        file,
                        h.span(),
                        hkey.clone(),
                        format!(
                            "`{text}` path `{p}` is already served by service `{}`",
                            services[other.index()].name
                        ),
                    )
                    .hint(format!(
                        "see {at}; services may share a host only with different `paths`"
                    ));
                } else {
                    routes.insert(text.clone(), p.clone(), id);
                }
            }
            for net in allow.iter() {
                let network = networks.get(net);
                if network.kind != NetworkKind::Local {
                    continue;
                }
                if network.addresses.is_empty() {
                    cx.error(
                        file,
                        h.span(),
                        format!("{key}.allow"),
                        format!(
                            "network `{}` has no `addresses`, so `{text}` cannot resolve there",
                            network.name
                        ),
                    )
                    .hint(format!(
                        "set `addresses` on network `{}` to labgate's address there",
                        network.name
                    ));
                    continue;
                }
                for ip in &network.addresses {
                    let rec = address_record(host_name.clone(), *ttl, *ip);
                    if let Err(other) = views.add(net, rec, Origin::Service(name.to_string())) {
                        cx.error(file, h.span(), hkey.clone(), format!("`{text}` conflicts with {other} in network `{}`", network.name))
                            .hint("remove the explicit record: the service derives the addresses of its host");
                        break;
                    }
                }
            }
        }
        places.push(cx.place(file, raw.host.span()));
        let connect_timeout = duration_or(
            cx,
            file,
            &raw.connect_timeout,
            &format!("{key}.connect_timeout"),
            5,
        );
        let read_timeout = duration_or(cx, file, &raw.timeout, &format!("{key}.timeout"), 60);
        let health_check = raw.health_check.as_ref().map(|hc| HealthCheck {
            path: hc
                .path
                .as_ref()
                .map_or_else(|| Arc::from("/"), |p| Arc::from(p.get_ref().as_str())),
            interval: duration_or(
                cx,
                file,
                &hc.interval,
                &format!("{key}.health_check.interval"),
                10,
            ),
            timeout: duration_or(
                cx,
                file,
                &hc.timeout,
                &format!("{key}.health_check.timeout"),
                2,
            ),
            fall: count_or(
                cx,
                file,
                hc.fall.as_ref(),
                &format!("{key}.health_check.fall"),
                3,
            ),
            rise: count_or(
                cx,
                file,
                hc.rise.as_ref(),
                &format!("{key}.health_check.rise"),
                2,
            ),
        });
        services.push(Service {
            id,
            name,
            hosts: hosts.into_iter().map(|(_, t, ..)| t).collect(),
            paths,
            backends,
            allow,
            websockets: raw.websockets.unwrap_or(true),
            plain_http: raw.plain_http.unwrap_or(false),
            danger_accept_invalid_backend_certs: raw
                .danger_accept_invalid_backend_certs
                .unwrap_or(false),
            connect_timeout,
            timeout: read_timeout,
            health_check,
            balance: super::choose(
                cx,
                file,
                raw.balance.as_ref(),
                &format!("{key}.balance"),
                &[
                    ("round_robin", Balance::RoundRobin),
                    ("least_connections", Balance::LeastConnections),
                ],
            )
            .unwrap_or(Balance::RoundRobin),
            host_header: raw.host_header.as_ref().and_then(|h| {
                report(
                    cx,
                    file,
                    h,
                    &format!("{key}.host_header"),
                    values::host(h.get_ref()),
                )
                .map(|(_, text)| Arc::from(text))
            }),
            max_body: raw.max_body.as_ref().and_then(|m| {
                report(
                    cx,
                    file,
                    m,
                    &format!("{key}.max_body"),
                    values::size(m.get_ref()),
                )
            }),
            backend_roots: raw.backend_ca_file.as_ref().map_or_else(Vec::new, |ca| {
                ca_certs(cx, file, ca, &format!("{key}.backend_ca_file"))
            }),
            access: raw.access.as_ref().and_then(|a| {
                access_app(
                    cx,
                    file,
                    a,
                    &format!("{key}.access"),
                    jwks_url,
                    allow.contains(networks.tunnel().id),
                )
            }),
        });
    }
    (services, routes)
}

/// `tunnel.access_jwks_url`, checked.
fn access_jwks_url(cx: &mut Ctx<'_>, files: &[(FileId, RawFile)]) -> Option<String> {
    let (file, u) = files.iter().find_map(|(file, f)| {
        Some((*file, f.tunnel.as_ref()?.get_ref().access_jwks_url.clone()?))
    })?;
    match url::Url::parse(&u.get_ref().replace("{team}", "team")) {
        Ok(parsed) if matches!(parsed.scheme(), "https" | "http") => Some(u.get_ref().clone()),
        _ => {
            cx.error(
                file,
                u.span(),
                "tunnel.access_jwks_url",
                format!("`{}` is not a URL", u.get_ref()),
            )
            .expected("e.g. `https://{team}.cloudflareaccess.com/cdn-cgi/access/certs`");
            None
        }
    }
}

/// The Access application of a service, checked: a team name usable in a host name, an
/// audience tag, a header name.
fn access_app(
    cx: &mut Ctx<'_>,
    file: FileId,
    raw: &RawAccess,
    key: &str,
    jwks_url: Option<&str>,
    tunnel_allowed: bool,
) -> Option<AccessApp> {
    let team = raw.team.get_ref();
    if team.is_empty() || !team.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        cx.error(
            file,
            raw.team.span(),
            format!("{key}.team"),
            format!("`{team}` is not a team name"),
        )
        .expected("the <team> of <team>.cloudflareaccess.com, e.g. `team = \"myhomelab\"`");
        return None;
    }
    let aud = raw.aud.get_ref();
    if aud.is_empty() || aud.contains(char::is_whitespace) {
        cx.error(
            file,
            raw.aud.span(),
            format!("{key}.aud"),
            "an Access audience tag is one word",
        )
        .expected("the application's AUD from the Access dashboard (64 hex digits)");
        return None;
    }
    let header = raw
        .identity_header
        .as_ref()
        .map_or("cf-access-authenticated-user-email", |h| {
            h.get_ref().as_str()
        });
    if header.is_empty()
        || !header
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        if let Some(h) = &raw.identity_header {
            cx.error(
                file,
                h.span(),
                format!("{key}.identity_header"),
                format!("`{header}` is not a header name"),
            )
            .expected("letters, digits and `-`, e.g. `Remote-Email`");
        }
        return None;
    }
    if !tunnel_allowed {
        cx.warn(
            file,
            raw.team.span(),
            key.to_owned(),
            "Access is checked on tunnel requests only, and this service does not allow `tunnel`",
        )
        .hint("add `tunnel` to `allow`, or remove `access`");
    }
    Some(AccessApp {
        team: Arc::from(team.as_str()),
        aud: Arc::from(aud.as_str()),
        issuer: Arc::from(format!("https://{team}.cloudflareaccess.com")),
        jwks_url: Arc::from(jwks_url.map_or_else(
            || format!("https://{team}.cloudflareaccess.com/cdn-cgi/access/certs"),
            |u| u.replace("{team}", team),
        )),
        identity_header: Arc::from(header.to_ascii_lowercase()),
    })
}

/// A count from 1 to 100, or the default.
fn count_or(
    cx: &mut Ctx<'_>,
    file: FileId,
    raw: Option<&Spanned<i64>>,
    key: &str,
    default: u32,
) -> u32 {
    raw.and_then(|v| report(cx, file, v, key, values::int(*v.get_ref(), 1, 100)))
        .unwrap_or(default)
}

fn allow(
    cx: &mut Ctx<'_>,
    networks: &Networks,
    file: FileId,
    raw: &RawService,
    key: &str,
    name: &str,
) -> NetworkSet {
    let mut set = NetworkSet::EMPTY;
    if raw.allow.is_empty() {
        cx.error(
            file,
            raw.host.span(),
            format!("{key}.allow"),
            format!("service `{name}` allows no network, so nobody can reach it"),
        )
        .expected("network names, e.g. `allow = [\"clients\", \"vpn\"]`");
    }
    for (j, n) in raw.allow.iter().enumerate() {
        let k = format!("{key}.allow[{j}]");
        match networks.by_name(n.get_ref()) {
            Some(net) if net.kind == NetworkKind::Local && !net.internal => {
                cx.error(file, n.span(), k, format!("network `{}` does not see internal names (`internal = false`), so it cannot reach `{name}`", net.name))
                    .hint("remove it from `allow`, or set `internal = true` on the network");
            }
            Some(net) => set.insert(net.id),
            None => unknown_network(cx, networks, file, n, k),
        }
    }
    set
}

fn backends(cx: &mut Ctx<'_>, file: FileId, raw: &RawService, key: &str) -> Vec<Backend> {
    const EXPECTED: &str = "`http://HOST:PORT`, `https://HOST:PORT` or `h2c://HOST:PORT` \
         (HTTP/2 without TLS, for gRPC), e.g. `http://10.0.20.11:8080`";
    if raw.backends.is_empty() {
        cx.error(
            file,
            raw.host.span(),
            format!("{key}.backends"),
            "a service needs at least one backend",
        )
        .expected(EXPECTED);
    }
    let mut out = Vec::new();
    for (j, b) in raw.backends.iter().enumerate() {
        let k = format!("{key}.backends[{j}]");
        let s = b.get_ref();
        let parsed = url::Url::parse(s)
            .map_err(|e| format!("`{s}` is not a URL ({e})"))
            .and_then(|u| {
                let (tls, h2c) = match u.scheme() {
                    "http" => (false, false),
                    "https" => (true, false),
                    "h2c" => (false, true),
                    other => return Err(format!("`{s}` has scheme `{other}`")),
                };
                if !(u.path().is_empty() || u.path() == "/")
                    || u.query().is_some()
                    || !u.username().is_empty()
                {
                    return Err(format!(
                        "`{s}` has a path, query or user: backends are addresses only"
                    ));
                }
                let host = match u.host() {
                    Some(url::Host::Ipv4(a)) => BackendHost::Ip(a.into()),
                    Some(url::Host::Ipv6(a)) => BackendHost::Ip(a.into()),
                    // `h2c://` is not a special scheme to the URL parser: its IPv4 addresses
                    // come as text (IPv6 ones, in brackets, are parsed for every scheme).
                    Some(url::Host::Domain(d)) => d
                        .parse::<std::net::IpAddr>()
                        .map_or_else(|_| BackendHost::Name(Arc::from(d)), BackendHost::Ip),
                    None => return Err(format!("`{s}` has no host")),
                };
                let port = u
                    .port_or_known_default()
                    .unwrap_or(if tls { 443 } else { 80 });
                Ok(Backend {
                    url: Arc::from(s.as_str()),
                    tls,
                    h2c,
                    host,
                    port,
                })
            });
        match parsed {
            Ok(backend) => out.push(backend),
            Err(m) => {
                cx.error(file, b.span(), k, m).expected(EXPECTED);
            }
        }
    }
    out
}

fn paths(cx: &mut Ctx<'_>, file: FileId, raw: &RawService, key: &str) -> Vec<Arc<str>> {
    let Some(list) = &raw.paths else {
        return vec![Arc::from("/")];
    };
    let mut out: Vec<Arc<str>> = Vec::new();
    for (j, p) in list.iter().enumerate() {
        let s = p.get_ref();
        if !s.starts_with('/') || s.contains(['?', '#', ' ']) {
            cx.error(
                file,
                p.span(),
                format!("{key}.paths[{j}]"),
                format!("`{s}` is not a path prefix"),
            )
            .expected("a path starting with `/`, e.g. `/api`");
        } else if s.contains(['%', ';']) || crate::route::normalize_path(s) != *s {
            // Requests are matched as backends read them: this prefix would never match.
            cx.error(
                file,
                p.span(),
                format!("{key}.paths[{j}]"),
                format!("`{s}` is not a path as a backend reads it"),
            )
            .expected("a path without `%`, `;`, `//`, `.` or `..` segments, e.g. `/api/v2`");
        } else {
            // Matched without regard to case, as some backends route.
            let lower = s.to_ascii_lowercase();
            if !out.iter().any(|o| **o == *lower) {
                out.push(Arc::from(lower));
            }
        }
    }
    out
}

fn duration_or(
    cx: &mut Ctx<'_>,
    file: FileId,
    v: &Option<Spanned<String>>,
    key: &str,
    default_secs: u64,
) -> Duration {
    let default = Duration::from_secs(default_secs);
    v.as_ref()
        .and_then(|t| report(cx, file, t, key, values::duration(t.get_ref())))
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use crate::route::{BackendHost, Route};
    use crate::testing::{diagnostics, snapshot};

    const BASE: &str = r#"
[[network]]
name = "lab"
cidrs = ["10.0.0.0/16"]
addresses = ["10.0.0.2"]
[[network]]
name = "bare"
cidrs = ["10.2.0.0/16"]
[[network]]
name = "guest"
cidrs = ["10.1.0.0/16"]
addresses = ["10.1.0.2"]
internal = false
[[zone]]
name = "lab.test"
"#;

    /// `[[service]]` fields after `host = "app.lab.test"`, `allow` and `backends` unless given.
    fn service(fields: &str) -> String {
        let mut s = format!("{BASE}[[service]]\nhost = \"app.lab.test\"\n{fields}\n");
        if !fields.contains("allow") {
            s.push_str("allow = [\"lab\"]\n");
        }
        if !fields.contains("backends") {
            s.push_str("backends = [\"http://10.0.0.9\"]\n");
        }
        s
    }

    #[test]
    fn service_checks() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            (
                "allow = []",
                &[
                    "error `service[0].allow`: service `app` allows no network, so nobody can reach it",
                ],
            ),
            (
                "allow = [\"wifi\"]",
                &["error `service[0].allow[0]`: no network named `wifi`"],
            ),
            (
                "allow = [\"guest\"]",
                &[
                    "error `service[0].allow[0]`: network `guest` does not see internal names (`internal = false`), so it cannot reach `app`",
                ],
            ),
            (
                "allow = [\"bare\"]",
                &[
                    "error `service[0].allow`: network `bare` has no `addresses`, so `app.lab.test` cannot resolve there",
                ],
            ),
            ("allow = [\"tunnel\"]", &[]),
            (
                "aliases = [\"other.test\"]",
                &["error `service[0].aliases[0]`: `other.test` is outside every internal zone"],
            ),
            (
                "aliases = [\"a_b.lab.test\"]",
                &[
                    "error `service[0].aliases[0]`: `a_b.lab.test` has `_`, which browsers reject in host names",
                ],
            ),
            (
                "backends = []",
                &["error `service[0].backends`: a service needs at least one backend"],
            ),
            (
                "timeout = \"soon\"",
                &["error `service[0].timeout`: `soon` is not a duration (expected number at 0)"],
            ),
            (
                "max_body = \"1T\"",
                &["error `service[0].max_body`: `1T` is not a size"],
            ),
            ("host_header = \"Nas.Lab\"", &[]),
            (
                "health_check = { fall = 0 }",
                &["error `service[0].health_check.fall`: 0 is out of range: between 1 and 100"],
            ),
            (
                "backend_ca_file = \"ca.pem\"",
                &["error `service[0].backend_ca_file`: cannot read `ca.pem`: no such file"],
            ),
        ];
        for (fields, expected) in cases {
            assert_eq!(diagnostics(&service(fields), &[]), *expected, "{fields}");
        }
    }

    /// A backend as `tls`, `h2c`, host (`ip …` or `name …`) and port.
    type Parsed = (bool, bool, &'static str, u16);

    #[test]
    fn backends() {
        let cases: &[(&str, Result<Parsed, &str>)] = &[
            ("http://10.0.0.9", Ok((false, false, "ip 10.0.0.9", 80))),
            ("http://10.0.0.9/", Ok((false, false, "ip 10.0.0.9", 80))),
            (
                "https://nas.lab.test",
                Ok((true, false, "name nas.lab.test", 443)),
            ),
            (
                "https://10.0.0.9:8006",
                Ok((true, false, "ip 10.0.0.9", 8006)),
            ),
            (
                "h2c://10.0.0.7:50051",
                Ok((false, true, "ip 10.0.0.7", 50051)),
            ),
            (
                "h2c://[fd00::7]:50051",
                Ok((false, true, "ip fd00::7", 50051)),
            ),
            ("h2c://grpc-box", Ok((false, true, "name grpc-box", 80))),
            ("ftp://10.0.0.9", Err("`ftp://10.0.0.9` has scheme `ftp`")),
            (
                "http://10.0.0.9/app",
                Err("`http://10.0.0.9/app` has a path, query or user: backends are addresses only"),
            ),
            (
                "http://10.0.0.9?x=1",
                Err("`http://10.0.0.9?x=1` has a path, query or user: backends are addresses only"),
            ),
            (
                "http://user@10.0.0.9",
                Err(
                    "`http://user@10.0.0.9` has a path, query or user: backends are addresses only",
                ),
            ),
            (
                "10.0.0.9:80",
                Err("`10.0.0.9:80` is not a URL (relative URL without a base)"),
            ),
            (
                "nas",
                Err("`nas` is not a URL (relative URL without a base)"),
            ),
        ];
        for (url, expected) in cases {
            let toml = service(&format!("backends = [\"{url}\"]"));
            let got = match diagnostics(&toml, &[]).as_slice() {
                [] => {
                    let s = snapshot(&toml);
                    let b = &s.services[0].backends[0];
                    let host = match &b.host {
                        BackendHost::Ip(ip) => format!("ip {ip}"),
                        BackendHost::Name(n) => format!("name {n}"),
                    };
                    Ok((b.tls, b.h2c, host, b.port))
                }
                [d] => Err(d
                    .trim_start_matches("error `service[0].backends[0]`: ")
                    .to_owned()),
                more => panic!("{url}: {more:?}"),
            };
            let expected = expected
                .map(|(t, h, host, p)| (t, h, host.to_owned(), p))
                .map_err(str::to_owned);
            assert_eq!(got, expected, "{url}");
        }
    }

    #[test]
    fn paths() {
        let cases: &[(&str, Result<&[&str], &str>)] = &[
            ("", Ok(&["/"])),
            (
                "paths = [\"/api\", \"/API\", \"/v2/\"]",
                Ok(&["/api", "/v2/"]),
            ),
            ("paths = [\"api\"]", Err("`api` is not a path prefix")),
            ("paths = [\"/a?b\"]", Err("`/a?b` is not a path prefix")),
            ("paths = [\"/a b\"]", Err("`/a b` is not a path prefix")),
            (
                "paths = [\"/a/../b\"]",
                Err("`/a/../b` is not a path as a backend reads it"),
            ),
            (
                "paths = [\"//a\"]",
                Err("`//a` is not a path as a backend reads it"),
            ),
            (
                "paths = [\"/a%2fb\"]",
                Err("`/a%2fb` is not a path as a backend reads it"),
            ),
            (
                "paths = [\"/a;b\"]",
                Err("`/a;b` is not a path as a backend reads it"),
            ),
        ];
        for (fields, expected) in cases {
            let toml = service(fields);
            let got = match diagnostics(&toml, &[]).as_slice() {
                [] => Ok(snapshot(&toml).services[0]
                    .paths
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()),
                [d] => Err(d
                    .trim_start_matches("error `service[0].paths[0]`: ")
                    .to_owned()),
                more => panic!("{fields}: {more:?}"),
            };
            let expected = expected
                .map(|p| p.iter().map(|s| (*s).to_owned()).collect())
                .map_err(str::to_owned);
            assert_eq!(got, expected, "{fields}");
        }
    }

    /// Hosts and paths shared between services, and the records a service derives.
    #[test]
    fn routes_and_records() {
        let second = |fields: &str| {
            format!(
                "{}[[service]]\nname = \"two\"\nhost = \"app.lab.test\"\nallow = [\"lab\"]\nbackends = [\"http://10.0.0.10\"]\n{fields}\n",
                service("")
            )
        };
        let cases: &[(&str, &[&str])] = &[
            (
                "",
                &[
                    "error `service[1].host`: `app.lab.test` path `/` is already served by service `app`",
                ],
            ),
            ("paths = [\"/api\"]", &[]),
        ];
        for (fields, expected) in cases {
            assert_eq!(diagnostics(&second(fields), &[]), *expected, "{fields}");
        }
        let s = snapshot(&second("paths = [\"/api\"]"));
        let route = |path| match s.route("app.lab.test", path) {
            Route::Service(id) => s.service(id).name.to_string(),
            other => format!("{other:?}"),
        };
        assert_eq!((route("/"), route("/api/x")), ("app".into(), "two".into()));
        let conflict = format!(
            "{}[[record]]\nname = \"app.lab.test\"\ntype = \"A\"\nvalue = \"10.0.0.77\"\n",
            service("")
        );
        assert_eq!(
            diagnostics(&conflict, &[]),
            [
                "error `service[0].host`: `app.lab.test` conflicts with the record at test.toml:22:8 (A) in network `lab`"
            ]
        );
    }

    #[test]
    fn access() {
        let access = |a: &str| {
            service(&format!(
                "allow = [\"lab\", \"tunnel\"]\naccess = {{ {a} }}"
            ))
        };
        let cases: &[(&str, &[&str])] = &[
            ("team = \"home\", aud = \"abc\"", &[]),
            (
                "team = \"home lab\", aud = \"abc\"",
                &["error `service[0].access.team`: `home lab` is not a team name"],
            ),
            (
                "team = \"\", aud = \"abc\"",
                &["error `service[0].access.team`: `` is not a team name"],
            ),
            (
                "team = \"home\", aud = \"a b\"",
                &["error `service[0].access.aud`: an Access audience tag is one word"],
            ),
            (
                "team = \"home\", aud = \"abc\", identity_header = \"X User\"",
                &["error `service[0].access.identity_header`: `X User` is not a header name"],
            ),
        ];
        for (a, expected) in cases {
            assert_eq!(diagnostics(&access(a), &[]), *expected, "{a}");
        }
        assert_eq!(
            diagnostics(&service("access = { team = \"home\", aud = \"abc\" }"), &[]),
            [
                "warning `service[0].access`: Access is checked on tunnel requests only, and this service does not allow `tunnel`"
            ]
        );
        let s = snapshot(&access(
            "team = \"home\", aud = \"abc\", identity_header = \"Remote-Email\"",
        ));
        let app = s.services[0].access.as_ref().expect("access");
        assert_eq!(
            (&*app.issuer, &*app.jwks_url, &*app.identity_header),
            (
                "https://home.cloudflareaccess.com",
                "https://home.cloudflareaccess.com/cdn-cgi/access/certs",
                "remote-email"
            )
        );
        let s = snapshot(&format!(
            "[tunnel]\naccess_jwks_url = \"http://127.0.0.1:9/{{team}}/certs\"\n{}",
            access("team = \"home\", aud = \"abc\"")
        ));
        let app = s.services[0].access.as_ref().expect("access");
        assert_eq!(&*app.jwks_url, "http://127.0.0.1:9/home/certs");
    }
}
