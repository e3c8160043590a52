//! Searches of the database, newest first, for the status page: a [`Reader`] opens it
//! read-only beside the writer (WAL lets both work at once) and walks the blocks from the
//! newest, each with its indexes when sealed, until it has enough rows.

use std::path::Path;

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};

use crate::Error;
use crate::row::Row;

/// What a search asks for: every field given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The client's address, exactly.
    pub client: Option<String>,
    /// The network's name.
    pub network: Option<String>,
    /// A name and every name under it (`example.com` finds `www.example.com`).
    pub domain: Option<String>,
    /// The response code (`NXDOMAIN`).
    pub rcode: Option<String>,
    /// Where the answer came from (`blocklist`).
    pub source: Option<String>,
    /// Received at or after, microseconds since the Unix epoch.
    pub since_us: Option<i64>,
    /// Received before.
    pub until_us: Option<i64>,
    /// Only rows older than this one (the next page).
    pub before: Option<Position>,
    /// Only rows newer than this one (a live tail).
    pub after: Option<Position>,
}

/// Where a row is: its block and its row id there. Later rows have larger positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// The block's id.
    pub block: i64,
    /// The row's id in the block.
    pub row: i64,
}

/// One row a search found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Where it is.
    pub at: Position,
    /// What it says.
    pub row: Row,
}

/// A read-only view of the database.
pub struct Reader {
    conn: Connection,
}

impl Reader {
    /// Opens the database at `path` read-only.
    ///
    /// # Errors
    /// When it does not exist (the log never ran) or cannot be read.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| Error::open(path, e))?;
        Ok(Self { conn })
    }

    /// The rows of a statement over the statistics (`minutes`, `names`, `clients`: see
    /// `stats`) with `?1` bound to `since_us`, each value as text (NULL as empty). The
    /// connection is read-only.
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn rows(&self, sql: &str, since_us: i64) -> Result<Vec<Vec<String>>, Error> {
        use rusqlite::types::ValueRef;
        let mut st = self.conn.prepare_cached(sql)?;
        let n = st.column_count();
        let rows = st.query_map([since_us], |r| {
            (0..n)
                .map(|i| {
                    Ok(match r.get_ref(i)? {
                        ValueRef::Null => String::new(),
                        ValueRef::Integer(v) => v.to_string(),
                        ValueRef::Real(v) => v.to_string(),
                        ValueRef::Text(t) | ValueRef::Blob(t) => {
                            String::from_utf8_lossy(t).into_owned()
                        }
                    })
                })
                .collect::<Result<Vec<_>, rusqlite::Error>>()
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest rows that match `f`, at most `limit`, newest first.
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn search(&self, f: &Filter, limit: usize) -> Result<Vec<Found>, Error> {
        let blocks: Vec<(i64, i64, i64)> = {
            let mut st = self
                .conn
                .prepare_cached("SELECT id, first_us, last_us FROM blocks ORDER BY id DESC")?;
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?
        };
        let (conditions, mut values) = conditions(f);
        let mut found = Vec::with_capacity(limit.min(1000));
        for (id, first_us, last_us) in blocks {
            if found.len() >= limit {
                break;
            }
            if f.before.is_some_and(|p| id > p.block) || f.after.is_some_and(|p| id < p.block) {
                continue;
            }
            if f.since_us.is_some_and(|t| last_us < t) || f.until_us.is_some_and(|t| first_us >= t)
            {
                continue;
            }
            let mut clauses = conditions.clone();
            let mut args = std::mem::take(&mut values);
            let fixed = args.len();
            if let Some(p) = f.before.filter(|p| p.block == id) {
                clauses.push("rowid < ?".to_owned());
                args.push(Value::Integer(p.row));
            }
            if let Some(p) = f.after.filter(|p| p.block == id) {
                clauses.push("rowid > ?".to_owned());
                args.push(Value::Integer(p.row));
            }
            let want = i64::try_from(limit - found.len()).unwrap_or(i64::MAX);
            args.push(Value::Integer(want));
            let sql = format!(
                "SELECT rowid, time_us, client, network, name, type, class, transport, rcode, \
                 source, detail, answer, latency_us, dnssec_ok, truncated, stale FROM q{id} \
                 {} ORDER BY rowid DESC LIMIT ?",
                if clauses.is_empty() {
                    String::new()
                } else {
                    format!("WHERE {}", clauses.join(" AND "))
                }
            );
            {
                let mut st = self.conn.prepare(&sql)?;
                let rows = st.query_map(rusqlite::params_from_iter(args.iter()), |r| {
                    Ok(Found {
                        at: Position {
                            block: id,
                            row: r.get(0)?,
                        },
                        row: Row {
                            time_us: r.get(1)?,
                            client: r.get(2)?,
                            network: r.get(3)?,
                            name: r.get(4)?,
                            qtype: r.get(5)?,
                            qclass: r.get(6)?,
                            transport: transport(&r.get::<_, String>(7)?),
                            rcode: r.get(8)?,
                            source: source(&r.get::<_, String>(9)?),
                            detail: r.get(10)?,
                            answer: r.get(11)?,
                            latency_us: r.get(12)?,
                            dnssec_ok: r.get(13)?,
                            truncated: r.get(14)?,
                            stale: r.get(15)?,
                        },
                    })
                })?;
                for row in rows {
                    found.push(row?);
                }
            }
            args.truncate(fixed);
            values = args;
        }
        Ok(found)
    }
}

/// The WHERE clauses of a filter (blocks and positions aside) and their values.
fn conditions(f: &Filter) -> (Vec<String>, Vec<Value>) {
    let mut clauses = Vec::new();
    let mut values = Vec::new();
    let mut text = |column: &str, v: &Option<String>| {
        if let Some(v) = v {
            clauses.push(format!("{column} = ?"));
            values.push(Value::Text(v.clone()));
        }
    };
    text("client", &f.client);
    text("network", &f.network);
    text("rcode", &f.rcode);
    text("source", &f.source);
    if let Some(domain) = &f.domain {
        // The domain itself, or a range of the index on reversed names: `moc.elpmaxe.` up to
        // `moc.elpmaxe/` ('/' follows '.').
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let reversed: String = domain.chars().rev().collect();
        clauses.push("(rname = ? OR (rname >= ? AND rname < ?))".to_owned());
        values.push(Value::Text(reversed.clone()));
        values.push(Value::Text(format!("{reversed}.")));
        values.push(Value::Text(format!("{reversed}/")));
    }
    if let Some(t) = f.since_us {
        clauses.push("time_us >= ?".to_owned());
        values.push(Value::Integer(t));
    }
    if let Some(t) = f.until_us {
        clauses.push("time_us < ?".to_owned());
        values.push(Value::Integer(t));
    }
    (clauses, values)
}

/// The `&'static str` of a stored transport (an unknown one reads as `udp`: never written).
fn transport(s: &str) -> &'static str {
    match s {
        "tcp" => "tcp",
        "tls" => "tls",
        _ => "udp",
    }
}

/// The `&'static str` of a stored source.
fn source(s: &str) -> &'static str {
    crate::Source::NAMES
        .iter()
        .find(|&&known| known == s)
        .copied()
        .unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    const HOUR: i64 = 3_600_000_000;

    fn row(time_us: i64, client: &str, name: &str, rcode: &str) -> Row {
        Row {
            time_us,
            client: Some(client.into()),
            network: Some(
                if client.starts_with("10.9.") {
                    "guest"
                } else {
                    "lab"
                }
                .into(),
            ),
            name: name.into(),
            qtype: "A".into(),
            qclass: "IN".into(),
            transport: "udp",
            rcode: rcode.into(),
            source: "upstream",
            detail: Some("upstreams".into()),
            ..Row::default()
        }
    }

    /// Three blocks (two sealed, with indexes; the newest open, without).
    fn store(dir: &Path) -> Store {
        let mut s = Store::open(&dir.join("q.sqlite")).expect("open");
        for h in 0..3 {
            let t = h * HOUR;
            s.insert(&[
                row(t, "10.0.0.5", "example.com", "NOERROR"),
                row(t + 1, "10.0.0.6", "www.example.com", "NOERROR"),
                row(t + 2, "10.9.0.7", "badexample.com", "NXDOMAIN"),
                row(t + 3, "10.0.0.5", "example.org", "SERVFAIL"),
            ])
            .expect("insert");
            if h < 2 {
                s.maintain(t + HOUR, 100 * HOUR, 1 << 30).expect("seal");
            }
        }
        s
    }

    fn names(found: &[Found]) -> Vec<String> {
        found
            .iter()
            .map(|f| format!("{}@{}", f.row.name, f.row.time_us / HOUR))
            .collect()
    }

    #[test]
    fn filters_match_in_sealed_and_open_blocks_newest_first() {
        let dir = tempfile::tempdir().expect("dir");
        let _writer = store(dir.path());
        let r = Reader::open(&dir.path().join("q.sqlite")).expect("reader");
        let search = |f: Filter, limit| names(&r.search(&f, limit).expect("search"));
        let cases: Vec<(Filter, usize, Vec<&str>)> = vec![
            (
                Filter::default(),
                3,
                vec!["example.org@2", "badexample.com@2", "www.example.com@2"],
            ),
            (
                Filter {
                    domain: Some("Example.COM.".into()),
                    ..Filter::default()
                },
                10,
                vec![
                    "www.example.com@2",
                    "example.com@2",
                    "www.example.com@1",
                    "example.com@1",
                    "www.example.com@0",
                    "example.com@0",
                ],
            ),
            (
                Filter {
                    client: Some("10.0.0.5".into()),
                    rcode: Some("SERVFAIL".into()),
                    ..Filter::default()
                },
                10,
                vec!["example.org@2", "example.org@1", "example.org@0"],
            ),
            (
                Filter {
                    network: Some("guest".into()),
                    since_us: Some(HOUR),
                    until_us: Some(2 * HOUR),
                    ..Filter::default()
                },
                10,
                vec!["badexample.com@1"],
            ),
            (
                Filter {
                    source: Some("blocklist".into()),
                    ..Filter::default()
                },
                10,
                vec![],
            ),
        ];
        for (f, limit, want) in cases {
            assert_eq!(search(f.clone(), limit), want, "{f:?}");
        }
    }

    #[test]
    fn pages_go_back_and_a_tail_goes_forward_across_blocks() {
        let dir = tempfile::tempdir().expect("dir");
        let mut writer = store(dir.path());
        let r = Reader::open(&dir.path().join("q.sqlite")).expect("reader");
        let first = r.search(&Filter::default(), 5).expect("page");
        let next = Filter {
            before: first.last().map(|f| f.at),
            ..Filter::default()
        };
        let second = r.search(&next, 5).expect("page");
        assert_eq!(
            names(&second),
            [
                "badexample.com@1",
                "www.example.com@1",
                "example.com@1",
                "example.org@0",
                "badexample.com@0"
            ]
        );
        let newest = first[0].at;
        let tail = Filter {
            after: Some(newest),
            ..Filter::default()
        };
        assert!(r.search(&tail, 10).expect("tail").is_empty());
        writer
            .insert(&[row(3 * HOUR, "10.0.0.5", "new.example.net", "NOERROR")])
            .expect("insert");
        assert_eq!(
            names(&r.search(&tail, 10).expect("tail")),
            ["new.example.net@3"]
        );
    }

    #[test]
    fn sealed_blocks_answer_a_domain_from_the_index() {
        let dir = tempfile::tempdir().expect("dir");
        let _writer = store(dir.path());
        let r = Reader::open(&dir.path().join("q.sqlite")).expect("reader");
        let plan: Vec<String> = r
            .conn
            .prepare(
                "EXPLAIN QUERY PLAN SELECT rowid FROM q1 WHERE (rname = ?1 OR (rname >= ?2 AND \
                 rname < ?3)) ORDER BY rowid DESC LIMIT 10",
            )
            .expect("plan")
            .query_map(["moc.elpmaxe", "moc.elpmaxe.", "moc.elpmaxe/"], |r| {
                r.get::<_, String>(3)
            })
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("plan rows");
        assert!(
            plan.iter().any(|p| p.contains("q1_rname")),
            "the index is not used: {plan:?}"
        );
    }
}
