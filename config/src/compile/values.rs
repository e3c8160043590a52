//! Parsers for leaf values. Each returns `Err((message, expected))` for the caller to report.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::rr::rdata::{CNAME, MX, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, RecordType};

use crate::settings::{Protocol, Upstream};

/// A parse failure: what is wrong, and what was expected.
pub(crate) type Bad = (String, &'static str);

/// A domain name, lower-case and fully qualified. `_` is allowed (SRV, ACME labels), and a
/// leading `*` label when `wildcard` is set.
pub(crate) fn name(s: &str, wildcard: bool) -> Result<Name, Bad> {
    const EXPECTED: &str = "a domain name like `nas.lab.example.com`";
    let trimmed = s.strip_suffix('.').unwrap_or(s);
    if trimmed.is_empty() {
        return Err(("empty name".into(), EXPECTED));
    }
    for (i, label) in trimmed.split('.').enumerate() {
        let ok_chars = label
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
        let ok = (label == "*" && i == 0 && wildcard)
            || (!label.is_empty() && label.len() <= 63 && ok_chars);
        if !ok {
            return Err((format!("`{s}` has an invalid label `{label}`"), EXPECTED));
        }
    }
    let mut n = Name::from_ascii(trimmed).map_err(|e| (format!("`{s}`: {e}"), EXPECTED))?;
    n.set_fqdn(true);
    Ok(n.to_lowercase())
}

/// A host name for a service: a name without wildcard, written without the trailing dot.
pub(crate) fn host(s: &str) -> Result<(Name, String), Bad> {
    let n = name(s, false)?;
    if s.contains('_') {
        return Err((
            format!("`{s}` has `_`, which browsers reject in host names"),
            "letters, digits, `-` and `.`",
        ));
    }
    let text = n.to_ascii();
    let text = text.strip_suffix('.').unwrap_or(&text).to_owned();
    Ok((n, text))
}

/// A duration such as `5s`, `250ms`, `2m`, `24h`.
pub(crate) fn duration(s: &str) -> Result<Duration, Bad> {
    humantime::parse_duration(s).map_err(|e| {
        (
            format!("`{s}` is not a duration ({e})"),
            "a duration like `5s`, `250ms`, `2m` or `24h`",
        )
    })
}

/// A size in bytes: digits with an optional `K`, `M` or `G` suffix (powers of 1024).
pub(crate) fn size(s: &str) -> Result<u64, Bad> {
    let bad = || {
        (
            format!("`{s}` is not a size"),
            "bytes with an optional `K`, `M` or `G` suffix, e.g. `512M`",
        )
    };
    let (digits, shift) = match s.strip_suffix(['K', 'k']) {
        Some(d) => (d, 10),
        None => match s.strip_suffix(['M', 'm']) {
            Some(d) => (d, 20),
            None => match s.strip_suffix(['G', 'g']) {
                Some(d) => (d, 30),
                None => (s, 0),
            },
        },
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1 << shift).ok_or_else(bad)
}

/// A socket address, with a default port when none is written.
pub(crate) fn socket(s: &str, default_port: u16) -> Result<SocketAddr, Bad> {
    const EXPECTED: &str = "`IP:PORT`, e.g. `127.0.0.1:53` or `[::1]:53`";
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, default_port))
        .map_err(|_| (format!("`{s}` is not an IP address with a port"), EXPECTED))
}

/// An upstream resolver URL (see `dns.upstreams`).
pub(crate) fn upstream(s: &str) -> Result<Upstream, Bad> {
    const EXPECTED: &str = "`udp://IP`, `tcp://IP`, `tls://IP#TLS-NAME` or \
                            `https://IP/dns-query#TLS-NAME`";
    let (scheme, rest) = s
        .split_once("://")
        .ok_or_else(|| (format!("`{s}` has no scheme"), EXPECTED))?;
    let (protocol, port) = match scheme {
        "udp" => (Protocol::Udp, 53),
        "tcp" => (Protocol::Tcp, 53),
        "tls" => (Protocol::Tls, 853),
        "https" => (Protocol::Https, 443),
        other => return Err((format!("unknown scheme `{other}`"), EXPECTED)),
    };
    let (rest, tls_name) = match rest.split_once('#') {
        Some((r, n)) => (r, Some(n)),
        None => (rest, None),
    };
    let (addr, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let addr = socket(addr, port).map_err(|_| {
        (
            format!("`{addr}` is not an IP address: upstreams are written as IPs so labgate never needs itself to boot"),
            EXPECTED,
        )
    })?;
    let tls = matches!(protocol, Protocol::Tls | Protocol::Https);
    match (tls, tls_name) {
        (true, None) => {
            return Err((
                format!("`{s}` needs the server's TLS name after `#`"),
                EXPECTED,
            ));
        }
        (false, Some(_)) => {
            return Err((
                format!("`{s}`: a TLS name only fits tls:// and https://"),
                EXPECTED,
            ));
        }
        (true, Some(n)) => {
            host(n)?;
        }
        _ => {}
    }
    if path.is_some() && protocol != Protocol::Https {
        return Err((
            format!("`{s}`: only https:// upstreams have a path"),
            EXPECTED,
        ));
    }
    Ok(Upstream {
        protocol,
        addr,
        tls_name: tls_name.map(Into::into),
        path: match protocol {
            Protocol::Https => Some(path.unwrap_or("/dns-query").into()),
            _ => None,
        },
    })
}

/// An integer within bounds.
pub(crate) fn int<T: TryFrom<i64>>(v: i64, lo: i64, hi: i64) -> Result<T, Bad> {
    let bad = || {
        (
            format!("{v} is out of range: between {lo} and {hi}"),
            "a number in range",
        )
    };
    if v < lo || v > hi {
        return Err(bad());
    }
    T::try_from(v).map_err(|_| bad())
}

/// The record types `[[record]]` accepts.
pub(crate) const RECORD_TYPES: &str = "A, AAAA, CNAME, TXT, MX, SRV, PTR, NS, SOA";

/// A record type name.
pub(crate) fn record_type(s: &str) -> Result<RecordType, Bad> {
    match s.to_ascii_uppercase().as_str() {
        "A" => Ok(RecordType::A),
        "AAAA" => Ok(RecordType::AAAA),
        "CNAME" => Ok(RecordType::CNAME),
        "TXT" => Ok(RecordType::TXT),
        "MX" => Ok(RecordType::MX),
        "SRV" => Ok(RecordType::SRV),
        "PTR" => Ok(RecordType::PTR),
        "NS" => Ok(RecordType::NS),
        "SOA" => Ok(RecordType::SOA),
        _ => Err((format!("unsupported record type `{s}`"), RECORD_TYPES)),
    }
}

/// Record data in zone-file form for a type.
pub(crate) fn rdata(rtype: RecordType, s: &str) -> Result<RData, Bad> {
    let fields: Vec<&str> = s.split_whitespace().collect();
    let target = |f: &str| name(f, false);
    let num = |f: &str, what: &'static str| {
        f.parse::<u16>().map_err(|_| {
            (
                format!("`{f}` is not a {what} (0-65535)"),
                expected_for(rtype),
            )
        })
    };
    let arity = |n: usize| {
        if fields.len() == n {
            Ok(())
        } else {
            Err((
                format!("`{s}` has {} field(s), {rtype} needs {n}", fields.len()),
                expected_for(rtype),
            ))
        }
    };
    match rtype {
        RecordType::A => s
            .trim()
            .parse::<Ipv4Addr>()
            .map(|a| RData::A(a.into()))
            .map_err(|_| (format!("`{s}` is not an IPv4 address"), expected_for(rtype))),
        RecordType::AAAA => s
            .trim()
            .parse::<Ipv6Addr>()
            .map(|a| RData::AAAA(a.into()))
            .map_err(|_| (format!("`{s}` is not an IPv6 address"), expected_for(rtype))),
        RecordType::CNAME => arity(1).and_then(|()| Ok(RData::CNAME(CNAME(target(fields[0])?)))),
        RecordType::PTR => arity(1).and_then(|()| Ok(RData::PTR(PTR(target(fields[0])?)))),
        RecordType::NS => arity(1).and_then(|()| Ok(RData::NS(NS(target(fields[0])?)))),
        RecordType::MX => arity(2).and_then(|()| {
            Ok(RData::MX(MX::new(
                num(fields[0], "preference")?,
                target(fields[1])?,
            )))
        }),
        RecordType::SRV => arity(4).and_then(|()| {
            Ok(RData::SRV(SRV::new(
                num(fields[0], "priority")?,
                num(fields[1], "weight")?,
                num(fields[2], "port")?,
                target(fields[3])?,
            )))
        }),
        // RFC 1035 character-strings hold 255 bytes; longer text is split, as zone files do.
        RecordType::TXT => Ok(RData::TXT(TXT::from_bytes(
            s.as_bytes().chunks(255).collect(),
        ))),
        RecordType::SOA => soa(s, &fields),
        _ => Err((format!("unsupported record type {rtype}"), RECORD_TYPES)),
    }
}

fn soa(s: &str, f: &[&str]) -> Result<RData, Bad> {
    const EXPECTED: &str = "`MNAME RNAME SERIAL REFRESH RETRY EXPIRE MINIMUM`";
    if f.len() != 7 {
        return Err((
            format!("`{s}` has {} field(s), SOA needs 7", f.len()),
            EXPECTED,
        ));
    }
    let n = |x: &str| {
        x.parse::<u32>()
            .map_err(|_| (format!("`{x}` is not a number"), EXPECTED))
    };
    let i = |x: &str| {
        x.parse::<i32>()
            .map_err(|_| (format!("`{x}` is not a number"), EXPECTED))
    };
    Ok(RData::SOA(SOA::new(
        name(f[0], false)?,
        name(f[1], false)?,
        n(f[2])?,
        i(f[3])?,
        i(f[4])?,
        i(f[5])?,
        n(f[6])?,
    )))
}

fn expected_for(rtype: RecordType) -> &'static str {
    match rtype {
        RecordType::A => "an IPv4 address like `10.0.20.10`",
        RecordType::AAAA => "an IPv6 address like `fd00:20::10`",
        RecordType::CNAME | RecordType::PTR | RecordType::NS => "one domain name",
        RecordType::MX => "`PREFERENCE EXCHANGE`, e.g. `10 mail.example.com`",
        RecordType::SRV => "`PRIORITY WEIGHT PORT TARGET`, e.g. `0 5 5060 sip.lab.example.com`",
        _ => "zone-file form",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Ok(shown)` or `Err(message)`, to compare with a table row.
    fn shown<T>(r: Result<T, Bad>, show: impl Fn(T) -> String) -> Result<String, String> {
        r.map(show).map_err(|(m, _)| m)
    }

    fn owned(row: &Result<&str, &str>) -> Result<String, String> {
        row.map(str::to_owned).map_err(str::to_owned)
    }

    #[test]
    fn names() {
        let cases: &[(&str, bool, Result<&str, &str>)] = &[
            ("NAS.Lab.example.com.", false, Ok("nas.lab.example.com.")),
            ("nas.lab.example.com", false, Ok("nas.lab.example.com.")),
            (
                "_acme-challenge.lab.test",
                false,
                Ok("_acme-challenge.lab.test."),
            ),
            ("*.lab.example.com", true, Ok("*.lab.example.com.")),
            (
                "*.lab.example.com",
                false,
                Err("`*.lab.example.com` has an invalid label `*`"),
            ),
            (
                "a.*.example.com",
                true,
                Err("`a.*.example.com` has an invalid label `*`"),
            ),
            ("a..b", false, Err("`a..b` has an invalid label ``")),
            ("", false, Err("empty name")),
            (".", false, Err("empty name")),
            (
                "nas lab",
                false,
                Err("`nas lab` has an invalid label `nas lab`"),
            ),
            (
                &"a".repeat(64),
                false,
                Err(
                    "`aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa` has an invalid label `aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa`",
                ),
            ),
        ];
        for (input, wildcard, expected) in cases {
            let got = shown(name(input, *wildcard), |n| n.to_ascii());
            assert_eq!(got, owned(expected), "{input:?} {wildcard}");
        }
    }

    #[test]
    fn hosts() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("App.Lab.Test.", Ok("app.lab.test")),
            ("app.lab.test", Ok("app.lab.test")),
            (
                "_svc.example.com",
                Err("`_svc.example.com` has `_`, which browsers reject in host names"),
            ),
            ("*.lab.test", Err("`*.lab.test` has an invalid label `*`")),
        ];
        for (input, expected) in cases {
            let got = shown(host(input), |(_, text)| text);
            assert_eq!(got, owned(expected), "{input:?}");
        }
    }

    #[test]
    fn durations_sizes_and_integers() {
        let durations: &[(&str, Option<u64>)] = &[
            ("5s", Some(5_000)),
            ("250ms", Some(250)),
            ("2m", Some(120_000)),
            ("24h", Some(86_400_000)),
            ("5", None),
            ("forever", None),
        ];
        for (input, ms) in durations {
            let got = duration(input).ok().map(|d| d.as_millis() as u64);
            assert_eq!(got, *ms, "{input:?}");
        }
        let sizes: &[(&str, Option<u64>)] = &[
            ("512", Some(512)),
            ("4K", Some(4096)),
            ("4k", Some(4096)),
            ("512M", Some(512 << 20)),
            ("2G", Some(2 << 30)),
            ("1T", None),
            ("-1", None),
            ("M", None),
            ("18446744073709551615K", None),
        ];
        for (input, bytes) in sizes {
            assert_eq!(size(input).ok(), *bytes, "{input:?}");
        }
        let ints: &[(i64, i64, i64, Result<u16, &str>)] = &[
            (1, 1, 10, Ok(1)),
            (10, 1, 10, Ok(10)),
            (0, 1, 10, Err("0 is out of range: between 1 and 10")),
            (11, 1, 10, Err("11 is out of range: between 1 and 10")),
            // In the bounds but not in the type.
            (
                70_000,
                0,
                100_000,
                Err("70000 is out of range: between 0 and 100000"),
            ),
        ];
        for (v, lo, hi, expected) in ints {
            let got = int::<u16>(*v, *lo, *hi).map_err(|(m, _)| m);
            assert_eq!(
                got.as_ref().map_err(String::as_str),
                expected.as_ref().map_err(|e| *e),
                "{v}"
            );
        }
    }

    #[test]
    fn sockets() {
        let cases: &[(&str, Option<&str>)] = &[
            ("127.0.0.1:5353", Some("127.0.0.1:5353")),
            ("127.0.0.1", Some("127.0.0.1:53")),
            ("[::1]:5353", Some("[::1]:5353")),
            ("[::1]", Some("[::1]:53")),
            ("::1", Some("[::1]:53")),
            ("127.0.0.1:99999", None),
            ("localhost:53", None),
        ];
        for (input, expected) in cases {
            let got = socket(input, 53).ok().map(|a| a.to_string());
            assert_eq!(got.as_deref(), *expected, "{input:?}");
        }
    }

    #[test]
    fn upstreams() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("udp://1.1.1.1", Ok("udp://1.1.1.1:53")),
            ("tcp://1.1.1.1:5353", Ok("tcp://1.1.1.1:5353")),
            ("udp://[2606:4700::1111]", Ok("udp://[2606:4700::1111]:53")),
            (
                "tls://1.1.1.1#cloudflare-dns.com",
                Ok("tls://1.1.1.1:853#cloudflare-dns.com"),
            ),
            (
                "https://9.9.9.9#dns.quad9.net",
                Ok("https://9.9.9.9:443/dns-query#dns.quad9.net"),
            ),
            (
                "https://9.9.9.9/q#dns.quad9.net",
                Ok("https://9.9.9.9:443/q#dns.quad9.net"),
            ),
            ("1.1.1.1", Err("`1.1.1.1` has no scheme")),
            ("quic://1.1.1.1", Err("unknown scheme `quic`")),
            (
                "tls://1.1.1.1",
                Err("`tls://1.1.1.1` needs the server's TLS name after `#`"),
            ),
            (
                "udp://1.1.1.1#one.one",
                Err("`udp://1.1.1.1#one.one`: a TLS name only fits tls:// and https://"),
            ),
            (
                "tls://1.1.1.1#bad_name",
                Err("`bad_name` has `_`, which browsers reject in host names"),
            ),
            (
                "udp://dns.google",
                Err(
                    "`dns.google` is not an IP address: upstreams are written as IPs so labgate never needs itself to boot",
                ),
            ),
            (
                "udp://1.1.1.1/x",
                Err("`udp://1.1.1.1/x`: only https:// upstreams have a path"),
            ),
        ];
        for (input, expected) in cases {
            let got = shown(upstream(input), |u| u.to_string());
            assert_eq!(got, owned(expected), "{input:?}");
        }
    }

    #[test]
    fn record_values() {
        let cases: &[(&str, &str, Result<&str, &str>)] = &[
            ("a", "10.0.0.9", Ok("A 10.0.0.9")),
            ("A", " 10.0.0.9 ", Ok("A 10.0.0.9")),
            (
                "A",
                "10.0.0.300",
                Err("`10.0.0.300` is not an IPv4 address"),
            ),
            ("AAAA", "fd00::9", Ok("AAAA fd00::9")),
            ("AAAA", "10.0.0.9", Err("`10.0.0.9` is not an IPv6 address")),
            ("CNAME", "App.Lab.Test", Ok("CNAME app.lab.test.")),
            (
                "CNAME",
                "a.lab.test b.lab.test",
                Err("`a.lab.test b.lab.test` has 2 field(s), CNAME needs 1"),
            ),
            ("MX", "10 mail.example.com", Ok("MX 10 mail.example.com.")),
            (
                "MX",
                "mail.example.com",
                Err("`mail.example.com` has 1 field(s), MX needs 2"),
            ),
            (
                "MX",
                "70000 mail.example.com",
                Err("`70000` is not a preference (0-65535)"),
            ),
            (
                "SRV",
                "0 5 5060 sip.example.com",
                Ok("SRV 0 5 5060 sip.example.com."),
            ),
            (
                "SRV",
                "0 5 port sip.example.com",
                Err("`port` is not a port (0-65535)"),
            ),
            ("PTR", "nas.lab.test", Ok("PTR nas.lab.test.")),
            ("NS", "ns1.lab.test", Ok("NS ns1.lab.test.")),
            (
                "SOA",
                "ns1.lab.test. admin.lab.test. 7 3600 600 604800 30",
                Ok("SOA ns1.lab.test. admin.lab.test. 7 3600 600 604800 30"),
            ),
            (
                "SOA",
                "ns1.lab.test. admin.lab.test. 7",
                Err("`ns1.lab.test. admin.lab.test. 7` has 3 field(s), SOA needs 7"),
            ),
            (
                "SOA",
                "ns1.lab.test. admin.lab.test. x 3600 600 604800 30",
                Err("`x` is not a number"),
            ),
            ("TXT", "v=spf1 -all", Ok("TXT v=spf1 -all")),
            (
                "CAA",
                "0 issue letsencrypt.org",
                Err("unsupported record type `CAA`"),
            ),
        ];
        for (rtype, value, expected) in cases {
            let got = record_type(rtype)
                .and_then(|t| rdata(t, value))
                .map(|d| format!("{} {d}", d.record_type()))
                .map_err(|(m, _)| m);
            assert_eq!(got, owned(expected), "{rtype} {value:?}");
        }
        // RFC 1035 character-strings hold 255 bytes: longer text is split.
        let RData::TXT(t) = rdata(RecordType::TXT, &"x".repeat(300)).expect("txt") else {
            panic!("not txt")
        };
        assert_eq!(
            t.txt_data.iter().map(|s| s.len()).collect::<Vec<_>>(),
            [255, 45]
        );
    }
}
