//! Benches: the DNS decision for one question (client address → network → view lookup →
//! answer), the whole general path bytes in to bytes out, and the UDP fast path; allocations
//! per query counted with dhat for both paths (zero is the fast path's aim).
#![allow(
    clippy::disallowed_macros,
    reason = "a benchmark: the allocation counts it prints are part of its report"
)]

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use hickory_proto::rr::{DNSClass, LowerName, Name, RecordType};
use labgate_benches::generated_config;
use labgate_dns::decide;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Heap blocks allocated per call of `f`, over 1,000 calls.
fn allocations_per_call(mut f: impl FnMut()) -> f64 {
    let _profiler = dhat::Profiler::builder().testing().build();
    let before = dhat::HeapStats::get().total_blocks;
    for _ in 0..1000 {
        f();
    }
    (dhat::HeapStats::get().total_blocks - before) as f64 / 1000.0
}

fn decide_bench(c: &mut Criterion) {
    let s = labgate_config::testing::snapshot(&generated_config(60, 1000));
    let name = |n: &str| LowerName::new(&Name::from_ascii(n).expect("name"));
    let lists = labgate_dns::FetchedLists::new();
    let mut g = c.benchmark_group("dns_decide");
    for (label, client, qname) in [
        ("internal_answer", "10.0.3.7", "app3.zone3.lab.test."),
        ("internal_nxdomain", "10.0.4.7", "app3.zone3.lab.test."),
        (
            "unknown_client_refused",
            "192.168.1.1",
            "app3.zone3.lab.test.",
        ),
        ("outside_forward", "10.0.3.7", "www.example.com."),
    ] {
        let ip: IpAddr = client.parse().expect("client");
        let q = name(qname);
        g.bench_function(label, |b| {
            b.iter(|| {
                decide(
                    &s,
                    &lists,
                    black_box(ip),
                    black_box(&q),
                    RecordType::A,
                    DNSClass::IN,
                )
            })
        });
    }
    g.finish();
}

/// The whole handler in-process: hickory's parse, the decision, the encode (no sockets);
/// then the fast path on the same query. For an internal name, and for a forwarded name in
/// the cache.
fn handler_bench(c: &mut Criterion) {
    let handler = labgate_dns::fuzzing::sample_handler();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let src: std::net::SocketAddr = "127.0.0.1:5000".parse().expect("src");
    let header = [0x12u8, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for (label, question) in [
        (
            "internal_answer",
            &b"\x03app\x03lab\x04test\x00\x00\x01\x00\x01"[..],
        ),
        ("cache_hit", &b"\x07example\x03com\x00\x00\x01\x00\x01"[..]),
    ] {
        let query = [&header[..], question].concat();
        let general = allocations_per_call(|| {
            black_box(rt.block_on(labgate_dns::fuzzing::handle(&handler, &query, src)));
        });
        println!("dns general path, {label}: {general} allocations per query");
        c.bench_function(&format!("dns_handler/{label}_bytes_in_bytes_out"), |b| {
            b.iter(|| {
                rt.block_on(labgate_dns::fuzzing::handle(
                    &handler,
                    black_box(&query),
                    src,
                ))
            })
        });
        // The general path has answered (and, for the cache hit, kept its response).
        let mut out = [0u8; 1232];
        assert!(
            handler
                .fast_answer_now(src.ip(), &query, &mut out)
                .is_some(),
            "the bench query must take the fast path"
        );
        let fast = allocations_per_call(|| {
            black_box(handler.fast_answer_now(src.ip(), &query, &mut out));
        });
        println!("dns fast path, {label}: {fast} allocations per query");
        c.bench_function(&format!("dns_fast_path/{label}_bytes_in_bytes_out"), |b| {
            b.iter(|| handler.fast_answer_now(src.ip(), black_box(&query), &mut out))
        });
        // The same with the query log on: the record is made and queued (and taken off the
        // queue again, as the writer would, so the queue never fills).
        let sink = Arc::new(labgate_querylog::Sink::new(1));
        let logged = handler.clone().logging(Arc::clone(&sink));
        let mut taken = Vec::with_capacity(16);
        let mut answer_and_take = |out: &mut [u8]| {
            let n = logged.fast_answer_now(src.ip(), black_box(&query), out);
            sink.drain(&mut taken);
            taken.clear();
            n
        };
        assert!(answer_and_take(&mut out).is_some());
        let fast = allocations_per_call(|| {
            black_box(answer_and_take(&mut out));
        });
        println!("dns fast path with the query log, {label}: {fast} allocations per query");
        assert_eq!(sink.dropped(), 0);
        c.bench_function(&format!("dns_fast_path/{label}_logged"), |b| {
            b.iter(|| answer_and_take(&mut out))
        });
    }
}

criterion_group!(benches, decide_bench, handler_bench);
criterion_main!(benches);
