//! `[dns]`, `[[forward]]`, `[[blocklist]]`, `[[zone]]` and `[[record]]`.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{LowerName, Name, RData, Record};
use toml::Spanned;

use super::values::{self, Bad};
use super::views::{Origin, ViewsBuilder};
use super::{Ctx, Explain, choose, items, list, single};
use crate::blocklist::{BlockSet, BlocklistFormat};
use crate::network::{NetworkKind, NetworkSet, Networks};
use crate::raw::RawFile;
use crate::settings::{BlockAction, Blocklist, BlocklistSource, Forwarder, Upstream};
use crate::source::{FileId, Sources};
use crate::view::{View, Zone, ZoneId, zone_of};

/// The largest TTL RFC 2181 allows.
const MAX_TTL: i64 = i32::MAX as i64;

pub(super) struct Defaults {
    pub(super) cache_size: NonZeroUsize,
    pub(super) default_ttl: u32,
    pub(super) serve_stale: Duration,
    pub(super) max_in_flight: NonZeroUsize,
    pub(super) max_in_flight_per_client: NonZeroUsize,
}

pub(super) fn settings_defaults(cx: &mut Ctx<'_>, files: &[(FileId, RawFile)]) -> Defaults {
    let mut d = Defaults {
        cache_size: NonZeroUsize::new(10_000).unwrap_or(NonZeroUsize::MIN),
        default_ttl: 300,
        serve_stale: Duration::from_secs(86_400),
        max_in_flight: NonZeroUsize::new(1024).unwrap_or(NonZeroUsize::MIN),
        max_in_flight_per_client: NonZeroUsize::new(128).unwrap_or(NonZeroUsize::MIN),
    };
    let Some((file, raw)) = single(cx, files, "dns", |f| f.dns.as_ref()) else {
        return d;
    };
    if let Some(v) = &raw.cache_size
        && let Some(n) = report(
            cx,
            file,
            v,
            "dns.cache_size",
            values::int::<usize>(*v.get_ref(), 1, 100_000_000),
        )
    {
        d.cache_size = NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN);
    }
    if let Some(v) = &raw.default_ttl
        && let Some(n) = report(
            cx,
            file,
            v,
            "dns.default_ttl",
            values::int(*v.get_ref(), 0, MAX_TTL),
        )
    {
        d.default_ttl = n;
    }
    if let Some(v) = &raw.serve_stale
        && let Some(stale) = report(
            cx,
            file,
            v,
            "dns.serve_stale",
            values::duration(v.get_ref()),
        )
    {
        d.serve_stale = stale;
    }
    for (v, key, field) in [
        (
            &raw.max_in_flight,
            "dns.max_in_flight",
            &mut d.max_in_flight,
        ),
        (
            &raw.max_in_flight_per_client,
            "dns.max_in_flight_per_client",
            &mut d.max_in_flight_per_client,
        ),
    ] {
        if let Some(v) = v
            && let Some(n) = report(
                cx,
                file,
                v,
                key,
                values::int::<usize>(*v.get_ref(), 1, 1_000_000),
            )
        {
            *field = NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN);
        }
    }
    d
}

/// Reports a parse failure at a value's span.
pub(super) fn report<T, V>(
    cx: &mut Ctx<'_>,
    file: FileId,
    at: &Spanned<V>,
    key: &str,
    r: Result<T, Bad>,
) -> Option<T> {
    r.map_err(|(m, e)| {
        cx.error(file, at.span(), key, m).expected(e);
    })
    .ok()
}

pub(super) struct Upstreams {
    pub(super) upstreams: Vec<Upstream>,
    pub(super) forwarders: Vec<Forwarder>,
    pub(super) rebind_allow: Vec<Name>,
    pub(super) roots: Vec<Arc<[u8]>>,
}

pub(super) fn upstreams(cx: &mut Ctx<'_>, files: &[(FileId, RawFile)]) -> Upstreams {
    let parse_all = |cx: &mut Ctx<'_>, file, v: &[Spanned<String>], key: &str| -> Vec<Upstream> {
        v.iter()
            .enumerate()
            .filter_map(|(j, u)| {
                report(
                    cx,
                    file,
                    u,
                    &format!("{key}[{j}]"),
                    values::upstream(u.get_ref()),
                )
            })
            .collect()
    };
    let (upstreams, rebind_allow) = match single(cx, files, "dns", |f| f.dns.as_ref()) {
        Some((file, raw)) => {
            let allow = raw
                .rebind_allow
                .iter()
                .enumerate()
                .filter_map(|(j, d)| {
                    let key = format!("dns.rebind_allow[{j}]");
                    report(cx, file, d, &key, values::name(d.get_ref(), false))
                })
                .collect();
            (parse_all(cx, file, &raw.upstreams, "dns.upstreams"), allow)
        }
        None => (Vec::new(), Vec::new()),
    };
    let roots = match single(cx, files, "dns", |f| f.dns.as_ref()) {
        Some((file, raw)) => raw.upstream_ca_file.as_ref().map_or_else(Vec::new, |ca| {
            ca_certs(cx, file, ca, "dns.upstream_ca_file")
        }),
        None => Vec::new(),
    };
    let mut forwarders: Vec<Forwarder> = Vec::new();
    for (file, i, raw) in items(files, |f| &f.forward) {
        let key = format!("forward[{i}]");
        let Some(domain) = report(
            cx,
            file,
            &raw.domain,
            &format!("{key}.domain"),
            values::name(raw.domain.get_ref(), false),
        ) else {
            continue;
        };
        if raw.upstreams.is_empty() {
            cx.error(
                file,
                raw.domain.span(),
                format!("{key}.upstreams"),
                format!("forwarder for `{domain}` has no upstreams"),
            )
            .expected("at least one upstream, e.g. `upstreams = [\"udp://10.0.0.53\"]`");
        }
        if forwarders.iter().any(|f| f.domain == domain) {
            cx.error(
                file,
                raw.domain.span(),
                format!("{key}.domain"),
                format!("`{domain}` is forwarded twice"),
            )
            .hint("list all its upstreams in one [[forward]]");
            continue;
        }
        let ups = parse_all(cx, file, &raw.upstreams, &format!("{key}.upstreams"));
        forwarders.push(Forwarder {
            domain,
            upstreams: ups,
        });
    }
    forwarders.sort_by_key(|f| std::cmp::Reverse(f.domain.num_labels()));
    Upstreams {
        upstreams,
        forwarders,
        rebind_allow,
        roots,
    }
}

/// The certificates of a PEM file, as DER; an error when there is none.
pub(crate) fn ca_certs(
    cx: &mut Ctx<'_>,
    file: FileId,
    ca: &Spanned<String>,
    key: &str,
) -> Vec<Arc<[u8]>> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let (path, pem) = cx.read(file, ca, key);
    let Some(pem) = pem else {
        return Vec::new();
    };
    let certs: Vec<Arc<[u8]>> = CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .map(|c| Arc::from(c.as_ref()))
        .collect();
    if certs.is_empty() {
        cx.error(
            file,
            ca.span(),
            key,
            format!("`{}` holds no PEM certificate", path.display()),
        )
        .expected("a file with `-----BEGIN CERTIFICATE-----` blocks");
    }
    certs
}

/// Compiles `[[blocklist]]`s, parsing file lists; `contents` receives their text for the
/// snapshot's content hash.
pub(super) fn blocklists(
    cx: &mut Ctx<'_>,
    files: &[(FileId, RawFile)],
    contents: &mut Vec<String>,
) -> Vec<Blocklist> {
    let mut out: Vec<Blocklist> = Vec::new();
    for (file, i, raw) in items(files, |f| &f.blocklist) {
        let key = format!("blocklist[{i}]");
        let name = raw.name.get_ref();
        if out.iter().any(|b| &*b.name == name) {
            cx.error(
                file,
                raw.name.span(),
                format!("{key}.name"),
                format!("blocklist `{name}` is defined twice"),
            )
            .hint("give each blocklist its own name");
            continue;
        }
        let (source, text) = match (&raw.file, &raw.url) {
            (Some(f), None) => {
                let (path, bytes) = cx.read(file, f, &format!("{key}.file"));
                (BlocklistSource::File(path), bytes)
            }
            (None, Some(u)) => match url::Url::parse(u.get_ref()) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => {
                    (BlocklistSource::Url(url), None)
                }
                _ => {
                    cx.error(
                        file,
                        u.span(),
                        format!("{key}.url"),
                        // The URL itself is not repeated: a private list's carries a token.
                        "not an http(s) URL".to_owned(),
                    )
                    .expected("a URL like `https://example.com/hosts.txt`");
                    continue;
                }
            },
            _ => {
                cx.error(
                    file,
                    raw.name.span(),
                    key,
                    format!("blocklist `{name}` needs exactly one of `file` and `url`"),
                )
                .expected("`file = \"lists/ads.txt\"` or `url = \"https://…\"`");
                continue;
            }
        };
        let format = choose(
            cx,
            file,
            raw.format.as_ref(),
            &format!("{key}.format"),
            &[
                ("domains", BlocklistFormat::Domains),
                ("hosts", BlocklistFormat::Hosts),
                ("adblock", BlocklistFormat::Adblock),
            ],
        );
        let action = choose(
            cx,
            file,
            raw.action.as_ref(),
            &format!("{key}.action"),
            &[
                ("nxdomain", BlockAction::NxDomain),
                ("null", BlockAction::NullAddress),
            ],
        );
        let (Some(format), Some(action)) = (format, action) else {
            continue;
        };
        let except = raw
            .except
            .iter()
            .enumerate()
            .filter_map(|(j, e)| {
                report(
                    cx,
                    file,
                    e,
                    &format!("{key}.except[{j}]"),
                    values::name(e.get_ref(), false),
                )
            })
            .collect();
        let refresh = match &raw.refresh {
            Some(r) => report(
                cx,
                file,
                r,
                &format!("{key}.refresh"),
                values::duration(r.get_ref()),
            )
            .unwrap_or(Duration::from_secs(86_400)),
            None => Duration::from_secs(86_400),
        };
        // A file list was read by `load`, so an edited list is a changed snapshot; a URL
        // list starts empty and is filled by the background fetcher.
        let names = match text {
            Some(bytes) => {
                // A stray Latin-1 byte (an accented comment) must not empty the list:
                // names are ASCII, and only they are read.
                let text = String::from_utf8_lossy(bytes).into_owned();
                let set = BlockSet::parse(&text, format);
                contents.push(text);
                set
            }
            None => BlockSet::default(),
        };
        out.push(Blocklist {
            name: Arc::from(name.as_str()),
            source,
            format,
            action,
            except,
            refresh,
            names: Arc::new(names),
        });
    }
    out
}

/// Cuts forwarded domains out of the internal zones that hold them: a subdomain delegated
/// to another server (a cluster's DNS, say), whose names, and CNAMEs into them, then go to
/// its forwarder. A [[forward]] of a zone itself, or of a domain with labgate's own names
/// under it, would never be used (or split names between two sources): an error.
pub(super) fn delegate(
    cx: &mut Ctx<'_>,
    files: &[(FileId, RawFile)],
    zones: &mut [Zone],
    views: &[View],
) {
    for (file, i, raw) in items(files, |f| &f.forward) {
        // A bad name was reported with the upstreams.
        let Ok(domain) = values::name(raw.domain.get_ref(), false) else {
            continue;
        };
        let lower = LowerName::new(&domain);
        // A domain inside a subdomain already delegated goes with it.
        let Some(zone) = zone_of(zones, &lower).map(|z| z.id.index()) else {
            continue;
        };
        let key = format!("forward[{i}].domain");
        let shown = raw.domain.get_ref().trim_end_matches('.');
        if zones[zone].name == lower {
            cx.error(
                file,
                raw.domain.span(),
                key,
                format!("`{shown}` is an internal zone: its names are answered from labgate's data, never forwarded"),
            )
            .hint("forward a subdomain of it, or remove its [[zone]]");
            continue;
        }
        // The first name with data under it (empty non-terminals have none), for a stable message.
        if let Some(name) = views
            .iter()
            .flat_map(|v| &v.nodes)
            .filter(|(n, node)| !node.records.is_empty() && lower.zone_of(n))
            .map(|(n, _)| n)
            .min()
        {
            cx.error(
                file,
                raw.domain.span(),
                key,
                format!("`{shown}` is forwarded, but labgate has names under it (`{}`, from a [[record]] or a service)", name.to_string().trim_end_matches('.')),
            )
            .hint("move those names out of the forwarded domain, or remove the [[forward]]");
            continue;
        }
        zones[zone].delegated.push(lower);
    }
}

pub(super) fn zones(
    cx: &mut Ctx<'_>,
    files: &[(FileId, RawFile)],
    sources: &Sources,
    ttl: u32,
) -> Vec<Zone> {
    // The serial follows the content, so a changed configuration gives a changed serial.
    let hash = sources.content_hash().0;
    let serial = u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]]);
    let mut zones: Vec<Zone> = Vec::new();
    let mut places: HashMap<LowerName, String> = HashMap::new();
    for (file, i, raw) in items(files, |f| &f.zone) {
        let key = format!("zone[{i}]");
        let Some(apex) = report(
            cx,
            file,
            &raw.name,
            &format!("{key}.name"),
            values::name(raw.name.get_ref(), false),
        ) else {
            continue;
        };
        let lower = LowerName::new(&apex);
        if let Some(first) = places.get(&lower) {
            cx.error(
                file,
                raw.name.span(),
                format!("{key}.name"),
                format!("zone `{apex}` is defined twice"),
            )
            .hint(format!("the first definition is at {first}"));
            continue;
        }
        places.insert(lower.clone(), cx.place(file, raw.name.span()));
        let child = |label: &str| {
            Name::from_ascii(label)
                .and_then(|l| l.append_domain(&apex))
                .ok()
        };
        let ns: Vec<Name> = raw
            .ns
            .iter()
            .enumerate()
            .filter_map(|(j, n)| {
                report(
                    cx,
                    file,
                    n,
                    &format!("{key}.ns[{j}]"),
                    values::name(n.get_ref(), false),
                )
            })
            .collect();
        let synthesized_ns = raw.ns.is_empty();
        let ns = if synthesized_ns {
            child("ns").into_iter().collect()
        } else {
            ns
        };
        let hostmaster = match &raw.hostmaster {
            Some(h) => report(
                cx,
                file,
                h,
                &format!("{key}.hostmaster"),
                values::name(&h.get_ref().replacen('@', ".", 1), false),
            ),
            None => child("hostmaster"),
        };
        let minimum = match &raw.negative_ttl {
            Some(v) => report(
                cx,
                file,
                v,
                &format!("{key}.negative_ttl"),
                values::int(*v.get_ref(), 0, 86_400),
            )
            .unwrap_or(60),
            None => 60,
        };
        let (Some(mname), Some(rname)) = (ns.first().cloned(), hostmaster) else {
            continue;
        };
        let soa = SOA::new(mname, rname, serial, 3600, 600, 604_800, minimum);
        zones.push(Zone {
            id: ZoneId(zones.len() as u16),
            name: lower,
            soa: Record::from_rdata(apex, ttl, RData::SOA(soa)),
            delegated: Vec::new(),
            ns,
            synthesized_ns,
            ttl,
        });
    }
    zones
}

/// The zone a name must fall in, or an error listing the zones.
pub(super) fn require_zone<'z>(
    cx: &mut Ctx<'_>,
    zones: &'z [Zone],
    name: &Name,
    file: FileId,
    span: std::ops::Range<usize>,
    key: &str,
) -> Option<&'z Zone> {
    let z = zone_of(zones, &LowerName::new(name));
    if z.is_none() {
        let names = zones.iter().map(|z| z.name.to_string()).collect::<Vec<_>>();
        cx.error(
            file,
            span,
            key,
            format!(
                "`{}` is outside every internal zone",
                name.to_ascii().trim_end_matches('.')
            ),
        )
        .hint(format!(
            "internal zones are: {}; add a [[zone]] or fix the name",
            list(names.iter().map(|s| s.trim_end_matches('.')))
        ));
    }
    z
}

/// Resolves a list of network names; `tunnel` and networks that see no internal names are
/// errors because they have no DNS data.
pub(super) fn dns_networks(
    cx: &mut Ctx<'_>,
    networks: &Networks,
    file: FileId,
    names: &[Spanned<String>],
    key: &str,
) -> NetworkSet {
    let mut set = NetworkSet::EMPTY;
    for (j, n) in names.iter().enumerate() {
        let k = format!("{key}[{j}]");
        match networks.by_name(n.get_ref()) {
            Some(net) if net.kind == NetworkKind::Tunnel => {
                cx.error(file, n.span(), k, "the `tunnel` network has no DNS view")
                    .hint("internet users resolve public DNS; list only local networks here");
            }
            Some(net) if !net.internal => {
                cx.error(
                    file,
                    n.span(),
                    k,
                    format!(
                        "network `{}` does not see internal names (`internal = false`)",
                        net.name
                    ),
                )
                .hint("remove it here, or set `internal = true` on the network");
            }
            Some(net) => set.insert(net.id),
            None => unknown_network(cx, networks, file, n, k),
        }
    }
    set
}

/// Reports a name that is no network, where the built-in `tunnel` would have been one.
pub(super) fn unknown_network(
    cx: &mut Ctx<'_>,
    networks: &Networks,
    file: FileId,
    n: &Spanned<String>,
    key: String,
) {
    report_unknown_network(cx, networks, (file, n, key), true);
}

/// Reports a name that is no network; the tunnel is among the choices named when `tunnel`.
pub(super) fn report_unknown_network(
    cx: &mut Ctx<'_>,
    networks: &Networks,
    (file, n, key): (FileId, &Spanned<String>, String),
    tunnel: bool,
) {
    let names = list(
        networks
            .iter()
            .filter(|n| n.kind == NetworkKind::Local)
            .map(|n| &*n.name),
    );
    let (expected, also) = if tunnel {
        (
            "the name of a [[network]], or `tunnel`",
            " (and the built-in `tunnel`)",
        )
    } else {
        ("the name of a [[network]]", "")
    };
    cx.error(
        file,
        n.span(),
        key,
        format!("no network named `{}`", n.get_ref()),
    )
    .expected(expected)
    .hint(format!("networks are: {names}{also}"));
}

pub(super) fn records(
    cx: &mut Ctx<'_>,
    files: &[(FileId, RawFile)],
    networks: &Networks,
    zones: &[Zone],
    views: &mut ViewsBuilder,
    default_ttl: u32,
) {
    let internal = {
        let mut s = NetworkSet::EMPTY;
        networks
            .iter()
            .filter(|n| n.kind == NetworkKind::Local && n.internal)
            .for_each(|n| s.insert(n.id));
        s
    };
    for (file, i, raw) in items(files, |f| &f.record) {
        let key = format!("record[{i}]");
        let Some(rtype) = report(
            cx,
            file,
            &raw.rtype,
            &format!("{key}.type"),
            values::record_type(raw.rtype.get_ref()),
        ) else {
            continue;
        };
        let Some(name) = report(
            cx,
            file,
            &raw.name,
            &format!("{key}.name"),
            values::name(raw.name.get_ref(), true),
        ) else {
            continue;
        };
        let Some(zone) = require_zone(
            cx,
            zones,
            &name,
            file,
            raw.name.span(),
            &format!("{key}.name"),
        ) else {
            continue;
        };
        let at_apex = LowerName::new(&name) == zone.name;
        if matches!(
            rtype,
            hickory_proto::rr::RecordType::SOA | hickory_proto::rr::RecordType::NS
        ) && !at_apex
        {
            cx.error(file, raw.rtype.span(), format!("{key}.type"), format!("{rtype} records belong at a zone apex (`{}`)", zone.name))
                .hint("delegating part of an internal zone is not supported; use [[forward]] for that domain");
            continue;
        }
        let Some(data) = report(
            cx,
            file,
            &raw.value,
            &format!("{key}.value"),
            values::rdata(rtype, raw.value.get_ref()),
        ) else {
            continue;
        };
        let ttl = match &raw.ttl {
            Some(t) => report(
                cx,
                file,
                t,
                &format!("{key}.ttl"),
                values::int(*t.get_ref(), 0, MAX_TTL),
            )
            .unwrap_or(default_ttl),
            None => default_ttl,
        };
        let set = match &raw.networks {
            Some(names) => dns_networks(cx, networks, file, names, &format!("{key}.networks")),
            None => internal,
        };
        let origin = Origin::Explicit(cx.place(file, raw.name.span()));
        let record = Record::from_rdata(name.clone(), ttl, data);
        for net in set.iter() {
            if let Err(other) = views.add(net, record.clone(), origin.clone()) {
                cx.error(file, raw.name.span(), key.clone(), format!(
                    "{rtype} record for `{}` conflicts with {other} in network `{}`",
                    name.to_ascii().trim_end_matches('.'),
                    networks.get(net).name
                ))
                .hint("a CNAME stands alone at its name, and a service's host gets its addresses from the service");
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::settings::{BlockAction, BlocklistSource};
    use crate::testing::{diagnostics, loaded, snapshot};

    const LAB: &str = r#"
[[network]]
name = "lab"
cidrs = ["10.0.0.0/16"]
addresses = ["10.0.0.2"]
[[network]]
name = "guest"
cidrs = ["10.1.0.0/16"]
internal = false
[[zone]]
name = "lab.test"
"#;

    fn check(cases: &[(&str, &[&str])]) {
        for (toml, expected) in cases {
            assert_eq!(
                diagnostics(&format!("{toml}\n{LAB}"), &[]),
                *expected,
                "{toml}"
            );
        }
    }

    #[test]
    fn dns_settings() {
        check(&[
            (
                "[dns]\ncache_size = 1\ndefault_ttl = 0\nserve_stale = \"0s\"\nmax_in_flight = 1\nmax_in_flight_per_client = 1000000",
                &[],
            ),
            (
                "[dns]\ncache_size = 0",
                &["error `dns.cache_size`: 0 is out of range: between 1 and 100000000"],
            ),
            (
                "[dns]\ndefault_ttl = 2147483648",
                &["error `dns.default_ttl`: 2147483648 is out of range: between 0 and 2147483647"],
            ),
            ("[dns]\nserve_stale = \"1 day\"", &[]),
            (
                "[dns]\nserve_stale = \"a while\"",
                &["error `dns.serve_stale`: `a while` is not a duration (expected number at 0)"],
            ),
            (
                "[dns]\nmax_in_flight_per_client = 0",
                &["error `dns.max_in_flight_per_client`: 0 is out of range: between 1 and 1000000"],
            ),
            (
                "[dns]\nupstreams = [\"udp://1.1.1.1\", \"dns.google\"]",
                &["error `dns.upstreams[1]`: `dns.google` has no scheme"],
            ),
            (
                "[dns]\nrebind_allow = [\"plex.direct\", \"bad..name\"]",
                &["error `dns.rebind_allow[1]`: `bad..name` has an invalid label ``"],
            ),
            (
                "[dns]\nupstream_ca_file = \"ca.pem\"",
                &["error `dns.upstream_ca_file`: cannot read `ca.pem`: no such file"],
            ),
        ]);
        let s = snapshot(LAB);
        let d = &s.dns;
        assert_eq!(
            (
                d.cache_size.get(),
                d.default_ttl,
                d.serve_stale.as_secs(),
                d.max_in_flight.get(),
                d.max_in_flight_per_client.get()
            ),
            (10_000, 300, 86_400, 1024, 128)
        );
    }

    #[test]
    fn forwarders() {
        let fwd = |domain: &str, ups: &str| {
            format!("[[forward]]\ndomain = \"{domain}\"\nupstreams = [{ups}]\n")
        };
        check(&[
            (&fwd("corp.example", "\"udp://10.9.0.53\""), &[]),
            (
                &fwd("corp.example", ""),
                &["error `forward[0].upstreams`: forwarder for `corp.example.` has no upstreams"],
            ),
            (
                &format!(
                    "{}{}",
                    fwd("corp.example", "\"udp://10.9.0.53\""),
                    fwd("Corp.Example.", "\"udp://10.9.0.54\"")
                ),
                &["error `forward[1].domain`: `corp.example.` is forwarded twice"],
            ),
            (
                &fwd("corp..example", "\"udp://10.9.0.53\""),
                &["error `forward[0].domain`: `corp..example` has an invalid label ``"],
            ),
            // Delegations out of an internal zone.
            (&fwd("k8s.lab.test", "\"udp://10.0.0.53\""), &[]),
            (
                &fwd("lab.test", "\"udp://10.0.0.53\""),
                &[
                    "error `forward[0].domain`: `lab.test` is an internal zone: its names are answered from labgate's data, never forwarded",
                ],
            ),
            (
                &format!(
                    "{}[[record]]\nname = \"x.k8s.lab.test\"\ntype = \"TXT\"\nvalue = \"mine\"\n",
                    fwd("k8s.lab.test", "\"udp://10.0.0.53\"")
                ),
                &[
                    "error `forward[0].domain`: `k8s.lab.test` is forwarded, but labgate has names under it (`x.k8s.lab.test`, from a [[record]] or a service)",
                ],
            ),
        ]);
        // Longest domain first, so the most specific forwarder wins.
        let s = snapshot(&format!(
            "{}{}{LAB}",
            fwd("example", "\"udp://10.9.0.1\""),
            fwd("a.corp.example", "\"udp://10.9.0.2\"")
        ));
        let order: Vec<String> = s
            .dns
            .forwarders
            .iter()
            .map(|f| f.domain.to_string())
            .collect();
        assert_eq!(order, ["a.corp.example.", "example."]);
        let s = snapshot(&format!(
            "{}{LAB}",
            fwd("k8s.lab.test", "\"udp://10.0.0.53\"")
        ));
        assert_eq!(s.zones[0].delegated.len(), 1);
    }

    #[test]
    fn blocklists() {
        let list = |fields: &str| format!("[[blocklist]]\nname = \"ads\"\n{fields}\n");
        check(&[
            (&list("url = \"https://lists.example/ads.txt\""), &[]),
            (
                &list("url = \"ftp://lists.example/ads.txt\""),
                &["error `blocklist[0].url`: not an http(s) URL"],
            ),
            (
                &list("url = \"https://lists.example/ads.txt\"\nfile = \"ads.txt\""),
                &["error `blocklist[0]`: blocklist `ads` needs exactly one of `file` and `url`"],
            ),
            (
                &list(""),
                &["error `blocklist[0]`: blocklist `ads` needs exactly one of `file` and `url`"],
            ),
            (
                &list("url = \"https://lists.example/ads.txt\"\nformat = \"csv\""),
                &["error `blocklist[0].format`: unknown value `csv`"],
            ),
            (
                &list("url = \"https://lists.example/ads.txt\"\naction = \"refuse\""),
                &["error `blocklist[0].action`: unknown value `refuse`"],
            ),
            (
                &list("url = \"https://lists.example/ads.txt\"\nrefresh = \"often\""),
                &["error `blocklist[0].refresh`: `often` is not a duration (expected number at 0)"],
            ),
            (
                &list("url = \"https://lists.example/ads.txt\"\nexcept = [\"ok..example\"]"),
                &["error `blocklist[0].except[0]`: `ok..example` has an invalid label ``"],
            ),
            (
                &format!(
                    "{}{}",
                    list("url = \"https://a.example/l\""),
                    list("url = \"https://b.example/l\"")
                ),
                &["error `blocklist[1].name`: blocklist `ads` is defined twice"],
            ),
        ]);
        let toml = format!(
            "{}{}",
            list(
                "file = \"ads.txt\"\nformat = \"hosts\"\naction = \"null\"\nrefresh = \"1h\"\nexcept = [\"ok.ads.example\"]"
            ),
            LAB
        );
        let s = crate::compile(&loaded(&toml, &[("ads.txt", b"0.0.0.0 ads.example\n")]), 1)
            .expect("compiles");
        let l = &s.dns.blocklists[0];
        assert_eq!(l.source, BlocklistSource::File("ads.txt".into()));
        assert_eq!(
            (l.action, l.refresh.as_secs()),
            (BlockAction::NullAddress, 3600)
        );
        let blocks: Vec<bool> = [
            "ads.example",
            "x.ads.example",
            "ok.ads.example",
            "y.ok.ads.example",
            "example",
        ]
        .iter()
        .map(|n| l.blocks(&l.names, n))
        .collect();
        assert_eq!(blocks, [true, true, false, false, false]);
        let s = snapshot(&format!(
            "{}{LAB}",
            list("url = \"https://lists.example/ads.txt\"")
        ));
        let l = &s.dns.blocklists[0];
        assert_eq!(
            (l.action, l.refresh.as_secs(), l.names.is_empty()),
            (BlockAction::NxDomain, 86_400, true)
        );
    }

    #[test]
    fn zones() {
        check(&[
            (
                "[[zone]]\nname = \"home.test\"\nns = [\"ns1.home.test\"]\nhostmaster = \"admin@home.test\"\nnegative_ttl = 86400",
                &[],
            ),
            (
                "[[zone]]\nname = \"Lab.Test.\"",
                &["error `zone[1].name`: zone `lab.test.` is defined twice"],
            ),
            (
                "[[zone]]\nname = \"home..test\"",
                &["error `zone[0].name`: `home..test` has an invalid label ``"],
            ),
            (
                "[[zone]]\nname = \"home.test\"\nnegative_ttl = 86401",
                &["error `zone[0].negative_ttl`: 86401 is out of range: between 0 and 86400"],
            ),
            (
                "[[zone]]\nname = \"home.test\"\nhostmaster = \"admin@@home.test\"",
                &["error `zone[0].hostmaster`: `admin.@home.test` has an invalid label `@home`"],
            ),
        ]);
        let s = snapshot(&format!(
            "[[zone]]\nname = \"home.test\"\nns = [\"ns1.home.test\"]\nhostmaster = \"admin@home.test\"\nnegative_ttl = 30\n{LAB}"
        ));
        let soa = |i: usize| s.zones[i].soa.data.to_string();
        assert!(
            soa(0).starts_with("ns1.home.test. admin.home.test. "),
            "{}",
            soa(0)
        );
        assert!(soa(0).ends_with(" 3600 600 604800 30"), "{}", soa(0));
        assert!(
            soa(1).starts_with("ns.lab.test. hostmaster.lab.test. "),
            "{}",
            soa(1)
        );
        assert!(soa(1).ends_with(" 60"), "{}", soa(1));
        assert_eq!(
            (s.zones[0].synthesized_ns, s.zones[1].synthesized_ns),
            (false, true)
        );
    }

    #[test]
    fn records() {
        let record = |name: &str, rtype: &str, value: &str, more: &str| {
            format!(
                "[[record]]\nname = \"{name}\"\ntype = \"{rtype}\"\nvalue = \"{value}\"\n{more}\n"
            )
        };
        check(&[
            (
                &record(
                    "nas.lab.test",
                    "A",
                    "10.0.0.9",
                    "ttl = 60\nnetworks = [\"lab\"]",
                ),
                &[],
            ),
            (
                &record("nas.lab.test", "SPF", "x", ""),
                &["error `record[0].type`: unsupported record type `SPF`"],
            ),
            (
                &record("nas.other.test", "A", "10.0.0.9", ""),
                &["error `record[0].name`: `nas.other.test` is outside every internal zone"],
            ),
            (&record("*.dev.lab.test", "A", "10.0.0.9", ""), &[]),
            (
                &record("nas.lab.test", "A", "10.0.0.9", "ttl = -1"),
                &["error `record[0].ttl`: -1 is out of range: between 0 and 2147483647"],
            ),
            (
                &record("sub.lab.test", "NS", "ns.elsewhere.test", ""),
                &["error `record[0].type`: NS records belong at a zone apex (`lab.test.`)"],
            ),
            (&record("lab.test", "NS", "ns.elsewhere.test", ""), &[]),
            (
                &record("nas.lab.test", "A", "10.0.0.9", "networks = [\"tunnel\"]"),
                &["error `record[0].networks[0]`: the `tunnel` network has no DNS view"],
            ),
            (
                &record("nas.lab.test", "A", "10.0.0.9", "networks = [\"guest\"]"),
                &[
                    "error `record[0].networks[0]`: network `guest` does not see internal names (`internal = false`)",
                ],
            ),
            (
                &record("nas.lab.test", "A", "10.0.0.9", "networks = [\"wifi\"]"),
                &["error `record[0].networks[0]`: no network named `wifi`"],
            ),
        ]);
        // Without `networks`, every network that sees internal names gets the record.
        let s = snapshot(&format!(
            "{}{LAB}",
            record("nas.lab.test", "A", "10.0.0.9", "")
        ));
        let name = hickory_proto::rr::LowerName::from(
            hickory_proto::rr::Name::from_ascii("nas.lab.test.").expect("name"),
        );
        let has: Vec<bool> = s
            .views
            .iter()
            .map(|v| v.nodes.contains_key(&name))
            .collect();
        assert_eq!(has, [true, false, false], "lab, guest, tunnel");
    }
}
