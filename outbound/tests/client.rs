//! The client against local servers: connection reuse, Happy Eyeballs past a dead address,
//! redirects with credentials, the body limit and the time limit.
#![allow(
    clippy::disallowed_methods,
    reason = "real sockets and real time: how long a connection attempt took is wall-clock time"
)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use labgate_outbound::{Client, Error, Limits, Resolve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longest any test waits for anything.
const WAIT: Duration = Duration::from_secs(10);
/// Limits no test reaches.
const ROOMY: Limits = Limits {
    body: 1 << 20,
    time: WAIT,
};

/// Every name resolves to the same addresses, in the order given.
struct Fixed(Vec<IpAddr>);

#[async_trait]
impl Resolve for Fixed {
    async fn addresses(&self, _: &str) -> Vec<IpAddr> {
        self.0.clone()
    }
}

fn client(ips: &[&str]) -> Client {
    let ips = ips.iter().map(|s| s.parse().expect("an address")).collect();
    Client::new(Arc::new(Fixed(ips))).expect("a client")
}

fn url(s: &str) -> url::Url {
    url::Url::parse(s).expect("a URL")
}

/// An HTTP/1.1 server on loopback that answers every request with `answer(head)` and keeps
/// the connection open; it counts the connections it accepted.
struct Server {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(answer: fn(&str) -> String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                connections.spawn(serve(tcp, answer));
            }
        });
        Self {
            addr,
            accepted,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut tcp: TcpStream, answer: fn(&str) -> String) {
    let mut buf = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        if tcp.write_all(answer(&head).as_bytes()).await.is_err() {
            return;
        }
    }
}

fn ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn two_gets_to_one_server_share_one_connection() {
    let server = Server::start(|_| ok("ok")).await;
    let client = client(&["127.0.0.1"]);
    let port = server.addr.port();
    for path in ["/a", "/b"] {
        let body = client
            .get(&url(&format!("http://lists.test:{port}{path}")), ROOMY)
            .await
            .expect("a body");
        assert_eq!(body, "ok");
    }
    assert_eq!(server.accepted(), 1, "the second GET reused the connection");
}

/// A listener at `addr` whose accept queue is full: a SYN to it is dropped, so a connection
/// attempt hangs as it would towards an address whose packets go nowhere.
async fn blackhole(addr: SocketAddr) -> (TcpListener, Vec<TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(addr).expect("bind the blackhole");
    // Linux queues one connection beyond a backlog of 0, then drops SYNs.
    let listener = socket.listen(0).expect("listen");
    let mut queued = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => queued.push(tcp),
            Ok(Err(e)) => panic!("connecting to the blackhole: {e}"),
            Err(_) => return (listener, queued),
        }
    }
    panic!("the blackhole's queue never filled");
}

#[tokio::test]
async fn a_dead_first_address_costs_one_attempt_delay_not_a_timeout() {
    let server = Server::start(|_| ok("ok")).await;
    let port = server.addr.port();
    let _hole = blackhole(SocketAddr::from(([127, 0, 0, 2], port))).await;
    let client = client(&["127.0.0.2", "127.0.0.1"]);
    let started = Instant::now();
    let body = client
        .get(&url(&format!("http://lists.test:{port}/")), ROOMY)
        .await
        .expect("the second address answers");
    let took = started.elapsed();
    assert_eq!(body, "ok");
    assert!(
        took >= Duration::from_millis(250),
        "the second attempt waited its turn: {took:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "the dead address did not hold the request: {took:?}"
    );
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn a_refused_first_address_hands_over_to_the_next() {
    let server = Server::start(|_| ok("ok")).await;
    let port = server.addr.port();
    // Nothing listens on 127.0.0.3 at that port: refused at once.
    let client = client(&["127.0.0.3", "127.0.0.1"]);
    let body = client
        .get(&url(&format!("http://lists.test:{port}/")), ROOMY)
        .await
        .expect("the second address answers");
    assert_eq!(body, "ok");
    let none = self::client(&["127.0.0.3"])
        .get(&url(&format!("http://lists.test:{port}/")), ROOMY)
        .await
        .expect_err("nothing listens");
    assert!(
        matches!(&none, Error::Connect { port: p, .. } if *p == port),
        "{none:?}"
    );
}

/// Redirects `/moved` to `/final`, `/loop` to itself (query and all), echoes the Authorization at `/final`;
/// 404 elsewhere.
fn redirecting(head: &str) -> String {
    let target = head.split(' ').nth(1).unwrap_or_default();
    let path = target.split('?').next().unwrap_or_default();
    let auth = head
        .lines()
        .find_map(|l| l.strip_prefix("authorization: "))
        .unwrap_or("none");
    match path {
        "/moved" => "HTTP/1.1 302 Found\r\nlocation: /final\r\ncontent-length: 0\r\n\r\n".into(),
        "/loop" => format!("HTTP/1.1 301 Moved\r\nlocation: {target}\r\ncontent-length: 0\r\n\r\n"),
        "/final" => ok(auth),
        _ => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".into(),
    }
}

#[tokio::test]
async fn redirects_carry_credentials_and_a_loop_ends() {
    let server = Server::start(redirecting).await;
    let port = server.addr.port();
    let client = client(&["127.0.0.1"]);
    let body = client
        .get(
            &url(&format!("http://u:p@lists.test:{port}/moved?token=s3cret")),
            ROOMY,
        )
        .await
        .expect("the redirect is followed");
    assert_eq!(
        body, "Basic dTpw",
        "the credentials went along to the same host"
    );
    let looping = client
        .get(
            &url(&format!("http://lists.test:{port}/loop?token=s3cret")),
            ROOMY,
        )
        .await
        .expect_err("a loop ends");
    assert!(
        matches!(looping, Error::RedirectLoop { max: 5, .. }),
        "{looping:?}"
    );
    let shown = looping.to_string();
    assert!(shown.contains("more than 5 redirects"), "{shown}");
    assert!(
        shown.contains("/loop?…") && !shown.contains("s3cret"),
        "{shown}"
    );
    let missing = client
        .get(&url(&format!("http://lists.test:{port}/gone")), ROOMY)
        .await
        .expect_err("404");
    assert!(
        matches!(missing, Error::Status { status, .. } if status == 404),
        "{missing:?}"
    );
}

#[tokio::test]
async fn a_body_past_the_limit_and_a_server_past_the_time_fail_typed() {
    let server = Server::start(|_| ok(&"x".repeat(2048))).await;
    let port = server.addr.port();
    let client = client(&["127.0.0.1"]);
    let small = Limits {
        body: 1024,
        time: WAIT,
    };
    let large = client
        .get(&url(&format!("http://lists.test:{port}/")), small)
        .await
        .expect_err("over the limit");
    assert!(
        matches!(large, Error::TooLarge { limit: 1024, .. }),
        "{large:?}"
    );
    // A server that accepts and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let quick = Limits {
        body: 1024,
        time: Duration::from_millis(300),
    };
    let started = Instant::now();
    let late = client
        .get(&url(&format!("http://lists.test:{port}/")), quick)
        .await
        .expect_err("no answer");
    assert!(matches!(late, Error::Timeout { .. }), "{late:?}");
    assert!(started.elapsed() < WAIT);
}
