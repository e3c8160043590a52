//! `labgate explain`: the decision chain for one client and one name or URL, computed by the
//! same pure functions over the snapshot that DNS and the proxy use.
#![allow(
    clippy::disallowed_macros,
    reason = "a subcommand: it prints what was asked"
)]

use std::fmt;
use std::net::IpAddr;
use std::process::ExitCode;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, LowerName, Name, RecordType};
use labgate_config::Snapshot;
use labgate_config::network::Network;
use labgate_config::route::{MAX_HOST_LEN, Route, normalize_host};
use labgate_config::settings::{CertSource, Coverage};
use labgate_dns::{Decision as DnsDecision, FetchedLists};
use labgate_proxy::decide::{Decision as HttpDecision, Refusal, Via, decide};
use serde::Serialize;

use crate::cli::ExplainArgs;
use crate::reload::ConfigSource;

/// Runs `labgate explain`.
///
/// # Errors
/// An invalid configuration (exit 64) or a target that is not a host name or URL.
pub fn run(args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    let snapshot = ConfigSource::snapshot_of(args.config.as_deref())?;
    let via = match args.via {
        Some(crate::cli::ViaArg::Tunnel) => Via::Tunnel,
        _ => Via::Direct,
    };
    // A documentation address stands for an internet client when none is given.
    let from = args
        .from
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 1)));
    let e = explain(&snapshot, from, via, &args.target)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&e)?);
    } else {
        print!("{e}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The whole decision chain.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The client address.
    pub client: IpAddr,
    /// Its network, if any.
    pub network: Option<NetworkDecision>,
    /// The normalized host.
    pub host: String,
    /// The path (`/` for a bare name).
    pub path: String,
    /// What DNS answers.
    pub dns: Decision,
    /// Where HTTP goes.
    pub route: Decision,
    /// Whether HTTP is allowed.
    pub policy: Decision,
    /// Cloudflare Access: required on tunnel requests, or not.
    pub access: Decision,
    /// Which certificate a TLS handshake gets.
    pub certificate: Decision,
}

/// The client's network and why.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkDecision {
    /// Its name.
    pub name: String,
    /// The longest matching prefix.
    pub prefix: String,
}

/// One step: a machine-readable outcome, details, and a sentence for people.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// Short outcome, e.g. `answer`, `nxdomain`, `allow`, `deny`.
    pub outcome: &'static str,
    /// Records, backends or certificate names involved.
    pub details: Vec<String>,
    /// Why.
    pub reason: String,
}

fn decision(outcome: &'static str, details: Vec<String>, reason: impl Into<String>) -> Decision {
    Decision {
        outcome,
        details,
        reason: reason.into(),
    }
}

/// Explains how `target` (a host name or URL) is treated for a client.
///
/// # Errors
/// When the target has no valid host name.
pub fn explain(
    s: &Snapshot,
    client: IpAddr,
    via: Via,
    target: &str,
) -> anyhow::Result<Explanation> {
    let (raw_host, path) = split_target(target);
    let mut buf = [0u8; MAX_HOST_LEN];
    let host = normalize_host(raw_host.as_bytes(), &mut buf)
        .ok_or_else(|| anyhow::anyhow!("`{target}` has no valid host name"))?
        .to_owned();
    let (network, dns_decision) = match via {
        Via::Direct => {
            let matched = s.networks.lookup(client);
            let network = matched.map(|m| s.networks.get(m.network));
            (
                matched.map(|m| NetworkDecision {
                    name: s.networks.get(m.network).name.to_string(),
                    prefix: m.prefix.to_string(),
                }),
                dns(s, client, network, &host),
            )
        }
        Via::Tunnel => (
            Some(NetworkDecision {
                name: s.networks.tunnel().name.to_string(),
                prefix:
                    "the tunnel listener (any source address; Cf-Connecting-IP names the client)"
                        .into(),
            }),
            decision(
                "public",
                vec![],
                "internet clients resolve the name in public DNS (Cloudflare), which points at the tunnel",
            ),
        ),
    };
    // The proxy's view: through the tunnel the peer is a connector.
    let peer = match via {
        Via::Direct => client,
        Via::Tunnel => s
            .networks
            .tunnel_connectors
            .first()
            .map_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), |c| c.addr()),
    };
    Ok(Explanation {
        client,
        network,
        dns: dns_decision,
        route: route(s, &host, &path),
        policy: policy(s, peer, via, &host, &path),
        access: access(s, via, &host, &path),
        certificate: certificate(s, &host),
        host,
        path,
    })
}

/// Whether a tunnel request needs a Cloudflare Access token.
fn access(s: &Snapshot, via: Via, host: &str, path: &str) -> Decision {
    let Route::Service(id) = s.route(host, path) else {
        return decision("none", vec![], "no service");
    };
    match (&s.service(id).access, via) {
        (None, _) => decision("none", vec![], "no Cloudflare Access requirement"),
        (Some(app), Via::Direct) => decision(
            "not_checked",
            vec![],
            format!(
                "Access (team `{}`) is checked on tunnel requests only; LAN requests pass on their network",
                app.team
            ),
        ),
        (Some(app), Via::Tunnel) => decision(
            "required",
            vec![format!("aud {}", app.aud), format!("keys {}", app.jwks_url)],
            format!(
                "a valid Cf-Access-Jwt-Assertion (or CF_Authorization cookie) from team `{}`, else 403; the e-mail goes to the backend in `{}`",
                app.team, app.identity_header
            ),
        ),
    }
}

fn split_target(target: &str) -> (&str, String) {
    let rest = target.split_once("://").map_or(target, |(_, r)| r);
    match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_owned()),
        None => (rest, "/".to_owned()),
    }
}

/// What a query for `host`'s addresses (A and AAAA) from `client` gets: the DNS server's own
/// decision (`labgate_dns::decide`; blocklists from URLs are not fetched here), explained.
fn dns(s: &Snapshot, client: IpAddr, network: Option<&Network>, host: &str) -> Decision {
    let Ok(name) = Name::from_ascii(format!("{host}.")) else {
        return match network {
            None => refused(None, host),
            Some(_) => decision("formerr", vec![], "not a DNS name"),
        };
    };
    let name = LowerName::new(&name);
    let lists = FetchedLists::new();
    let mut records = Vec::new();
    let mut found = None;
    // The zone a negative answer speaks for (its SOA's owner).
    let mut negative_zone = None;
    for rtype in [RecordType::A, RecordType::AAAA] {
        let answer = match labgate_dns::decide(s, &lists, client, &name, rtype, DNSClass::IN) {
            DnsDecision::Forward => {
                return network.map_or_else(|| refused(None, host), |net| forward(s, net, host));
            }
            // An internal CNAME chain that the upstreams complete: its internal part.
            DnsDecision::Chase { chain, .. } => chain,
            DnsDecision::Answer(a) => a,
        };
        if answer.rcode == ResponseCode::Refused {
            return refused(network, host);
        }
        let shown = answer
            .answers
            .iter()
            .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data));
        if let Some(list) = answer.blocked {
            let list = &s.dns.blocklists[list].name;
            return blocked(network, (host, list), answer.rcode, shown.collect());
        }
        records.extend(shown);
        if let Some(soa) = answer.soa.first() {
            negative_zone = Some(soa.name.to_string());
        }
        let this = match (answer.rcode, answer.answers.is_empty()) {
            (ResponseCode::NoError, false) => Found::Answer,
            (ResponseCode::NoError, true) => Found::NoData,
            _ => Found::NxDomain,
        };
        found = found.max(Some(this));
    }
    // `decide` refuses every question of a client in no network: here it has one.
    let (view, sees_internal) = network.map_or(("", true), |n| (&*n.name, n.internal));
    records.dedup();
    let internal_zone = labgate_config::view::zone_of(&s.zones, &name);
    let zone = internal_zone.map_or_else(String::new, |z| {
        z.name.to_string().trim_end_matches('.').to_owned()
    });
    match found {
        Some(Found::Answer) => decision(
            "answer",
            records,
            format!("authoritative answer from zone {zone} in view `{view}`"),
        ),
        Some(Found::NoData) => decision(
            "nodata",
            vec![],
            format!("the name exists in zone {zone} but has no address in view `{view}`"),
        ),
        // No internal zone holds it, yet it is answered here: a private range's reverse name.
        _ if internal_zone.is_none() => decision(
            "nxdomain",
            vec![],
            format!(
                "`{host}` is a reverse name of a private range (RFC 6303): NXDOMAIN from the local empty zone {}, never asked upstream",
                negative_zone.as_deref().unwrap_or("").trim_end_matches('.')
            ),
        ),
        _ if !sees_internal => decision(
            "nxdomain",
            vec![],
            format!("network `{view}` does not see internal names (internal = false): NXDOMAIN"),
        ),
        _ => decision(
            "nxdomain",
            vec![],
            format!(
                "no such name in zone {zone} for view `{view}`: NXDOMAIN (a service not allowed here is invisible)"
            ),
        ),
    }
}

/// What the address questions of one name found, weakest first: an answer for either type
/// is an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Found {
    NxDomain,
    NoData,
    Answer,
}

/// Why DNS refuses: the client is in no network, or its network may not recurse (the only
/// refusals `decide` makes for an address question from a LAN).
fn refused(network: Option<&Network>, host: &str) -> Decision {
    match network {
        None => decision(
            "refused",
            vec![],
            "the client is in no network: REFUSED for every name (labgate is not an open resolver)",
        ),
        Some(net) => decision(
            "refused",
            vec![],
            format!(
                "`{host}` is outside the internal zones and network `{}` may not recurse (recursion = false)",
                net.name
            ),
        ),
    }
}

/// A name a blocklist of the client's network holds.
fn blocked(
    network: Option<&Network>,
    (host, list): (&str, &str),
    rcode: ResponseCode,
    records: Vec<String>,
) -> Decision {
    let network = network.map_or_else(String::new, |n| format!(" of network `{}`", n.name));
    let answer = if rcode == ResponseCode::NXDomain {
        "NXDOMAIN"
    } else {
        "the null address (NODATA for other types)"
    };
    decision(
        "blocked",
        records,
        format!("`{host}` is on blocklist `{list}`{network}: {answer}"),
    )
}

/// Where a forwarded name goes.
fn forward(s: &Snapshot, net: &Network, host: &str) -> Decision {
    let lists: Vec<&str> = net
        .blocklists
        .iter()
        .map(|&i| &*s.dns.blocklists[i].name)
        .collect();
    let blocked = if lists.is_empty() {
        String::new()
    } else {
        format!("; checked first against blocklists {}", lists.join(", "))
    };
    let fqdn = Name::from_ascii(format!("{host}.")).ok();
    let fwd = s
        .dns
        .forwarders
        .iter()
        .find(|f| fqdn.as_ref().is_some_and(|n| f.domain.zone_of(n)));
    match fwd {
        Some(f) => decision(
            "forward",
            f.upstreams.iter().map(ToString::to_string).collect(),
            format!("conditional forwarder for {}{blocked}", f.domain),
        ),
        None if s.dns.upstreams.is_empty() => decision(
            "servfail",
            vec![],
            "outside the internal zones and no upstreams are configured: SERVFAIL",
        ),
        None => decision(
            "forward",
            s.dns.upstreams.iter().map(ToString::to_string).collect(),
            format!("outside the internal zones: forwarded to the upstreams, with cache{blocked}"),
        ),
    }
}

fn route(s: &Snapshot, host: &str, path: &str) -> Decision {
    match s.route(host, path) {
        Route::UnknownHost => decision(
            "unknown_host",
            vec![],
            format!("no service has host `{host}`: labgate answers 404 and contacts no backend"),
        ),
        Route::UnknownPath => decision(
            "unknown_path",
            vec![],
            format!("`{host}` is served, but no path prefix matches `{path}`: 404"),
        ),
        Route::Ambiguous => decision(
            "ambiguous_path",
            vec![],
            format!(
                "`{path}` leads to another service of `{host}` once decoded or resolved than as written: 400"
            ),
        ),
        Route::Service(id) => {
            let svc = s.service(id);
            decision(
                "service",
                svc.backends.iter().map(|b| b.url.to_string()).collect(),
                format!("service `{}` (paths {})", svc.name, svc.paths.join(", ")),
            )
        }
    }
}

/// The proxy's own decision (`labgate_proxy::decide`, as for a request whose SNI matches its
/// Host), explained.
fn policy(s: &Snapshot, client: IpAddr, via: Via, host: &str, path: &str) -> Decision {
    match decide(s, client, via, None, Some(host.as_bytes()), path) {
        HttpDecision::Forward { service, network } => decision(
            "allow",
            vec![],
            format!(
                "`{}` is in allow = [{}]",
                s.networks.get(network).name,
                s.networks.names(s.service(service).allow)
            ),
        ),
        HttpDecision::Refuse(Refusal::Denied { service, network }) => decision(
            "deny",
            vec![],
            format!(
                "`{}` is not in allow = [{}]: 403",
                s.networks.get(network).name,
                s.networks.names(s.service(service).allow)
            ),
        ),
        HttpDecision::Refuse(Refusal::NoNetwork) => decision(
            "deny",
            vec![],
            "the client is in no network: 403 for every service",
        ),
        HttpDecision::Refuse(Refusal::UnknownHost) if via == Via::Tunnel => decision(
            "not_found",
            vec![],
            "through the tunnel only services that allow `tunnel` exist: 404 (the internet learns nothing of internal names)",
        ),
        HttpDecision::Refuse(r) => {
            decision("not_found", vec![], format!("no service: {}", r.status()))
        }
    }
}

fn certificate(s: &Snapshot, host: &str) -> Decision {
    match s.certificate_for(host) {
        Coverage::Spec(i) => {
            let spec = &s.certificates.specs[i];
            let names = spec.names.iter().map(ToString::to_string).collect();
            match &spec.source {
                CertSource::Acme { provider, derived } => decision(
                    "acme",
                    names,
                    format!(
                        "ACME certificate ({}), DNS-01 through provider `{}`",
                        if *derived {
                            "derived from services"
                        } else {
                            "configured"
                        },
                        s.providers[*provider].name
                    ),
                ),
                CertSource::Files { cert, .. } => decision(
                    "files",
                    names,
                    format!("PEM files, chain {}", cert.display()),
                ),
            }
        }
        Coverage::LocalCa => decision(
            "local_ca",
            vec![host.to_owned()],
            "issued by labgate's local CA (clients must trust its ca.pem)",
        ),
        Coverage::Uncovered => decision(
            "none",
            vec![],
            "no certificate covers this name: the TLS handshake fails",
        ),
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "client    {}", self.client)?;
        match &self.network {
            Some(n) => writeln!(
                f,
                "network   {} (longest matching prefix {})",
                n.name, n.prefix
            )?,
            None => writeln!(f, "network   none: the address is in no network's CIDRs")?,
        }
        writeln!(f, "request   {}{}", self.host, self.path)?;
        for (label, d) in [
            ("dns", &self.dns),
            ("route", &self.route),
            ("policy", &self.policy),
            ("access", &self.access),
            ("cert", &self.certificate),
        ] {
            writeln!(f, "{label:<9} {}: {}", d.outcome.to_uppercase(), d.reason)?;
            for detail in &d.details {
                writeln!(f, "          {detail}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reload::ConfigSource;

    #[test]
    fn the_dns_step_explains_the_dns_servers_own_decision() {
        let demo = ConfigSource::snapshot_of(None).expect("the demo compiles");
        // (client, name, outcome, a part of the reason): lab 127.0.0.1, guest 127.0.0.2
        // (internal = false), iot 127.0.0.3.
        let table = [
            (
                "127.0.0.1",
                "app.demo.test",
                "answer",
                "zone demo.test in view `lab`",
            ),
            ("127.0.0.3", "nas.demo.test", "nxdomain", "is invisible"),
            ("127.0.0.2", "app.demo.test", "nxdomain", "internal = false"),
            ("192.0.2.1", "app.demo.test", "refused", "in no network"),
            (
                "127.0.0.1",
                "example.com",
                "forward",
                "forwarded to the upstreams",
            ),
            (
                "127.0.0.1",
                "1.0.0.10.in-addr.arpa",
                "nxdomain",
                "zone 10.in-addr.arpa,",
            ),
        ];
        for (client, name, outcome, reason) in table {
            let client: IpAddr = client.parse().expect("address");
            let network = demo
                .networks
                .lookup(client)
                .map(|m| demo.networks.get(m.network));
            let d = dns(&demo, client, network, name);
            assert_eq!(d.outcome, outcome, "{client} {name}: {}", d.reason);
            assert!(d.reason.contains(reason), "{client} {name}: {}", d.reason);
        }
    }
}
