//! Benches: the proxy's per-request work on the HTTP/1.1 fast path (parse the head, decide
//! route and policy, write the upstream head) and certificate resolution by name. Before
//! timing, the head path's allocations per request are counted with dhat (zero is the aim).

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use labgate_benches::generated_config;
use labgate_config::{Sources, compile, parse};
use labgate_proxy::ConnInfo;
use labgate_proxy::decide::{Decision, decide};
use labgate_proxy::fast::{HeadRewrite, write_upstream_head};
use labgate_proxy::head::{header_array, parse_request};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const REQUEST: &[u8] = b"GET /api/v1/items?page=2 HTTP/1.1\r\nHost: app3.zone3.lab.test\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0\r\nAccept: text/html,application/xhtml+xml\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\nConnection: keep-alive\r\nCookie: session=0123456789abcdef\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n";

/// One request's work; returns the head length so nothing is optimized away.
fn one(s: &labgate_config::Snapshot, info: &ConnInfo, out: &mut Vec<u8>) -> usize {
    let mut headers = header_array();
    let Ok(h) = parse_request(black_box(REQUEST), &mut headers) else {
        return 0;
    };
    match decide(s, info.client, info.via, None, h.host, h.path) {
        Decision::Forward { .. } => {
            out.clear();
            write_upstream_head(out, &h, info, &HeadRewrite::default());
            out.len()
        }
        Decision::Refuse(_) => 0,
    }
}

fn proxy_bench(c: &mut Criterion) {
    let mut src = Sources::new();
    src.add("bench.toml", generated_config(60, 1000));
    let s = compile(&parse(src).expect("parses"), 1).expect("compiles");
    let info = ConnInfo {
        client: "10.0.3.7".parse::<IpAddr>().expect("ip"),
        tls: true,
        sni: None,
        cert: None,
        via: labgate_proxy::decide::Via::Direct,
    };
    let mut out = Vec::with_capacity(2048);
    assert!(
        one(&s, &info, &mut out) > 0,
        "the bench request must be forwarded"
    );
    {
        let _profiler = dhat::Profiler::builder().testing().build();
        let before = dhat::HeapStats::get().total_blocks;
        for _ in 0..1000 {
            black_box(one(&s, &info, &mut out));
        }
        let per_request = (dhat::HeapStats::get().total_blocks - before) as f64 / 1000.0;
        println!("proxy fast path head: {per_request} allocations per request");
    }
    let mut g = c.benchmark_group("proxy_fast_path");
    g.bench_function("parse_decide_write_head", |b| {
        b.iter(|| one(&s, &info, &mut out));
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
