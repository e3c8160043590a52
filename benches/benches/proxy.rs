//! Benches: the proxy's per-request work before any I/O, on each executor: the HTTP/1.1 fast
//! path (parse the head, plan, write the upstream head as bytes), the HTTP/2 path (decode a
//! HEADERS frame in the core, plan, write the upstream head as bytes, answer the stream) and
//! pingora's session (plan a `RequestHeader`, write the upstream one); and certificate
//! resolution by name. Before
//! timing, each path's allocations per request are counted with dhat (zero is the fast
//! path's aim).
#![allow(
    clippy::disallowed_macros,
    reason = "a benchmark: the allocation counts it prints are part of its report"
)]

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use labgate_benches::generated_config;
use labgate_proxy::backends::Pools;
use labgate_proxy::cf_access::KeySets;
use labgate_proxy::general::SessionHead;
use labgate_proxy::h2::{Connection, Event, Limits, StreamId};
use labgate_proxy::h2_path::View;
use labgate_proxy::head::{header_array, parse_request};
use labgate_proxy::plan::{Context, Executor, Plan, plan};
use labgate_proxy::rewrite::{Body, HeaderSink, end_head};
use labgate_proxy::{ConnInfo, ProxyState};
use pingora::http::RequestHeader;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const REQUEST: &[u8] = b"GET /api/v1/items?page=2 HTTP/1.1\r\nHost: app3.zone3.lab.test\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0\r\nAccept: text/html,application/xhtml+xml\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\nConnection: keep-alive\r\nCookie: session=0123456789abcdef\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n";

/// What one request is planned with.
fn context<'a>(
    state: &'a ProxyState,
    info: &'a ConnInfo,
    keys: &'a KeySets,
    executor: Executor,
) -> Context<'a, 'a> {
    Context {
        state,
        conn: info,
        keys,
        now: 0,
        https_port: 443,
        keys_refreshed: false,
        pinned: None,
        executor,
    }
}

/// One request on the fast path; returns the upstream head's length.
fn fast(c: &Context<'_, '_>, out: &mut Vec<u8>) -> usize {
    let mut headers = header_array();
    let Ok(h) = parse_request(black_box(REQUEST), &mut headers) else {
        return 0;
    };
    match plan(c, &h) {
        Plan::Forward(f) => {
            out.clear();
            if f.rewrite.emit(&h, out).is_err() {
                return 0;
            }
            end_head(out);
            out.len()
        }
        _ => 0,
    }
}

/// One request on pingora's session, its head already parsed by pingora; returns the number
/// of upstream fields.
fn session(c: &Context<'_, '_>, req: &RequestHeader) -> usize {
    let view = SessionHead::new(black_box(req), false, Body::Empty);
    match plan(c, &view) {
        Plan::Forward(f) => {
            let mut sink = HeaderSink::default();
            if f.rewrite.emit(&view, &mut sink).is_err() {
                return 0;
            }
            sink.into_head().map_or(0, |h| h.headers.len())
        }
        _ => 0,
    }
}

/// [`REQUEST`] as an HTTP/2 field block, as a browser sends it (literals without indexing, so
/// every request decodes alike).
fn h2_block() -> Vec<u8> {
    // An HPACK integer of `prefix` bits after `first`'s flag bits.
    fn int(out: &mut Vec<u8>, first: u8, prefix: u8, mut v: usize) {
        let max = (1usize << prefix) - 1;
        if v < max {
            out.push(first | v as u8);
            return;
        }
        out.push(first | max as u8);
        v -= max;
        while v >= 128 {
            out.push((v % 128) as u8 | 0x80);
            v /= 128;
        }
        out.push(v as u8);
    }
    // A literal without indexing whose name is static-table entry `index`.
    let mut block = vec![0x82, 0x87]; // :method GET, :scheme https
    for (index, value) in [
        (4, "/api/v1/items?page=2"),
        (1, "app3.zone3.lab.test"),
        (58, "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"),
        (19, "text/html,application/xhtml+xml"),
        (17, "en-US,en;q=0.5"),
        (16, "gzip, deflate, br"),
        (32, "session=0123456789abcdef"),
    ] {
        int(&mut block, 0x00, 4, index);
        int(&mut block, 0x00, 7, value.len());
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// The HTTP/2 path's per-request work: a HEADERS frame on the next stream decoded by the core,
/// planned, its upstream head written, and the stream answered (so streams never pile up).
fn h2(
    c: &Context<'_, '_>,
    conn: &mut Connection,
    frame: &mut Vec<u8>,
    next: &mut u32,
    block: &[u8],
    out: &mut Vec<u8>,
) -> usize {
    let id = *next;
    *next += 2;
    frame.clear();
    frame.extend_from_slice(&(block.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(&[0x1, 0x5]);
    frame.extend_from_slice(&id.to_be_bytes());
    frame.extend_from_slice(block);
    let mut written = 0;
    if let Ok(recv) = conn.recv(black_box(frame))
        && let Some(Event::Request {
            head, end_stream, ..
        }) = recv.event
        && let Ok(view) = View::new(head, end_stream)
        && let Plan::Forward(f) = plan(c, &view)
    {
        out.clear();
        if f.rewrite.emit(&view, out).is_ok() {
            end_head(out);
            written = out.len();
        }
    }
    let _ = conn.send_response(StreamId(id), 200, std::iter::empty(), true);
    let n = conn.output().len();
    conn.advance(n);
    written
}

/// An HTTP/2 connection past its preface and SETTINGS.
fn h2_connection() -> Connection {
    let mut conn = Connection::new(Limits::default());
    let mut start = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    start.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    while let Ok(r) = conn.recv(&start) {
        let consumed = r.consumed;
        start.drain(..consumed);
        if consumed == 0 {
            break;
        }
    }
    let n = conn.output().len();
    conn.advance(n);
    conn
}

/// Allocations per call of `work`, counted over 1000 calls.
fn allocations(what: &str, mut work: impl FnMut() -> usize) {
    let _profiler = dhat::Profiler::builder().testing().build();
    let before = dhat::HeapStats::get().total_blocks;
    for _ in 0..1000 {
        black_box(work());
    }
    let per_request = (dhat::HeapStats::get().total_blocks - before) as f64 / 1000.0;
    println!("{what}: {per_request} allocations per request");
}

/// pingora's head of [`REQUEST`].
fn pingora_head() -> RequestHeader {
    let mut headers = header_array();
    let h = parse_request(REQUEST, &mut headers).expect("parses");
    let mut req = RequestHeader::build(h.method, h.path.as_bytes(), None).expect("head");
    for f in h.headers {
        req.append_header(f.name.to_owned(), f.value)
            .expect("field");
    }
    req
}

fn proxy_bench(c: &mut Criterion) {
    let snapshot = Arc::new(labgate_config::testing::snapshot(&generated_config(
        60, 1000,
    )));
    let state = ProxyState::new(snapshot, &Pools::default());
    let info = ConnInfo {
        client: "10.0.3.7".parse::<IpAddr>().expect("ip"),
        tls: true,
        sni: None,
        cert: None,
        certs: None,
        via: labgate_proxy::decide::Via::Direct,
    };
    let keys = KeySets::default();
    let fast_context = context(&state, &info, &keys, Executor::Fast);
    let h2_context = context(&state, &info, &keys, Executor::H2);
    let session_context = context(&state, &info, &keys, Executor::Session);
    let req = pingora_head();
    let mut out = Vec::with_capacity(2048);
    assert!(
        fast(&fast_context, &mut out) > 0 && session(&session_context, &req) > 0,
        "the bench request must be forwarded on both executors"
    );
    allocations("proxy fast path: parse, plan, write head", || {
        fast(&fast_context, &mut out)
    });
    allocations("proxy session: plan, write head", || {
        session(&session_context, &req)
    });
    let block = h2_block();
    let (mut conn, mut frame, mut next) = (h2_connection(), Vec::new(), 1);
    assert!(
        h2(
            &h2_context,
            &mut conn,
            &mut frame,
            &mut next,
            &block,
            &mut out
        ) > 0,
        "the bench request must be forwarded on the HTTP/2 path"
    );
    allocations(
        "proxy HTTP/2 path: decode, plan, write head, answer",
        || {
            h2(
                &h2_context,
                &mut conn,
                &mut frame,
                &mut next,
                &block,
                &mut out,
            )
        },
    );
    let mut g = c.benchmark_group("proxy_request_plan");
    g.bench_function("fast_parse_plan_write_head", |b| {
        b.iter(|| fast(&fast_context, &mut out));
    });
    g.bench_function("session_plan_write_head", |b| {
        b.iter(|| session(&session_context, &req));
    });
    g.bench_function("h2_decode_plan_write_head_answer", |b| {
        // Stream ids run out after 2^30 requests: a new connection before then.
        b.iter(|| {
            if next > 1 << 30 {
                (conn, next) = (h2_connection(), 1);
            }
            h2(
                &h2_context,
                &mut conn,
                &mut frame,
                &mut next,
                &block,
                &mut out,
            )
        });
    });
    g.finish();

    let mut map = labgate_proxy::CertMap::default();
    let ck =
        rcgen::generate_simple_self_signed(vec!["*.zone3.lab.test".to_owned()]).expect("rcgen");
    let key = Arc::new(
        labgate_proxy::certs::certified_key(
            ck.cert.pem().as_bytes(),
            ck.signing_key.serialize_pem().as_bytes(),
        )
        .expect("key"),
    );
    for i in 0..1000 {
        map.insert(&[format!("app{i}.zone{}.lab.test", i % 10).into()], &key);
    }
    map.insert(&["*.zone3.lab.test".into()], &key);
    let mut g = c.benchmark_group("cert_resolve");
    g.bench_function("exact", |b| {
        b.iter(|| map.get(black_box("app500.zone0.lab.test")).is_some())
    });
    g.bench_function("wildcard", |b| {
        b.iter(|| map.get(black_box("new.zone3.lab.test")).is_some())
    });
    g.finish();
}

criterion_group!(benches, proxy_bench);
criterion_main!(benches);
