//! Benches: the HTTP/2 core's per-request work (labgate's own h2 server core, proxy/src/h2):
//! a browser's request HEADERS frame in, its head read the way an executor writes an
//! HTTP/1.1 upstream head, a response head HPACK-encoded and a 1 KiB body framed out; and
//! the HPACK parts alone. Before timing, allocations per request are counted with dhat (zero
//! is the aim).
#![allow(
    clippy::disallowed_macros,
    reason = "a benchmark: the allocation counts it prints are part of its report"
)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use labgate_proxy::h2::hpack::{Decoder, Encoder, HeaderList};
use labgate_proxy::h2::{Connection, Event, Limits, StreamId, frame};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Chrome's first request on a connection: 18 fields, literals with incremental indexing,
/// Huffman-coded (480 bytes).
const FIRST: &[u8] = b"\x82\x41\x8e\x1d\x75\xb2\xbf\xb3\xd4\x56\x57\xa0\x71\xae\x92\xa1\x3f\x87\x44\x8f\x60\x75\x99\x8e\
    \xe1\x60\xc9\x2d\x28\xff\x2b\x1c\xc5\x80\x5f\x40\x87\x41\x48\xb1\x27\x5a\xd1\xff\xb8\xfe\x6f\x4f\
    \x61\xe9\x35\xb4\xff\x3f\x7d\xe0\xfe\x42\xd0\x3f\x9f\xa5\x3f\x9d\x27\x4c\x10\xff\x97\x6c\x1d\x52\
    \x7f\x3f\x7d\xe0\xfe\x44\xd7\xf3\xf4\xa7\xf3\x88\xe7\x9a\x82\xa9\x7a\x7b\x0f\x49\x7f\x9f\xbe\xf0\
    \x7f\x21\x68\x1f\xcf\x40\x8b\x41\x48\xb1\x27\x5a\xd1\xad\x49\xe3\x35\x05\x82\xff\x01\x40\x8d\x41\
    \x48\xb1\x27\x5a\xd1\xad\x5d\x03\x4c\xa7\xb2\x9f\x87\xfe\x73\x9a\xab\x7c\xff\x3f\x40\x92\xb6\xb9\
    \xac\x1c\x85\x58\xd5\x20\xa4\xb6\xc2\xad\x61\x7b\x5a\x54\x25\x1f\x81\x0f\x7a\xce\xd0\x7f\x66\xa2\
    \x81\xb0\xda\xe0\x53\xfa\xfc\x08\x7e\xd4\xce\x6a\xad\xf2\xa7\x97\x9c\x89\xc6\xbf\xb5\x21\xae\xba\
    \x0b\xc8\xb1\xe6\x32\x58\x6d\x97\x57\x65\xc5\x3f\xac\xd8\xf7\xe8\xcf\xf4\xa5\x06\xea\x55\x31\x14\
    \x9d\x4f\xfd\xa9\x7a\x7b\x0f\x49\x58\x0b\x40\x5c\x0b\x81\x70\x29\xb8\x72\x8e\xc3\x30\xdb\x2e\xae\
    \xcb\x9f\x53\xe5\x49\x7c\xa5\x89\xd3\x4d\x1f\x43\xae\xba\x0c\x41\xa4\xc7\xa9\x8f\x33\xa6\x9a\x3f\
    \xdf\x9a\x68\xfa\x1d\x75\xd0\x62\x0d\x26\x3d\x4c\x79\xa6\x8f\xbe\xd0\x01\x77\xfe\x8d\x48\xe6\x2b\
    \x03\xee\x69\x7e\x8d\x48\xe6\x2b\x1e\x0b\x1d\x7f\x46\xa4\x73\x15\x81\xd7\x54\xdf\x5f\x2c\x7c\xfd\
    \xf6\x80\x0b\xbd\xf4\x3a\xeb\xa0\xc4\x1a\x4c\x7a\x98\x41\xa6\xa8\xb2\x2c\x5f\x24\x9c\x75\x4c\x5f\
    \xbe\xf0\x46\xcf\xdf\x68\x00\xbb\xbf\x40\x8a\x41\x48\xb4\xa5\x49\x27\x59\x06\x49\x7f\x83\xa8\xf5\
    \x17\x40\x8a\x41\x48\xb4\xa5\x49\x27\x5a\x93\xc8\x5f\x86\xa8\x7d\xcd\x30\xd2\x5f\x40\x8a\x41\x48\
    \xb4\xa5\x49\x27\x5a\xd4\x16\xcf\x82\xff\x03\x40\x8a\x41\x48\xb4\xa5\x49\x27\x5a\x42\xa1\x3f\x86\
    \x90\xe4\xb6\x92\xd4\x9f\x50\x92\x9b\xd9\xab\xfa\x52\x42\xcb\x40\xd2\x5f\xa5\x23\xb3\xe9\x4f\x68\
    \x4c\x9f\x51\x8b\x2d\x4b\x70\xdd\xf4\x5a\xbe\xfb\x40\x05\xdf\x60\x91\x41\x50\x83\x1e\xa8\x00\x11\
    \x32\xd3\x6e\x3a\xf3\xe3\x8c\x92\x16\x5f\x40\x86\xae\xc3\x1e\xc3\x27\xd7\x85\xb6\x00\x7d\x28\x6f";

/// A later request on the same connection: every field a dynamic-table reference but a new
/// `:path` (34 bytes).
const STEADY: &[u8] = b"\x82\xcd\x87\x04\x8f\x60\x75\x99\x8e\xe1\x60\xc9\x2d\x28\xff\x2b\x1c\xc5\x81\x9f\xcb\xca\xc9\xc8\
    \xc7\xc6\xc5\xc4\xc3\xc2\xc1\xc0\xbf\xbe";

/// The response head, as an upstream HTTP/1.1 server would send it.
const RESPONSE: [(&[u8], &[u8]); 6] = [
    (b"Content-Type", b"application/json; charset=utf-8"),
    (b"Content-Length", b"1024"),
    (b"Date", b"Sat, 06 Dec 2026 10:00:00 GMT"),
    (b"Cache-Control", b"no-store"),
    (b"ETag", b"\"5f3a-1b2c\""),
    (b"Server", b"backend"),
];

/// A HEADERS frame (END_STREAM, END_HEADERS) carrying `block` on stream 1.
fn headers_frame(block: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    frame::write_header(&mut f, block.len(), frame::kind::HEADERS, 0x5, 1);
    f.extend_from_slice(block);
    f
}

/// A connection past the SETTINGS exchange that has seen the first request.
fn connection() -> Connection {
    let mut c = Connection::new(Limits::default());
    let mut hello = frame::PREFACE.to_vec();
    frame::write_settings(&mut hello, &[]);
    hello.extend(headers_frame(FIRST));
    let mut pos = 0;
    loop {
        let r = c.recv(&hello[pos..]).expect("valid");
        pos += r.consumed;
        if r.event.is_none() {
            break;
        }
    }
    c.send_response(StreamId(1), 200, [], true)
        .expect("answered");
    let n = c.output().len();
    c.advance(n);
    c
}

/// One request: HEADERS in on stream `id`, head written out as HTTP/1.1, response out.
/// Returns bytes produced so nothing is optimized away.
fn one(
    c: &mut Connection,
    frame: &mut [u8],
    id: u32,
    upstream: &mut Vec<u8>,
    body: &[u8],
) -> usize {
    if id % 2048 == 3 {
        // The client gives back connection window for the bodies it read, as browsers do
        // (1 MiB every 1024 responses of 1 KiB).
        let mut update = [0u8; 13];
        update[..9].copy_from_slice(&frame::header_bytes(4, frame::kind::WINDOW_UPDATE, 0, 0));
        update[9..].copy_from_slice(&(1u32 << 20).to_be_bytes());
        let r = c.recv(&update).expect("valid");
        assert_eq!(r.consumed, update.len());
    }
    frame[5..9].copy_from_slice(&id.to_be_bytes());
    let r = c.recv(black_box(frame)).expect("valid");
    let Some(Event::Request { stream, head, .. }) = r.event else {
        panic!("a request");
    };
    upstream.clear();
    upstream.extend_from_slice(head.method);
    upstream.push(b' ');
    upstream.extend_from_slice(head.path);
    upstream.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    upstream.extend_from_slice(head.authority.unwrap_or_default());
    for (n, v) in head.fields() {
        upstream.extend_from_slice(b"\r\n");
        upstream.extend_from_slice(n);
        upstream.extend_from_slice(b": ");
        upstream.extend_from_slice(v);
    }
    upstream.extend_from_slice(b"\r\ncookie: ");
    for (i, v) in head.cookies().enumerate() {
        if i > 0 {
            upstream.extend_from_slice(b"; ");
        }
        upstream.extend_from_slice(v);
    }
    upstream.extend_from_slice(b"\r\n\r\n");
    c.send_response(stream, 200, RESPONSE, false).expect("head");
    c.send_data(stream, body, true).expect("body");
    let n = c.output().len();
    c.advance(n);
    n + upstream.len()
}

fn h2_bench(c: &mut Criterion) {
    let mut conn = connection();
    let mut frame = headers_frame(STEADY);
    let mut upstream = Vec::with_capacity(2048);
    let body = [b'x'; 1024];
    let mut id = 3;
    {
        // Warm up the buffers, then count.
        for _ in 0..10 {
            one(&mut conn, &mut frame, id, &mut upstream, &body);
            id += 2;
        }
        let _profiler = dhat::Profiler::builder().testing().build();
        let before = dhat::HeapStats::get().total_blocks;
        for _ in 0..1000 {
            black_box(one(&mut conn, &mut frame, id, &mut upstream, &body));
            id += 2;
        }
        let per_request = (dhat::HeapStats::get().total_blocks - before) as f64 / 1000.0;
        println!("h2 core request/response: {per_request} allocations per request");
    }
    let mut g = c.benchmark_group("h2_core");
    g.bench_function("request_in_response_out", |b| {
        b.iter(|| {
            let n = one(&mut conn, &mut frame, id, &mut upstream, &body);
            id += 2;
            n
        });
    });
    g.finish();

    let mut d = Decoder::new(4096);
    let mut list = HeaderList::new(16 * 1024, 96, 4096);
    let mut e = Encoder::new();
    let mut out = Vec::with_capacity(1024);
    let mut g = c.benchmark_group("hpack");
    g.bench_function("decode_first_request", |b| {
        b.iter(|| {
            d.decode(black_box(FIRST), &mut list).expect("decodes");
            list.len()
        });
    });
    d.decode(FIRST, &mut list).expect("decodes");
    g.bench_function("decode_steady_request", |b| {
        b.iter(|| {
            d.decode(black_box(STEADY), &mut list).expect("decodes");
            list.len()
        });
    });
    g.bench_function("encode_response_head", |b| {
        b.iter(|| {
            out.clear();
            e.begin(&mut out);
            e.status(200, &mut out);
            for (n, v) in black_box(RESPONSE) {
                e.field(n, v, &mut out);
            }
            out.len()
        });
    });
    g.finish();
}

criterion_group!(benches, h2_bench);
criterion_main!(benches);
