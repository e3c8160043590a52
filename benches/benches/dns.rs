//! Benches: the DNS decision for one question (client address → network → view lookup →
//! answer), the work every internal query does before encoding.

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{Criterion, criterion_group, criterion_main};
use hickory_proto::rr::{DNSClass, LowerName, Name, RecordType};
use labgate_benches::generated_config;
use labgate_config::{Sources, compile, parse};
use labgate_dns::decide;

fn decide_bench(c: &mut Criterion) {
    let mut src = Sources::new();
    src.add("bench.toml", generated_config(60, 1000));
    let s = compile(&parse(src).expect("parses"), 1).expect("compiles");
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

/// The whole handler in-process: hickory's parse, the decision, the encode (no sockets).
fn handler_bench(c: &mut Criterion) {
    let handler = labgate_dns::fuzzing::sample_handler();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let query: Vec<u8> = [
        &[0x12u8, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0][..],
        b"\x03app\x03lab\x04test\x00\x00\x01\x00\x01",
    ]
    .concat();
    let src = "127.0.0.1:5000".parse().expect("src");
    c.bench_function("dns_handler/internal_answer_bytes_in_bytes_out", |b| {
        b.iter(|| {
            rt.block_on(labgate_dns::fuzzing::handle(
                &handler,
                black_box(&query),
                src,
            ))
        })
    });
}

criterion_group!(benches, decide_bench, handler_bench);
criterion_main!(benches);
