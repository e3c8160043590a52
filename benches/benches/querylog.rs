//! The query log's database: how fast rows go in (the writer's cost per query, sealing
//! included) and how fast the status page's searches answer over many rows (default 10
//! million, `QUERYLOG_ROWS=` to change), newest first, 100 rows a page.
//!
//! The rows imitate a busy network at 5,000 queries a second: 20,000 names under 2,000
//! domains, 300 clients in 5 networks, a tenth NXDOMAIN, a few SERVFAIL and blocked; batches
//! and maintenance come as the writer makes them, the newest block left open (unindexed).
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    reason = "a benchmark: it prints its figures and times its setup on the wall clock"
)]

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use labgate_querylog::Row;
use labgate_querylog::store::{BLOCK_ROWS, BLOCK_SPAN, Store};
use labgate_querylog::{Filter, Reader};

const NETWORKS: [&str; 5] = ["lab", "servers", "clients", "iot", "guest"];

/// Queries a second the rows arrive at.
const RATE: i64 = 5_000;

/// Row `i` at [`RATE`] from `start_us`; every value cheap to derive.
fn row(i: u64, start_us: i64) -> Row {
    let time_us = start_us + (i as i64) * (1_000_000 / RATE);
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20;
    let client = h % 300;
    let name = (h >> 9) % 20_000;
    let (rcode, source) = match h % 100 {
        0..=9 => ("NXDOMAIN", "upstream"),
        10..=11 => ("SERVFAIL", "upstream"),
        12..=14 => ("NXDOMAIN", "blocklist"),
        15..=54 => ("NOERROR", "cache"),
        55..=69 => ("NOERROR", "internal"),
        _ => ("NOERROR", "upstream"),
    };
    Row {
        time_us,
        client: Some(format!("10.0.{}.{}", client / 250, client % 250)),
        network: Some(NETWORKS[(client % 5) as usize].to_owned()),
        name: format!("host{}.domain{}.example", name, name % 2000),
        qtype: if h.is_multiple_of(3) { "AAAA" } else { "A" }.to_owned(),
        qclass: "IN".to_owned(),
        transport: "udp",
        rcode: rcode.to_owned(),
        source,
        detail: (source == "upstream").then(|| "upstreams".to_owned()),
        answer: format!("93.184.{}.{}", h % 250, (h >> 8) % 250),
        latency_us: (h % 5000) as i64,
        ..Row::default()
    }
}

fn querylog_bench(c: &mut Criterion) {
    let n: u64 = std::env::var("QUERYLOG_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("dir");
    let path = dir.path().join("querylog.sqlite");
    let mut store = Store::open(&path).expect("open");
    let start_us = 1_700_000_000_000_000_i64;
    let (mut insert_s, mut seal_s) = (0.0, 0.0);
    // Batches as the writer takes them at about 5,000 queries a second (every 100 ms); the
    // maintenance as the writer runs it: each simulated minute, and when the open block is
    // full. The newest block stays open, its rows unindexed.
    let batch = 500;
    let mut i = 0;
    let mut maintained = start_us;
    while i < n {
        let rows: Vec<Row> = (i..(i + batch).min(n)).map(|j| row(j, start_us)).collect();
        let now = rows.last().map_or(start_us, |r| r.time_us);
        let t = Instant::now();
        store.insert(&rows).expect("insert");
        insert_s += t.elapsed().as_secs_f64();
        i += batch;
        let minute_passed = now - maintained >= 60_000_000;
        if store.full() || minute_passed {
            maintained = now;
            let t = Instant::now();
            store.maintain(now, i64::MAX / 2, u64::MAX).expect("seal");
            seal_s += t.elapsed().as_secs_f64();
        }
    }
    let size = store.size().expect("size");
    println!(
        "querylog: {n} rows, insert {:.2} us/row, maintenance (sealing, statistics) {:.2} us/row, \
         {:.0} bytes/row, {} MiB \
         (blocks of at most {BLOCK_ROWS} rows or {} min)",
        insert_s * 1e6 / n as f64,
        seal_s * 1e6 / n as f64,
        size as f64 / n as f64,
        size >> 20,
        BLOCK_SPAN / 60_000_000,
    );
    let reader = Reader::open(&path).expect("reader");
    // A minute, ten minutes before the end.
    let end_us = start_us + (n as i64) * (1_000_000 / RATE);
    let window = end_us - 10 * 60_000_000;
    let cases: Vec<(&str, Filter)> = vec![
        ("newest", Filter::default()),
        (
            "client",
            Filter {
                client: Some("10.0.0.17".into()),
                ..Filter::default()
            },
        ),
        (
            "domain",
            Filter {
                domain: Some("domain77.example".into()),
                ..Filter::default()
            },
        ),
        (
            "exact_name",
            Filter {
                domain: Some("host4077.domain77.example".into()),
                ..Filter::default()
            },
        ),
        (
            "absent_name",
            Filter {
                domain: Some("nowhere.example".into()),
                ..Filter::default()
            },
        ),
        (
            "servfail",
            Filter {
                rcode: Some("SERVFAIL".into()),
                ..Filter::default()
            },
        ),
        (
            "blocked_in_guest",
            Filter {
                source: Some("blocklist".into()),
                network: Some("guest".into()),
                ..Filter::default()
            },
        ),
        (
            "client_in_a_minute_ten_minutes_ago",
            Filter {
                client: Some("10.0.0.17".into()),
                since_us: Some(window),
                until_us: Some(window + 60_000_000),
                ..Filter::default()
            },
        ),
    ];
    let mut g = c.benchmark_group("querylog_search");
    g.sample_size(10);
    for (label, filter) in &cases {
        let found = reader.search(filter, 100).expect("search").len();
        println!("querylog search {label}: {found} rows");
        g.bench_function(*label, |b| {
            b.iter(|| black_box(reader.search(black_box(filter), 100).expect("search")))
        });
    }
    g.finish();
}

criterion_group!(benches, querylog_bench);
criterion_main!(benches);
