//! Networks, the tunnel and listening addresses.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;

use ipnet::IpNet;
use toml::Spanned;

use super::values::socket;
use super::{Ctx, Explain, choose, items, list, single};
use crate::network::{LogLevel, MAX_NETWORKS, Network, NetworkId, NetworkKind, Networks};
use crate::raw::RawFile;
use crate::settings::{Blocklist, Listen};
use crate::source::FileId;

/// The reserved name of the Cloudflare Tunnel network.
pub(crate) const TUNNEL: &str = "tunnel";

pub(super) fn compile(
    cx: &mut Ctx<'_>,
    files: &[(FileId, RawFile)],
    blocklists: &[Blocklist],
) -> Networks {
    let mut list_: Vec<Network> = Vec::new();
    let mut seen_names: HashMap<String, String> = HashMap::new();
    let mut seen_cidrs: HashMap<IpNet, (String, String)> = HashMap::new();
    for (file, i, raw) in items(files, |f| &f.network) {
        let key = format!("network[{i}]");
        let name = raw.name.get_ref();
        if !valid_network_name(name) {
            cx.error(
                file,
                raw.name.span(),
                format!("{key}.name"),
                format!("`{name}` is not a valid network name"),
            )
            .expected("lower-case letters, digits, `-` and `_`, e.g. `clients`");
            continue;
        }
        if name == TUNNEL {
            cx.error(
                file,
                raw.name.span(),
                format!("{key}.name"),
                "`tunnel` is the built-in network of the Cloudflare Tunnel",
            )
            .hint("pick another name; configure the tunnel under `[tunnel]`");
            continue;
        }
        let here = cx.place(file, raw.name.span());
        if let Some(first) = seen_names.insert(name.clone(), here) {
            cx.error(
                file,
                raw.name.span(),
                format!("{key}.name"),
                format!("network `{name}` is defined twice"),
            )
            .hint(format!(
                "the first definition is at {first}; rename or merge them"
            ));
            continue;
        }
        if raw.cidrs.is_empty() {
            cx.error(
                file,
                raw.name.span(),
                format!("{key}.cidrs"),
                format!("network `{name}` has no CIDRs"),
            )
            .expected("at least one range, e.g. `cidrs = [\"10.0.30.0/24\"]`");
        }
        let mut cidrs = Vec::new();
        for (j, c) in raw.cidrs.iter().enumerate() {
            let ckey = format!("{key}.cidrs[{j}]");
            let Some(net) = cidr(cx, file, c, &ckey) else {
                continue;
            };
            let here = (name.clone(), cx.place(file, c.span()));
            if let Some((other, at)) = seen_cidrs.get(&net) {
                cx.error(
                    file,
                    c.span(),
                    ckey,
                    format!("{net} is already a CIDR of network `{other}`"),
                )
                .hint(format!("a range belongs to one network; see {at}"));
            } else {
                seen_cidrs.insert(net, here);
                cidrs.push(net);
            }
        }
        let mut addresses = Vec::new();
        for (j, a) in raw.addresses.iter().enumerate() {
            let akey = format!("{key}.addresses[{j}]");
            match a.get_ref().parse::<IpAddr>() {
                Ok(ip) => {
                    if !cidrs.is_empty() && !cidrs.iter().any(|c| c.contains(&ip)) {
                        cx.warn(file, a.span(), akey, format!("{ip} is outside network `{name}`'s CIDRs"))
                            .hint("clients there may not reach it; check that this is labgate's address on that network");
                    }
                    addresses.push(ip);
                }
                Err(_) => {
                    cx.error(
                        file,
                        a.span(),
                        akey,
                        format!("`{}` is not an IP address", a.get_ref()),
                    )
                    .expected("labgate's own address on this network, e.g. `10.0.30.2`");
                }
            }
        }
        let mut lists = Vec::new();
        for (j, b) in raw.blocklists.iter().enumerate() {
            match blocklists.iter().position(|l| &*l.name == b.get_ref()) {
                Some(idx) => lists.push(idx),
                None => {
                    cx.error(
                        file,
                        b.span(),
                        format!("{key}.blocklists[{j}]"),
                        format!("no blocklist named `{}`", b.get_ref()),
                    )
                    .hint(format!(
                        "blocklists are: {}",
                        list(blocklists.iter().map(|l| &*l.name))
                    ));
                }
            }
        }
        if list_.len() + 1 >= MAX_NETWORKS {
            cx.error(
                file,
                raw.name.span(),
                key,
                format!("more than {} networks", MAX_NETWORKS - 1),
            )
            .hint("merge networks; each may have many CIDRs");
            continue;
        }
        list_.push(Network {
            id: NetworkId(list_.len() as u8),
            name: Arc::from(name.as_str()),
            kind: NetworkKind::Local,
            cidrs,
            addresses,
            internal: raw.internal.unwrap_or(true),
            recursion: raw.recursion.unwrap_or(true),
            blocklists: lists,
            query_log: choose(
                cx,
                file,
                raw.query_log.as_ref(),
                &format!("{key}.query_log"),
                &[
                    ("full", LogLevel::Full),
                    ("anonymous", LogLevel::Anonymous),
                    ("off", LogLevel::Off),
                ],
            )
            .unwrap_or_default(),
        });
    }
    let tunnel = NetworkId(list_.len() as u8);
    list_.push(Network {
        id: tunnel,
        name: Arc::from(TUNNEL),
        kind: NetworkKind::Tunnel,
        cidrs: Vec::new(),
        addresses: Vec::new(),
        internal: false,
        recursion: false,
        blocklists: Vec::new(),
        query_log: LogLevel::Off,
    });
    let connectors = connectors(cx, files);
    Networks::new(list_, tunnel, connectors)
}

fn valid_network_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
}

/// A CIDR, or a bare address as a host route; host bits must be zero.
fn cidr(cx: &mut Ctx<'_>, file: FileId, c: &Spanned<String>, key: &str) -> Option<IpNet> {
    let s = c.get_ref();
    let net = match s.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => match s.parse::<IpAddr>() {
            Ok(ip) => IpNet::from(ip),
            Err(_) => {
                cx.error(file, c.span(), key, format!("`{s}` is not a CIDR"))
                    .expected("an address range like `10.0.30.0/24` or `fd00:30::/64`");
                return None;
            }
        },
    };
    if net.trunc() != net {
        cx.error(file, c.span(), key, format!("`{s}` has host bits set"))
            .hint(format!("write `{}`", net.trunc()));
        return None;
    }
    Some(net)
}

fn connectors(cx: &mut Ctx<'_>, files: &[(FileId, RawFile)]) -> Vec<IpNet> {
    let loopback = || {
        vec![
            IpNet::from(IpAddr::from([127, 0, 0, 1])),
            IpNet::from(IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
        ]
    };
    let Some((file, t)) = single(cx, files, "tunnel", |f| f.tunnel.as_ref()) else {
        return loopback();
    };
    let Some(list) = &t.connectors else {
        return loopback();
    };
    list.iter()
        .enumerate()
        .filter_map(|(j, c)| cidr(cx, file, c, &format!("tunnel.connectors[{j}]")))
        .collect()
}

/// `[listen]` with its defaults; `default_cert`: whether `tls.default_name` is set (clients
/// of DNS over TLS that send no name need it).
pub(super) fn listen(cx: &mut Ctx<'_>, files: &[(FileId, RawFile)], default_cert: bool) -> Listen {
    let all = |port: u16| {
        vec![
            SocketAddr::from(([0, 0, 0, 0], port)),
            SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)),
        ]
    };
    let mut l = Listen {
        dns: all(53),
        dns_tls: Vec::new(),
        https: all(443),
        http: all(80),
        tunnel: Vec::new(),
        tunnel_https: Vec::new(),
        admin: SocketAddr::from(([127, 0, 0, 1], 9153)),
    };
    let Some((file, raw)) = single(cx, files, "listen", |f| f.listen.as_ref()) else {
        return l;
    };
    // Every TCP listener (DNS listens on TCP too), with its key and, if written, its span.
    let mut tcp: Vec<(SocketAddr, String, Option<Range<usize>>)> = Vec::new();
    let mut addrs =
        |v: &Option<Vec<Spanned<String>>>, key: &str, port: u16, out: &mut Vec<SocketAddr>| match v
        {
            Some(v) => {
                out.clear();
                let mut wildcards_v6 = Vec::new();
                for (j, a) in v.iter().enumerate() {
                    let key = format!("listen.{key}[{j}]");
                    if let Some(s) = addr(cx, file, a, &key, port) {
                        out.push(s);
                        if s.ip() == IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED) {
                            wildcards_v6.push((s, key.clone(), a.span()));
                        }
                        tcp.push((s, key, Some(a.span())));
                    }
                }
                // `[::]` is v6-only here, where many servers make it dual-stack.
                for (s, key, span) in wildcards_v6 {
                    if !out.iter().any(|o| o.is_ipv4() && o.port() == s.port()) {
                        let v4 = SocketAddr::from(([0, 0, 0, 0], s.port()));
                        cx.warn(
                            file,
                            span,
                            key,
                            format!("{s} listens for IPv6 clients only"),
                        )
                        .hint(format!("add \"{v4}\" for IPv4 clients"));
                    }
                }
            }
            None => tcp.extend(out.iter().map(|&s| (s, format!("listen.{key}"), None))),
        };
    addrs(&raw.dns, "dns", 53, &mut l.dns);
    addrs(&raw.dns_tls, "dns_tls", 853, &mut l.dns_tls);
    addrs(&raw.https, "https", 443, &mut l.https);
    addrs(&raw.http, "http", 80, &mut l.http);
    addrs(&raw.tunnel, "tunnel", 8080, &mut l.tunnel);
    addrs(&raw.tunnel_https, "tunnel_https", 8443, &mut l.tunnel_https);
    if let Some(first) = raw.dns_tls.as_ref().and_then(|v| v.first())
        && !default_cert
    {
        cx.warn(
            file,
            first.span(),
            "listen.dns_tls",
            "clients that send no name (Android's automatic Private DNS) get a handshake alert",
        )
        .hint("set `tls.default_name` to the name DNS-over-TLS clients are given");
    }
    match &raw.admin {
        Some(a) => {
            if let Some(s) = addr(cx, file, a, "listen.admin", 9153) {
                l.admin = s;
                tcp.push((s, "listen.admin".into(), Some(a.span())));
            }
        }
        None => tcp.push((l.admin, "listen.admin".into(), None)),
    }
    for (i, (a, key, span)) in tcp.iter().enumerate() {
        for (b, other, other_span) in &tcp[i + 1..] {
            if !one_port(*a, *b) {
                continue;
            }
            // Reported at the written one of the two (a default has no place in the file).
            let (at, at_key, with, with_key) = match (other_span, span) {
                (Some(s), _) => (s, other, a, key),
                (None, Some(s)) => (s, key, b, other),
                (None, None) => continue,
            };
            cx.error(
                file,
                at.clone(),
                at_key.as_str(),
                format!("takes the port of {with_key} ({with}): only one of them could listen"),
            )
            .expected("another port, or addresses that do not overlap");
        }
    }
    l
}

/// Whether two TCP listeners want one port: the same port (not 0) and the same address, or a
/// wildcard of the same family beside any address.
fn one_port(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.port() != 0
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn addr(
    cx: &mut Ctx<'_>,
    file: FileId,
    a: &Spanned<String>,
    key: &str,
    port: u16,
) -> Option<SocketAddr> {
    socket(a.get_ref(), port)
        .map_err(|(m, e)| {
            cx.error(file, a.span(), key, m).expected(e);
        })
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{diagnostics, snapshot};

    fn network(body: &str) -> String {
        format!("[[network]]\n{body}\n")
    }

    #[test]
    fn networks() {
        let lab = "name = \"lab\"\ncidrs = [\"10.0.0.0/16\"]";
        let cases: &[(&str, &[&str])] = &[
            (&network(lab), &[]),
            (
                &network(
                    "name = \"lab\"\ncidrs = [\"10.0.0.1\", \"fd00::/64\"]\naddresses = [\"fd00::2\"]",
                ),
                &[],
            ),
            (
                &network("name = \"Lab\"\ncidrs = [\"10.0.0.0/16\"]"),
                &["error `network[0].name`: `Lab` is not a valid network name"],
            ),
            (
                &network("name = \"\"\ncidrs = [\"10.0.0.0/16\"]"),
                &["error `network[0].name`: `` is not a valid network name"],
            ),
            (
                &network("name = \"tunnel\"\ncidrs = [\"10.0.0.0/16\"]"),
                &[
                    "error `network[0].name`: `tunnel` is the built-in network of the Cloudflare Tunnel",
                ],
            ),
            (
                &format!(
                    "{}{}",
                    network(lab),
                    network("name = \"lab\"\ncidrs = [\"10.1.0.0/16\"]")
                ),
                &["error `network[1].name`: network `lab` is defined twice"],
            ),
            (
                &network("name = \"lab\"\ncidrs = []"),
                &["error `network[0].cidrs`: network `lab` has no CIDRs"],
            ),
            (
                &network("name = \"lab\"\ncidrs = [\"10.0.0.0/33\"]"),
                &["error `network[0].cidrs[0]`: `10.0.0.0/33` is not a CIDR"],
            ),
            (
                &network("name = \"lab\"\ncidrs = [\"10.0.0.5/24\"]"),
                &["error `network[0].cidrs[0]`: `10.0.0.5/24` has host bits set"],
            ),
            (
                &format!(
                    "{}{}",
                    network(lab),
                    network("name = \"iot\"\ncidrs = [\"10.0.0.0/16\"]")
                ),
                &["error `network[1].cidrs[0]`: 10.0.0.0/16 is already a CIDR of network `lab`"],
            ),
            (
                &network("name = \"lab\"\ncidrs = [\"10.0.0.0/16\"]\naddresses = [\"10.0.0\"]"),
                &["error `network[0].addresses[0]`: `10.0.0` is not an IP address"],
            ),
            (
                &network("name = \"lab\"\ncidrs = [\"10.0.0.0/16\"]\naddresses = [\"10.9.0.2\"]"),
                &["warning `network[0].addresses[0]`: 10.9.0.2 is outside network `lab`'s CIDRs"],
            ),
            (
                &network("name = \"lab\"\ncidrs = [\"10.0.0.0/16\"]\nblocklists = [\"ads\"]"),
                &["error `network[0].blocklists[0]`: no blocklist named `ads`"],
            ),
            (
                "[tunnel]\nconnectors = [\"172.17.0.0/16\", \"10.0.0.5/8\"]\n",
                &["error `tunnel.connectors[1]`: `10.0.0.5/8` has host bits set"],
            ),
        ];
        for (toml, expected) in cases {
            assert_eq!(diagnostics(toml, &[]), *expected, "{toml}");
        }
        // The 64th network would take the tunnel's place.
        let many: String = (0..MAX_NETWORKS)
            .map(|i| network(&format!("name = \"n{i}\"\ncidrs = [\"10.{i}.0.0/16\"]")))
            .collect();
        assert_eq!(
            diagnostics(&many, &[]),
            ["error `network[63]`: more than 63 networks"]
        );
    }

    /// Defaults of a network, the tunnel's, and the connectors.
    #[test]
    fn network_defaults() {
        let s = snapshot(
            "[[network]]\nname = \"lab\"\ncidrs = [\"10.0.0.0/16\"]\n[[network]]\nname = \"guest\"\ncidrs = [\"10.1.0.0/16\"]\ninternal = false\nrecursion = false\n",
        );
        let got: Vec<(&str, bool, bool)> = s
            .networks
            .iter()
            .map(|n| (&*n.name, n.internal, n.recursion))
            .collect();
        assert_eq!(
            got,
            [
                ("lab", true, true),
                ("guest", false, false),
                ("tunnel", false, false)
            ]
        );
        assert_eq!(s.networks.tunnel().kind, NetworkKind::Tunnel);
    }

    #[test]
    fn listeners() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("https = [\"0.0.0.0:8443\", \"[::]:8443\"]", &[]),
            (
                "https = [\"[::]:8443\"]",
                &["warning `listen.https[0]`: [::]:8443 listens for IPv6 clients only"],
            ),
            (
                "http = [\"10.0.0.2:53\"]",
                &[
                    "error `listen.http[0]`: takes the port of listen.dns (0.0.0.0:53): only one of them could listen",
                ],
            ),
            (
                "admin = \"127.0.0.1:443\"",
                &[
                    "error `listen.admin`: takes the port of listen.https (0.0.0.0:443): only one of them could listen",
                ],
            ),
            (
                "https = [\"10.0.0.2:8443\", \"10.0.0.3:8443\"]\nhttp = [\"10.0.0.2:8080\"]",
                &[],
            ),
            ("https = [\"127.0.0.1:0\"]\nhttp = [\"127.0.0.1:0\"]", &[]),
            (
                "dns_tls = [\"0.0.0.0:853\"]",
                &[
                    "warning `listen.dns_tls`: clients that send no name (Android's automatic Private DNS) get a handshake alert",
                ],
            ),
            ("dns = [\"10.0.0.2\"]", &[]),
            (
                "dns = [\"10.0.0.2:x\"]",
                &["error `listen.dns[0]`: `10.0.0.2:x` is not an IP address with a port"],
            ),
        ];
        for (listen, expected) in cases {
            let toml = format!(
                "[listen]\n{listen}\n[[network]]\nname = \"lab\"\ncidrs = [\"10.0.0.0/16\"]\n"
            );
            assert_eq!(diagnostics(&toml, &[]), *expected, "{listen}");
        }
        let s = snapshot(
            "[listen]\ndns = [\"10.0.0.2\"]\ndns_tls = [\"10.0.0.2\"]\n[tls]\ndefault_name = \"dns.lab.test\"\n",
        );
        assert_eq!(s.listen.dns, ["10.0.0.2:53".parse().expect("addr")]);
        assert_eq!(s.listen.dns_tls, ["10.0.0.2:853".parse().expect("addr")]);
        assert_eq!(s.listen.admin, "127.0.0.1:9153".parse().expect("addr"));
    }

    #[test]
    fn one_port_per_listener() {
        let cases: &[(&str, &str, bool)] = &[
            ("10.0.0.2:443", "10.0.0.2:443", true),
            ("10.0.0.2:443", "10.0.0.3:443", false),
            ("0.0.0.0:443", "10.0.0.3:443", true),
            ("10.0.0.3:443", "0.0.0.0:443", true),
            ("0.0.0.0:443", "[::]:443", false),
            ("[::]:443", "[fd00::2]:443", true),
            ("10.0.0.2:443", "10.0.0.2:8443", false),
            ("127.0.0.1:0", "127.0.0.1:0", false),
        ];
        for (a, b, expected) in cases {
            let got = one_port(a.parse().expect("addr"), b.parse().expect("addr"));
            assert_eq!(got, *expected, "{a} {b}");
        }
    }
}
