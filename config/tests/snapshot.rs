//! The compiled snapshot against the example homelab: derived records per view, split
//! horizon, lookups, routes, certificates, diffs, and the example files themselves.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use hickory_proto::rr::{LowerName, Name, RData, RecordType};
use labgate_config::diff::Diff;
use labgate_config::route::Route;
use labgate_config::settings::{CertSource, Coverage};
use labgate_config::testing::{self, snapshot};
use labgate_config::view::Lookup;
use labgate_config::{Error, Snapshot, Sources, compile, load, load_and_compile, parse};

const HOMELAB: &str = "../deploy/examples/homelab.toml";

fn homelab() -> Snapshot {
    load_and_compile(Path::new(HOMELAB), 1).expect("homelab example compiles")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn name(s: &str) -> LowerName {
    LowerName::new(&Name::from_ascii(s).expect("test name"))
}

/// The addresses a client at `client` gets for `host`, or the negative outcome.
fn resolve(
    s: &Snapshot,
    client: &str,
    host: &str,
    rtype: RecordType,
) -> Result<Vec<String>, &'static str> {
    match s.lookup(ip(client), &name(host), rtype) {
        None => Err("refused"),
        Some(Lookup::Answer { records, .. }) => {
            Ok(records.iter().map(|r| r.data.to_string()).collect())
        }
        Some(Lookup::NxDomain { .. }) => Err("nxdomain"),
        Some(Lookup::NoData { .. }) => Err("nodata"),
        Some(Lookup::Outside) => Err("outside"),
    }
}

#[test]
fn every_example_compiles() {
    let mut n = 0;
    for e in std::fs::read_dir("../deploy/examples").expect("examples directory") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "toml") {
            let s = load_and_compile(&p, 1).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert!(s.warnings.is_empty(), "{}: {:?}", p.display(), s.warnings);
            n += 1;
        }
    }
    assert!(n >= 2, "examples went missing");
}

/// B4: an unknown key in any table of any example is rejected, not ignored.
#[test]
fn unknown_keys_are_rejected_in_every_table_of_every_example() {
    let mut checked = 0;
    for e in std::fs::read_dir("../deploy/examples").expect("examples directory") {
        let p: PathBuf = e.expect("entry").path();
        if p.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&p).expect("example text");
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if !line.trim_start().starts_with('[') {
                continue;
            }
            let mut mutated = lines.clone();
            mutated.insert(i + 1, "no_such_key_for_test = 1");
            let mut s = Sources::new();
            s.add(p.clone(), mutated.join("\n"));
            match parse(s) {
                Err(Error::Invalid(d)) => {
                    let msg = d.to_string();
                    assert!(
                        msg.contains("unknown field `no_such_key_for_test`"),
                        "{msg}"
                    );
                    assert!(
                        msg.contains(&format!(":{}:", i + 2)),
                        "line number in {msg}"
                    );
                }
                other => panic!("{}: key after `{line}` accepted: {other:?}", p.display()),
            }
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} tables mutated");
}

#[test]
fn service_records_are_derived_per_allowed_network() {
    let s = homelab();
    // Nextcloud allows clients: clients get the clients-side address of labgate...
    assert_eq!(
        resolve(&s, "10.0.30.77", "cloud.lab.example.com.", RecordType::A),
        Ok(vec!["10.0.30.2".into()])
    );
    assert_eq!(
        resolve(
            &s,
            "fd00:30::77",
            "cloud.lab.example.com.",
            RecordType::AAAA
        ),
        Ok(vec!["fd00:30::2".into()])
    );
    // ...management gets the management one...
    assert_eq!(
        resolve(&s, "10.0.10.9", "cloud.lab.example.com.", RecordType::A),
        Ok(vec!["10.0.10.2".into()])
    );
    // ...and the guest network and IoT do not see it at all.
    assert_eq!(
        resolve(&s, "10.0.50.9", "cloud.lab.example.com.", RecordType::A),
        Err("nxdomain")
    );
    assert_eq!(
        resolve(&s, "10.0.40.9", "cloud.lab.example.com.", RecordType::A),
        Err("nxdomain")
    );
    // Home Assistant is for IoT too; Proxmox for management only.
    assert_eq!(
        resolve(&s, "10.0.40.9", "home.lab.example.com.", RecordType::A),
        Ok(vec!["10.0.40.2".into()])
    );
    assert_eq!(
        resolve(&s, "10.0.30.9", "proxmox.lab.example.com.", RecordType::A),
        Err("nxdomain")
    );
    assert_eq!(
        resolve(&s, "10.0.99.9", "proxmox.lab.example.com.", RecordType::A),
        Ok(vec!["10.0.99.1".into()])
    );
    // A network with only an IPv4 address has a name but no AAAA there: NODATA, not NXDOMAIN.
    assert_eq!(
        resolve(&s, "10.0.20.9", "home.lab.example.com.", RecordType::A),
        Err("nxdomain")
    );
    assert_eq!(
        resolve(&s, "10.0.40.9", "home.lab.example.com.", RecordType::AAAA),
        Err("nodata")
    );
}

#[test]
fn guest_sees_no_internal_name_and_unknown_clients_are_refused() {
    let s = homelab();
    for host in [
        "nas.lab.example.com.",
        "lab.example.com.",
        "ns.lab.example.com.",
        "files.lab.example.com.",
    ] {
        assert_eq!(
            resolve(&s, "10.0.50.9", host, RecordType::A),
            Err("nxdomain"),
            "{host}"
        );
    }
    assert_eq!(
        resolve(&s, "192.168.1.1", "cloud.lab.example.com.", RecordType::A),
        Err("refused")
    );
    assert_eq!(
        resolve(&s, "10.0.30.9", "example.org.", RecordType::A),
        Err("outside")
    );
}

#[test]
fn explicit_records_cname_chains_and_empty_non_terminals() {
    let s = homelab();
    assert_eq!(
        resolve(&s, "10.0.20.9", "nas.lab.example.com.", RecordType::A),
        Ok(vec!["10.0.20.10".into()])
    );
    assert_eq!(
        resolve(&s, "10.0.40.9", "nas.lab.example.com.", RecordType::A),
        Err("nxdomain")
    );
    // files → nas, followed inside internal data.
    assert_eq!(
        resolve(&s, "10.0.30.9", "files.lab.example.com.", RecordType::A),
        Ok(vec!["nas.lab.example.com.".into(), "10.0.20.10".into()])
    );
    // `_tcp.lab.example.com` exists only as the parent of the SRV owner: NODATA.
    assert_eq!(
        resolve(&s, "10.0.30.9", "_tcp.lab.example.com.", RecordType::A),
        Err("nodata")
    );
    assert_eq!(
        resolve(
            &s,
            "10.0.30.9",
            "_smb._tcp.lab.example.com.",
            RecordType::SRV
        )
        .map(|v| v.len()),
        Ok(1)
    );
    // The apex has the synthesized SOA and NS, and ns.<zone> resolves to labgate in each view.
    assert_eq!(
        resolve(&s, "10.0.30.9", "lab.example.com.", RecordType::NS),
        Ok(vec!["ns.lab.example.com.".into()])
    );
    assert_eq!(
        resolve(&s, "10.0.40.9", "ns.lab.example.com.", RecordType::A),
        Ok(vec!["10.0.40.2".into()])
    );
    // Reverse data is served from its own zone.
    assert_eq!(
        resolve(&s, "10.0.10.9", "10.20.0.10.in-addr.arpa.", RecordType::PTR),
        Ok(vec!["nas.lab.example.com.".into()])
    );
}

#[test]
fn split_horizon_and_wildcards() {
    let s = snapshot(
        r#"
[[network]]
name = "inside"
cidrs = ["10.0.0.0/16"]
addresses = ["10.0.0.2"]
[[network]]
name = "vpn"
cidrs = ["10.0.99.0/24"]
addresses = ["10.0.99.1"]
[[zone]]
name = "example.net"
[[record]]
name = "git.example.net"
type = "A"
value = "10.0.20.30"
networks = ["inside"]
[[record]]
name = "git.example.net"
type = "A"
value = "10.0.99.30"
networks = ["vpn"]
[[record]]
name = "*.dev.example.net"
type = "A"
value = "10.0.20.40"
[[record]]
name = "fixed.dev.example.net"
type = "TXT"
value = "not the wildcard"
"#,
    );
    // The VPN's /24 is inside the /16: the longest prefix decides.
    assert_eq!(
        resolve(&s, "10.0.99.5", "git.example.net.", RecordType::A),
        Ok(vec!["10.0.99.30".into()])
    );
    assert_eq!(
        resolve(&s, "10.0.5.5", "git.example.net.", RecordType::A),
        Ok(vec!["10.0.20.30".into()])
    );
    let wild = s.lookup(ip("10.0.5.5"), &name("a.dev.example.net."), RecordType::A);
    let Some(Lookup::Answer { records, .. }) = wild else {
        panic!("wildcard: {wild:?}")
    };
    assert_eq!(
        records[0].name.to_ascii(),
        "a.dev.example.net.",
        "wildcard answers carry the query name"
    );
    assert_eq!(
        resolve(&s, "10.0.5.5", "fixed.dev.example.net.", RecordType::A),
        Err("nodata")
    );
    // A wildcard owner names no host: its address gets no derived PTR.
    let ptr = s.view(s.networks.lookup(ip("10.0.5.5")).expect("inside").network);
    assert!(
        ptr.derived_ptr(&name("40.20.0.10.in-addr.arpa."))
            .is_empty(),
        "{:?}",
        ptr.derived_ptr(&name("40.20.0.10.in-addr.arpa."))
    );
}

#[test]
fn networks_routes_and_policy() {
    let s = homelab();
    let m = s
        .networks
        .lookup(ip("::ffff:10.0.30.8"))
        .expect("v4-mapped clients address");
    assert_eq!(&*s.networks.get(m.network).name, "clients");
    assert!(s.networks.lookup(ip("172.16.0.1")).is_none());
    let Route::Service(id) = s.route("cloud.lab.example.com", "/index.php") else {
        panic!("no route")
    };
    let svc = s.service(id);
    assert_eq!(&*svc.name, "nextcloud");
    let clients = s.networks.by_name("clients").expect("clients").id;
    let guest = s.networks.by_name("guest").expect("guest").id;
    assert_eq!(svc.access(clients), labgate_config::route::Access::Allow);
    assert_eq!(svc.access(guest), labgate_config::route::Access::Deny);
    assert_eq!(
        svc.access(s.networks.tunnel().id),
        labgate_config::route::Access::Allow
    );
    assert_eq!(s.route("nope.lab.example.com", "/"), Route::UnknownHost);
}

#[test]
fn acme_certificates_are_derived_per_zone_with_services() {
    let s = homelab();
    assert_eq!(
        s.certificates.specs.len(),
        1,
        "one set for lab.example.com; the reverse zone has no services"
    );
    let spec = &s.certificates.specs[0];
    assert_eq!(
        spec.names.iter().map(|n| &**n).collect::<Vec<_>>(),
        ["lab.example.com", "*.lab.example.com"]
    );
    assert!(matches!(
        spec.source,
        CertSource::Acme { derived: true, .. }
    ));
    assert_eq!(
        s.certificate_for("photos.lab.example.com"),
        Coverage::Spec(0)
    );
    assert_eq!(
        s.certificate_for("a.b.lab.example.com"),
        Coverage::Uncovered
    );
}

#[test]
fn connection_limits_have_homelab_defaults_and_take_the_server_keys() {
    let base =
        "[[network]]\nname = \"lan\"\ncidrs = [\"10.0.0.0/24\"]\naddresses = [\"10.0.0.2\"]\n";
    let s = snapshot(base);
    assert_eq!(
        (
            s.connections.per_listener.get(),
            s.connections.per_address.get()
        ),
        (4096, 256)
    );
    let s = snapshot(&format!(
        "[server]\nmax_connections = 10\nmax_connections_per_address = 3\n{base}"
    ));
    assert_eq!(
        (
            s.connections.per_listener.get(),
            s.connections.per_address.get()
        ),
        (10, 3)
    );
}

#[test]
fn diff_names_what_changed() {
    let a = homelab();
    let text = std::fs::read_to_string(HOMELAB)
        .expect("example")
        .replace("10.0.20.12:2283", "10.0.20.14:2283")
        + "\n[[service]]\nhost = \"jellyfin.lab.example.com\"\nbackends = [\"http://10.0.20.15:8096\"]\nallow = [\"clients\"]\n";
    let mut src = Sources::new();
    src.add(HOMELAB, text);
    let mut edited = parse(src).expect("parses");
    // The files the example names (its token file) are the same; parsing reads none.
    edited.named = load(Path::new(HOMELAB)).expect("loads").named;
    let b = compile(&edited, 2).expect("compiles");
    let d = Diff::between(&a, &b);
    assert_eq!(d.services.added, ["jellyfin"]);
    assert_eq!(d.services.changed, ["immich"]);
    assert!(
        d.records
            .added
            .contains(&"clients/jellyfin.lab.example.com".to_owned()),
        "{d}"
    );
    assert!(!d.restart_required);
    assert!(d.to_string().contains("services +jellyfin ~immich"), "{d}");
}

#[test]
fn a_directory_is_merged_and_hidden_entries_are_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    std::fs::write(
        p.join("networks.toml"),
        "[[network]]\nname = \"lan\"\ncidrs = [\"10.1.0.0/16\"]\naddresses = [\"10.1.0.2\"]\n",
    )
    .expect("write");
    std::fs::create_dir(p.join("services")).expect("mkdir");
    std::fs::write(p.join("services/app.toml"), "[[zone]]\nname = \"home.arpa\"\n[[service]]\nhost = \"app.home.arpa\"\nbackends = [\"http://10.1.0.9\"]\nallow = [\"lan\"]\n").expect("write");
    std::fs::create_dir(p.join(".git")).expect("mkdir");
    std::fs::write(p.join(".git/broken.toml"), "this is not toml").expect("write");
    let s = load_and_compile(p, 1).expect("merged directory compiles");
    assert_eq!(s.services.len(), 1);
    assert_eq!(
        resolve(&s, "10.1.2.3", "app.home.arpa.", RecordType::A),
        Ok(vec!["10.1.0.2".into()])
    );
    assert_eq!(load(p).expect("loads").sources.iter().count(), 2);
}

#[test]
fn records_carry_types_and_ttls() {
    let s = homelab();
    let Some(Lookup::Answer { records, .. }) = s.lookup(
        ip("10.0.30.9"),
        &name("cloud.lab.example.com."),
        RecordType::A,
    ) else {
        panic!("no answer")
    };
    assert_eq!(records[0].ttl, 300);
    assert!(matches!(records[0].data, RData::A(_)));
}

#[test]
fn ptr_records_are_derived_from_each_views_addresses() {
    let s = homelab();
    // The explicit PTR serves management; clients see nas too and get the derived one.
    assert_eq!(
        resolve(&s, "10.0.30.9", "10.20.0.10.in-addr.arpa.", RecordType::PTR),
        Ok(vec!["nas.lab.example.com.".into()])
    );
    // labgate's own address in a view names the services that view may use, sorted.
    assert_eq!(
        resolve(&s, "10.0.40.9", "2.40.0.10.in-addr.arpa.", RecordType::PTR),
        Ok(vec!["home.lab.example.com.".into()])
    );
    // IoT does not see the NAS: no PTR either.
    assert_eq!(
        resolve(&s, "10.0.40.9", "10.20.0.10.in-addr.arpa.", RecordType::PTR),
        Err("nxdomain")
    );
}

#[test]
fn negative_answers_carry_the_soa_that_soa_queries_get() {
    let s = snapshot(
        r#"
[[network]]
name = "inside"
cidrs = ["10.0.0.0/16"]
addresses = ["10.0.0.2"]
[[zone]]
name = "example.net"
[[record]]
name = "example.net"
type = "SOA"
value = "ns1.example.net. admin.example.net. 7 3600 600 604800 30"
ttl = 300
"#,
    );
    let view = s.view(s.networks.lookup(ip("10.0.5.5")).expect("inside").network);
    let soa = view.negative_soa(&s.zones[0]);
    assert_eq!(
        soa.data.to_string(),
        resolve(&s, "10.0.5.5", "example.net.", RecordType::SOA).expect("SOA")[0]
    );
    assert!(soa.data.to_string().contains(" 7 "), "{soa:?}");
    assert_eq!(soa.ttl, 30, "min(SOA TTL, SOA minimum)");
}

#[test]
fn backend_urls_give_scheme_address_and_port() {
    let s = snapshot(
        r#"
[[network]]
name = "lab"
cidrs = ["10.0.0.0/24"]
addresses = ["10.0.0.1"]

[[zone]]
name = "lab.test"

[[service]]
host = "grpc.lab.test"
backends = ["h2c://10.0.0.7:50051", "h2c://[fd00::7]:50051", "h2c://grpc-box:9000", "https://nas.lab.test", "http://10.0.0.8"]
allow = ["lab"]
"#,
    );
    use labgate_config::route::BackendHost;
    let got: Vec<_> = s.services[0]
        .backends
        .iter()
        .map(|b| (b.tls, b.h2c, b.host.clone(), b.port))
        .collect();
    assert_eq!(
        got,
        [
            (false, true, BackendHost::Ip(ip("10.0.0.7")), 50051),
            (false, true, BackendHost::Ip(ip("fd00::7")), 50051),
            (false, true, BackendHost::Name("grpc-box".into()), 9000),
            (true, false, BackendHost::Name("nas.lab.test".into()), 443),
            (false, false, BackendHost::Ip(ip("10.0.0.8")), 80),
        ]
    );
}

#[test]
fn a_changed_ca_file_is_a_changed_configuration() {
    let ca = |name: &str| {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.self_signed(&key).expect("CA").pem()
    };
    let hash = |pem: &str| {
        let config = r#"
[[network]]
name = "lab"
cidrs = ["10.0.0.0/16"]
addresses = ["10.0.0.2"]
[[zone]]
name = "example.net"
[[service]]
host = "pve.example.net"
backends = ["https://10.0.20.5:8006"]
allow = ["lab"]
backend_ca_file = "ca.pem"
"#;
        let loaded = testing::loaded(config, &[("ca.pem", pem.as_bytes())]);
        compile(&loaded, 1).expect("compiles").hash
    };
    let first = ca("first");
    assert_eq!(hash(&first), hash(&first));
    // A reload must see it, though no TOML file changed.
    assert_ne!(hash(&first), hash(&ca("second")));
}

#[test]
fn a_blocklist_file_with_a_byte_that_is_not_utf8_still_blocks() {
    let loaded = testing::loaded(
        "[[blocklist]]\nname = \"ads\"\nfile = \"ads.txt\"\n\n[[network]]\nname = \"lab\"\ncidrs = [\"10.0.0.0/16\"]\naddresses = [\"10.0.0.2\"]\nblocklists = [\"ads\"]\n",
        &[("ads.txt", b"# liste fran\xe7aise\nads.example.com\n")],
    );
    let s = compile(&loaded, 1).expect("compiles");
    assert!(s.dns.blocklists[0].names.blocks("ads.example.com"));
}
