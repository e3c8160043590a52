//! A real HTTP/1.1 backend on 127.0.0.1:0 for the proxy tests: records what it received and
//! answers by path (`/big`: 100 KiB, `/bytes/<n>`: n bytes, `/chunked`, `/close`:
//! close-delimited, `/ws`: WebSocket upgrade then echo, `/gate/<id>/<n>[?...]`: held until `n` requests of gate `id` are in, then as
//! JSON; `/bye`: as JSON, then the connection is closed, as a backend's keep-alive timeout does;
//! anything else: the request as JSON).
//!
//! Backends gone wrong, each closing the connection after it ([`Backend::closes`] has them):
//! `/close/<n>`: n bytes delimited by the close; `/close-sized/<n>`: n bytes with a
//! Content-Length and `Connection: close`; `/cut/<n>`: a Content-Length of n, then 10 bytes;
//! `/drop-if-reused/...`: read, then closed without an answer when the connection served a
//! request before (as JSON on a new one); `/answer-first/...`: a head and 10 of 100 bytes
//! before it reads the request body, then closed once the client closes. And
//! `/status/<code>`: that status line, verbatim (`099`), with no body.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Longest a gated request waits for the rest of its gate.
const GATE_TIMEOUT: Duration = Duration::from_secs(30);

/// Requests arrived per gate id, and the signal that one more arrived.
#[derive(Default)]
struct Gates {
    arrived: Mutex<HashMap<String, usize>>,
    more: Condvar,
}

impl Gates {
    /// Counts a request of `path` if it is `/gate/<id>/<n>` and waits until `n` have come.
    fn pass(&self, path: &str) {
        let path = path.split('?').next().unwrap_or_default();
        let mut parts = path.trim_start_matches("/gate/").splitn(2, '/');
        let (Some(id), Some(Ok(n))) = (parts.next(), parts.next().map(str::parse::<usize>)) else {
            return;
        };
        let mut arrived = self.arrived.lock().expect("lock");
        *arrived.entry(id.to_owned()).or_default() += 1;
        self.more.notify_all();
        let _ = self.more.wait_timeout_while(arrived, GATE_TIMEOUT, |a| {
            a.get(id).copied().unwrap_or(0) < n
        });
    }
}

/// One request as the backend saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Seen {
    /// Every value of a header, lower-case name.
    pub(crate) fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// The running backend; its threads end with the test process.
pub(crate) struct Backend {
    pub(crate) port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// The paths of the requests whose head has been read, before their bodies.
    heads: Arc<Mutex<Vec<String>>>,
    /// TCP connections accepted so far.
    connections: Arc<AtomicUsize>,
    /// The client ports of the connections closed after answering `/bye`.
    byes: Arc<Mutex<Vec<u16>>>,
    /// The paths whose request the backend answered (or not) by closing, with the client port
    /// of that connection.
    closes: Arc<Mutex<Vec<(String, u16)>>>,
    /// A name echoed in every JSON answer, to tell backends apart.
    pub(crate) name: String,
}

impl Backend {
    pub(crate) fn start(name: &str) -> Self {
        Self::start_on(name, "127.0.0.1:0")
    }

    /// A backend on a given address.
    pub(crate) fn start_on(name: &str, addr: &str) -> Self {
        let listener = TcpListener::bind(addr).expect("bind backend");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let byes = Arc::new(Mutex::new(Vec::new()));
        let closes = Arc::new(Mutex::new(Vec::new()));
        let gates = Arc::new(Gates::default());
        let (s, h, c, b, cl) = (
            Arc::clone(&seen),
            Arc::clone(&heads),
            Arc::clone(&connections),
            Arc::clone(&byes),
            Arc::clone(&closes),
        );
        let n = name.to_owned();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                let (s, h, g, b, cl) = (
                    Arc::clone(&s),
                    Arc::clone(&h),
                    Arc::clone(&gates),
                    Arc::clone(&b),
                    Arc::clone(&cl),
                );
                let n = n.clone();
                std::thread::spawn(move || {
                    let client = conn.peer_addr().map_or(0, |a| a.port());
                    // The connection closes when the last handle goes: after its end is
                    // recorded, so a test that sees the close finds the record.
                    let last = conn.try_clone();
                    match serve(conn, &s, &h, &g, &n) {
                        Ended::Bye => b.lock().expect("lock").push(client),
                        Ended::Closed(path) => cl.lock().expect("lock").push((path, client)),
                        Ended::Other => {}
                    }
                    drop(last);
                });
            }
        });
        Self {
            port,
            seen,
            heads,
            connections,
            byes,
            closes,
            name: name.to_owned(),
        }
    }

    /// Requests received so far, labgate's health checks left out.
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.all_seen()
            .into_iter()
            .filter(|r| r.header("user-agent") != ["labgate-health-check"])
            .collect()
    }

    /// The paths of the requests whose head has arrived, bodies read or not.
    pub(crate) fn heads(&self) -> Vec<String> {
        self.heads.lock().expect("lock").clone()
    }

    /// TCP connections accepted so far.
    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Connections closed after answering `/bye`.
    pub(crate) fn byes(&self) -> usize {
        self.byes.lock().expect("lock").len()
    }

    /// Whether the client's end of every connection closed after `/bye` has taken the close
    /// in (none is still established): a FIN on loopback can reach the other socket after
    /// `close` returned, when the kernel defers it to ksoftirqd on a busy machine.
    pub(crate) fn byes_reached_clients(&self) -> bool {
        let out = std::process::Command::new("ss")
            .args(["-Htn", "state", "established"])
            .output()
            .expect("ss is needed: apt-get install iproute2 (scripts/test.sh does)");
        let text = String::from_utf8_lossy(&out.stdout);
        let backend = format!("127.0.0.1:{}", self.port);
        let byes = self.byes.lock().expect("lock");
        !text.lines().any(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            fields.len() >= 4
                && fields[3] == backend
                && byes.iter().any(|p| fields[2] == format!("127.0.0.1:{p}"))
        })
    }

    /// How many times the backend closed a connection after a request for `path` (one of
    /// the paths that close, see the module doc).
    pub(crate) fn closes(&self, path: &str) -> usize {
        self.client_ports_closed_after(path).len()
    }

    /// Whether the client (labgate) has taken in everything of the connections closed after
    /// `path`: its end of each has seen the close (none is still established) and holds no
    /// byte it has not read. A read then finds the close next.
    ///
    /// `ss` counts the close in Recv-Q (it takes a sequence number) until it is read: a queue
    /// of 1 past the close is the close alone.
    pub(crate) fn closed_after_and_read(&self, path: &str) -> bool {
        let ports = self.client_ports_closed_after(path);
        if ports.is_empty() {
            return false;
        }
        let out = std::process::Command::new("ss")
            .args(["-Htna"])
            .output()
            .expect("ss is needed: apt-get install iproute2 (scripts/test.sh does)");
        let text = String::from_utf8_lossy(&out.stdout);
        let backend = format!("127.0.0.1:{}", self.port);
        !text.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 5
                && f[4] == backend
                && ports.iter().any(|p| f[3] == format!("127.0.0.1:{p}"))
                && (f[0] == "ESTAB" || f[1].parse::<u64>().map_or(true, |queued| queued > 1))
        })
    }

    fn client_ports_closed_after(&self, path: &str) -> Vec<u16> {
        self.closes
            .lock()
            .expect("lock")
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, port)| *port)
            .collect()
    }

    /// Every request received so far.
    pub(crate) fn all_seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

/// How a connection ended.
#[derive(PartialEq, Eq)]
enum Ended {
    /// After answering `/bye`.
    Bye,
    /// Closed by the backend as the answer to a request for this path went (or instead of it).
    Closed(String),
    Other,
}

/// The `<n>` of a path `<prefix><n>[?...]`.
fn size_after(path: &str, prefix: &str) -> usize {
    path[prefix.len()..]
        .split('?')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn serve(
    conn: TcpStream,
    seen: &Mutex<Vec<Seen>>,
    heads: &Mutex<Vec<String>>,
    gates: &Gates,
    name: &str,
) -> Ended {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut out) = conn.try_clone() else {
        return Ended::Other;
    };
    let mut r = BufReader::new(conn);
    // Requests read on this connection, the one being answered included.
    let mut served = 0;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return Ended::Other;
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
            return Ended::Other;
        };
        let (method, path) = (method.to_owned(), path.to_owned());
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return Ended::Other;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        heads.lock().expect("lock").push(path.clone());
        if path.starts_with("/answer-first/") {
            // Answers before it reads the body: a head, 10 of 100 bytes, then it reads until
            // the client closes.
            seen.lock().expect("lock").push(Seen {
                method,
                path: path.clone(),
                headers,
                body: Vec::new(),
            });
            let _ = out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
            let _ = std::io::copy(&mut r, &mut std::io::sink());
            return Ended::Closed(path);
        }
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            body.resize(len, 0);
            if r.read_exact(&mut body).is_err() {
                return Ended::Other;
            }
        } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                let mut size = String::new();
                if r.read_line(&mut size).unwrap_or(0) == 0 {
                    return Ended::Other;
                }
                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0; n + 2];
                if r.read_exact(&mut chunk).is_err() {
                    return Ended::Other;
                }
                body.extend_from_slice(&chunk[..n]);
                if n == 0 {
                    break;
                }
            }
        }
        let upgrade = get("upgrade").is_some();
        seen.lock().expect("lock").push(Seen {
            method: method.clone(),
            path: path.clone(),
            headers: headers.clone(),
            body: body.clone(),
        });
        if path.starts_with("/gate/") {
            gates.pass(&path);
        }
        served += 1;
        let closed = || Ended::Closed(path.clone());
        let ok = match path.as_str() {
            p if p.starts_with("/drop-if-reused/") && served > 1 => return closed(),
            p if p.starts_with("/status/") => {
                let code = &p["/status/".len()..];
                let head = format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n");
                out.write_all(head.as_bytes()).is_ok()
            }
            p if p.starts_with("/close/") => {
                let n = size_after(p, "/close/");
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n";
                let _ = out
                    .write_all(head.as_bytes())
                    .and_then(|()| out.write_all(&vec![b'c'; n]));
                return closed();
            }
            p if p.starts_with("/close-sized/") => {
                let n = size_after(p, "/close-sized/");
                let head =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n");
                let _ = out
                    .write_all(head.as_bytes())
                    .and_then(|()| out.write_all(&vec![b's'; n]));
                return closed();
            }
            p if p.starts_with("/cut/") => {
                let n = size_after(p, "/cut/");
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n");
                let _ = out
                    .write_all(head.as_bytes())
                    .and_then(|()| out.write_all(&[b'x'; 10]));
                return closed();
            }
            "/ws" if upgrade => {
                let _ = out.write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                );
                // Echo raw bytes until the client closes.
                let mut buf = [0u8; 4096];
                loop {
                    match r.read(&mut buf) {
                        Ok(0) | Err(_) => return Ended::Other,
                        Ok(n) => {
                            if out.write_all(&buf[..n]).is_err() {
                                return Ended::Other;
                            }
                        }
                    }
                }
            }
            "/big" => {
                let data = vec![b'x'; 100 * 1024];
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", data.len());
                out.write_all(head.as_bytes())
                    .and_then(|()| out.write_all(&data))
                    .is_ok()
            }
            p if p.starts_with("/bytes/") => {
                let n = size_after(p, "/bytes/");
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n");
                let body = if method == "HEAD" { 0 } else { n };
                out.write_all(head.as_bytes())
                    .and_then(|()| out.write_all(&vec![b'x'; body]))
                    .is_ok()
            }
            "/chunked" => out
                .write_all(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n",
                )
                .is_ok(),
            "/close" => {
                let _ = out.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close");
                return Ended::Other;
            }
            _ => {
                let json = serde_json::json!({
                    "backend": name,
                    "method": method,
                    "path": path,
                    "body_len": body.len(),
                });
                let text = json.to_string();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Backend: {name}\r\n\r\n",
                    text.len()
                );
                let body = if method == "HEAD" { "" } else { text.as_str() };
                let sent = out
                    .write_all(head.as_bytes())
                    .and_then(|()| out.write_all(body.as_bytes()))
                    .is_ok();
                if sent && path == "/bye" {
                    return Ended::Bye;
                }
                sent
            }
        };
        if !ok {
            return Ended::Other;
        }
    }
}
