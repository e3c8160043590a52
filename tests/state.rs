//! End-to-end: rebuild from Git (issue 25). labgate gets a certificate from a real ACME server
//! (Debian's Pebble), stops, `labgate state export` backs its state up, `labgate state import`
//! restores it into an empty state directory, and a new labgate on it, with Pebble gone, serves
//! the same certificate and the same local CA within a minute. A changed or cut archive is
//! refused and writes nothing; the archive is 0600 and no key is printed.
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    reason = "drives a real labgate from outside: deadlines on the wall clock, polls until they pass, prints what it saw"
)]

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use support::acme::{Pebble, wait_certificate};
use support::{ConfigDir, Labgate, bin, free_port};

const ZONE: &str = "lab.example.test";

/// A rebuilt machine must serve within this (the issue's figure).
const REBUILD_BUDGET: Duration = Duration::from_secs(60);

/// Each test's own limit (nextest kills at 180 s; `cargo test` has none).
const TEST_LIMIT: Duration = Duration::from_secs(170);

/// Runs `test` on a thread and fails if it takes longer than [`TEST_LIMIT`].
fn within(test: impl FnOnce() + Send + 'static) {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        test();
        let _ = tx.send(());
    });
    match rx.recv_timeout(TEST_LIMIT) {
        Ok(()) => {}
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            // The test panicked: its own message is the failure.
            if let Err(panic) = handle.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("the test took longer than {TEST_LIMIT:?}")
        }
    }
}

/// `labgate state <args>`, with its output.
fn state(args: &[&str]) -> Output {
    bin()
        .arg("state")
        .args(args)
        .output()
        .expect("run labgate state")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

/// The certificate served for `host`, its chain verified against `root`: serial and SHA-256
/// fingerprint (empty when the handshake or the verification failed).
fn served(port: u16, host: &str, root: &Path) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "timeout 20 openssl s_client -connect 127.0.0.1:{port} -servername {host} -CAfile {} -verify_return_error </dev/null 2>/dev/null | openssl x509 -noout -serial -fingerprint -sha256",
            root.display()
        ))
        .output()
        .expect("openssl is needed: apt-get install openssl (scripts/test.sh does)");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The configuration: an ACME certificate for the zone by the `builtin` provider, and a
/// service in a second zone that only the local CA covers.
fn config(directory: &str, directory_ca: &Path) -> String {
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

[[zone]]
name = "int.test"

[[service]]
host = "app.{ZONE}"
backends = ["http://127.0.0.1:9"]
allow = ["lab"]

[[service]]
host = "x.int.test"
backends = ["http://127.0.0.1:9"]
allow = ["lab"]

[[certificate]]
names = ["{ZONE}", "*.{ZONE}"]
source = "acme"

[acme]
email = "admin@example.test"
directory = "{directory}"
directory_ca_file = "{ca}"
provider = "dns"

[[dns_provider]]
name = "dns"
kind = "builtin"
"#,
        ca = directory_ca.display(),
    )
}

#[test]
fn a_new_machine_serves_the_same_certificate_and_ca_from_an_imported_archive() {
    within(|| {
        let dns = free_port();
        let pebble = Pebble::start(&format!("127.0.0.1:{dns}"));
        let cfg = ConfigDir::new();
        // The configuration checkout holds the ACME server's CA, as a homelab's would.
        std::fs::copy(&pebble.tls_ca, cfg.path("acme-ca.pem")).expect("copy");
        cfg.write(
            "labgate.toml",
            &config(&pebble.directory, &cfg.path("acme-ca.pem")),
        );
        let config_path = cfg.path("labgate.toml");
        let config_arg = config_path.to_str().expect("utf-8");
        let old_state = cfg.path("state");
        let dns_arg = format!("127.0.0.1:{dns}");
        let lg = Labgate::start(&["--config", config_arg, "--dns", &dns_arg], &old_state);
        wait_certificate(&lg);
        // Pebble's root goes away with Pebble: keep a copy to verify the chain later.
        std::fs::copy(pebble.issuing_root(), cfg.path("pebble-root.pem")).expect("copy");
        let root = cfg.path("pebble-root.pem");
        let before = served(lg.https, &format!("app.{ZONE}"), &root);
        assert!(
            before.contains("serial="),
            "ACME certificate served: {before:?}"
        );
        assert!(lg.terminate(), "labgate stopped cleanly");

        let archive = cfg.path("backup/labgate-state");
        std::fs::create_dir_all(cfg.path("backup")).expect("mkdir");
        let out = state(&[
            "export",
            "--state-dir",
            old_state.to_str().expect("utf-8"),
            "--output",
            archive.to_str().expect("utf-8"),
        ]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(mode(&archive), 0o600, "the archive holds keys");
        assert!(!text(&out).contains("PRIVATE KEY"), "{}", text(&out));
        assert!(
            text(&out).contains("left out querylog.sqlite"),
            "{}",
            text(&out)
        );

        // Without the archive, a new machine orders anew (the issue's other figure).
        let fresh = ConfigDir::new();
        let started = Instant::now();
        let lg = Labgate::start(
            &["--config", config_arg, "--dns", &dns_arg],
            &fresh.path("state"),
        );
        loop {
            let now = served(lg.https, &format!("app.{ZONE}"), &root);
            if now.contains("serial=") && now != before {
                break;
            }
            assert!(
                started.elapsed() < REBUILD_BUDGET,
                "no new certificate within {REBUILD_BUDGET:?}: {now:?}\n{}",
                lg.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        println!(
            "rebuild without the archive: start to serving a new certificate from Pebble took {:?}",
            started.elapsed()
        );
        assert!(lg.terminate(), "labgate stopped cleanly");

        // The old machine is gone, and the ACME server with it: nothing can be ordered.
        drop(pebble);
        let new = ConfigDir::new();
        let new_state = new.path("state");
        let out = state(&[
            "import",
            "--input",
            archive.to_str().expect("utf-8"),
            "--state-dir",
            new_state.to_str().expect("utf-8"),
        ]);
        assert!(out.status.success(), "{}", text(&out));
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(shown.contains("new       local-ca/ca.key"), "{shown}");
        assert!(
            shown.contains(&format!("certificate {ZONE}, *.{ZONE}")),
            "{shown}"
        );
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        assert_eq!(mode(&new_state), 0o700);
        assert_eq!(mode(&new_state.join("local-ca/ca.key")), 0o600);
        let account = std::fs::read_dir(old_state.join("acme"))
            .expect("acme")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with("account-"))
            .expect("an account file");
        let account = format!("acme/{account}");
        for same in ["local-ca/ca.pem", "local-ca/ca.key", account.as_str()] {
            assert_eq!(
                std::fs::read(new_state.join(same)).expect("restored"),
                std::fs::read(old_state.join(same)).expect("old"),
                "{same}"
            );
        }
        assert!(
            !new_state.join("querylog.sqlite").exists()
                && !new_state.join("history.sqlite").exists(),
            "what rebuilds is not restored"
        );

        let started = Instant::now();
        let lg = Labgate::start(&["--config", config_arg], &new_state);
        let host = format!("app.{ZONE}");
        let after = loop {
            let now = served(lg.https, &host, &root);
            if now == before {
                break now;
            }
            assert!(
                started.elapsed() < REBUILD_BUDGET,
                "the restored certificate was not served within {REBUILD_BUDGET:?}: {now:?}, wanted {before:?}\n{}",
                lg.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let took = started.elapsed();
        println!("rebuild: start to serving the restored certificate took {took:?}");
        assert_eq!(
            after, before,
            "the same certificate (serial and fingerprint)"
        );
        assert!(took < REBUILD_BUDGET, "{took:?}");
        // The same local CA: the old machine's ca.pem verifies the new machine's leaf.
        let reply = support::https::curl_https(
            lg.https,
            "x.int.test",
            "/",
            &old_state.join("local-ca/ca.pem"),
            &[],
        );
        assert_eq!(
            reply.status, 502,
            "TLS under the old CA (the backend is down): {reply:?}"
        );
        let certs: serde_json::Value =
            serde_json::from_str(&lg.admin("GET", "/certs").1).expect("JSON");
        assert!(
            certs[0]["last_attempt"].is_null(),
            "nothing ordered: {certs:#}"
        );
    });
}

#[test]
fn a_changed_or_cut_archive_is_refused_and_writes_nothing() {
    within(|| {
        let cfg = ConfigDir::new();
        let old_state = cfg.path("state");
        // `--config` finds the state directory in the configuration.
        cfg.write(
            "labgate.toml",
            &format!(
                "[server]\nstate_dir = \"{}\"\n\n{}",
                old_state.display(),
                support::config_with_services(&["app"])
            ),
        );
        let config_path = cfg.path("labgate.toml");
        let config_arg = config_path.to_str().expect("utf-8");
        let lg = Labgate::start(&["--config", config_arg], &old_state);
        assert!(lg.terminate(), "labgate stopped cleanly");

        let archive = cfg.path("labgate-state");
        let out = state(&[
            "export",
            "--config",
            config_arg,
            "--output",
            archive.to_str().expect("utf-8"),
        ]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(mode(&archive), 0o600, "the archive holds keys");
        assert!(out.stdout.is_empty(), "{}", text(&out));
        assert!(!text(&out).contains("PRIVATE KEY"), "{}", text(&out));
        let bytes = std::fs::read(&archive).expect("archive");
        // To stdout, for a pipe: the same archive but for its time.
        let piped = state(&[
            "export",
            "--state-dir",
            old_state.to_str().expect("utf-8"),
            "--output",
            "-",
        ]);
        assert!(piped.status.success(), "{}", text(&piped));
        assert!(piped.stdout.starts_with(b"labgate-state 1\n"));
        assert_eq!(piped.stdout.len(), bytes.len());

        let import = |from: &Path, into: &Path, extra: &[&str]| {
            let mut args = vec![
                "import",
                "--input",
                from.to_str().expect("utf-8"),
                "--state-dir",
                into.to_str().expect("utf-8"),
            ];
            args.extend(extra);
            state(&args)
        };
        let target = cfg.path("new-state");
        // One byte flipped in the middle: refused, nothing written.
        let mut flipped = bytes.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x01;
        std::fs::write(cfg.path("flipped"), &flipped).expect("write");
        let out = import(&cfg.path("flipped"), &target, &[]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("refused, nothing was written: the state archive is corrupted"),
            "{err}"
        );
        assert!(err.contains("export it again"), "says what to do: {err}");
        assert!(!target.exists(), "nothing written, not even the directory");
        // Into an existing empty directory: it stays empty.
        std::fs::create_dir(&target).expect("mkdir");
        let out = import(&cfg.path("flipped"), &target, &[]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert_eq!(std::fs::read_dir(&target).expect("dir").count(), 0);
        // Cut short.
        std::fs::write(cfg.path("cut"), &bytes[..bytes.len() * 2 / 3]).expect("write");
        let out = import(&cfg.path("cut"), &target, &[]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("the state archive is cut short"),
            "{}",
            text(&out)
        );
        assert_eq!(std::fs::read_dir(&target).expect("dir").count(), 0);

        // From stdin, as from a pipe (`ssh old labgate state export -o - | labgate state import -i -`).
        let piped_into = cfg.path("piped-state");
        let out = bin()
            .args(["state", "import", "--input", "-", "--state-dir"])
            .arg(&piped_into)
            .stdin(std::fs::File::open(&archive).expect("archive"))
            .output()
            .expect("run");
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(
            std::fs::read(piped_into.join("local-ca/ca.key")).expect("key"),
            std::fs::read(old_state.join("local-ca/ca.key")).expect("key")
        );

        // Run by root into labgate's own state directory (systemd's `StateDirectory=`): the
        // files take its owner, so labgate can read them.
        let owned = cfg.path("owned-state");
        std::fs::create_dir(&owned).expect("mkdir");
        std::os::unix::fs::chown(&owned, Some(65534), Some(65534))
            .expect("chown (tests run as root)");
        let out = import(&archive, &owned, &[]);
        assert!(out.status.success(), "{}", text(&out));
        for p in ["local-ca", "local-ca/ca.key", "local-ca/ca.pem"] {
            let meta = std::fs::metadata(owned.join(p)).expect("restored");
            assert_eq!((meta.uid(), meta.gid()), (65534, 65534), "{p}");
        }

        // ...unless others could plant keys in it.
        std::fs::set_permissions(&owned, std::fs::Permissions::from_mode(0o770)).expect("chmod");
        let out = import(&archive, &owned, &["--force"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("can be written by users outside"),
            "{}",
            text(&out)
        );

        // The whole archive restores; `state check` agrees.
        let out = import(&archive, &target, &[]);
        assert!(out.status.success(), "{}", text(&out));
        let out = state(&["check", "--state-dir", target.to_str().expect("utf-8")]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("local CA: CN=labgate local CA"),
            "{}",
            text(&out)
        );

        // A state directory with another CA is kept unless forced.
        let other = cfg.path("other-state");
        let lg = Labgate::start(&["--config", config_arg], &other);
        assert!(lg.terminate());
        let other_ca = std::fs::read(other.join("local-ca/ca.pem")).expect("CA");
        let out = import(&archive, &other, &[]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("already holds another local CA"),
            "{}",
            text(&out)
        );
        assert_eq!(
            std::fs::read(other.join("local-ca/ca.pem")).expect("CA"),
            other_ca
        );
        let out = import(&archive, &other, &["--force"]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(
            std::fs::read(other.join("local-ca/ca.pem")).expect("CA"),
            std::fs::read(old_state.join("local-ca/ca.pem")).expect("CA")
        );

        // Without a state directory: a usage error.
        let out = bin()
            .args(["state", "check"])
            .env_remove("LABGATE_CONFIG")
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    });
}
