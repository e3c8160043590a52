//! labgate run the way `deploy/labgate.service` runs it: an unprivileged user whose one
//! capability is CAP_NET_BIND_SERVICE, serving DNS on :53, HTTP on :80 and HTTPS on :443
//! (here on 127.0.0.77, which no other test uses), refusing a state directory another user
//! could write, and the unit itself passing `systemd-analyze verify`.
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    reason = "drives a real labgate from outside: deadlines on the wall clock, polls until they pass, prints what it saw"
)]

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use support::backend::Backend;
use support::{ConfigDir, Labgate, bin};

/// The address of this file's listeners.
const ADDR: &str = "127.0.0.77";
/// `nobody` and `nogroup` on Debian.
const NOBODY: u32 = 65534;
/// `setpriv` as the unit's `User=`, `AmbientCapabilities=` and `CapabilityBoundingSet=`.
const AS_SERVICE: [&str; 7] = [
    "setpriv",
    "--reuid=nobody",
    "--regid=nogroup",
    "--clear-groups",
    "--inh-caps=-all,+net_bind_service",
    "--ambient-caps=+net_bind_service",
    "--bounding-set=-all,+net_bind_service",
];

fn config(backend: u16) -> String {
    format!(
        r#"
[listen]
dns = ["{ADDR}:53"]
https = ["{ADDR}:443"]
http = ["{ADDR}:80"]
admin = "{ADDR}:0"

[[network]]
name = "lab"
cidrs = ["127.0.0.0/8"]
addresses = ["{ADDR}"]

[[zone]]
name = "lab.test"

[[service]]
host = "app.lab.test"
backends = ["http://127.0.0.1:{backend}"]
allow = ["lab"]
"#
    )
}

/// A config directory the `nobody` user can read, with a state directory it owns.
fn setup(backend: u16) -> ConfigDir {
    let cfg = ConfigDir::new();
    cfg.write("labgate.toml", &config(backend));
    let open = std::fs::Permissions::from_mode(0o755);
    std::fs::set_permissions(cfg.path(""), open).expect("chmod");
    std::fs::create_dir_all(cfg.path("state")).expect("state dir");
    std::os::unix::fs::chown(cfg.path("state"), Some(NOBODY), Some(NOBODY))
        .expect("chown: the tests run as root (scripts/test.sh)");
    cfg
}

#[test]
fn an_unprivileged_user_with_only_cap_net_bind_service_serves_ports_53_80_and_443() {
    let backend = Backend::start("app");
    let cfg = setup(backend.port);
    let config = cfg.path("labgate.toml");
    let lg = Labgate::start_as_configured(
        &AS_SERVICE,
        &["--config", config.to_str().expect("utf-8")],
        &cfg.path("state"),
    );
    let proc = std::fs::read_to_string(format!("/proc/{}/status", lg.pid())).expect("status");
    let uid = proc
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .expect("a Uid line");
    assert!(
        uid.split_whitespace().all(|u| u == NOBODY.to_string()),
        "runs as nobody: {uid}"
    );
    let caps = |field: &str| {
        proc.lines()
            .find_map(|l| l.strip_prefix(field))
            .map(str::trim)
            .expect("a capability line")
            .to_owned()
    };
    // Bit 10: CAP_NET_BIND_SERVICE, and nothing else.
    assert_eq!(
        (caps("CapEff:"), caps("CapBnd:")),
        ("0000000000000400".into(), "0000000000000400".into())
    );
    let dig = Command::new("dig")
        .args([
            &format!("@{ADDR}"),
            "-p",
            "53",
            "+short",
            "+time=5",
            "+tries=1",
        ])
        .args(["-b", ADDR, "app.lab.test", "A"])
        .output()
        .expect("dig");
    assert_eq!(String::from_utf8_lossy(&dig.stdout).trim(), ADDR);
    let resolve = [
        "--resolve",
        &format!("app.lab.test:80:{ADDR}"),
        "--resolve",
        &format!("app.lab.test:443:{ADDR}"),
    ];
    let ca = cfg.path("state/local-ca/ca.pem");
    let cacert = ["--cacert", ca.to_str().expect("utf-8")];
    let plain = status(&[&resolve[..], &["http://app.lab.test/"]].concat());
    assert!(matches!(plain, 301 | 308), "HTTP redirects: {plain}");
    let tls = status(&[&resolve[..], &cacert, &["https://app.lab.test/"]].concat());
    assert_eq!(tls, 200);
    // What it keeps is its own, and the CA key is private.
    let key = std::fs::metadata(cfg.path("state/local-ca/ca.key")).expect("the CA key");
    assert_eq!((key.uid(), key.mode() & 0o777), (NOBODY, 0o600));
}

/// `labgate run` through `command` (labgate itself, or a wrapper ending in its path) on
/// `cfg`'s configuration and the state directory `state` below it: it must stop with exit
/// status 1 (a runtime failure); what it said.
fn refused(mut command: Command, cfg: &ConfigDir, state: &str) -> String {
    let config = cfg.path("labgate.toml");
    let out = command
        .args(["run", "--config", config.to_str().expect("utf-8")])
        .arg("--state-dir")
        .arg(cfg.path(state))
        .output()
        .expect("labgate");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    stderr
}

/// curl's status code for `args`.
fn status(args: &[&str]) -> u16 {
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "30",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(args)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
}

#[test]
fn without_the_capability_the_start_stops_at_once_and_says_what_is_missing() {
    // Docker sets this to 0 in containers: then every port is open to every user, and there
    // is no missing capability to report.
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse::<u16>().ok())
        .unwrap_or(1024);
    if start <= 53 {
        eprintln!(
            "skipped: net.ipv4.ip_unprivileged_port_start is {start}, ports 53-443 need no capability here"
        );
        return;
    }
    let cfg = setup(9);
    let mut setpriv = Command::new(AS_SERVICE[0]);
    setpriv
        .args(&AS_SERVICE[1..4])
        .args(["--inh-caps=-all", "--bounding-set=-all"])
        .arg(bin().get_program());
    let stderr = refused(setpriv, &cfg, "state");
    assert!(
        stderr.contains("need root or the CAP_NET_BIND_SERVICE capability"),
        "{stderr}"
    );
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().expect("dir");
    let unit = std::fs::read_to_string("deploy/labgate.service").expect("the unit");
    assert!(unit.contains("ExecStart=/usr/local/bin/labgate run --config /etc/labgate"));
    // `verify` checks that the programs exist: point it at the one under test.
    let unit = unit.replace("/usr/local/bin/labgate", env!("CARGO_BIN_EXE_labgate"));
    let path = dir.path().join("labgate.service");
    std::fs::write(&path, unit).expect("write");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze is needed: apt-get install systemd (scripts/test.sh does)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // `verify` exits 0 on unknown keys and bad values: only a silent run is clean.
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
}

/// The unit's system call filter, expanded by systemd's own tables, allows what labgate needs
/// beyond everyday calls: the descriptor store's hand-back (`pidfd_open`, `pidfd_getfd`) and
/// the socket hand-over of an upgrade (`sendmsg`, `recvmsg`).
#[test]
fn the_unit_s_system_call_filter_allows_the_restart_and_upgrade_calls() {
    let unit = std::fs::read_to_string("deploy/labgate.service").expect("the unit");
    let mut allowed = std::collections::BTreeSet::new();
    let mut groups: Vec<String> = Vec::new();
    for line in unit.lines() {
        let Some(list) = line.strip_prefix("SystemCallFilter=") else {
            continue;
        };
        assert!(!list.starts_with('~'), "a deny list: {line}");
        groups.extend(list.split_whitespace().map(str::to_owned));
    }
    while let Some(item) = groups.pop() {
        if !item.starts_with('@') {
            allowed.insert(item);
            continue;
        }
        let out = Command::new("systemd-analyze")
            .args(["syscall-filter", &item])
            .output()
            .expect("systemd-analyze");
        assert!(out.status.success(), "{item}: {out:?}");
        // The group's name and description, then its calls and nested groups, one per line.
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        for entry in text.lines().skip(1).map(str::trim) {
            if entry.starts_with('#') || entry.is_empty() || entry.contains(' ') {
                continue;
            }
            if entry.starts_with('@') {
                groups.push(entry.to_owned());
            } else {
                allowed.insert(entry.to_owned());
            }
        }
    }
    for call in [
        "pidfd_open",
        "pidfd_getfd",
        "sendmsg",
        "recvmsg",
        "socket",
        "bind",
    ] {
        assert!(
            allowed.contains(call),
            "{call} is not allowed by the unit's filter"
        );
    }
}

#[test]
fn a_state_directory_another_user_could_plant_keys_in_is_refused() {
    let cfg = setup(9);
    // `setup` gave it to nobody; this test runs as root.
    let stderr = refused(bin(), &cfg, "state");
    assert!(stderr.contains("belongs to user id 65534"), "{stderr}");
    std::os::unix::fs::chown(cfg.path("state"), Some(0), Some(0)).expect("chown");
    let shared = std::fs::Permissions::from_mode(0o1777);
    std::fs::set_permissions(cfg.path("state"), shared).expect("chmod");
    let stderr = refused(bin(), &cfg, "state");
    assert!(
        stderr.contains("can be written by users outside labgate's groups"),
        "{stderr}"
    );
    assert!(
        !cfg.path("state/local-ca").exists(),
        "nothing was written there"
    );
    // A link another user made, even to a good directory, is theirs to repoint.
    std::fs::create_dir(cfg.path("real")).expect("dir");
    std::os::unix::fs::symlink(cfg.path("real"), cfg.path("link")).expect("link");
    std::os::unix::fs::lchown(cfg.path("link"), Some(NOBODY), Some(NOBODY)).expect("lchown");
    let stderr = refused(bin(), &cfg, "link");
    assert!(
        stderr.contains("the state link") && stderr.contains("belongs to user id 65534"),
        "{stderr}"
    );
}

/// systemd's side of `Type=notify` and `WatchdogSec=`, played by a datagram socket in the
/// test as `$NOTIFY_SOCKET`: READY=1 once labgate serves, WATCHDOG=1 while its self-check of
/// DNS and HTTPS passes (every second here, for a 2 s watchdog), STOPPING=1 on SIGTERM; every
/// listening socket goes to the descriptor store before READY=1 (`tests/upgrade.rs` restarts
/// on them).
#[test]
fn readiness_and_the_watchdog_reach_the_notify_socket() {
    use std::os::unix::net::UnixDatagram;
    use std::time::{Duration, Instant};

    let cfg = ConfigDir::new();
    let socket_path = cfg.path("notify.sock");
    let systemd = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    systemd
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    cfg.write(
        "labgate.toml",
        "[[network]]\nname = \"lab\"\ncidrs = [\"127.0.0.0/8\"]\naddresses = [\"127.0.0.1\"]\n\
         [[zone]]\nname = \"lab.test\"\n[tls]\nlocal_ca = true\n\
         [[service]]\nhost = \"app.lab.test\"\nbackends = [\"http://127.0.0.1:9\"]\nallow = [\"lab\"]\n",
    );
    let notify = format!("NOTIFY_SOCKET={}", socket_path.display());
    let lg = Labgate::start_under(
        &["env", &notify, "WATCHDOG_USEC=2000000"],
        &[
            "--config",
            cfg.path("labgate.toml").to_str().expect("utf-8"),
        ],
        &cfg.path("state"),
    );
    let next = || {
        let mut buf = [0u8; 512];
        let n = systemd.recv(&mut buf).expect("a notification within 20 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    // First every listener, for the descriptor store (systemd 252 here sets no `$FDSTORE`:
    // labgate sends them anyway), then READY=1.
    let mut stored = Vec::new();
    let ready = loop {
        let m = next();
        match m.strip_prefix("FDSTORE=1\nFDNAME=") {
            Some(name) => stored.push(name.to_owned()),
            None => break m,
        }
    };
    assert!(
        ready.starts_with("READY=1\nSTATUS=serving generation 1"),
        "{ready}"
    );
    for kind in ["admin@", "dns-udp@", "dns-tcp@", "https@", "http@"] {
        assert!(
            stored.iter().any(|n| n.starts_with(kind)),
            "{kind} in {stored:?}"
        );
    }
    // Pings every second once the self-check passes; /readyz agrees.
    let started = Instant::now();
    for _ in 0..3 {
        assert_eq!(next(), "WATCHDOG=1");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(6), "three pings took {took:?}");
    assert_eq!(lg.admin("GET", "/readyz"), (200, "ready\n".to_owned()));
    assert_eq!(lg.metric("labgate_self_check_passing"), 1);
    assert!(lg.terminate(), "labgate exited with an error");
    loop {
        let m = next();
        if m != "WATCHDOG=1" {
            assert!(m.starts_with("STOPPING=1"), "{m}");
            break;
        }
    }
    // The query log has no trace of the self-check's queries (at least three were asked).
    let out = Command::new("sqlite3")
        .arg("-readonly")
        .arg(cfg.path("state/querylog.sqlite"))
        .arg("SELECT count(*) FROM queries")
        .output()
        .expect("sqlite3");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0", "{out:?}");
}

/// `deploy/labgate-pull.service` as its timer runs it: a push to the configuration's repository
/// becomes a reload, and `/config` names the commit served.
#[test]
fn a_push_to_git_is_a_reload_through_the_pull_unit() {
    let dir = ConfigDir::new();
    let git = |cwd: &std::path::Path, args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=lab", "-c", "user.email=lab@example.test"])
            .args(["-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(cwd)
            .output()
            .expect("git is needed: apt-get install git (scripts/test.sh does)");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let root = dir.path("");
    git(&root, &["init", "-q", "--bare", "origin.git"]);
    git(&root, &["clone", "-q", "origin.git", "author"]);
    let author = dir.path("author");
    let base = "[[network]]\nname = \"lab\"\ncidrs = [\"127.0.0.0/8\"]\naddresses = [\"127.0.0.1\"]\n\
                [[zone]]\nname = \"lab.test\"\n";
    dir.write("author/labgate.toml", base);
    git(&author, &["add", "."]);
    git(&author, &["commit", "-q", "-m", "first"]);
    git(&author, &["push", "-q", "origin", "HEAD"]);
    git(&root, &["clone", "-q", "origin.git", "node"]);
    let node = dir.path("node");
    let lg = Labgate::start(
        &["--config", node.to_str().expect("utf-8")],
        &dir.path("state"),
    );
    let first = git(&author, &["rev-parse", "HEAD"]);
    assert_eq!(lg.config()["revision"], first[..12]);

    dir.write(
        "author/labgate.toml",
        &format!(
            "{base}[[record]]\nname = \"nas.lab.test\"\ntype = \"A\"\nvalue = \"10.0.20.10\"\n"
        ),
    );
    git(&author, &["commit", "-q", "-am", "a record"]);
    git(&author, &["push", "-q", "origin", "HEAD"]);
    let second = git(&author, &["rev-parse", "HEAD"]);
    // The unit's command, on this checkout.
    let unit = std::fs::read_to_string("deploy/labgate-pull.service").expect("the unit");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart")
        .replace("/etc/labgate", node.to_str().expect("utf-8"));
    let pull = || {
        let mut words = exec.split_whitespace();
        let out = Command::new(words.next().expect("a program"))
            .args(words)
            .output()
            .expect("run the pull");
        assert!(out.status.success(), "{out:?}");
    };
    pull();
    lg.wait_config("the pulled commit", |c| c["revision"] == second[..12]);
    assert_eq!(support::generation(&lg.config()), 2);
    let (udp, _) = support::dns_ports(&lg);
    let d = support::dig(udp, "127.0.0.1", &["nas.lab.test"]);
    assert_eq!(d.answer, ["nas.lab.test. 300 IN A 10.0.20.10"], "{}", d.raw);
    // A commit that changes nothing labgate reads moves the revision shown all the same (a
    // node restarted after it would show it: both nodes of a pair must agree).
    dir.write("author/README.md", "How this homelab is configured.\n");
    git(&author, &["add", "README.md"]);
    git(&author, &["commit", "-q", "-m", "a readme"]);
    git(&author, &["push", "-q", "origin", "HEAD"]);
    let third = git(&author, &["rev-parse", "HEAD"]);
    pull();
    lg.wait_config("the README's commit", |c| c["revision"] == third[..12]);

    // Both units pass `systemd-analyze verify` (the timer next to its service).
    let units = tempfile::tempdir().expect("dir");
    for name in ["labgate-pull.service", "labgate-pull.timer"] {
        let text = std::fs::read_to_string(format!("deploy/{name}")).expect("unit");
        std::fs::write(units.path().join(name), text).expect("write");
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(units.path().join("labgate-pull.service"))
        .arg(units.path().join("labgate-pull.timer"))
        .output()
        .expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
}
