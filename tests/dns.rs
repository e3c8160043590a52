//! End-to-end: the real binary answers DNS per network view, over UDP and TCP, with dig as
//! the client; loopback addresses 127.0.0.x stand in for VLANs (`dig -b`).

mod support;

use support::{ConfigDir, Labgate, dig, dns_ports};

const CONFIG: &str = r#"
[listen]
dns = ["127.0.0.1:0"]

[[network]]
name = "lab"
cidrs = ["127.0.0.1/32"]
addresses = ["10.0.10.2", "fd00:10::2"]

[[network]]
name = "iot"
cidrs = ["127.0.0.3/32"]
addresses = ["10.0.40.2"]

[[network]]
name = "guest"
cidrs = ["127.0.0.2/32"]
addresses = ["10.0.50.2"]
internal = false

[[zone]]
name = "lab.test"

[[record]]
name = "nas.lab.test"
type = "A"
value = "10.0.20.10"
networks = ["lab"]

[[record]]
name = "files.lab.test"
type = "CNAME"
value = "nas.lab.test"

[[service]]
host = "cloud.lab.test"
backends = ["http://10.0.20.11"]
allow = ["lab"]

[[service]]
host = "home.lab.test"
backends = ["http://10.0.20.13:8123"]
allow = ["lab", "iot"]
"#;

fn start(cfg: &ConfigDir) -> (Labgate, u16, u16) {
    cfg.write("labgate.toml", CONFIG);
    let lg = Labgate::start(
        &[
            "--config",
            cfg.path("labgate.toml").to_str().expect("utf-8"),
        ],
        &cfg.path("state"),
    );
    let (udp, tcp) = dns_ports(&lg);
    (lg, udp, tcp)
}

#[test]
fn each_network_gets_its_own_answer_for_a_service() {
    let cfg = ConfigDir::new();
    let (_lg, udp, tcp) = start(&cfg);
    let lab = dig(udp, "127.0.0.1", &["cloud.lab.test", "A"]);
    assert_eq!(lab.status, "NOERROR");
    assert!(
        lab.flags.split(' ').any(|f| f == "aa"),
        "authoritative: {}",
        lab.flags
    );
    assert_eq!(lab.answer, ["cloud.lab.test. 300 IN A 10.0.10.2"]);
    let lab6 = dig(tcp, "127.0.0.1", &["+tcp", "cloud.lab.test", "AAAA"]);
    assert_eq!(lab6.answer, ["cloud.lab.test. 300 IN AAAA fd00:10::2"]);
    // IoT may use Home Assistant (its own address) but not the cloud.
    let iot = dig(udp, "127.0.0.3", &["home.lab.test", "A"]);
    assert_eq!(iot.answer, ["home.lab.test. 300 IN A 10.0.40.2"]);
    let hidden = dig(udp, "127.0.0.3", &["cloud.lab.test", "A"]);
    assert_eq!(hidden.status, "NXDOMAIN");
    assert_eq!(hidden.authority.len(), 1, "SOA in authority");
    assert!(
        hidden.authority[0].starts_with("lab.test. 60 IN SOA ns.lab.test. hostmaster.lab.test."),
        "{:?}",
        hidden.authority
    );
}

#[test]
fn guests_see_nothing_and_strangers_are_refused() {
    let cfg = ConfigDir::new();
    let (_lg, udp, tcp) = start(&cfg);
    for name in ["cloud.lab.test", "nas.lab.test", "lab.test"] {
        assert_eq!(
            dig(udp, "127.0.0.2", &[name, "A"]).status,
            "NXDOMAIN",
            "{name}"
        );
    }
    // 127.0.0.9 is in no network: REFUSED for every name, over UDP and TCP.
    assert_eq!(dig(udp, "127.0.0.9", &["cloud.lab.test"]).status, "REFUSED");
    assert_eq!(
        dig(tcp, "127.0.0.9", &["+tcp", "example.com"]).status,
        "REFUSED"
    );
}

#[test]
fn nodata_cname_chains_and_case_are_right() {
    let cfg = ConfigDir::new();
    let (_lg, udp, _tcp) = start(&cfg);
    // home.lab.test exists for IoT but has no IPv6 there: NODATA with the SOA.
    let nodata = dig(udp, "127.0.0.3", &["home.lab.test", "AAAA"]);
    assert_eq!(nodata.status, "NOERROR");
    assert!(nodata.answer.is_empty());
    assert_eq!(nodata.authority.len(), 1);
    let chain = dig(udp, "127.0.0.1", &["FILES.Lab.Test", "A"]);
    assert_eq!(
        chain.answer,
        [
            "files.lab.test. 300 IN CNAME nas.lab.test.",
            "nas.lab.test. 300 IN A 10.0.20.10"
        ]
    );
}

#[test]
fn answers_follow_a_reload() {
    let cfg = ConfigDir::new();
    let (lg, udp, _tcp) = start(&cfg);
    assert_eq!(
        dig(udp, "127.0.0.3", &["cloud.lab.test"]).status,
        "NXDOMAIN"
    );
    cfg.write(
        "labgate.toml",
        &CONFIG.replace("allow = [\"lab\"]", "allow = [\"lab\", \"iot\"]"),
    );
    lg.wait_config("generation 2", |c| support::generation(c) == 2);
    assert_eq!(
        dig(udp, "127.0.0.3", &["cloud.lab.test"]).answer,
        ["cloud.lab.test. 300 IN A 10.0.40.2"]
    );
}
