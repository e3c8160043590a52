//! A binary upgrade under load (issue 25): SIGUSR2 makes the running labgate start its binary
//! again and hand it every listening socket; the new process serves on them and the old one
//! drains and exits. A DNS client asking over UDP, an HTTP client opening a connection per
//! request and one keeping its connection alive keep going throughout: not one query lost,
//! not one request failed. A new binary
//! that cannot start (here: the configuration became invalid) leaves the old one serving.
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    reason = "drives a real labgate from outside: deadlines on the wall clock, polls until they pass, prints what it saw"
)]

mod support;

use std::io::{Read, Write};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::backend::Backend;
use support::wire::{Client, query};
use support::{ConfigDir, Labgate, dns_ports};

fn config(backend: u16) -> String {
    format!(
        "[[network]]\nname = \"lab\"\ncidrs = [\"127.0.0.0/8\"]\naddresses = [\"127.0.0.1\"]\n\
         [[zone]]\nname = \"lab.test\"\n\
         [[record]]\nname = \"nas.lab.test\"\ntype = \"A\"\nvalue = \"10.0.20.10\"\n\
         [[service]]\nhost = \"app.lab.test\"\nbackends = [\"http://127.0.0.1:{backend}\"]\n\
         allow = [\"lab\"]\nplain_http = true\n[tls]\nlocal_ca = true\ndefault_name = \"app.lab.test\"\n"
    )
}

/// Queries asked and answered, requests sent and failed, by the clients below.
#[derive(Default, Debug)]
struct Tally {
    asked: u64,
    lost: u64,
    requests: u64,
    failed: Vec<String>,
}

/// Asks `nas.lab.test` over UDP one query after the other until `stop`; a query without an
/// answer within 2 s, or a wrong one, is lost.
fn dns_client(port: u16, stop: &AtomicBool) -> (u64, u64) {
    let client = Client::from("127.0.0.1");
    let (mut asked, mut lost) = (0, 0);
    let mut id = 0u16;
    while !stop.load(Ordering::Relaxed) {
        id = id.wrapping_add(1);
        asked += 1;
        match client.ask(
            port,
            &query(id, "nas.lab.test", 1, None),
            Duration::from_secs(2),
        ) {
            Some(r) if r.len() > 12 && r[3] & 0x0f == 0 && r.ends_with(&[10, 0, 20, 10]) => {}
            _ => lost += 1,
        }
    }
    (asked, lost)
}

/// Sends `GET /` for `app.lab.test` on a new connection each time until `stop`; a request
/// without a whole 200 response is failed.
fn http_client(port: u16, stop: &AtomicBool) -> (u64, Vec<String>) {
    let (mut requests, mut failed) = (0, Vec::new());
    while !stop.load(Ordering::Relaxed) {
        requests += 1;
        let outcome = (|| -> std::io::Result<String> {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET / HTTP/1.1\r\nHost: app.lab.test\r\nConnection: close\r\n\r\n")?;
            let mut response = String::new();
            s.read_to_string(&mut response)?;
            Ok(response)
        })();
        match outcome {
            Ok(r) if r.starts_with("HTTP/1.1 200") => {}
            Ok(r) => failed.push(r.lines().next().unwrap_or("(empty)").to_owned()),
            Err(e) => failed.push(e.to_string()),
        }
    }
    (requests, failed)
}

/// Sends `GET /` for `app.lab.test` over one keep-alive connection after the other until
/// `stop`, a request as soon as the previous response is in (as wrk does); a response that
/// says `Connection: close` ends its connection, and the next request opens another. A
/// request whose response does not come whole (the connection closed under it) is failed.
fn keepalive_client(port: u16, stop: &AtomicBool) -> (u64, u64, Vec<String>) {
    use std::io::BufRead;
    let (mut requests, mut connections, mut failed) = (0, 0, Vec::new());
    let mut conn: Option<std::io::BufReader<std::net::TcpStream>> = None;
    while !stop.load(Ordering::Relaxed) {
        requests += 1;
        let outcome = (|| -> std::io::Result<bool> {
            if conn.is_none() {
                let s = std::net::TcpStream::connect(("127.0.0.1", port))?;
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                conn = Some(std::io::BufReader::new(s));
                connections += 1;
            }
            let c = conn.as_mut().expect("connected");
            c.get_mut()
                .write_all(b"GET / HTTP/1.1\r\nHost: app.lab.test\r\n\r\n")?;
            let (mut status, mut length, mut close) = (String::new(), 0usize, false);
            c.read_line(&mut status)?;
            loop {
                let mut line = String::new();
                if c.read_line(&mut line)? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                let lower = line.trim_end().to_ascii_lowercase();
                if lower.is_empty() {
                    break;
                }
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                close |= lower == "connection: close";
            }
            let mut body = vec![0; length];
            c.read_exact(&mut body)?;
            if !status.starts_with("HTTP/1.1 200") {
                return Err(std::io::Error::other(status));
            }
            Ok(close)
        })();
        match outcome {
            Ok(false) => {}
            Ok(true) => conn = None,
            Err(e) => {
                failed.push(e.to_string());
                conn = None;
            }
        }
    }
    (requests, connections, failed)
}

/// A WebSocket through labgate's plain HTTP listener to the backend's echo, its 101 read.
fn websocket(port: u16) -> std::net::TcpStream {
    let mut ws = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    ws.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    ws.write_all(
        b"GET /ws HTTP/1.1\r\nHost: app.lab.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .expect("upgrade request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        ws.read_exact(&mut byte).expect("the 101");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    ws
}

/// Sends `msg` and reads its echo.
fn echo(ws: &mut std::net::TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    ws.write_all(msg)?;
    let mut got = vec![0; msg.len()];
    ws.read_exact(&mut got)?;
    Ok(got)
}

/// Sends `lg` SIGUSR2 and waits for its word that the upgrade failed and for `said` (what the
/// failure must say) in its log; panics at the deadline without them.
fn failed_upgrade(lg: &Labgate, said: &str) {
    let pid = lg.pid().to_string();
    let sent = Command::new("kill").args(["-USR2", &pid]).status();
    assert!(sent.expect("kill").success());
    // The new process's own error line may come after the old one's: both are awaited.
    lg.wait_log(&format!("the failed upgrade and `{said}`"), |l| {
        l.contains("upgrade failed") && l.contains(said)
    });
}

/// `lg`, still the same process, answers DNS on `udp`, is ready, and stops cleanly.
fn still_serving(lg: Labgate, udp: u16) {
    let client = Client::from("127.0.0.1");
    let q = query(7, "nas.lab.test", 1, None);
    let answer = client.ask(udp, &q, Duration::from_secs(2));
    assert!(answer.is_some_and(|r| r.ends_with(&[10, 0, 20, 10])));
    assert_eq!(lg.admin("GET", "/readyz").0, 200);
    assert!(lg.terminate(), "labgate exited with an error");
}

/// The new process's id, from the old one's log line.
fn successor(lg: &Labgate) -> u32 {
    let log = lg.log_text();
    log.split("upgrade: process ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no successor in the log:\n{log}"))
}

/// Kills a process by id when dropped (the new labgate is not the test's child).
struct Kill(u32);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.to_string()).status();
    }
}

#[test]
fn an_upgrade_under_load_loses_no_query_and_fails_no_request() {
    let backend = Backend::start("app");
    let cfg = ConfigDir::new();
    let mut lg = cfg.start(&config(backend.port));
    let (udp, _) = dns_ports(&lg);
    let http = lg.http;
    let stop = Arc::new(AtomicBool::new(false));
    let dns = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || dns_client(udp, &stop))
    };
    let web = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || http_client(http, &stop))
    };
    let kept = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || keepalive_client(http, &stop))
    };
    // HTTP/2 (h2load: 4 connections, 4 streams each): the old process's connections get a
    // GOAWAY for any stream, then one naming the last stream taken; no stream is refused.
    let h2 = Command::new("h2load")
        .args(["-c4", "-m4", "-D", "3", "-H", ":authority: app.lab.test"])
        .arg(format!("https://127.0.0.1:{}/", lg.https))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("h2load is needed: apt-get install nghttp2-client (scripts/test.sh does)");
    // Load before, during and after the hand-over.
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    // A WebSocket open through the upgrade: it lives on in the old process until that one
    // is done (a bound: its drain), then closes; a new one reaches the new process.
    let mut ws = websocket(http);
    assert_eq!(echo(&mut ws, b"before").expect("echo"), b"before");
    let old = lg.pid();
    assert!(
        Command::new("kill")
            .args(["-USR2", &old.to_string()])
            .status()
            .expect("kill")
            .success()
    );
    let started = Instant::now();
    let exited = lg.wait_exit(Duration::from_secs(30));
    let took = started.elapsed();
    assert_eq!(exited, Some(true), "the old process did not exit cleanly");
    let new = Kill(successor(&lg));
    // The old process is gone: its WebSocket ended (no read waits out its 10 s timeout).
    let mut rest = Vec::new();
    let closed = ws.read_to_end(&mut rest);
    assert!(
        closed.is_ok()
            || closed
                .as_ref()
                .is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock),
        "{closed:?}"
    );
    let mut ws = websocket(http);
    assert_eq!(echo(&mut ws, b"after").expect("echo"), b"after");
    assert_ne!(new.0, old);
    // The new process answers on the same ports, with the same admin endpoint, and is
    // ready once its self-check passed (one that met the old process's last connections is
    // tried again within 250 ms).
    let deadline = Instant::now() + Duration::from_secs(5);
    while lg.admin("GET", "/readyz") != (200, "ready\n".to_owned()) {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            lg.admin("GET", "/readyz")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let (asked, lost) = dns.join().expect("dns client");
    let (requests, failed) = web.join().expect("http client");
    let (kept_requests, connections, kept_failed) = kept.join().expect("keep-alive client");
    let h2 = h2.wait_with_output().expect("h2load");
    let h2 = String::from_utf8_lossy(&h2.stdout);
    // `requests: 100 total, 100 started, 100 done, 100 succeeded, 0 failed, 0 errored, 0 timeout`
    let line = h2
        .lines()
        .find(|l| l.starts_with("requests:"))
        .unwrap_or("");
    let count = |what: &str| {
        line.split(", ")
            .find_map(|p| {
                p.strip_suffix(what)?
                    .trim()
                    .rsplit(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0)
    };
    eprintln!("h2load: {line}");
    assert!(count(" succeeded") > 20, "{h2}");
    assert_eq!(
        (count(" failed"), count(" errored"), count(" timeout")),
        (0, 0, 0),
        "{h2}"
    );
    eprintln!(
        "keep-alive: {kept_requests} requests over {connections} connections, failed {kept_failed:?}"
    );
    // The old process's connections were told `Connection: close` and ended with a response.
    assert!(
        kept_requests > 20 && connections >= 2,
        "{kept_requests} over {connections}"
    );
    assert!(kept_failed.is_empty(), "{kept_failed:?}");
    let tally = Tally {
        asked,
        lost,
        requests,
        failed,
    };
    eprintln!("upgrade took {took:?} to the old process's exit: {tally:?}");
    assert!(
        tally.asked > 100 && tally.requests > 20,
        "too little load: {tally:?}"
    );
    assert_eq!((tally.lost, tally.failed.len()), (0, 0), "{tally:?}");
    drop(new);
}

#[test]
fn a_new_binary_that_cannot_start_leaves_the_old_one_serving() {
    let backend = Backend::start("app");
    let cfg = ConfigDir::new();
    let lg = cfg.start(&config(backend.port));
    let (udp, _) = dns_ports(&lg);
    // An edit that breaks the configuration: the reload is refused, and so is the new process.
    cfg.rename_replace("labgate.toml", "[[network]\n");
    lg.wait_log("the refused reload", |l| {
        l.contains("reload rejected") || l.contains("rejected")
    });
    failed_upgrade(&lg, "this process keeps serving");
    // Still the same process, still answering.
    still_serving(lg, udp);
}

/// A new binary that cannot bind an address its configuration adds (held here by another
/// socket) stops before it serves: the old one keeps serving on every socket.
#[test]
fn a_new_binary_that_cannot_bind_leaves_the_old_one_serving() {
    let backend = Backend::start("app");
    let cfg = ConfigDir::new();
    let lg = cfg.start(&config(backend.port));
    let (udp, _) = dns_ports(&lg);
    // `[listen]` is read at start only: the running labgate keeps its listeners, the new
    // process wants this one too.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port();
    cfg.rename_replace(
        "labgate.toml",
        &format!(
            "[listen]\ntunnel = [\"127.0.0.1:{port}\"]\n{}",
            config(backend.port)
        ),
    );
    lg.wait_config("the reload", |c| support::generation(c) == 2);
    // The new process said which address.
    failed_upgrade(&lg, &format!("127.0.0.1:{port}"));
    still_serving(lg, udp);
    drop(busy);
}

/// `systemctl restart labgate` under a unit with `FileDescriptorStoreMax=`: labgate gave
/// systemd its listening sockets, so the next process serves on them and the kernel's
/// queues carry the queries and connections of the gap. The machine's PID 1 is not systemd:
/// `tests/upgrade/fake_systemd.py` plays its part (sd_notify(3), sd_listen_fds(3)).
#[test]
fn a_restart_with_systemd_s_descriptor_store_loses_no_query_and_fails_no_request() {
    use std::io::BufRead;
    let backend = Backend::start("app");
    let cfg = ConfigDir::new();
    cfg.write("labgate.toml", &config(backend.port));
    let (admin, dns, https, http) = (
        support::free_port(),
        support::free_port(),
        support::free_port(),
        support::free_port(),
    );
    let at = |port: u16| format!("127.0.0.1:{port}");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/upgrade/fake_systemd.py");
    let mut systemd = Command::new("python3")
        .arg(script)
        .arg(cfg.path("notify.sock"))
        .arg(env!("CARGO_BIN_EXE_labgate"))
        .args(["run", "--config"])
        .arg(cfg.path("labgate.toml"))
        .arg("--state-dir")
        .arg(cfg.path("state"))
        .args(["--admin", &at(admin), "--dns", &at(dns)])
        .args(["--https", &at(https), "--http", &at(http)])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(cfg.path("labgate.log")).expect("log"))
        .spawn()
        .expect("python3 is needed: apt-get install python3 (scripts/test.sh does)");
    let mut said = std::io::BufReader::new(systemd.stdout.take().expect("stdout")).lines();
    let mut next_ready = || {
        let line = said.next().and_then(Result::ok).unwrap_or_default();
        let log = std::fs::read_to_string(cfg.path("labgate.log")).unwrap_or_default();
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.first(), Some(&"ready"), "{line}\n{log}");
        fields[2].parse::<usize>().expect("descriptors given")
    };
    assert_eq!(next_ready(), 0, "the first process starts with nothing");
    let stop = Arc::new(AtomicBool::new(false));
    let dns_load = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || dns_client(dns, &stop))
    };
    let web = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || http_client(http, &stop))
    };
    let pause = |d: Duration| {
        let until = Instant::now() + d;
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    pause(Duration::from_secs(1));
    let stdin = systemd.stdin.as_mut().expect("stdin");
    writeln!(stdin, "restart").expect("restart");
    let started = Instant::now();
    // Admin, DNS over TCP, HTTPS, HTTP and the UDP group (one socket per worker thread).
    let given = next_ready();
    let took = started.elapsed();
    assert!(given >= 5, "{given} descriptors passed back");
    pause(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let (asked, lost) = dns_load.join().expect("dns client");
    let (requests, failed) = web.join().expect("http client");
    drop(systemd.stdin.take());
    let _ = systemd.wait();
    let tally = Tally {
        asked,
        lost,
        requests,
        failed,
    };
    eprintln!(
        "restart took {took:?} to the new process's READY=1 ({given} sockets kept): {tally:?}"
    );
    assert!(
        tally.asked > 100 && tally.requests > 20,
        "too little load: {tally:?}"
    );
    assert_eq!((tally.lost, tally.failed.len()), (0, 0), "{tally:?}");
}
