//! Tables for `View::lookup` and `zone_of`, over views compiled from TOML.

use super::*;
use crate::testing::snapshot;

const CONFIG: &str = r#"
[[network]]
name = "lab"
cidrs = ["10.0.0.0/16"]
addresses = ["10.0.0.2"]
[[network]]
name = "guest"
cidrs = ["10.1.0.0/16"]
addresses = ["10.1.0.2"]
internal = false
[[zone]]
name = "lab.test"
[[zone]]
name = "10.in-addr.arpa"
[[forward]]
domain = "k8s.lab.test"
upstreams = ["udp://10.0.0.53"]
[[record]]
name = "nas.lab.test"
type = "A"
value = "10.0.0.9"
[[record]]
name = "www.lab.test"
type = "CNAME"
value = "nas.lab.test"
[[record]]
name = "ext.lab.test"
type = "CNAME"
value = "example.com"
[[record]]
name = "dangling.lab.test"
type = "CNAME"
value = "gone.lab.test"
[[record]]
name = "txt.lab.test"
type = "TXT"
value = "only text"
[[record]]
name = "to-txt.lab.test"
type = "CNAME"
value = "txt.lab.test"
[[record]]
name = "*.dev.lab.test"
type = "TXT"
value = "dev"
[[record]]
name = "deep.a.b.lab.test"
type = "A"
value = "10.0.0.10"
[[record]]
name = "loop1.lab.test"
type = "CNAME"
value = "loop2.lab.test"
[[record]]
name = "loop2.lab.test"
type = "CNAME"
value = "loop1.lab.test"
[[record]]
name = "lab.test"
type = "SOA"
value = "ns.lab.test. admin.lab.test. 7 3600 600 604800 30"
ttl = 300
"#;

/// A lookup as one line: the outcome, the records (owner, type, data) and the chain's end.
fn outcome(l: Option<Lookup>) -> String {
    let Some(l) = l else {
        return "refused".into();
    };
    match l {
        Lookup::Outside => "outside".into(),
        Lookup::NxDomain { .. } => "nxdomain".into(),
        Lookup::NoData { .. } => "nodata".into(),
        Lookup::Answer { records, end, .. } => {
            let end = match end {
                ChainEnd::Data => String::new(),
                ChainEnd::NxDomain(_) => " then nxdomain".into(),
                ChainEnd::NoData(_) => " then nodata".into(),
                ChainEnd::Outside(n) => format!(" then outside at {n}"),
            };
            let records: Vec<String> = records
                .iter()
                .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
                .collect();
            if records.len() > 3 {
                format!("{} records{end}", records.len())
            } else {
                format!("{}{end}", records.join(", "))
            }
        }
    }
}

#[test]
fn lookups() {
    let s = snapshot(CONFIG);
    let cases: &[(&str, &str, RecordType, &str)] = &[
        (
            "10.0.5.5",
            "nas.lab.test.",
            RecordType::A,
            "nas.lab.test. A 10.0.0.9",
        ),
        (
            "10.0.5.5",
            "NAS.Lab.Test.",
            RecordType::A,
            "nas.lab.test. A 10.0.0.9",
        ),
        ("10.0.5.5", "nas.lab.test.", RecordType::AAAA, "nodata"),
        ("10.0.5.5", "nas.lab.test.", RecordType::CNAME, "nodata"),
        ("10.0.5.5", "nope.lab.test.", RecordType::A, "nxdomain"),
        // CNAME chains inside the internal data, and how they end (RFC 6604).
        (
            "10.0.5.5",
            "www.lab.test.",
            RecordType::A,
            "www.lab.test. CNAME nas.lab.test., nas.lab.test. A 10.0.0.9",
        ),
        (
            "10.0.5.5",
            "www.lab.test.",
            RecordType::CNAME,
            "www.lab.test. CNAME nas.lab.test.",
        ),
        (
            "10.0.5.5",
            "ext.lab.test.",
            RecordType::A,
            "ext.lab.test. CNAME example.com. then outside at example.com.",
        ),
        (
            "10.0.5.5",
            "dangling.lab.test.",
            RecordType::A,
            "dangling.lab.test. CNAME gone.lab.test. then nxdomain",
        ),
        (
            "10.0.5.5",
            "to-txt.lab.test.",
            RecordType::A,
            "to-txt.lab.test. CNAME txt.lab.test. then nodata",
        ),
        ("10.0.5.5", "loop1.lab.test.", RecordType::A, "9 records"),
        // Wildcards answer below their closest encloser, with the asked name as owner.
        (
            "10.0.5.5",
            "x.dev.lab.test.",
            RecordType::TXT,
            "x.dev.lab.test. TXT dev",
        ),
        (
            "10.0.5.5",
            "y.x.dev.lab.test.",
            RecordType::TXT,
            "y.x.dev.lab.test. TXT dev",
        ),
        ("10.0.5.5", "x.dev.lab.test.", RecordType::A, "nodata"),
        ("10.0.5.5", "dev.lab.test.", RecordType::TXT, "nodata"),
        // Empty non-terminals exist.
        ("10.0.5.5", "b.lab.test.", RecordType::A, "nodata"),
        ("10.0.5.5", "a.b.lab.test.", RecordType::A, "nodata"),
        ("10.0.5.5", "c.b.lab.test.", RecordType::A, "nxdomain"),
        // Outside the zones, and in a subdomain delegated by a [[forward]].
        ("10.0.5.5", "example.com.", RecordType::A, "outside"),
        ("10.0.5.5", "pod.k8s.lab.test.", RecordType::A, "outside"),
        ("10.0.5.5", "k8s.lab.test.", RecordType::A, "outside"),
        // Reverse names: derived from the view's addresses unless a PTR is written.
        (
            "10.0.5.5",
            "9.0.0.10.in-addr.arpa.",
            RecordType::PTR,
            "9.0.0.10.in-addr.arpa. PTR nas.lab.test.",
        ),
        (
            "10.0.5.5",
            "8.0.0.10.in-addr.arpa.",
            RecordType::PTR,
            "nxdomain",
        ),
        (
            "10.0.5.5",
            "0.10.in-addr.arpa.",
            RecordType::PTR,
            "nxdomain",
        ),
        // SECURITY: a network without internal names sees none; unknown clients get nothing.
        ("10.1.5.5", "nas.lab.test.", RecordType::A, "nxdomain"),
        (
            "10.1.5.5",
            "9.0.0.10.in-addr.arpa.",
            RecordType::PTR,
            "nxdomain",
        ),
        ("192.168.1.1", "nas.lab.test.", RecordType::A, "refused"),
    ];
    for (client, name, rtype, expected) in cases {
        let name = LowerName::new(&Name::from_ascii(name).expect("test name"));
        let got = outcome(s.lookup(client.parse().expect("test address"), &name, *rtype));
        assert_eq!(got, *expected, "{client} {name} {rtype}");
    }
}

#[test]
fn negative_soa_and_zone_of() {
    let s = snapshot(CONFIG);
    let lab = s.view(s.networks.by_name("lab").expect("lab").id);
    let soa = lab.negative_soa(&s.zones[0]);
    assert!(
        soa.data.to_string().contains(" 7 "),
        "the written SOA: {soa:?}"
    );
    assert_eq!(soa.ttl, 30, "min(SOA TTL, SOA minimum)");
    let cases: &[(&str, Option<&str>)] = &[
        ("lab.test.", Some("lab.test.")),
        ("a.b.lab.test.", Some("lab.test.")),
        ("7.0.0.10.in-addr.arpa.", Some("10.in-addr.arpa.")),
        ("k8s.lab.test.", None),
        ("x.k8s.lab.test.", None),
        ("xlab.test.", None),
        ("test.", None),
    ];
    for (name, zone) in cases {
        let name = LowerName::new(&Name::from_ascii(name).expect("test name"));
        let got = zone_of(&s.zones, &name).map(|z| z.name.to_string());
        assert_eq!(got.as_deref(), *zone, "{name}");
    }
}
