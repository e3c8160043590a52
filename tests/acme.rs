//! End-to-end: labgate obtains a wildcard-plus-apex certificate from a real ACME server
//! (Debian's Pebble) by DNS-01, publishing the challenge through RFC 2136 into a private
//! BIND9 (and, in another test, through its own DNS), serves it on HTTPS, keeps nothing behind
//! in the zone, keeps the files 0600, and serves the stored certificate after a restart
//! without a new order. A wrong TSIG key fails with a clear error and changes nothing.
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    reason = "drives a real labgate from outside: deadlines on the wall clock, polls until they pass, prints what it saw"
)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use support::acme::{Bind, PEBBLE_NAME, Pebble};
use support::cloudflare::{FakeCloudflare, Scope};
use support::{ConfigDir, Labgate, free_port};

/// How long an issuance may take on a loaded machine (it takes well under a second).
const ISSUANCE: Duration = Duration::from_secs(90);

const ZONE: &str = "lab.example.test";

fn config(pebble: &Pebble, provider: &str, extra_dns: &str) -> String {
    format!(
        r#"
[listen]
dns = ["127.0.0.1:0"]

[[network]]
name = "lab"
cidrs = ["127.0.0.1/32"]
addresses = ["127.0.0.1"]

[[zone]]
name = "{ZONE}"

[[service]]
host = "app.{ZONE}"
backends = ["http://127.0.0.1:9"]
allow = ["lab"]

[acme]
email = "admin@example.test"
directory = "{directory}"
directory_ca_file = "{ca}"
provider = "dns"
{extra_dns}

{provider}
"#,
        directory = pebble.directory,
        ca = pebble.tls_ca.display(),
    )
}

/// The `builtin` provider: labgate's own DNS serves the challenge.
const BUILTIN: &str = "[[dns_provider]]\nname = \"dns\"\nkind = \"builtin\"";

/// An `rfc2136` provider updating the server on `port` with the key in `key_file`.
fn rfc2136(port: u16, key_file: &Path) -> String {
    format!(
        "[[dns_provider]]\nname = \"dns\"\nkind = \"rfc2136\"\nserver = \"127.0.0.1:{port}\"\nkey_name = \"acme-update.\"\nsecret_file = \"{}\"",
        key_file.display()
    )
}

/// `[acme]` checking propagation at the server on `port`.
fn propagation(port: u16) -> String {
    format!("propagation_servers = [\"127.0.0.1:{port}\"]")
}

/// labgate on `config(pebble, provider, acme)` in `cfg`: `backend` the services' backend port
/// (default: a dead one), `dns` a DNS port Pebble asks (the `builtin` provider).
fn start(
    cfg: &ConfigDir,
    pebble: &Pebble,
    provider: &str,
    acme: &str,
    backend: Option<u16>,
    dns: Option<u16>,
) -> Labgate {
    let text = config(pebble, provider, acme);
    let text = match backend {
        Some(port) => text.replace("http://127.0.0.1:9", &format!("http://127.0.0.1:{port}")),
        None => text,
    };
    launch(cfg, &text, dns)
}

/// labgate on `text` in `cfg`, with `dns` as in [`start`].
fn launch(cfg: &ConfigDir, text: &str, dns: Option<u16>) -> Labgate {
    cfg.write("labgate.toml", text);
    let path = cfg.path("labgate.toml");
    let dns = dns.map(|port| format!("127.0.0.1:{port}"));
    let mut args = vec!["--config", path.to_str().expect("utf-8")];
    if let Some(dns) = &dns {
        args.extend(["--dns", dns.as_str()]);
    }
    Labgate::start(&args, &cfg.path("state"))
}

/// `/certs` once the first order has failed, and its error.
fn first_failure(lg: &Labgate) -> (serde_json::Value, String) {
    let certs = wait_certs(lg, "the failure", |c| c[0]["failures"].as_u64() == Some(1));
    let error = certs[0]["last_error"]
        .as_str()
        .expect("an error")
        .to_owned();
    (certs, error)
}

/// Polls `/certs` until `pred` holds (an issuance, a failure), within [`ISSUANCE`].
fn wait_certs(
    lg: &Labgate,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    wait_certs_for(lg, ISSUANCE, what, pred)
}

/// Polls `/certs` for up to `limit` until `pred` holds.
fn wait_certs_for(
    lg: &Labgate,
    limit: Duration,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        let (status, body) = lg.admin("GET", "/certs");
        assert_eq!(status, 200, "{body}");
        let certs: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        if pred(&certs) {
            return certs;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {certs:#}\n{}",
            lg.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The served certificate's serial, with the chain verified against `root`.
fn served_serial(lg: &Labgate, root: &Path) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{} -servername app.{ZONE} -CAfile {} -verify_return_error </dev/null 2>/dev/null | openssl x509 -noout -serial -ext subjectAltName",
            lg.https,
            root.display()
        ))
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn rfc2136_into_bind_issues_wildcard_and_apex_and_survives_a_restart() {
    let bind = Bind::start(ZONE, "acme-update.");
    let pebble = Pebble::start(&format!("127.0.0.1:{}", bind.port));
    let (provider, acme) = (rfc2136(bind.port, &bind.key_file), propagation(bind.port));
    let cfg = ConfigDir::new();
    let state = cfg.path("state");
    let root = {
        let lg = start(&cfg, &pebble, &provider, &acme, None, None);
        let certs = wait_certs(&lg, "the certificate", |c| c[0]["not_after"].is_string());
        assert_eq!(
            certs[0]["names"],
            serde_json::json!([ZONE, format!("*.{ZONE}")])
        );
        assert!(
            certs[0]["issuer"]
                .as_str()
                .is_some_and(|i| i.contains("Pebble")),
            "{certs:#}"
        );
        assert!(certs[0]["last_error"].is_null(), "{certs:#}");
        // Served on HTTPS, chaining to Pebble's root, for the wildcard's names.
        let root = pebble.issuing_root();
        let served = served_serial(&lg, &root);
        assert!(
            served.contains(&format!("DNS:*.{ZONE}")) && served.contains(&format!("DNS:{ZONE}")),
            "{served}"
        );
        // Nothing left in the zone; key and account 0600.
        assert!(
            bind.records(&format!("_acme-challenge.{ZONE}"), "TXT")
                .is_empty(),
            "{}",
            bind.log()
        );
        assert!(
            bind.log().contains("adding an RR"),
            "the update went through BIND"
        );
        let dir = std::fs::read_dir(state.join("acme/certs"))
            .expect("certs")
            .next()
            .expect("one")
            .expect("entry")
            .path();
        assert_eq!(mode(&dir.join("key.pem")), 0o600);
        let account = std::fs::read_dir(state.join("acme"))
            .expect("acme")
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().starts_with("account-"))
            .expect("account file");
        assert_eq!(mode(&account.path()), 0o600);
        let metrics = lg.admin("GET", "/metrics").1;
        assert!(
            metrics.contains("labgate_acme_issuances_total{result=\"ok\"} 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains(&format!(
                "labgate_certificate_expiry_seconds{{names=\"{ZONE},*.{ZONE}\"}}"
            )),
            "{metrics}"
        );
        (
            root,
            served,
            std::fs::read(account.path()).expect("account"),
            account.path(),
        )
    };
    // A restart serves the stored certificate at once and orders nothing.
    let lg = start(&cfg, &pebble, &provider, &acme, None, None);
    assert_eq!(
        std::fs::read(&root.3).expect("account"),
        root.2,
        "the account is kept"
    );
    let served = served_serial(&lg, &root.0);
    assert_eq!(served, root.1, "the same certificate after the restart");
    let certs: serde_json::Value =
        serde_json::from_str(&lg.admin("GET", "/certs").1).expect("JSON");
    assert!(
        certs[0]["last_attempt"].is_null(),
        "no new order: {certs:#}"
    );
    assert!(certs[0]["next_renewal"].is_string(), "{certs:#}");
}

#[test]
fn a_wrong_tsig_key_fails_clearly_and_leaves_nothing() {
    let bind = Bind::start(ZONE, "acme-update.");
    let pebble = Pebble::start(&format!("127.0.0.1:{}", bind.port));
    let cfg = ConfigDir::new();
    cfg.write("wrong.key", "key \"acme-update.\" {\n\talgorithm hmac-sha256;\n\tsecret \"d3JvbmcgZHVtbXkgc2VjcmV0IGZvciB0ZXN0cyEhISE=\";\n};\n");
    let provider = rfc2136(bind.port, &cfg.path("wrong.key"));
    let lg = start(
        &cfg,
        &pebble,
        &provider,
        &propagation(bind.port),
        None,
        None,
    );
    let (certs, error) = first_failure(&lg);
    assert!(
        error.contains("TSIG") || error.contains("not authorized"),
        "{error}"
    );
    assert!(
        !error.contains("d3Jvbm"),
        "the secret stays out of errors: {error}"
    );
    assert!(certs[0]["not_after"].is_null());
    assert!(
        bind.records(&format!("_acme-challenge.{ZONE}"), "TXT")
            .is_empty()
    );
    assert!(!lg.log_text().contains("d3Jvbm"), "nor in the log");
    let metrics = lg.admin("GET", "/metrics").1;
    assert!(
        metrics.contains("labgate_acme_issuances_total{result=\"failed\"} 1"),
        "{metrics}"
    );
    // Meanwhile the name is served with a local-CA certificate, and the log says why.
    let ca = cfg.path("state/local-ca/ca.pem");
    let served = support::https::curl_https(lg.https, &format!("app.{ZONE}"), "/", &ca, &[]);
    assert_eq!(
        served.status, 502,
        "TLS with the local CA works (the backend is down): {served:?}"
    );
    assert!(
        lg.log_text().contains(&format!("app.{ZONE}: no ACME certificate yet; serving one from labgate's local CA until it is issued")),
        "{}",
        lg.log_text()
    );
}

#[test]
fn the_builtin_provider_answers_the_challenge_from_labgates_own_dns() {
    let dns = free_port();
    let pebble = Pebble::start(&format!("127.0.0.1:{dns}"));
    let cfg = ConfigDir::new();
    // The ACME server is reached by a name only labgate's own records have (a private CA in
    // the homelab), never asked of the system's resolver.
    let text = config(&pebble, BUILTIN, "").replace(
        &pebble.directory,
        &pebble.directory.replace("127.0.0.1", PEBBLE_NAME),
    ) + &format!(
        "\n[[record]]\nname = \"{PEBBLE_NAME}\"\ntype = \"A\"\nvalue = \"127.0.0.1\"\nnetworks = [\"lab\"]\n"
    );
    let lg = launch(&cfg, &text, Some(dns));
    let certs = wait_certs(&lg, "the certificate", |c| c[0]["not_after"].is_string());
    assert!(certs[0]["last_error"].is_null(), "{certs:#}");
    let served = served_serial(&lg, &pebble.issuing_root());
    assert!(served.contains(&format!("DNS:*.{ZONE}")), "{served}");
    // The values are gone once the order is done.
    let d = support::dig(
        dns,
        "127.0.0.1",
        &[&format!("_acme-challenge.{ZONE}"), "TXT"],
    );
    assert!(d.answer.is_empty(), "{}", d.raw);
    // `/config` shows the same state.
    let shown = &lg.config()["certificates"][0];
    assert_eq!(
        (&shown["names"], &shown["not_after"], &shown["issuer"]),
        (
            &certs[0]["names"],
            &certs[0]["not_after"],
            &certs[0]["issuer"]
        )
    );
    // A changed name set is a new order; the old set is no longer managed.
    let explicit = format!(
        "{}\n[[certificate]]\nnames = [\"app.{ZONE}\", \"{ZONE}\"]\nsource = \"acme\"\n",
        std::fs::read_to_string(cfg.path("labgate.toml")).expect("config")
    );
    cfg.write("labgate.toml", &explicit);
    let certs = wait_certs(&lg, "the new name set", |c| {
        c.as_array().is_some_and(|a| a.len() == 1)
            && c[0]["names"] == serde_json::json!([format!("app.{ZONE}"), ZONE])
            && c[0]["not_after"].is_string()
    });
    assert!(certs[0]["last_error"].is_null(), "{certs:#}");
    let served = served_serial(&lg, &pebble.issuing_root());
    assert!(
        served.contains(&format!("DNS:app.{ZONE}")) && !served.contains('*'),
        "{served}"
    );
}

fn cloudflare_provider(api: &str, token_file: &Path) -> String {
    format!(
        "[[dns_provider]]\nname = \"dns\"\nkind = \"cloudflare\"\napi_url = \"{api}\"\ntoken_file = \"{}\"",
        token_file.display()
    )
}

#[test]
fn cloudflare_api_records_are_created_validated_and_deleted_by_id() {
    let token = "cf-test-token-0123456789";
    let cf = FakeCloudflare::start(
        &[ZONE],
        &[(
            token,
            Scope {
                zone: ZONE.into(),
                edit: true,
            },
        )],
    );
    // The first call is rate-limited (labgate waits for `retry-after` and goes on), one
    // creation answers 81058 as if retried (the existing record is used), one deletion
    // 81044 as if already done.
    let once = |q: &std::sync::atomic::AtomicU32| q.store(1, std::sync::atomic::Ordering::SeqCst);
    once(&cf.quirks.rate_limit);
    once(&cf.quirks.duplicate);
    once(&cf.quirks.gone);
    let pebble = Pebble::start(&format!("127.0.0.1:{}", cf.dns_port));
    let cfg = ConfigDir::new();
    cfg.write("cf.token", &format!("{token}\n"));
    let provider = cloudflare_provider(&cf.api, &cfg.path("cf.token"));
    let lg = start(
        &cfg,
        &pebble,
        &provider,
        &propagation(cf.dns_port),
        None,
        None,
    );
    let certs = wait_certs(&lg, "the certificate", |c| c[0]["not_after"].is_string());
    assert!(certs[0]["last_error"].is_null(), "{certs:#}");
    let served = served_serial(&lg, &pebble.issuing_root());
    assert!(served.contains(&format!("DNS:*.{ZONE}")), "{served}");
    let used = |q: &std::sync::atomic::AtomicU32| q.load(std::sync::atomic::Ordering::SeqCst) == 0;
    assert!(used(&cf.quirks.rate_limit) && used(&cf.quirks.duplicate) && used(&cf.quirks.gone));
    // Two values (apex and wildcard share the name) created, then both deleted by id.
    let requests = cf.requests();
    let posts = requests.iter().filter(|(m, _, _)| m == "POST").count();
    let deletes: Vec<&String> = requests
        .iter()
        .filter(|(m, _, _)| m == "DELETE")
        .map(|(_, p, _)| p)
        .collect();
    assert_eq!(posts, 2, "{requests:#?}");
    assert_eq!(deletes.len(), 2, "{requests:#?}");
    assert!(
        deletes.iter().all(|p| p.contains("/dns_records/0000")),
        "{deletes:?}"
    );
    assert!(cf.records().is_empty(), "left behind: {:?}", cf.records());
    assert!(
        requests
            .iter()
            .all(|(_, _, auth)| *auth == format!("Bearer {token}"))
    );
    assert!(
        !lg.log_text().contains(token),
        "the token stays out of the log"
    );
}

#[test]
fn a_cloudflare_token_without_dns_edit_gets_an_actionable_error() {
    let token = "cf-read-only-token";
    let cf = FakeCloudflare::start(
        &[ZONE],
        &[(
            token,
            Scope {
                zone: ZONE.into(),
                edit: false,
            },
        )],
    );
    let pebble = Pebble::start(&format!("127.0.0.1:{}", cf.dns_port));
    let cfg = ConfigDir::new();
    cfg.write("cf.token", token);
    let provider = cloudflare_provider(&cf.api, &cfg.path("cf.token"));
    let lg = start(
        &cfg,
        &pebble,
        &provider,
        &propagation(cf.dns_port),
        None,
        None,
    );
    let (_, error) = first_failure(&lg);
    assert!(
        error.contains(&format!("Cloudflare answered 403 for zone {ZONE}"))
            && error.contains("Zone:DNS:Edit"),
        "{error}"
    );
    assert!(!error.contains(token));
    assert!(cf.records().is_empty());
}

#[test]
fn renewal_swaps_in_under_load_and_a_dead_ca_leaves_the_certificate_serving() {
    // 30 s certificates: renewed with a third of the lifetime left, about 20 s after issuance.
    let dns = free_port();
    let pebble = Pebble::start_with(
        &format!("127.0.0.1:{dns}"),
        r#""certificateValidityPeriod": 30"#,
    );
    let backend = support::backend::Backend::start("app");
    let cfg = ConfigDir::new();
    let lg = start(&cfg, &pebble, BUILTIN, "", Some(backend.port), Some(dns));
    let first = wait_certs(&lg, "the first certificate", |c| {
        c[0]["not_after"].is_string()
    });
    // Kept outside Pebble's directory, which goes with it.
    let root = cfg.path("root.pem");
    std::fs::copy(pebble.issuing_root(), &root).expect("copy root");
    let first_serial = served_serial(&lg, &root);
    // A client keeps asking over new TLS connections, verifying against Pebble's root, until
    // the renewed certificate is served.
    let deadline = Instant::now() + Duration::from_secs(90);
    let (mut requests, mut renewed) = (0, String::new());
    while renewed.is_empty() || requests < 3 {
        let reply = support::https::curl_https(lg.https, &format!("app.{ZONE}"), "/", &root, &[]);
        assert_eq!(
            reply.status,
            200,
            "request {requests} failed during renewal: {reply:?}\n{}",
            lg.log_text()
        );
        requests += 1;
        let now = served_serial(&lg, &root);
        if renewed.is_empty() && !now.is_empty() && now != first_serial {
            renewed = now;
            requests = 0;
        }
        assert!(
            Instant::now() < deadline,
            "no renewal within 90 s: {:#}",
            lg.admin("GET", "/certs").1
        );
    }
    let certs: serde_json::Value =
        serde_json::from_str(&lg.admin("GET", "/certs").1).expect("JSON");
    assert_ne!(certs[0]["not_after"], first[0]["not_after"], "{certs:#}");
    // The CA goes away: the next renewal fails, visibly, and the certificate keeps serving.
    drop(pebble);
    let failed = wait_certs_for(&lg, Duration::from_secs(60), "the failed renewal", |c| {
        c[0]["failures"].as_u64() == Some(1)
    });
    assert!(
        failed[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot reach the ACME server") && e.contains("refused")),
        "{failed:#}"
    );
    assert_eq!(
        served_serial(&lg, &root),
        renewed,
        "the renewed certificate still serves"
    );
    let metrics = lg.admin("GET", "/metrics").1;
    assert!(
        metrics.contains("labgate_acme_issuances_total{result=\"ok\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("labgate_acme_issuances_total{result=\"failed\"} 1"),
        "{metrics}"
    );
    let out = support::bin()
        .args(["certs", "--admin", &lg.admin.to_string()])
        .output()
        .expect("labgate certs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("{ZONE}, *.{ZONE}"))
            && text.contains("last error")
            && text.contains("Pebble"),
        "{text}"
    );
}

#[test]
fn a_profile_the_directory_does_not_offer_is_refused_with_the_fix() {
    let dns = free_port();
    let pebble = Pebble::start(&format!("127.0.0.1:{dns}"));
    let cfg = ConfigDir::new();
    let lg = start(
        &cfg,
        &pebble,
        BUILTIN,
        "profile = \"shortlived\"",
        None,
        Some(dns),
    );
    let (_, error) = first_failure(&lg);
    // Pebble 2.4 advertises no profiles (and would silently ignore one).
    assert!(
        error.contains("acme.profile = \"shortlived\"") && error.contains("offers no profiles"),
        "{error}"
    );
}

/// Pebble's own example EAB key (base64url), from its documentation.
const EAB_HMAC: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";

#[test]
fn external_account_binding_is_required_and_checked() {
    let dns = free_port();
    let pebble = Pebble::start_with(
        &format!("127.0.0.1:{dns}"),
        &format!(
            r#""externalAccountBindingRequired": true, "externalAccountMACKeys": {{"kid-1": "{EAB_HMAC}"}}"#
        ),
    );
    let run = |hmac: &str| {
        let cfg = ConfigDir::new();
        cfg.write("eab.key", hmac);
        let lg = start(
            &cfg,
            &pebble,
            BUILTIN,
            &format!(
                "eab_kid = \"kid-1\"\neab_hmac_file = \"{}\"",
                cfg.path("eab.key").display()
            ),
            None,
            Some(dns),
        );
        let certs = wait_certs(&lg, "the outcome", |c| {
            c[0]["not_after"].is_string() || c[0]["failures"].as_u64() == Some(1)
        });
        (certs, lg.log_text())
    };
    let (certs, _) = run(EAB_HMAC);
    assert!(
        certs[0]["not_after"].is_string(),
        "issued with the right key: {certs:#}"
    );
    let wrong = "AAAAZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let (certs, log) = run(wrong);
    let error = certs[0]["last_error"]
        .as_str()
        .expect("refused with a wrong key");
    assert!(error.contains("unauthorized"), "{error}");
    assert!(
        !error.contains(wrong) && !log.contains(wrong),
        "the key stays secret"
    );
}
