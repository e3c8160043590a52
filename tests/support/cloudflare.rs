//! A fake of Cloudflare's API v4, for the certificate tests: no real Cloudflare can run
//! offline. It follows the documented contract (../shared/research/acme.md §7): the response
//! envelope, `GET /zones?name=`, `POST`/`GET`/`DELETE /zones/{id}/dns_records`, Bearer tokens
//! scoped per zone (read, edit), 81058 for an identical record, 81044 for a missing one, 9021
//! for a bad TTL, 429 with `retry-after` on demand. Accepted TXT records are served by a DNS
//! responder on UDP, so Pebble validates records created through the API.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{RData, Record, RecordType};
use serde_json::{Value, json};

/// What a token may do in which zone.
#[derive(Clone, Debug)]
pub(crate) struct Scope {
    pub(crate) zone: String,
    pub(crate) edit: bool,
}

#[derive(Default)]
struct State {
    tokens: HashMap<String, Scope>,
    zones: HashMap<String, String>,
    /// Records: id → (zone id, name, content).
    records: HashMap<String, (String, String, String)>,
    next_id: u64,
    /// Every request: method, path, authorization header.
    log: Vec<(String, String, String)>,
}

/// The fake API and its DNS responder; threads end with the test process.
pub(crate) struct FakeCloudflare {
    /// API base URL (`http://127.0.0.1:PORT/client/v4`).
    pub(crate) api: String,
    /// The responder's port.
    pub(crate) dns_port: u16,
    state: Arc<Mutex<State>>,
    /// Injected answers, each used a given number of times.
    pub(crate) quirks: Arc<Quirks>,
}

/// Answers the real API gives now and then, injected on demand.
#[derive(Default)]
pub(crate) struct Quirks {
    /// Requests still to be answered 429 with `retry-after: 1`.
    pub(crate) rate_limit: AtomicU32,
    /// Creations still to be stored but answered 81058 (as when a create is retried).
    pub(crate) duplicate: AtomicU32,
    /// Deletions still to be done but answered 404/81044 (as when a delete is retried).
    pub(crate) gone: AtomicU32,
}

/// Takes one use of a quirk if any is left.
fn take(q: &AtomicU32) -> bool {
    q.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

impl FakeCloudflare {
    /// Serves `zones` (names), accepting `tokens`.
    pub(crate) fn start(zones: &[&str], tokens: &[(&str, Scope)]) -> Self {
        let mut state = State::default();
        for (i, z) in zones.iter().enumerate() {
            state.zones.insert(format!("{i:032x}"), (*z).to_owned());
        }
        for (t, s) in tokens {
            state.tokens.insert((*t).to_owned(), s.clone());
        }
        let state = Arc::new(Mutex::new(state));
        let quirks = Arc::new(Quirks::default());
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind api");
        let port = listener.local_addr().expect("addr").port();
        let (s, r) = (Arc::clone(&state), Arc::clone(&quirks));
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (s, r) = (Arc::clone(&s), Arc::clone(&r));
                std::thread::spawn(move || serve(conn, &s, &r));
            }
        });
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind dns");
        let dns_port = udp.local_addr().expect("addr").port();
        let s = Arc::clone(&state);
        std::thread::spawn(move || answer_dns(&udp, &s));
        Self {
            api: format!("http://127.0.0.1:{port}/client/v4"),
            dns_port,
            state,
            quirks,
        }
    }

    /// The records now in the zones: (name, content).
    pub(crate) fn records(&self) -> Vec<(String, String)> {
        let s = self.state.lock().expect("lock");
        s.records
            .values()
            .map(|(_, n, c)| (n.clone(), c.clone()))
            .collect()
    }

    /// Every request so far: (method, path with query, Authorization header).
    pub(crate) fn requests(&self) -> Vec<(String, String, String)> {
        self.state.lock().expect("lock").log.clone()
    }
}

fn serve(conn: TcpStream, state: &Mutex<State>, quirks: &Quirks) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut words = line.split_whitespace();
        let (method, target) = (
            words.next().unwrap_or("").to_owned(),
            words.next().unwrap_or("").to_owned(),
        );
        let (mut auth, mut length) = (String::new(), 0usize);
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                match name.to_ascii_lowercase().as_str() {
                    "authorization" => auth = value.trim().to_owned(),
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (status, extra, reply) = if take(&quirks.rate_limit) {
            (
                429,
                "retry-after: 1\r\n",
                failure(
                    971,
                    "Please wait and consider throttling your request speed",
                ),
            )
        } else {
            let mut s = state.lock().expect("lock");
            s.log.push((method.clone(), target.clone(), auth.clone()));
            let (status, reply) = route(&mut s, quirks, &method, &target, &auth, &body);
            (status, "", reply)
        };
        let text = reply.to_string();
        let _ = write!(
            writer,
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\n\r\n{text}",
            text.len()
        );
    }
}

fn failure(code: i64, message: &str) -> Value {
    json!({"success": false, "errors": [{"code": code, "message": message}], "messages": [], "result": null})
}

fn success(result: Value) -> Value {
    json!({"success": true, "errors": [], "messages": [], "result": result})
}

fn route(
    s: &mut State,
    quirks: &Quirks,
    method: &str,
    target: &str,
    auth: &str,
    body: &[u8],
) -> (u16, Value) {
    let Some(token) = auth
        .strip_prefix("Bearer ")
        .filter(|t| !t.is_empty() && !t.contains(' '))
    else {
        return (
            400,
            json!({"success": false, "messages": [], "result": null, "errors": [{"code": 6003, "message": "Invalid request headers",
                "error_chain": [{"code": 6111, "message": "Invalid format for Authorization header"}]}]}),
        );
    };
    let Some(scope) = s.tokens.get(token).cloned() else {
        return (400, failure(1000, "Invalid API Token"));
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let param = |k: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .map(str::to_owned)
    };
    let parts: Vec<&str> = path.trim_start_matches("/client/v4/").split('/').collect();
    match (method, parts.as_slice()) {
        ("GET", ["zones"]) => {
            let name = param("name").unwrap_or_default();
            let found: Vec<Value> = s
                .zones
                .iter()
                .filter(|(_, z)| **z == name && scope.zone == name)
                .map(|(id, z)| json!({"id": id, "name": z, "status": "active", "name_servers": ["ns1.example.test"]}))
                .collect();
            (200, success(Value::Array(found)))
        }
        (_, ["zones", zone, "dns_records", rest @ ..]) => {
            let Some(zone_name) = s.zones.get(*zone).cloned() else {
                return (
                    400,
                    failure(
                        7003,
                        "Could not route to /zones, perhaps your object identifier is invalid?",
                    ),
                );
            };
            if scope.zone != zone_name || (!scope.edit && method != "GET") {
                return (403, failure(10000, "Authentication error"));
            }
            match (method, rest) {
                ("POST", []) => {
                    let r: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                    let (name, content) = (
                        r["name"].as_str().unwrap_or_default().to_owned(),
                        r["content"].as_str().unwrap_or_default().to_owned(),
                    );
                    let ttl = r["ttl"].as_i64().unwrap_or(0);
                    if ttl != 1 && !(60..=86400).contains(&ttl) {
                        return (
                            400,
                            failure(
                                9021,
                                "TTL must be between 60 and 86400 seconds, or 1 for Automatic.",
                            ),
                        );
                    }
                    if s.records
                        .values()
                        .any(|(_, n, c)| *n == name && *c == content)
                    {
                        return (400, failure(81058, "An identical record already exists."));
                    }
                    s.next_id += 1;
                    let id = format!("{:032x}", 0xcf00 + s.next_id);
                    s.records.insert(
                        id.clone(),
                        ((*zone).to_owned(), name.clone(), content.clone()),
                    );
                    if take(&quirks.duplicate) {
                        return (400, failure(81058, "An identical record already exists."));
                    }
                    (
                        200,
                        success(
                            json!({"id": id, "name": name, "type": "TXT", "content": content, "ttl": ttl, "proxied": false}),
                        ),
                    )
                }
                ("GET", []) => {
                    let name = param("name.exact").unwrap_or_default();
                    let found: Vec<Value> = s
                        .records
                        .iter()
                        .filter(|(_, (z, n, _))| z == zone && *n == name)
                        .map(|(id, (_, n, c))| json!({"id": id, "name": n, "type": "TXT", "content": c, "ttl": 60}))
                        .collect();
                    (200, success(Value::Array(found)))
                }
                ("DELETE", [id]) => match s.records.remove(*id) {
                    Some(_) if take(&quirks.gone) => {
                        (404, failure(81044, "Record does not exist."))
                    }
                    Some(_) => (200, success(json!({"id": id}))),
                    None => (404, failure(81044, "Record does not exist.")),
                },
                _ => (405, failure(10405, "Method not allowed")),
            }
        }
        _ => (400, failure(7000, "No route for that URI")),
    }
}

/// Answers TXT questions from the records (content unquoted), authoritatively; NXDOMAIN else.
fn answer_dns(udp: &UdpSocket, state: &Mutex<State>) {
    let mut buf = [0u8; 4096];
    loop {
        let Ok((n, from)) = udp.recv_from(&mut buf) else {
            continue;
        };
        let Ok(query) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
        reply.metadata.message_type = MessageType::Response;
        reply.metadata.authoritative = true;
        reply.add_queries(query.queries.clone());
        let mut found = false;
        if let Some(q) = query.queries.first() {
            let name = q
                .name()
                .to_string()
                .trim_end_matches('.')
                .to_ascii_lowercase();
            let s = state.lock().expect("lock");
            for (_, n, c) in s.records.values() {
                if *n == name {
                    found = true;
                    if q.query_type() == RecordType::TXT {
                        reply.add_answer(Record::from_rdata(
                            q.name().clone(),
                            60,
                            RData::TXT(TXT::new(vec![c.trim_matches('"').to_owned()])),
                        ));
                    }
                }
            }
        }
        if !found {
            reply.metadata.response_code = ResponseCode::NXDomain;
        }
        if let Ok(bytes) = reply.to_vec() {
            let _ = udp.send_to(&bytes, from);
        }
    }
}
