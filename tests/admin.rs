//! `[admin]` end to end: clients on a management and a guest VLAN (addresses on `lo`, root as
//! on CI) ask the real binary's admin endpoint directly and through the proxy's
//! `status.<zone>` service; the policy and its credentials arrive by a reload.
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    reason = "drives a real labgate from outside: deadlines on the wall clock, polls until they pass"
)]

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use support::https::{Reply, curl_https, parse_reply};
use support::{ConfigDir, LoopbackAddrs, RELOAD_TIMEOUT, bin};

const MGMT: &str = "10.24.10.5";
const GUEST: &str = "10.24.50.5";
const TOKEN: &str = "e2e-token-4f1c9a";

const BASE: &str = r#"
[[network]]
name = "mgmt"
cidrs = ["10.24.10.0/24"]
addresses = ["10.24.10.2"]

[[network]]
name = "guest"
cidrs = ["10.24.50.0/24"]
addresses = ["10.24.50.2"]

[[zone]]
name = "lab.test"
"#;

/// A request to the admin endpoint from `from` with curl (`-i`), extra args appended.
fn ask(admin: SocketAddr, from: &str, method: &str, path: &str, extra: &[&str]) -> Reply {
    let out = Command::new("curl")
        .args([
            "-s",
            "-i",
            "--max-time",
            "30",
            "--interface",
            from,
            "-X",
            method,
        ])
        .args(extra)
        .arg(format!("http://{admin}{path}"))
        .output()
        .expect("curl is needed: apt-get install curl (scripts/test.sh does)");
    parse_reply(&String::from_utf8_lossy(&out.stdout))
}

#[test]
fn the_admin_endpoint_admits_the_networks_and_credentials_of_admin() {
    let _addrs = LoopbackAddrs::add(&[MGMT, GUEST]);
    let dir = ConfigDir::new();
    let lg = dir.start(&format!("{BASE}\n[admin]\nallow = [\"mgmt\"]\n"));
    let admin = lg.admin;

    // The network policy, with no credentials asked.
    for (method, path) in [("GET", "/metrics"), ("GET", "/config"), ("POST", "/reload")] {
        let guest = ask(admin, GUEST, method, path, &[]);
        assert_eq!(guest.status, 403, "guest {method} {path}: {guest:?}");
        assert!(
            guest.body.contains("client 10.24.50.5 is in network `guest`; to let it in, add `guest` to `allow` under `[admin]`"),
            "{guest:?}"
        );
        let mgmt = ask(admin, MGMT, method, path, &[]);
        assert_eq!(mgmt.status, 200, "mgmt {method} {path}: {mgmt:?}");
    }
    // The supervisor's probes stay open.
    for path in ["/healthz", "/readyz"] {
        assert_eq!(ask(admin, GUEST, "GET", path, &[]).status, 200, "{path}");
    }
    // A guest cannot claim another address.
    let forged = ask(
        admin,
        GUEST,
        "GET",
        "/config",
        &["-H", &format!("X-Forwarded-For: {MGMT}")],
    );
    assert_eq!(forged.status, 403, "{forged:?}");

    // Credentials and the status service arrive by a reload.
    dir.write(
        "admin.secret",
        &format!("# tokens, then users\n{TOKEN}\nops:pass word\n"),
    );
    std::fs::set_permissions(
        dir.path("admin.secret"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    dir.write(
        "labgate.toml",
        &format!(
            "{BASE}\n[admin]\nallow = [\"mgmt\"]\nauth_file = \"admin.secret\"\n\n\
             [[service]]\nhost = \"status.lab.test\"\nbackends = [\"http://{admin}\"]\n\
             allow = [\"mgmt\", \"guest\"]\n"
        ),
    );
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let deadline = Instant::now() + RELOAD_TIMEOUT;
    while ask(admin, MGMT, "GET", "/metrics", &[]).status != 401 {
        assert!(
            Instant::now() < deadline,
            "the credentials were never applied"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let unauthorized = ask(admin, MGMT, "GET", "/config", &[]);
    assert_eq!(unauthorized.status, 401, "{unauthorized:?}");
    assert_eq!(
        unauthorized.header("www-authenticate"),
        Some("Basic realm=\"labgate admin\", charset=\"UTF-8\"")
    );
    let wrong = ask(
        admin,
        MGMT,
        "GET",
        "/config",
        &["-H", "Authorization: Bearer e2e-token-4f1c9b"],
    );
    assert_eq!(wrong.status, 401, "{wrong:?}");
    let loopback = ask(admin, "127.0.0.1", "POST", "/reload", &[]);
    assert_eq!(
        loopback.status, 401,
        "loopback needs the credentials too: {loopback:?}"
    );
    for creds in [vec!["-H", bearer.as_str()], vec!["-u", "ops:pass word"]] {
        let ok = ask(admin, MGMT, "GET", "/config", &creds);
        assert_eq!(ok.status, 200, "{creds:?}: {ok:?}");
        assert!(
            ok.body.contains("\"status\""),
            "the reloaded config: {ok:?}"
        );
        assert_eq!(
            ask(admin, MGMT, "POST", "/reload", &creds).status,
            200,
            "{creds:?}"
        );
    }
    // Credentials open no network.
    let guest = ask(admin, GUEST, "GET", "/config", &["-H", &bearer]);
    assert_eq!(guest.status, 403, "{guest:?}");
    assert_eq!(ask(admin, GUEST, "GET", "/healthz", &[]).status, 200);

    // Through the proxy: the service lets both networks in, `[admin]` only mgmt.
    let ca = dir.path("state").join("local-ca/ca.pem");
    let via = |from: &str, extra: &[&str]| {
        let mut args = vec!["--interface", from];
        args.extend_from_slice(extra);
        curl_https(lg.https, "status.lab.test", "/config", &ca, &args)
    };
    // Both of the proxy's paths (HTTP/1.1 forwarding and HTTP/2) write X-Forwarded-For.
    for version in ["--http1.1", "--http2"] {
        let guest = via(GUEST, &[version, "-H", &bearer]);
        assert_eq!(guest.status, 403, "{version}: {guest:?}");
        assert!(
            guest
                .body
                .contains("client 10.24.50.5 (forwarded by labgate's proxy) is in network `guest`"),
            "{version}: {guest:?}"
        );
        let forged = via(
            GUEST,
            &[
                version,
                "-H",
                &bearer,
                "-H",
                &format!("X-Forwarded-For: {MGMT}"),
            ],
        );
        assert_eq!(
            forged.status, 403,
            "{version}: the proxy replaces a client's X-Forwarded-For: {forged:?}"
        );
        let anonymous = via(MGMT, &[version]);
        assert_eq!(anonymous.status, 401, "{version}: {anonymous:?}");
        assert!(
            anonymous.header("www-authenticate").is_some(),
            "{version}: {anonymous:?}"
        );
        let page = via(MGMT, &[version, "-u", "ops:pass word"]);
        assert_eq!(page.status, 200, "{version}: {page:?}");
        assert!(page.body.contains("\"generation\""), "{version}: {page:?}");
    }

    // `labgate certs` sends a token from a file.
    dir.write("token", TOKEN);
    let certs = |extra: &[&str]| {
        bin()
            .args(["certs", "--admin", &admin.to_string()])
            .args(extra)
            .output()
            .expect("labgate certs")
    };
    let with = certs(&["--token-file", dir.path("token").to_str().expect("utf-8")]);
    assert!(with.status.success(), "{with:?}");
    let without = certs(&[]);
    assert!(!without.status.success());
    assert!(
        String::from_utf8_lossy(&without.stderr).contains("pass `--token-file`"),
        "{without:?}"
    );
}
