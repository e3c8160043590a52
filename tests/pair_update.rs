//! End-to-end: a pair's peer publishes ACME challenge values on this node with RFC 2136
//! UPDATEs signed with TSIG. Debian's `nsupdate` plays the peer (with a key `tsig-keygen`
//! wrote, from a node's address, over UDP and TCP; it checks the response's signature, so a
//! success proves labgate signed it), and `dig` plays the CA's resolver.
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    reason = "drives a real labgate from outside with real clients; prints what it saw"
)]

mod support;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use support::{ConfigDir, Labgate, dig, dns_ports};

/// The configuration: one network, one zone, a pair of nodes: 127.0.0.2, the address nsupdate
/// sends from, and 192.0.2.10, which no machine here has (so exactly one of the two is this
/// machine's, which is how labgate tells which node it is without `--node`).
const PAIR: &str = r#"
[[network]]
name = "lab"
cidrs = ["127.0.0.0/8"]
addresses = ["127.0.0.1"]

[[zone]]
name = "lab.test"

[pair]
nodes = ["192.0.2.10", "127.0.0.2"]
key_file = "pair.pem"
tsig_file = "pair.tsig"
"#;

/// The challenge name the tests publish at.
const AT: &str = "_acme-challenge.app.lab.test.";

/// A TSIG key file as `tsig-keygen NAME` writes it.
fn keygen(name: &str) -> String {
    let out = Command::new("tsig-keygen")
        .arg(name)
        .output()
        .expect("tsig-keygen is needed: apt-get install bind9-utils (scripts/test.sh does)");
    assert!(out.status.success(), "tsig-keygen: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Writes a new key named `name` to `file` in `dir`, readable by its owner only.
fn write_key(dir: &ConfigDir, file: &str, name: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    dir.write(file, &keygen(name));
    std::fs::set_permissions(dir.path(file), std::fs::Permissions::from_mode(0o600))
        .expect("chmod");
}

/// A configuration directory with `config`, the pair's key file (any file: DNS never reads
/// it) and its TSIG key: labgate started on it.
fn start(config: &str) -> (ConfigDir, Labgate, u16, u16) {
    let dir = ConfigDir::new();
    dir.write("pair.pem", "not read by DNS\n");
    write_key(&dir, "pair.tsig", "labgate-pair");
    let lg = dir.start(config);
    let (udp, tcp) = dns_ports(&lg);
    (dir, lg, udp, tcp)
}

/// What `nsupdate` made of one update.
#[derive(Debug)]
struct Sent {
    /// It exited 0: the response was NOERROR and its signature verified.
    ok: bool,
    /// Its stdout and stderr.
    text: String,
}

/// Sends `lines` (update commands) as one UPDATE of `lab.test` with `nsupdate -k key`
/// (unsigned without a key) from `from` to labgate's `port`, over TCP when `tcp`.
fn nsupdate(port: u16, key: Option<&Path>, from: &str, tcp: bool, lines: &[&str]) -> Sent {
    // `check-names no`: an A record at an `_acme-challenge` name must reach labgate to be
    // refused there.
    let mut script =
        format!("check-names no\nserver 127.0.0.1 {port}\nlocal {from}\nzone lab.test\n");
    for l in lines {
        script.push_str(l);
        script.push('\n');
    }
    script.push_str("send\n");
    // Bounded twice: nsupdate's own timeouts, and `timeout` around it.
    let mut cmd = Command::new("timeout");
    cmd.args(["30", "nsupdate", "-t", "10", "-u", "3", "-r", "1"]);
    if let Some(key) = key {
        cmd.arg("-k").arg(key);
    }
    if tcp {
        cmd.arg("-v");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nsupdate is needed: apt-get install bind9-dnsutils (scripts/test.sh does)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("script");
    let out = child.wait_with_output().expect("nsupdate");
    Sent {
        ok: out.status.success(),
        text: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Whether nsupdate said the update failed with `rcode`.
fn failed(sent: &Sent, rcode: &str) -> bool {
    !sent.ok && sent.text.contains(&format!("update failed: {rcode}\n"))
}

/// The TXT values labgate serves at [`AT`], asked from `127.0.0.9` (any client: the CA).
fn served(port: u16) -> Vec<String> {
    let d = dig(port, "127.0.0.9", &["TXT", AT]);
    assert!(!d.status.is_empty(), "no answer: {}", d.raw);
    d.answer
}

/// The answer line of one value.
fn line(value: &str) -> String {
    format!("{AT} 0 IN TXT \"{value}\"")
}

#[test]
fn the_peer_adds_and_deletes_challenge_values_signed_over_udp_and_tcp() {
    let (dir, lg, udp, tcp) = start(PAIR);
    let key = dir.path("pair.tsig");
    let key = Some(key.as_path());
    let add = format!("update add {AT} 60 TXT \"token-1\"");
    let sent = nsupdate(udp, key, "127.0.0.2", false, &[&add]);
    assert!(sent.ok, "{sent:?}");
    assert_eq!(served(udp), [line("token-1")]);
    // Over TCP, a second value at the same name (an apex and its wildcard share one), and
    // one made of two strings, served joined.
    let more = [
        format!("update add {AT} 60 TXT \"token-2\""),
        format!("update add {AT} 60 TXT \"tok\" \"en-3\""),
    ];
    let sent = nsupdate(tcp, key, "127.0.0.2", true, &[&more[0], &more[1]]);
    assert!(sent.ok, "{sent:?}");
    let mut got = served(udp);
    got.sort();
    assert_eq!(got, [line("token-1"), line("token-2"), line("token-3")]);
    // One value goes, then the rest.
    let del = format!("update delete {AT} TXT \"token-1\"");
    assert!(nsupdate(udp, key, "127.0.0.2", false, &[&del]).ok);
    let mut got = served(udp);
    got.sort();
    assert_eq!(got, [line("token-2"), line("token-3")]);
    let del_all = format!("update delete {AT} TXT");
    assert!(nsupdate(tcp, key, "127.0.0.2", true, &[&del_all]).ok);
    assert!(served(udp).is_empty());
    assert_eq!(
        lg.metric("labgate_dns_updates_total{result=\"applied\"}"),
        4
    );
    lg.wait_log("the applied line", |l| {
        l.contains("applied the pair peer's challenge values")
            && l.contains("source=127.0.0.2")
            && l.contains(AT)
    });
    // SECURITY: the secret never reaches the log.
    let text = std::fs::read_to_string(dir.path("pair.tsig")).expect("key");
    let secret = text
        .split("secret \"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("secret");
    assert!(!lg.log_text().contains(secret), "the secret is logged");
}

#[test]
fn a_wrong_key_a_stranger_or_a_record_other_than_a_challenge_value_changes_nothing() {
    let (dir, lg, udp, tcp) = start(PAIR);
    let key = dir.path("pair.tsig");
    let key = Some(key.as_path());
    let add = format!("update add {AT} 60 TXT \"token-1\"");
    // A key of the same name with another secret (BADSIG), another key (BADKEY), none.
    write_key(&dir, "wrong.tsig", "labgate-pair");
    write_key(&dir, "other.tsig", "other-key");
    for (file, rcode) in [
        (Some("wrong.tsig"), "NOTAUTH(BADSIG)"),
        (Some("other.tsig"), "NOTAUTH(BADKEY)"),
        (None, "NOTAUTH"),
    ] {
        let path = file.map(|f| dir.path(f));
        let sent = nsupdate(udp, path.as_deref(), "127.0.0.2", false, &[&add]);
        assert!(failed(&sent, rcode), "{file:?}: {sent:?}");
    }
    assert!(served(udp).is_empty());
    assert_eq!(
        lg.metric("labgate_dns_updates_total{result=\"notauth\"}"),
        3
    );
    // The right key from an address that is not a node.
    for stranger in ["127.0.0.3", "127.0.0.1"] {
        let sent = nsupdate(udp, key, stranger, false, &[&add]);
        assert!(failed(&sent, "REFUSED"), "{stranger}: {sent:?}");
    }
    assert!(served(udp).is_empty());
    // Not a challenge value, and a good value beside one that is not (all or none), over
    // both transports.
    let www = "update add www.lab.test. 60 TXT \"x\"";
    let a = format!("update add {AT} 60 A 10.0.0.66");
    for tcp_too in [false, true] {
        let port = if tcp_too { tcp } else { udp };
        for lines in [&[www][..], &[&a], &[&add, www]] {
            let sent = nsupdate(port, key, "127.0.0.2", tcp_too, lines);
            assert!(failed(&sent, "REFUSED"), "{lines:?}: {sent:?}");
        }
    }
    assert!(served(udp).is_empty());
    let www = dig(udp, "127.0.0.9", &["TXT", "www.lab.test"]);
    assert!(www.answer.is_empty(), "{}", www.raw);
    let a = dig(udp, "127.0.0.9", &["A", AT]);
    assert!(a.answer.is_empty(), "{}", a.raw);
    // Outside the zone: NOTZONE.
    let outside = "update add _acme-challenge.example.com. 60 TXT \"x\"";
    let sent = nsupdate(udp, key, "127.0.0.2", false, &[outside]);
    assert!(failed(&sent, "NOTZONE"), "{sent:?}");
    assert_eq!(
        lg.metric("labgate_dns_updates_total{result=\"refused\"}"),
        8
    );
    assert_eq!(
        lg.metric("labgate_dns_updates_total{result=\"notzone\"}"),
        1
    );
    assert_eq!(
        lg.metric("labgate_dns_updates_total{result=\"applied\"}"),
        0
    );
}

#[test]
fn without_a_pair_an_update_is_not_implemented() {
    let without = PAIR.split("[pair]").next().expect("before [pair]");
    let (dir, lg, udp, _) = start(without);
    let add = format!("update add {AT} 60 TXT \"token-1\"");
    let key = dir.path("pair.tsig");
    let sent = nsupdate(udp, Some(&key), "127.0.0.2", false, &[&add]);
    assert!(failed(&sent, "NOTIMP"), "{sent:?}");
    assert!(served(udp).is_empty());
    assert_eq!(
        lg.metric("labgate_dns_updates_total{result=\"applied\"}"),
        0
    );
}
