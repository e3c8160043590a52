//! Tables for what `compile` itself decides: named files, `[server]`, keywords.

use std::io::ErrorKind;

use super::*;
use crate::testing::{diagnostics, diagnostics_of, loaded, snapshot};

const LAB: &str =
    "[[network]]\nname = \"lab\"\ncidrs = [\"10.0.0.0/16\"]\naddresses = [\"10.0.0.2\"]\n";

/// A file the configuration names, as `load` found it, and what compiling says.
#[test]
fn named_files_are_looked_up_not_read() {
    let list = "[[blocklist]]\nname = \"ads\"\nfile = \"lists/ads.txt\"\n";
    let token = "[acme]\nemail = \"a@example.com\"\n[[dns_provider]]\nname = \"cf\"\nkind = \"cloudflare\"\ntoken_file = \"/etc/labgate/cf.token\"\n";
    let ca = "[dns]\nupstream_ca_file = \"ca.pem\"\n";
    let cases: &[(&str, &str, Option<Found>, &[&str])] = &[
        (
            "a list that was read",
            list,
            Some(Found::Read(b"ads.example.com\n".to_vec())),
            &[],
        ),
        (
            "a list load never saw: missing",
            list,
            None,
            &["error `blocklist[0].file`: cannot read `lists/ads.txt`: no such file"],
        ),
        (
            "a list that failed",
            list,
            Some(Found::Failed(ErrorKind::PermissionDenied)),
            &["error `blocklist[0].file`: cannot read `lists/ads.txt`: permission denied"],
        ),
        (
            "a list that is a directory",
            list,
            Some(Found::Failed(ErrorKind::IsADirectory)),
            &["error `blocklist[0].file`: cannot read `lists/ads.txt`: a directory"],
        ),
        (
            "any other failure",
            list,
            Some(Found::Failed(ErrorKind::InvalidData)),
            &["error `blocklist[0].file`: cannot read `lists/ads.txt`: unreadable"],
        ),
        ("a secret that opened", token, Some(Found::Opened), &[]),
        (
            "a secret that did not",
            token,
            Some(Found::Failed(ErrorKind::NotFound)),
            &[
                "error `dns_provider[0].token_file`: cannot read `/etc/labgate/cf.token`: no such file",
            ],
        ),
        (
            "a CA bundle without a certificate",
            ca,
            Some(Found::Read(b"not PEM".to_vec())),
            &["error `dns.upstream_ca_file`: `ca.pem` holds no PEM certificate"],
        ),
    ];
    for (what, toml, found, expected) in cases {
        let mut l = loaded(&format!("{toml}{LAB}"), &[]);
        let written = ["lists/ads.txt", "/etc/labgate/cf.token", "ca.pem"]
            .into_iter()
            .find(|w| toml.contains(w))
            .expect("a named file");
        if let Some(found) = found {
            l.named.insert(written, found.clone());
        }
        assert_eq!(diagnostics_of(&l), *expected, "{what}");
    }
}

/// A read list is parsed into the snapshot, and its text counts in the content hash.
#[test]
fn named_contents_reach_the_snapshot_and_the_hash() {
    let toml = format!("[[blocklist]]\nname = \"ads\"\nfile = \"ads.txt\"\n{LAB}");
    let with = |text: &[u8]| compile(&loaded(&toml, &[("ads.txt", text)]), 1).expect("compiles");
    let a = with(b"ads.example.com\n");
    assert!(a.dns.blocklists[0].names.blocks("x.ads.example.com"));
    assert_eq!(a.hash, with(b"ads.example.com\n").hash);
    assert_ne!(a.hash, with(b"ads.example.net\n").hash);
}

#[test]
fn server_keys() {
    let cases: &[(&str, &[&str])] = &[
        (
            "trusted_proxies = [\"10.0.0.5\", \"10.1.0.0/24\", \"fd00::/64\"]",
            &[],
        ),
        (
            "trusted_proxies = [\"10.0.0.5/33\"]",
            &["error `server.trusted_proxies[0]`: `10.0.0.5/33` is not an address or range"],
        ),
        (
            "trusted_proxies = [\"proxy.lab\"]",
            &["error `server.trusted_proxies[0]`: `proxy.lab` is not an address or range"],
        ),
        (
            "max_connections = 1\nmax_connections_per_address = 1000000",
            &[],
        ),
        (
            "max_connections = 0",
            &["error `server.max_connections`: 0 is out of range: between 1 and 1000000"],
        ),
        (
            "max_connections_per_address = 1000001",
            &[
                "error `server.max_connections_per_address`: 1000001 is out of range: between 1 and 1000000",
            ],
        ),
    ];
    for (server, expected) in cases {
        assert_eq!(
            diagnostics(&format!("[server]\n{server}\n{LAB}"), &[]),
            *expected,
            "{server}"
        );
    }
    let s = snapshot(&format!(
        "[server]\ntrusted_proxies = [\"10.0.0.5\", \"10.1.0.0/24\"]\n{LAB}"
    ));
    let trusts: Vec<bool> = ["10.0.0.5", "10.0.0.6", "10.1.0.77", "::ffff:10.0.0.5"]
        .iter()
        .map(|a| s.trusts(a.parse().expect("address")))
        .collect();
    assert_eq!(trusts, [true, false, true, true]);
}

/// Paths written in a file start at its directory; absolute ones stay.
#[test]
fn state_dir_is_resolved_against_the_file() {
    let cases = [
        (None, "/var/lib/labgate"),
        (Some("state"), "state"),
        (Some("/srv/labgate"), "/srv/labgate"),
    ];
    for (written, expected) in cases {
        let server =
            written.map_or_else(String::new, |d| format!("[server]\nstate_dir = \"{d}\"\n"));
        let s = snapshot(&format!("{server}{LAB}"));
        assert_eq!(s.state_dir, PathBuf::from(expected), "{written:?}");
    }
}

/// A keyword from a fixed set: the first option when unset, the error lists them all.
#[test]
fn keywords() {
    let cases: &[(&str, &[&str])] = &[
        ("", &[]),
        ("balance = \"least_connections\"\n", &[]),
        (
            "balance = \"random\"\n",
            &["error `service[0].balance`: unknown value `random`"],
        ),
    ];
    for (balance, expected) in cases {
        let toml = format!(
            "{LAB}[[zone]]\nname = \"lab.test\"\n[[service]]\nhost = \"app.lab.test\"\nbackends = [\"http://10.0.0.9\"]\nallow = [\"lab\"]\n{balance}"
        );
        assert_eq!(diagnostics(&toml, &[]), *expected, "{balance}");
    }
}

#[test]
fn query_log_keys() {
    let cases: &[(&str, &[&str])] = &[
        (
            "[query_log]\nenabled = false\nmax_age = \"90d\"\nmax_size = \"16M\"\nexclude_clients = [\"10.0.0.7\", \"fd00::/64\"]",
            &[],
        ),
        (
            "[query_log]\nmax_age = \"a week\"",
            &["error `query_log.max_age`: `a week` is not a duration (expected number at 0)"],
        ),
        (
            "[query_log]\nmax_size = \"1M\"",
            &["error `query_log.max_size`: `1M` is too small for the query log"],
        ),
        (
            "[query_log]\nexclude_clients = [\"printer\"]",
            &["error `query_log.exclude_clients[0]`: `printer` is not an address or range"],
        ),
        (
            "[[network]]\nname = \"guest\"\ncidrs = [\"10.9.0.0/16\"]\nquery_log = \"some\"",
            &["error `network[1].query_log`: unknown value `some`"],
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(
            diagnostics(&format!("{LAB}{text}\n"), &[]),
            *expected,
            "{text}"
        );
    }
}

/// What the log keeps of a query: the switch, the excluded clients, then the network's level
/// (a client in no network is kept in full).
#[test]
fn query_log_levels() {
    use crate::network::LogLevel::{Anonymous, Full, Off};
    let s = snapshot(&format!(
        "{LAB}[[network]]\nname = \"guest\"\ncidrs = [\"10.9.0.0/16\"]\nquery_log = \"anonymous\"\n\
         [[network]]\nname = \"iot\"\ncidrs = [\"10.8.0.0/16\"]\nquery_log = \"off\"\n\
         [query_log]\nexclude_clients = [\"10.0.0.7\", \"10.9.1.0/24\"]\n"
    ));
    let level = |ip: &str| {
        let ip: std::net::IpAddr = ip.parse().expect("ip");
        let network = s
            .networks
            .lookup(ip)
            .map(|m| s.networks.get(m.network).query_log);
        s.query_log.level(network, ip)
    };
    let cases = [
        ("10.0.0.5", Full),
        ("10.0.0.7", Off),
        ("::ffff:10.0.0.7", Off),
        ("10.9.0.5", Anonymous),
        ("10.9.1.5", Off),
        ("10.8.0.5", Off),
        ("192.0.2.1", Full),
    ];
    for (ip, want) in cases {
        assert_eq!(level(ip), want, "{ip}");
    }
    let mut off = s.query_log.clone();
    off.enabled = false;
    assert_eq!(off.level(Some(Full), "10.0.0.5".parse().expect("ip")), Off);
    // dnstap keeps to the networks and the excluded clients with the log switched off.
    let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("ip");
    assert_eq!(off.privacy(Some(Full), ip("10.0.0.5")), Full);
    assert_eq!(off.privacy(Some(Anonymous), ip("10.9.0.5")), Anonymous);
    assert_eq!(off.privacy(Some(Full), ip("10.0.0.7")), Off);
}

#[test]
fn dnstap_keys() {
    use crate::settings::DnstapDestination;
    let s = snapshot(&format!("{LAB}[dnstap]\nsocket = \"/run/tap.sock\"\n"));
    let tap = s.dnstap.expect("[dnstap]");
    assert_eq!(
        tap.destination,
        DnstapDestination::Unix("/run/tap.sock".into())
    );
    assert_eq!(tap.identity, None);
    assert!(tap.version.starts_with("labgate "));
    let s = snapshot(&format!(
        "{LAB}[dnstap]\naddress = \"[::1]:6000\"\nidentity = \"gate-1\"\nversion = \"x\"\n"
    ));
    let tap = s.dnstap.expect("[dnstap]");
    let addr = "[::1]:6000".parse().expect("address");
    assert_eq!(tap.destination, DnstapDestination::Tcp(addr));
    assert_eq!(
        (tap.identity.as_deref(), &*tap.version),
        (Some("gate-1"), "x")
    );
    assert_eq!(snapshot(LAB).dnstap, None);
    let cases: &[(&str, &[&str])] = &[
        (
            "[dnstap]\nsocket = \"tap.sock\"",
            &["error `dnstap.socket`: `tap.sock` is not an absolute path"],
        ),
        (
            "[dnstap]\naddress = \"collector:6000\"",
            &["error `dnstap.address`: `collector:6000` is not an IP address with a port"],
        ),
        (
            "[dnstap]\naddress = \"10.0.0.9\"",
            &["error `dnstap.address`: `10.0.0.9` has no port"],
        ),
        (
            "[dnstap]\nsocket = \"/run/a\"\naddress = \"10.0.0.9:6000\"",
            &["error `dnstap.address`: `[dnstap]` names both a `socket` and an `address`"],
        ),
        (
            "[dnstap]\nidentity = \"gate\"",
            &["error `dnstap`: `[dnstap]` names no collector"],
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(
            diagnostics(&format!("{LAB}{text}\n"), &[]),
            *expected,
            "{text}"
        );
    }
}
