//! New TLS connections with one request each, timed as a browser feels them: from the TCP
//! connect to the last byte of the response. wrk's latency starts after the handshake, so on
//! its new-connection workload it leaves out the part that costs most.
//!
//! Two modes. `--rate N`: N connections a second (open loop), each timed from when it was
//! due, so a server that stalls is charged for the connections it kept waiting. `--concurrency
//! N`: N connections at a time, each followed at once by the next (closed loop, as wrk -c).
//! Full handshakes only (no resumption), TLS 1.3 when the server offers it, X25519; the
//! certificate's signatures are checked but not its chain (the bench's is self-signed, as
//! wrk does not check either).
//!
//!   tls-connect 127.0.0.1:18441 app.bench.test /1k --rate 1000 --duration 8
//!
//! `--from ADDRESS` connects from that local address (a second client on loopback, e.g.
//! 127.0.0.3, for `benches/load/connflood.sh`).
//!
//! Prints one line: `requests N errors N total_p50_ms .. total_p99_ms .. total_p999_ms ..
//! request_p50_ms .. request_p99_ms ..` (request: from the request's first byte, as wrk).
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    reason = "a command-line tool of the load benchmarks: it prints its report and exits with its status, and paces an open loop on the wall clock"
)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use labgate_outbound::SignaturesOnly;
use rustls::ClientConfig;
use rustls::crypto::ring;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;

/// How connections are started.
#[derive(Clone, Copy)]
enum Load {
    /// This many a second, each due at its own time.
    Rate(u32),
    /// This many open at once.
    Concurrency(u32),
}

/// One connection's times: from when it was due (or started) and from its request's first
/// byte, to the response's last byte.
type Times = (Duration, Duration);

/// Longest a connection may take before it counts as an error.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Highest rate taken: the pacing interval must stay above zero.
const MAX_RATE: u32 = 1_000_000;

struct Target {
    addr: SocketAddr,
    /// The local address connections are made from, if not the system's choice.
    from: Option<IpAddr>,
    name: ServerName<'static>,
    request: Vec<u8>,
    connector: TlsConnector,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (target, load, duration) = match parse(&args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("tls-connect: {e}");
            eprintln!(
                "usage: tls-connect ADDRESS:PORT HOST PATH (--rate N | --concurrency N) [--duration SECONDS] [--from ADDRESS]"
            );
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tls-connect: no runtime: {e}");
            std::process::exit(1);
        }
    };
    let target = Arc::new(target);
    let (times, errors) = match load {
        Load::Rate(rate) => open_loop(&rt, &target, rate, duration),
        Load::Concurrency(n) => rt.block_on(closed_loop(&target, n, duration)),
    };
    report(times, errors);
}

fn parse(args: &[String]) -> Result<(Target, Load, Duration), String> {
    let [addr, host, path, rest @ ..] = args else {
        return Err("three arguments are needed".into());
    };
    let addr: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let name = ServerName::try_from(host.clone()).map_err(|e| format!("{host}: {e}"))?;
    let (mut load, mut duration, mut from) = (None, Duration::from_secs(8), None);
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        if flag == "--from" {
            let value = it.next().ok_or("--from needs an address")?;
            from = Some(value.parse().map_err(|e| format!("{value}: {e}"))?);
            continue;
        }
        let value: u32 = it
            .next()
            .and_then(|v| v.parse().ok())
            .filter(|v| *v > 0)
            .ok_or_else(|| format!("{flag} needs a positive number"))?;
        match flag.as_str() {
            "--rate" if value <= MAX_RATE => load = Some(Load::Rate(value)),
            "--rate" => return Err(format!("--rate is at most {MAX_RATE}")),
            "--concurrency" => load = Some(Load::Concurrency(value)),
            "--duration" => duration = Duration::from_secs(value.into()),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    let load = load.ok_or("--rate or --concurrency is needed")?;
    let provider = Arc::new(ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SignaturesOnly(provider)))
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let target = Target {
        addr,
        from,
        name,
        request: request.into_bytes(),
        connector: TlsConnector::from(Arc::new(config)),
    };
    Ok((target, load, duration))
}

/// Starts `rate` connections a second for `duration`, paced by a thread of its own (tokio's
/// timer ticks in milliseconds); waits for the last one.
fn open_loop(
    rt: &tokio::runtime::Runtime,
    target: &Arc<Target>,
    rate: u32,
    duration: Duration,
) -> (Vec<Times>, usize) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handle = rt.handle().clone();
    let target = Arc::clone(target);
    let pacer = std::thread::spawn(move || {
        let interval = Duration::from_secs(1) / rate;
        let start = Instant::now();
        let mut due = start;
        while due < start + duration {
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let (target, tx) = (Arc::clone(&target), tx.clone());
            handle.spawn(async move {
                let _ = tx.send(connection(&target, due).await);
            });
            due += interval;
        }
    });
    let mut results = Vec::new();
    rt.block_on(async {
        while let Some(r) = rx.recv().await {
            results.push(r);
        }
    });
    let _ = pacer.join();
    split(results)
}

/// Keeps `n` connections going, each followed by the next, for `duration`.
async fn closed_loop(target: &Arc<Target>, n: u32, duration: Duration) -> (Vec<Times>, usize) {
    let end = Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let target = Arc::clone(target);
        tasks.spawn(async move {
            let mut results = Vec::new();
            while Instant::now() < end {
                results.push(connection(&target, Instant::now()).await);
            }
            results
        });
    }
    let mut results = Vec::new();
    while let Some(done) = tasks.join_next().await {
        results.extend(done.unwrap_or_default());
    }
    split(results)
}

fn split(results: Vec<Result<Times, String>>) -> (Vec<Times>, usize) {
    let mut errors = 0;
    let mut times = Vec::with_capacity(results.len());
    for r in results {
        match r {
            Ok(t) => times.push(t),
            Err(e) => {
                if errors == 0 {
                    eprintln!("tls-connect: first error: {e}");
                }
                errors += 1;
            }
        }
    }
    (times, errors)
}

/// One connection due at `due`, within [`CONNECTION_TIMEOUT`].
async fn connection(target: &Target, due: Instant) -> Result<Times, String> {
    tokio::time::timeout(CONNECTION_TIMEOUT, exchange(target, due))
        .await
        .unwrap_or_else(|_| Err(format!("no response within {CONNECTION_TIMEOUT:?}")))
}

/// Connect, handshake, request, the whole response (a 200 with a Content-Length).
async fn exchange(target: &Target, due: Instant) -> Result<Times, String> {
    let tcp = connect(target).await.map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut tls = target
        .connector
        .connect(target.name.clone(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let sent = Instant::now();
    tls.write_all(&target.request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::with_capacity(4096);
    loop {
        if tls
            .read_buf(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?
            == 0
        {
            return Err("the server closed before the whole response".into());
        }
        if let Some(complete) = complete(&buf)? {
            if !complete {
                continue;
            }
            let done = Instant::now();
            return Ok((done - due, done - sent));
        }
    }
}

/// A TCP connection to the target, from `--from` when given.
async fn connect(target: &Target) -> std::io::Result<TcpStream> {
    let Some(from) = target.from else {
        return TcpStream::connect(target.addr).await;
    };
    let socket = if from.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(target.addr).await
}

/// Whether `buf` holds a whole 200 response with a Content-Length: `None` while the head is
/// incomplete.
fn complete(buf: &[u8]) -> Result<Option<bool>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "a head that is not UTF-8")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("status {}", head.lines().next().unwrap_or("")));
    }
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .ok_or("a response without Content-Length")?;
    Ok(Some(buf.len() >= end + 4 + length))
}

fn report(mut times: Vec<Times>, errors: usize) {
    let percentile = |sorted: &[Duration], p: f64| -> f64 {
        if sorted.is_empty() {
            return f64::NAN;
        }
        // Nearest rank.
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
    };
    let mut request: Vec<Duration> = times.iter().map(|t| t.1).collect();
    times.sort_unstable();
    request.sort_unstable();
    let total: Vec<Duration> = times.iter().map(|t| t.0).collect();
    println!(
        "requests {} errors {errors} total_p50_ms {:.2} total_p99_ms {:.2} total_p999_ms {:.2} request_p50_ms {:.2} request_p99_ms {:.2}",
        total.len(),
        percentile(&total, 50.0),
        percentile(&total, 99.0),
        percentile(&total, 99.9),
        percentile(&request, 50.0),
        percentile(&request, 99.0),
    );
}
