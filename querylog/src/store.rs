//! The database: `<state_dir>/querylog.sqlite`, SQLite in WAL mode. Rows go into *blocks*, one
//! table each (`q1`, `q2`, …), listed in `blocks`; the view `queries` is all of them. A block
//! takes rows without indexes (an index kept per row costs ten times the row: measured in
//! `benches/RESULTS.md`), and is *sealed* (indexed by name and client in one pass) when it holds
//! [`BLOCK_ROWS`] rows or its first row is older than [`BLOCK_SPAN`]. Retention drops whole
//! blocks, oldest first: no row-by-row deletes, and freed pages go back to the file system
//! (incremental vacuum). The last column, `rname`, is the name reversed (`moc.elpmaxe`), so a
//! search for a domain and its subdomains is a range of one index.

use std::path::Path;

use rusqlite::{Connection, params};

use crate::Error;
use crate::row::Row;

/// Rows a block takes before it is sealed: a scan of the open block stays near 10 ms, and
/// sealing one costs the writer a fraction of a second at most.
pub const BLOCK_ROWS: i64 = 100_000;
/// Longest time a block stays open, in microseconds (an hour): the granularity of retention
/// by age at low query rates.
pub const BLOCK_SPAN: i64 = 3_600_000_000;
/// Most blocks kept, whatever the settings (the view joins them all; SQLite allows 500).
pub const MAX_BLOCKS: usize = 400;
/// The schema's version, in `meta`.
const VERSION: i64 = 1;

/// A block's bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Block {
    id: i64,
    first_us: i64,
    last_us: i64,
    rows: i64,
    sealed: bool,
}

/// The open database.
pub struct Store {
    conn: Connection,
    blocks: Vec<Block>,
    /// The hour whose busiest names and clients are being counted.
    hour: crate::stats::Hour,
}

const COLUMNS: &str = "time_us INTEGER NOT NULL, client TEXT, network TEXT, name TEXT NOT NULL, \
     type TEXT NOT NULL, class TEXT NOT NULL, transport TEXT NOT NULL, rcode TEXT NOT NULL, \
     source TEXT NOT NULL, detail TEXT, answer TEXT NOT NULL, latency_us INTEGER NOT NULL, \
     dnssec_ok INTEGER NOT NULL, truncated INTEGER NOT NULL, stale INTEGER NOT NULL, \
     rname TEXT NOT NULL";

impl Store {
    /// Opens (or creates) the database at `path`.
    ///
    /// # Errors
    /// When the file cannot be opened or created, or holds another schema.
    pub fn open(path: &Path) -> Result<Self, Error> {
        // SECURITY: who asked what is private: the file (and SQLite's -wal and -shm beside it,
        // which take its mode) is labgate's alone.
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| Error::Create {
                    path: path.to_owned(),
                    source: e,
                })?;
        }
        let conn = Connection::open(path).map_err(|e| Error::open(path, e))?;
        // auto_vacuum and page_size only take effect before the first table: a new file gets
        // them. PERF: 16 KiB pages and a 16 MiB cache made inserts and sealing a tenth cheaper
        // (`benches/benches/querylog.rs`).
        conn.execute_batch(
            "PRAGMA auto_vacuum = INCREMENTAL;
             PRAGMA page_size = 16384;
             PRAGMA cache_size = -16384;
             PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS blocks (id INTEGER PRIMARY KEY, first_us INTEGER NOT NULL,
                 last_us INTEGER NOT NULL, rows INTEGER NOT NULL, sealed INTEGER NOT NULL);
             INSERT OR IGNORE INTO meta VALUES ('version', 1);",
        )
        .map_err(|e| Error::open(path, e))?;
        conn.execute_batch(crate::stats::SCHEMA)
            .map_err(|e| Error::open(path, e))?;
        let version: i64 = conn
            .query_row("SELECT value FROM meta WHERE key = 'version'", [], |r| {
                r.get(0)
            })
            .map_err(|e| Error::open(path, e))?;
        if version != VERSION {
            return Err(Error::Version {
                path: path.to_owned(),
                found: version,
            });
        }
        let blocks = {
            let mut st = conn
                .prepare("SELECT id, first_us, last_us, rows, sealed FROM blocks ORDER BY id")
                .map_err(|e| Error::open(path, e))?;
            st.query_map([], |r| {
                Ok(Block {
                    id: r.get(0)?,
                    first_us: r.get(1)?,
                    last_us: r.get(2)?,
                    rows: r.get(3)?,
                    sealed: r.get(4)?,
                })
            })
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| Error::open(path, e))?
        };
        let mut store = Self {
            conn,
            blocks,
            hour: crate::stats::Hour::default(),
        };
        store.view().map_err(|e| Error::open(path, e))?;
        Ok(store)
    }

    /// Appends `rows` (in time order, roughly: a query that waited for the upstreams comes
    /// late) to the open block, in one transaction.
    ///
    /// # Errors
    /// When SQLite fails (a full disk): the rows are lost.
    pub fn insert(&mut self, rows: &[Row]) -> Result<(), Error> {
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let block = match self.blocks.last() {
            Some(b) if !b.sealed => *b,
            _ => self.create_block(first.time_us)?,
        };
        let tx = self.conn.transaction()?;
        let (mut first_us, mut last_us) = (block.first_us, block.last_us);
        let mut rname = String::new();
        {
            let mut st = tx.prepare_cached(&format!(
                "INSERT INTO q{} VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, \
                 ?14, ?15, ?16)",
                block.id
            ))?;
            for r in rows {
                rname.clear();
                rname.extend(r.name.chars().rev());
                st.execute(params![
                    r.time_us,
                    r.client,
                    r.network,
                    r.name,
                    r.qtype,
                    r.qclass,
                    r.transport,
                    r.rcode,
                    r.source,
                    r.detail,
                    r.answer,
                    r.latency_us,
                    r.dnssec_ok,
                    r.truncated,
                    r.stale,
                    rname,
                ])?;
                first_us = first_us.min(r.time_us);
                last_us = last_us.max(r.time_us);
            }
        }
        self.hour.add(&tx, rows)?;
        let count = i64::try_from(rows.len()).unwrap_or(i64::MAX);
        tx.execute(
            "UPDATE blocks SET first_us = ?2, last_us = ?3, rows = rows + ?4 WHERE id = ?1",
            params![block.id, first_us, last_us, count],
        )?;
        tx.commit()?;
        if let Some(b) = self.blocks.last_mut() {
            b.first_us = first_us;
            b.last_us = last_us;
            b.rows += count;
        }
        Ok(())
    }

    /// Seals the open block if it is full or old, then drops the oldest blocks while any is
    /// older than `max_age_us`, the database is larger than `max_size`, or there are more
    /// than [`MAX_BLOCKS`]; the open block is never dropped for size. `now_us`: the clock.
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn maintain(&mut self, now_us: i64, max_age_us: i64, max_size: u64) -> Result<(), Error> {
        {
            let tx = self.conn.transaction()?;
            self.hour.write(&tx)?;
            crate::stats::forget_before(&tx, now_us.saturating_sub(max_age_us))?;
            tx.commit()?;
        }
        if let Some(open) = self.blocks.last().copied().filter(|b| !b.sealed)
            && (open.rows >= BLOCK_ROWS || now_us - open.first_us >= BLOCK_SPAN)
        {
            self.seal(open.id)?;
        }
        let mut dropped = false;
        while let Some(oldest) = self.blocks.first().copied() {
            let old = oldest.last_us < now_us - max_age_us;
            let only = self.blocks.len() == 1;
            let big = !only && self.size()? > max_size;
            if !(old || big || self.blocks.len() > MAX_BLOCKS) {
                break;
            }
            self.drop_block(oldest.id)?;
            dropped = true;
        }
        if dropped {
            self.view()?;
            // Gives the freed pages back to the file system.
            self.conn.execute_batch("PRAGMA incremental_vacuum")?;
            self.conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        }
        Ok(())
    }

    /// Writes the statistics of the hour being counted (at shutdown).
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn flush(&mut self) -> Result<(), Error> {
        let tx = self.conn.transaction()?;
        self.hour.write(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// Bytes the database's pages hold (free pages not counted).
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn size(&self) -> Result<u64, Error> {
        let pragma = |name: &str| -> Result<i64, Error> {
            Ok(self
                .conn
                .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))?)
        };
        let pages = pragma("page_count")? - pragma("freelist_count")?;
        Ok(u64::try_from(pages * pragma("page_size")?).unwrap_or(0))
    }

    /// Whether the open block is full: it is sealed at the next maintenance.
    pub fn full(&self) -> bool {
        self.blocks
            .last()
            .is_some_and(|b| !b.sealed && b.rows >= BLOCK_ROWS)
    }

    /// Rows kept in every block.
    pub fn rows(&self) -> i64 {
        self.blocks.iter().map(|b| b.rows).sum()
    }

    fn create_block(&mut self, first_us: i64) -> Result<Block, Error> {
        let id = self.blocks.last().map_or(1, |b| b.id + 1);
        let block = Block {
            id,
            first_us,
            last_us: first_us,
            rows: 0,
            sealed: false,
        };
        let tx = self.conn.transaction()?;
        tx.execute_batch(&format!("CREATE TABLE q{id} ({COLUMNS})"))?;
        tx.execute(
            "INSERT INTO blocks VALUES (?1, ?2, ?2, 0, 0)",
            params![id, first_us],
        )?;
        tx.commit()?;
        self.blocks.push(block);
        self.view()?;
        Ok(block)
    }

    fn seal(&mut self, id: i64) -> Result<(), Error> {
        let tx = self.conn.transaction()?;
        tx.execute_batch(&format!(
            "CREATE INDEX q{id}_rname ON q{id} (rname);
             CREATE INDEX q{id}_client ON q{id} (client);
             UPDATE blocks SET sealed = 1 WHERE id = {id};"
        ))?;
        tx.commit()?;
        if let Some(b) = self.blocks.iter_mut().find(|b| b.id == id) {
            b.sealed = true;
        }
        Ok(())
    }

    fn drop_block(&mut self, id: i64) -> Result<(), Error> {
        let tx = self.conn.transaction()?;
        tx.execute_batch(&format!(
            "DROP TABLE IF EXISTS q{id}; DELETE FROM blocks WHERE id = {id};"
        ))?;
        tx.commit()?;
        self.blocks.retain(|b| b.id != id);
        Ok(())
    }

    /// (Re)creates the view `queries` over every block (an empty one when there is none).
    fn view(&mut self) -> rusqlite::Result<()> {
        let body = if self.blocks.is_empty() {
            format!(
                "SELECT * FROM (SELECT {}) WHERE 0",
                COLUMNS
                    .split(", ")
                    .map(|c| format!("NULL AS {}", c.split(' ').next().unwrap_or(c)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            self.blocks
                .iter()
                .map(|b| format!("SELECT * FROM q{}", b.id))
                .collect::<Vec<_>>()
                .join(" UNION ALL ")
        };
        self.conn.execute_batch(&format!(
            "DROP VIEW IF EXISTS queries; CREATE VIEW queries AS {body};"
        ))
    }

    /// The connection, for searches in this crate's tests.
    #[cfg(test)]
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The id of the newest block, if any (tests).
    #[cfg(test)]
    pub(crate) fn newest_block(&self) -> Option<(i64, bool)> {
        self.blocks.last().map(|b| (b.id, b.sealed))
    }
}

/// Whether a table exists (tests).
#[cfg(test)]
pub(crate) fn has_table(conn: &Connection, name: &str) -> bool {
    use rusqlite::OptionalExtension;
    conn.query_row(
        "SELECT 1 FROM sqlite_master WHERE name = ?1",
        [name],
        |_| Ok(()),
    )
    .optional()
    .ok()
    .flatten()
    .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000;

    fn row(time_us: i64, name: &str) -> Row {
        Row {
            time_us,
            client: Some("10.0.0.5".into()),
            network: Some("lab".into()),
            name: name.into(),
            qtype: "A".into(),
            qclass: "IN".into(),
            transport: "udp",
            rcode: "NOERROR".into(),
            source: "internal",
            answer: "10.0.0.1".into(),
            ..Row::default()
        }
    }

    fn count(s: &Store) -> i64 {
        s.conn()
            .query_row("SELECT count(*) FROM queries", [], |r| r.get(0))
            .expect("count")
    }

    #[test]
    fn rows_survive_a_reopen_and_the_view_joins_every_block() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("q.sqlite");
        let mut s = Store::open(&path).expect("open");
        assert_eq!(count(&s), 0);
        s.insert(&[row(0, "a.lab"), row(1, "b.lab")])
            .expect("insert");
        s.maintain(2 * HOUR, 100 * HOUR, 1 << 30).expect("seal");
        assert_eq!(s.newest_block(), Some((1, true)));
        s.insert(&[row(2 * HOUR, "c.lab")]).expect("insert");
        assert_eq!(s.newest_block(), Some((2, false)));
        drop(s);
        let s = Store::open(&path).expect("reopen");
        assert_eq!(count(&s), 3);
        assert_eq!(s.rows(), 3);
        assert!(has_table(s.conn(), "q1_rname") && !has_table(s.conn(), "q2_rname"));
        let name: String = s
            .conn()
            .query_row(
                "SELECT name FROM queries WHERE client = '10.0.0.5' ORDER BY time_us DESC",
                [],
                |r| r.get(0),
            )
            .expect("row");
        assert_eq!(name, "c.lab");
    }

    #[test]
    fn a_new_database_is_readable_by_labgate_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("q.sqlite");
        let mut s = Store::open(&path).expect("open");
        s.insert(&[row(0, "a.lab")]).expect("insert");
        for file in ["q.sqlite", "q.sqlite-wal"] {
            let mode = std::fs::metadata(dir.path().join(file))
                .expect("file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }

    #[test]
    fn age_drops_whole_blocks_older_than_the_limit_and_keeps_the_rest() {
        let dir = tempfile::tempdir().expect("dir");
        let mut s = Store::open(&dir.path().join("q.sqlite")).expect("open");
        for h in 0..5 {
            s.insert(&[row(h * HOUR, "x"), row(h * HOUR + 10, "y")])
                .expect("insert");
            // Each maintenance an hour on seals the block: one block per hour.
            s.maintain((h + 1) * HOUR, 100 * HOUR, 1 << 30)
                .expect("seal");
        }
        assert_eq!(count(&s), 10);
        // Keep 2.5 hours at hour 5: blocks whose last row is before 2.5 h go.
        s.maintain(5 * HOUR, 5 * HOUR / 2, 1 << 30).expect("age");
        let oldest: i64 = s
            .conn()
            .query_row("SELECT min(time_us) FROM queries", [], |r| r.get(0))
            .expect("min");
        assert_eq!(oldest, 3 * HOUR);
        assert_eq!(count(&s), 4);
        assert!(!has_table(s.conn(), "q1") && has_table(s.conn(), "q4"));
    }

    #[test]
    fn size_drops_the_oldest_blocks_but_never_the_open_one() {
        let dir = tempfile::tempdir().expect("dir");
        let mut s = Store::open(&dir.path().join("q.sqlite")).expect("open");
        let long = "n".repeat(200);
        for h in 0..4 {
            let rows: Vec<Row> = (0..2000).map(|i| row(h * HOUR + i, &long)).collect();
            s.insert(&rows).expect("insert");
            s.maintain((h + 1) * HOUR, 100 * HOUR, 1 << 30)
                .expect("seal");
        }
        let full = s.size().expect("size");
        // Room for about two blocks.
        s.maintain(4 * HOUR, 100 * HOUR, full / 2).expect("size");
        assert!(s.size().expect("size") <= full / 2);
        assert!(count(&s) > 0 && count(&s) < 8000, "{}", count(&s));
        // A limit below one block still keeps the newest.
        s.insert(&[row(5 * HOUR, "open")]).expect("insert");
        s.maintain(5 * HOUR, 100 * HOUR, 1).expect("size");
        assert_eq!(count(&s), 1);
    }
}
