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

criterion_group!(benches, decide_bench);
criterion_main!(benches);
