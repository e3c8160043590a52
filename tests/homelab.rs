//! `deploy/examples/homelab.toml` served end to end: clients on four VLANs (addresses added
//! to the loopback interface, so every packet stays on this machine) get their own DNS
//! answers and HTTPS policy from the real binary. The only changes to the example are the
//! upstreams (a private Unbound instead of the internet), the secret file's absolute path and
//! the listeners and state directory given on the command line.
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    reason = "drives a real labgate from outside: deadlines on the wall clock, polls until they pass, prints what it saw"
)]

mod support;

use support::backend::Backend;
use support::https::curl_https;
use support::{ConfigDir, Labgate, LoopbackAddrs, Unbound, dig, dns_ports};

#[test]
fn the_homelab_example_answers_each_vlan_and_enforces_its_policy() {
    const MGMT: &str = "10.0.10.50";
    const CLIENT: &str = "10.0.30.50";
    const IOT: &str = "10.0.40.50";
    const GUEST: &str = "10.0.50.50";
    let _addrs = LoopbackAddrs::add(&[MGMT, CLIENT, IOT, GUEST, "10.0.20.13"]);
    // Home Assistant's backend address from the example, on loopback.
    let hass = Backend::start_on("home-assistant", "10.0.20.13:8123");
    let unbound = Unbound::start(&[], &[]);
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples");
    let text = std::fs::read_to_string(format!("{example}/homelab.toml")).expect("example");
    let start = text.find("upstreams = [").expect("upstreams");
    let end = start + text[start..].find(']').expect("end of upstreams") + 1;
    let text = format!(
        "{}upstreams = [\"udp://127.0.0.1:{}\"]{}",
        &text[..start],
        unbound.port,
        &text[end..]
    )
    .replace(
        "\"secrets/cloudflare.token\"",
        &format!("\"{example}/secrets/cloudflare.token\""),
    );
    let dir = ConfigDir::new();
    dir.write("homelab.toml", &text);
    let state = tempfile::tempdir().expect("state");
    let lg = Labgate::start(
        &[
            "--config",
            dir.path("homelab.toml").to_str().expect("utf-8"),
        ],
        state.path(),
    );
    let (udp, _) = dns_ports(&lg);

    // DNS: each VLAN sees the service at labgate's address on that VLAN, or not at all.
    let a = |from: &str, name: &str| dig(udp, from, &[name]);
    assert_eq!(
        a(MGMT, "proxmox.lab.example.com").answer,
        ["proxmox.lab.example.com. 300 IN A 10.0.10.2"]
    );
    assert_eq!(a(CLIENT, "proxmox.lab.example.com").status, "NXDOMAIN");
    assert_eq!(
        a(CLIENT, "cloud.lab.example.com").answer,
        ["cloud.lab.example.com. 300 IN A 10.0.30.2"]
    );
    assert_eq!(
        a(IOT, "home.lab.example.com").answer,
        ["home.lab.example.com. 300 IN A 10.0.40.2"]
    );
    assert_eq!(a(IOT, "cloud.lab.example.com").status, "NXDOMAIN");
    assert_eq!(a(GUEST, "home.lab.example.com").status, "NXDOMAIN");
    assert_eq!(a("127.0.0.9", "home.lab.example.com").status, "REFUSED");

    // HTTPS: the same policy, with local-CA certificates until ACME issues real ones.
    let ca = state.path().join("local-ca/ca.pem");
    let iot_hass = curl_https(
        lg.https,
        "home.lab.example.com",
        "/api/",
        &ca,
        &["--interface", IOT],
    );
    assert_eq!(iot_hass.status, 200, "{iot_hass:?}");
    assert_eq!(hass.seen()[0].header("x-forwarded-for"), [IOT]);
    let iot_proxmox = curl_https(
        lg.https,
        "proxmox.lab.example.com",
        "/",
        &ca,
        &["--interface", IOT],
    );
    assert_eq!(iot_proxmox.status, 403, "{iot_proxmox:?}");
    assert!(
        iot_proxmox
            .body
            .contains("network iot may not reach service proxmox"),
        "{iot_proxmox:?}"
    );
    let guest = curl_https(
        lg.https,
        "home.lab.example.com",
        "/",
        &ca,
        &["--interface", GUEST],
    );
    assert_eq!(guest.status, 403, "{guest:?}");
}
