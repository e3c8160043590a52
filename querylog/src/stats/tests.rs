//! Tables of the statistics, through the store that keeps them.

use super::*;
use crate::store::Store;

fn row(time_us: i64, client: &str, name: &str, source: &'static str, rcode: &str) -> Row {
    Row {
        time_us,
        client: Some(client.into()),
        network: Some("lab".into()),
        name: name.into(),
        qtype: "A".into(),
        qclass: "IN".into(),
        transport: "udp",
        rcode: rcode.into(),
        source,
        latency_us: 100,
        ..Row::default()
    }
}

fn query(s: &Store, sql: &str) -> Vec<String> {
    let mut st = s.conn().prepare(sql).expect("sql");
    let n = st.column_count();
    st.query_map([], |r| {
        Ok((0..n)
            .map(|i| match r.get_ref(i) {
                Ok(v) => match v {
                    rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                    rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into(),
                    _ => "?".into(),
                },
                Err(_) => "?".into(),
            })
            .collect::<Vec<_>>()
            .join("|"))
    })
    .expect("rows")
    .collect::<Result<_, _>>()
    .expect("rows")
}

#[test]
fn minutes_add_up_over_batches_by_network() {
    let dir = tempfile::tempdir().expect("dir");
    let mut s = Store::open(&dir.path().join("q.sqlite")).expect("open");
    s.insert(&[
        row(1, "10.0.0.5", "a.lab", "internal", "NOERROR"),
        row(2, "10.0.0.5", "ads.com", "blocklist", "NXDOMAIN"),
    ])
    .expect("insert");
    s.insert(&[
        row(3, "10.0.0.6", "x.com", "upstream", "SERVFAIL"),
        row(MINUTE_US + 1, "10.0.0.6", "x.com", "cache", "NOERROR"),
    ])
    .expect("insert");
    assert_eq!(
        query(
            &s,
            "SELECT minute_us, network, queries, blocked, cached, forwarded, nxdomain, \
             servfail, refused, upstream_us FROM minutes ORDER BY minute_us"
        ),
        ["0|lab|3|1|1|1|1|1|0|100", "60000000|lab|1|0|1|0|0|0|0|0"]
    );
}

#[test]
fn an_hour_is_written_at_maintenance_and_read_back_after_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("q.sqlite");
    let names = "SELECT hour_us, name, queries, blocked FROM names ORDER BY hour_us, name";
    {
        let mut s = Store::open(&path).expect("open");
        s.insert(&[
            row(10, "10.0.0.5", "a.lab", "internal", "NOERROR"),
            row(11, "10.0.0.5", "a.lab", "internal", "NOERROR"),
            row(12, "10.0.0.6", "ads.com", "blocklist", "NXDOMAIN"),
        ])
        .expect("insert");
        s.maintain(20, HOUR_US * 100, u64::MAX).expect("maintain");
        assert_eq!(query(&s, names), ["0|a.lab|2|0", "0|ads.com|1|1"]);
    }
    // A restart in the same hour counts on from what was written.
    let mut s = Store::open(&path).expect("reopen");
    s.insert(&[row(30, "10.0.0.5", "a.lab", "internal", "NOERROR")])
        .expect("insert");
    s.flush().expect("flush");
    assert_eq!(query(&s, names), ["0|a.lab|3|0", "0|ads.com|1|1"]);
    assert_eq!(
        query(
            &s,
            "SELECT client, network, queries, blocked FROM clients ORDER BY client"
        ),
        ["10.0.0.5|lab|3|0", "10.0.0.6|lab|1|1"]
    );
    // The next hour's first row writes this one; retention forgets it later.
    s.insert(&[row(HOUR_US + 5, "10.0.0.5", "b.lab", "internal", "NOERROR")])
        .expect("insert");
    s.flush().expect("flush");
    assert_eq!(
        query(&s, names),
        ["0|a.lab|3|0", "0|ads.com|1|1", "3600000000|b.lab|1|0"]
    );
    s.maintain(2 * HOUR_US, HOUR_US, u64::MAX)
        .expect("maintain");
    assert_eq!(query(&s, names), ["3600000000|b.lab|1|0"]);
    assert_eq!(
        query(
            &s,
            "SELECT count(*) FROM minutes WHERE minute_us < 3600000000"
        ),
        ["0"]
    );
}

#[test]
fn a_flood_of_random_names_keeps_memory_bounded_and_the_busy_names_counted() {
    let mut b: Bounded<()> = Bounded::default();
    for i in 0..(CAPACITY * 3) {
        b.add("busy.example", false, &());
        b.add(&format!("random{i}.example"), true, &());
        assert!(b.map.len() <= CAPACITY);
    }
    let top = b.top(2);
    assert_eq!(top[0].0, "busy.example");
    assert_eq!(top[0].1.queries, (CAPACITY * 3) as u64);
    // The blocked ones come after, one at least.
    assert!(top.len() >= 3 && top[2].1.blocked > 0, "{top:?}");
}
