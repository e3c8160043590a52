//! Benches: client address → network (the first step of every DNS query and HTTP request),
//! host → route, and compiling a 1,000-service configuration (every reload).

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{Criterion, criterion_group, criterion_main};
use labgate_benches::generated_config;
use labgate_config::route::{MAX_HOST_LEN, normalize_host};
use labgate_config::{Snapshot, Sources, compile, parse, testing};

fn snapshot(networks: usize, services: usize) -> Snapshot {
    testing::snapshot(&generated_config(networks, services))
}

fn network_lookup(c: &mut Criterion) {
    let s = snapshot(60, 10);
    let mut g = c.benchmark_group("network_lookup");
    for (label, ip) in [
        ("v4_hit_24", "10.0.42.7"),
        ("v4_hit_8", "10.99.1.1"),
        ("v4_miss", "192.168.1.1"),
        ("v6_hit_64", "fd00:2a::7"),
        ("v4_mapped", "::ffff:10.0.42.7"),
    ] {
        let ip: IpAddr = ip.parse().expect("bench address");
        g.bench_function(label, |b| b.iter(|| s.networks.lookup(black_box(ip))));
    }
    g.finish();
}

fn route_lookup(c: &mut Criterion) {
    let s = snapshot(20, 1000);
    c.bench_function("route/normalize_and_route", |b| {
        b.iter(|| {
            let mut buf = [0u8; MAX_HOST_LEN];
            let host =
                normalize_host(black_box(b"App517.Zone7.lab.test:443"), &mut buf).expect("host");
            s.route(host, black_box("/index.html"))
        })
    });
}

fn compile_large(c: &mut Criterion) {
    let text = generated_config(60, 1000);
    let mut g = c.benchmark_group("compile");
    g.sample_size(20);
    g.bench_function("parse_and_compile_1000_services_60_networks", |b| {
        b.iter(|| {
            let mut s = Sources::new();
            s.add("bench.toml", black_box(text.as_str()));
            compile(&parse(s).expect("parses"), 1).expect("compiles")
        })
    });
    g.finish();
}

criterion_group!(benches, network_lookup, route_lookup, compile_large);
criterion_main!(benches);
