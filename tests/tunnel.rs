//! End-to-end: the Cloudflare Tunnel origin. Requests on the tunnel listener belong to the
//! network `tunnel` whatever their source, only from connector addresses; the client address
//! comes from `Cf-Connecting-IP` there and nowhere else; services that do not allow `tunnel`
//! do not exist for it; Cloudflare Access tokens are verified against a JWKS served on
//! loopback (valid, expired, wrong aud, wrong iss, tampered, alg none, HS256 with the public
//! key, unknown kid then a rotated key); `tunnel-config` and `explain --via tunnel` agree.
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    reason = "drives a real labgate from outside: deadlines on the wall clock, polls until they pass, prints what it saw"
)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use support::backend::Backend;
use support::jwks::{JwksServer, Key, hs256_with_public_key, unsigned};
use support::{ConfigDir, Labgate};

const TEAM: &str = "homelab";
const AUD: &str = "4714c1358e65fe4b408ad6d432a5f878f08194bdb4752441fd56faefa9b2b6f2";

fn config((tunnel, tunnel_https): (u16, u16), backend: u16, jwks: &str) -> String {
    format!(
        r#"
[listen]
tunnel = ["127.0.0.1:{tunnel}"]
tunnel_https = ["127.0.0.1:{tunnel_https}"]

[tunnel]
connectors = ["127.0.0.1"]
access_jwks_url = "{jwks}"

[[network]]
name = "lab"
cidrs = ["127.0.0.0/30"]
addresses = ["127.0.0.1"]

[[zone]]
name = "lab.test"

[[record]]
name = "keys.lab.test"
type = "A"
value = "127.0.0.1"
networks = ["lab"]

[[service]]
host = "public.lab.test"
backends = ["http://127.0.0.1:{backend}"]
allow = ["lab", "tunnel"]

[[service]]
host = "admin.lab.test"
backends = ["http://127.0.0.1:{backend}"]
allow = ["lab", "tunnel"]
access = {{ team = "{TEAM}", aud = "{AUD}", identity_header = "Remote-Email" }}

[[service]]
host = "nas.lab.test"
backends = ["http://127.0.0.1:{backend}"]
allow = ["lab"]
"#
    )
}

/// A plain-HTTP request to `port` with a Host and extra fields, from `from`: (status, body).
fn get(port: u16, host: &str, fields: &[(&str, &str)], from: &str) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "--max-time",
        "30",
        "--interface",
        from,
        "-w",
        "\n%{http_code}",
    ])
    .args(["-H", &format!("Host: {host}")]);
    for (n, v) in fields {
        cmd.args(["-H", &format!("{n}: {v}")]);
    }
    let out = cmd
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// `X-Forwarded-For` of the last request the backend got.
fn last_xff(backend: &Backend) -> Vec<String> {
    let seen = backend.seen().pop().expect("forwarded");
    seen.header("x-forwarded-for")
        .iter()
        .map(|v| (*v).to_owned())
        .collect()
}

/// labgate with both tunnel listeners on a port 0; their ports (plain HTTP, HTTPS) from its
/// readiness lines.
fn start(jwks: &str) -> (ConfigDir, Labgate, Backend, (u16, u16)) {
    let backend = Backend::start("app");
    let cfg = ConfigDir::new();
    let lg = cfg.start(&config((0, 0), backend.port, jwks));
    let port = |scheme: &str| {
        let prefix = format!("labgate: tunnel listening on {scheme}://127.0.0.1:");
        (lg.stdout.iter())
            .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
            .unwrap_or_else(|| panic!("no {scheme} tunnel line in {:#?}", lg.stdout))
    };
    let tunnel = (port("http"), port("https"));
    (cfg, lg, backend, tunnel)
}

#[test]
fn tunnel_requests_are_their_own_network_with_the_reported_client_and_nothing_more() {
    let (cfg, lg, backend, (tunnel, tunnel_https)) = start("http://127.0.0.1:9/certs");
    let cf = [
        ("Cf-Connecting-IP", "203.0.113.9"),
        ("CF-Ray", "8f1e2d3c4b5a6978-AMS"),
        ("Cf-Access-Authenticated-User-Email", "claimed@example.com"),
    ];
    let (status, _) = get(tunnel, "public.lab.test", &cf, "127.0.0.1");
    assert_eq!(status, 200);
    let seen = backend.seen().pop().expect("forwarded");
    assert_eq!(seen.header("cf-ray"), ["8f1e2d3c4b5a6978-AMS"]);
    assert!(
        seen.header("cf-access-authenticated-user-email").is_empty(),
        "an identity labgate did not verify is not passed on: {seen:?}"
    );
    assert_eq!(seen.header("x-forwarded-for"), ["203.0.113.9"]);
    assert_eq!(
        seen.header("forwarded"),
        ["for=203.0.113.9;proto=https;host=public.lab.test"]
    );
    assert_eq!(seen.header("x-forwarded-proto"), ["https"]);
    // Without the field the connector is the client.
    let (status, _) = get(tunnel, "public.lab.test", &[], "127.0.0.1");
    assert_eq!(status, 200);
    assert_eq!(last_xff(&backend), ["127.0.0.1"]);
    // The same source on the LAN reaches nas.lab.test; through the tunnel it does not exist.
    let (status, body) = get(tunnel, "nas.lab.test", &cf, "127.0.0.1");
    assert_eq!(status, 404, "{body}");
    // Only connectors may use the tunnel listener.
    let (status, body) = get(tunnel, "public.lab.test", &cf, "127.0.0.2");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("tunnel.connectors"), "{body}");
    // On the LAN listener the same fields are not believed, and never passed on.
    let ca = cfg.path("state/local-ca/ca.pem");
    let https =
        |port, host, extra: &[&str]| support::https::curl_https(port, host, "/", &ca, extra);
    let reply = https(
        lg.https,
        "public.lab.test",
        &[
            "-H",
            "Cf-Connecting-IP: 203.0.113.9",
            "-H",
            "Remote-Email: someone@example.com",
        ],
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    let seen = backend.seen().pop().expect("forwarded");
    assert_eq!(seen.header("x-forwarded-for"), ["127.0.0.1"]);
    assert!(seen.header("cf-connecting-ip").is_empty(), "{seen:?}");
    // The HTTPS tunnel listener, over HTTP/2 (labgate's HTTP/2 path): the same rules.
    let reply = https(
        tunnel_https,
        "public.lab.test",
        &["--http2", "-H", "Cf-Connecting-IP: 198.51.100.4"],
    );
    assert_eq!(
        (reply.status, reply.version.as_str()),
        (200, "HTTP/2"),
        "{reply:?}"
    );
    assert_eq!(last_xff(&backend), ["198.51.100.4"]);
    let reply = https(tunnel_https, "nas.lab.test", &["--http2"]);
    assert_eq!(reply.status, 404, "{reply:?}");
    // The access log names the reported client and the ray.
    lg.wait_log("the tunnel request's access line", |log| {
        log.lines()
            .any(|l| l.contains("203.0.113.9 public") && l.contains("cf-ray=8f1e2d3c4b5a6978-AMS"))
    });
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn claims(aud: &str, iss: &str, exp: u64, nbf: u64) -> Value {
    json!({"aud": [aud], "iss": iss, "exp": exp, "nbf": nbf, "iat": nbf, "email": "alice@example.com", "sub": "7335d417", "type": "app"})
}

#[test]
fn cloudflare_access_tokens_are_verified_and_the_identity_is_passed_on() {
    let dir = tempfile::tempdir().expect("dir");
    let (key1, key2) = (
        Key::new(dir.path(), "kid-one"),
        Key::new(dir.path(), "kid-two"),
    );
    let jwks = JwksServer::start(&[&key1]);
    // The keys' host is a name only labgate's own records have, never asked of the system's
    // resolver.
    let (cfg, lg, backend, (tunnel, tunnel_https)) =
        start(&jwks.url.replace("127.0.0.1", "keys.lab.test"));
    let iss = format!("https://{TEAM}.cloudflareaccess.com");
    let good = claims(AUD, &iss, now() + 600, now() - 10);
    let ask = |token: &str, extra: &[(&str, &str)]| {
        let mut fields = vec![("Cf-Access-Jwt-Assertion", token)];
        fields.extend_from_slice(extra);
        get(tunnel, "admin.lab.test", &fields, "127.0.0.1")
    };
    // Valid: forwarded with the verified identity, a client-supplied copy removed.
    let (status, body) = ask(
        &key1.sign(&good),
        &[("Remote-Email", "mallory@example.com")],
    );
    assert_eq!(status, 200, "{body}");
    let seen = backend.seen().pop().expect("forwarded");
    assert_eq!(seen.header("remote-email"), ["alice@example.com"]);
    // The CF_Authorization cookie works as well.
    let cookie = format!("CF_Authorization={}", key1.sign(&good));
    let (status, _) = get(
        tunnel,
        "admin.lab.test",
        &[("Cookie", &cookie)],
        "127.0.0.1",
    );
    assert_eq!(status, 200);
    // Everything else is refused, each for its reason.
    // One signature character well inside the signature changed (the last one carries
    // padding bits a decoder may ignore or reject).
    let mut tampered = key1.sign(&good).into_bytes();
    let at = tampered.len() - 20;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    let refused = [
        ("missing", String::new()),
        (
            "expired",
            key1.sign(&claims(AUD, &iss, now() - 120, now() - 600)),
        ),
        (
            "not_yet_valid",
            key1.sign(&claims(AUD, &iss, now() + 600, now() + 300)),
        ),
        (
            "audience",
            key1.sign(&claims("someone-else", &iss, now() + 600, now() - 10)),
        ),
        (
            "issuer",
            key1.sign(&claims(
                AUD,
                "https://evil.cloudflareaccess.com",
                now() + 600,
                now() - 10,
            )),
        ),
        ("signature", tampered),
        ("malformed", unsigned(&good)),
        ("algorithm", hs256_with_public_key(&key1, &good)),
    ];
    for (reason, token) in &refused {
        let (status, body) = if token.is_empty() {
            get(tunnel, "admin.lab.test", &[], "127.0.0.1")
        } else {
            ask(token, &[])
        };
        assert_eq!(status, 403, "{reason}: {body}");
        assert!(body.contains(reason), "{reason}: {body}");
    }
    // A LAN client never carries Access tokens: the service is reached on its network, and
    // a Remote-Email it sends is not passed on.
    let reply = support::https::curl_https(
        lg.https,
        "admin.lab.test",
        "/",
        &cfg.path("state/local-ca/ca.pem"),
        &["-H", "Remote-Email: mallory@example.com"],
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        backend
            .seen()
            .pop()
            .expect("forwarded")
            .header("remote-email")
            .is_empty()
    );
    // Key rotation: a token from a key not published at start is refused until the set is
    // refetched (at most every 10 s), then accepted; the retired key is refused after.
    jwks.publish(&[&key2]);
    let rotated = key2.sign(&good);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (status, body) = ask(&rotated, &[]);
        if status == 200 {
            break;
        }
        assert!(body.contains("unknown_key"), "{body}");
        assert!(
            Instant::now() < deadline,
            "the rotated key was never fetched"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let (status, body) = ask(&key1.sign(&good), &[]);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("unknown_key"), "{body}");
    let fetches = *jwks.fetches.lock().expect("lock");
    assert!(fetches <= 6, "refetches are rate-bound: {fetches}");
    let metrics = lg.admin("GET", "/metrics").1;
    for (reason, _) in &refused {
        assert!(
            metrics.contains(&format!(
                "labgate_http_access_refused_total{{reason=\"{reason}\"}} 1"
            )),
            "{reason}: {metrics}"
        );
    }
    // Over HTTP/2 (the tunnel's HTTPS listener, labgate's HTTP/2 path), a token from a key
    // not fetched yet waits for the refetch and is planned again: accepted once the set
    // has it.
    let ca = cfg.path("state/local-ca/ca.pem");
    let key3 = Key::new(dir.path(), "kid-three");
    jwks.publish(&[&key2, &key3]);
    let third = format!("Cf-Access-Jwt-Assertion: {}", key3.sign(&good));
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let r = support::https::curl_https(
            tunnel_https,
            "admin.lab.test",
            "/",
            &ca,
            &["--http2", "-H", &third],
        );
        assert_eq!(r.version, "HTTP/2", "{r:?}");
        if r.status == 200 {
            break;
        }
        assert!(r.body.contains("unknown_key"), "{r:?}");
        assert!(
            Instant::now() < deadline,
            "the key was never fetched for an HTTP/2 request"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let seen = backend.seen().pop().expect("forwarded");
    assert_eq!(seen.header("remote-email"), ["alice@example.com"]);
}

/// `labgate tunnel-config` on a configuration: its lines, comments left out.
fn tunnel_config_rules(config: &std::path::Path) -> Vec<String> {
    let out = support::bin()
        .args(["tunnel-config", "--config"])
        .arg(config)
        .output()
        .expect("tunnel-config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn tunnel_config_and_explain_follow_the_services() {
    let cfg = ConfigDir::new();
    cfg.write(
        "labgate.toml",
        &config((8080, 8081), 9000, "http://127.0.0.1:9/certs").replace(
            "host = \"public.lab.test\"",
            "host = \"public.lab.test\"\naliases = [\"www.lab.test\"]",
        ),
    );
    let path = cfg.path("labgate.toml");
    assert_eq!(
        tunnel_config_rules(&path),
        [
            "ingress:",
            "  - hostname: public.lab.test",
            "    service: http://127.0.0.1:8080",
            "  - hostname: www.lab.test",
            "    service: http://127.0.0.1:8080",
            "  - hostname: admin.lab.test",
            "    service: http://127.0.0.1:8080",
            "  - service: http_status:404",
        ]
    );
    // Through the TLS listener, cloudflared must be told the name to verify and, with the
    // local CA on, that CA (which it adds to the public roots).
    let https_only = ConfigDir::new();
    https_only.write(
        "labgate.toml",
        &format!(
            "{}\n[server]\nstate_dir = \"state\"\n",
            config((8080, 8081), 9000, "http://127.0.0.1:9/certs")
                .replace("tunnel = [\"127.0.0.1:8080\"]\n", "")
        ),
    );
    let ca = https_only.path("state/local-ca/ca.pem");
    let rule = |host: &str| {
        [
            format!("  - hostname: {host}"),
            "    service: https://127.0.0.1:8081".to_owned(),
            "    originRequest:".to_owned(),
            format!("      originServerName: {host}"),
            format!("      caPool: {}", ca.display()),
        ]
    };
    let mut want = vec!["ingress:".to_owned()];
    want.extend(rule("public.lab.test"));
    want.extend(rule("admin.lab.test"));
    want.push("  - service: http_status:404".to_owned());
    assert_eq!(tunnel_config_rules(&https_only.path("labgate.toml")), want);
    // Without the local CA, no CA is named.
    let no_local_ca = ConfigDir::new();
    no_local_ca.write(
        "labgate.toml",
        &format!(
            "{}\n[tls]\nlocal_ca = false\n",
            std::fs::read_to_string(https_only.path("labgate.toml")).expect("config")
        ),
    );
    let rules = tunnel_config_rules(&no_local_ca.path("labgate.toml"));
    assert!(rules.contains(&"      originServerName: public.lab.test".to_owned()));
    assert!(!rules.iter().any(|r| r.contains("caPool")), "{rules:?}");
    // The example cloudflared configuration carries exactly what the example homelab gives.
    let out = support::bin()
        .args(["tunnel-config", "--config", "deploy/examples/homelab.toml"])
        .output()
        .expect("tunnel-config");
    let example = std::fs::read_to_string("deploy/examples/cloudflared.yml").expect("example");
    assert!(
        example.ends_with(&*String::from_utf8_lossy(&out.stdout)),
        "deploy/examples/cloudflared.yml is stale: regenerate it with labgate tunnel-config"
    );
    let explain = |target: &str| {
        let out = support::bin()
            .args([
                "explain",
                "--via",
                "tunnel",
                "--json",
                "--config",
                path.to_str().expect("utf-8"),
                target,
            ])
            .output()
            .expect("explain");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).expect("JSON")
    };
    let admin = explain("https://admin.lab.test/");
    assert_eq!(admin["network"]["name"], "tunnel");
    assert_eq!(admin["policy"]["outcome"], "allow");
    assert_eq!(admin["access"]["outcome"], "required");
    let nas = explain("nas.lab.test");
    assert_eq!(nas["policy"]["outcome"], "not_found", "{nas:#}");
}
