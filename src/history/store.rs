//! The history's file: `<state_dir>/history.sqlite`, SQLite in WAL mode, written once a
//! minute from a blocking thread and read back at start-up, so the status page shows the
//! last 24 hours after a restart. Tables (`deploy/CONFIG.md` documents them):
//! `service_minutes` (a service's counts in a sample, quiet minutes left out),
//! `denied_minutes` (its denials by network), `certificate_events` and `certificates_seen`
//! (the last certificate and ACME error per host, which the next event is compared with).
//! Minutes are kept [`KEEP_MINUTES`], events the newest [`super::timeline::EVENTS`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use labgate_proxy::metrics::ServiceCounts;
use rusqlite::{Connection, params};

use super::sample::{CertEvent, CertEventKind, Sample, Seen, ServiceMinute};
use super::timeline::{EVENTS, Timeline};

/// How long samples are kept: 30 days.
pub const KEEP_MINUTES: Duration = Duration::from_secs(30 * 86_400);
/// The file's name in the state directory.
pub const FILE: &str = "history.sqlite";
/// The schema's version, in `meta`.
const VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('version', 1);
CREATE TABLE IF NOT EXISTS service_minutes (time_us INTEGER NOT NULL, service TEXT NOT NULL,
    status_1xx INTEGER NOT NULL, status_2xx INTEGER NOT NULL, status_3xx INTEGER NOT NULL,
    status_4xx INTEGER NOT NULL, status_5xx INTEGER NOT NULL, no_response INTEGER NOT NULL,
    denied INTEGER NOT NULL, backends_up INTEGER NOT NULL, backends INTEGER NOT NULL,
    PRIMARY KEY (time_us, service));
CREATE TABLE IF NOT EXISTS denied_minutes (time_us INTEGER NOT NULL, service TEXT NOT NULL,
    network TEXT NOT NULL, denied INTEGER NOT NULL, PRIMARY KEY (time_us, service, network));
CREATE TABLE IF NOT EXISTS certificate_events (time_us INTEGER NOT NULL, host TEXT NOT NULL,
    event TEXT NOT NULL, fingerprint TEXT, issuer TEXT, not_before_us INTEGER,
    not_after_us INTEGER, error TEXT);
CREATE INDEX IF NOT EXISTS certificate_events_time ON certificate_events (time_us);
CREATE TABLE IF NOT EXISTS certificates_seen (host TEXT PRIMARY KEY, fingerprint TEXT,
    issuer TEXT, not_before_us INTEGER, not_after_us INTEGER, error TEXT);
";

/// Why the history file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be created.
    #[error("cannot create the history file {path}")]
    Create {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// SQLite could not open, read or write it (not a database, a full disk).
    #[error("the history file {path} cannot be used")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// It holds a schema of another version.
    #[error("the history file {path} has schema version {found}, not {VERSION}")]
    Version {
        /// The file.
        path: PathBuf,
        /// The version it holds.
        found: i64,
    },
}

/// What the file holds, read back at start-up.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The samples of the last day, oldest first.
    pub samples: Vec<Sample>,
    /// The certificates seen, the failures recorded and the newest events.
    pub timeline: Timeline,
}

/// The open file.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates, mode 0600) the file at `path`.
    ///
    /// # Errors
    /// When it cannot be created or opened, is not a database, or has another schema.
    pub fn open(path: &Path) -> Result<Self, Error> {
        // SECURITY: who was denied from where is private: the file (and its -wal and -shm,
        // which take its mode) is labgate's alone.
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|source| Error::Create {
                    path: path.to_owned(),
                    source,
                })?;
        }
        let sqlite = |source| Error::Sqlite {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(sqlite)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .map_err(sqlite)?;
        conn.execute_batch(SCHEMA).map_err(sqlite)?;
        let found: i64 = conn
            .query_row("SELECT value FROM meta WHERE key = 'version'", [], |r| {
                r.get(0)
            })
            .map_err(sqlite)?;
        if found != VERSION {
            return Err(Error::Version {
                path: path.to_owned(),
                found,
            });
        }
        Ok(Self {
            conn,
            path: path.to_owned(),
        })
    }

    /// Writes a sample (its services that were not quiet) and its certificate events, with
    /// the timeline's state after them, in one transaction; then drops what is older than
    /// retention.
    ///
    /// # Errors
    /// When SQLite fails (a full disk): nothing of this sample is written.
    pub fn write(
        &mut self,
        sample: &Sample,
        events: &[CertEvent],
        timeline: &Timeline,
    ) -> Result<(), Error> {
        let path = self.path.clone();
        self.write_inner(sample, events, timeline)
            .map_err(|source| Error::Sqlite { path, source })
    }

    fn write_inner(
        &mut self,
        sample: &Sample,
        events: &[CertEvent],
        timeline: &Timeline,
    ) -> Result<(), rusqlite::Error> {
        let at = us(sample.at);
        let tx = self.conn.transaction()?;
        {
            let mut minute = tx.prepare_cached(
                "INSERT OR REPLACE INTO service_minutes VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            let mut denied =
                tx.prepare_cached("INSERT OR REPLACE INTO denied_minutes VALUES (?1, ?2, ?3, ?4)")?;
            for m in sample.services.iter().filter(|m| !m.is_quiet()) {
                let o = m.counts.outcomes.map(int);
                minute.execute(params![
                    at,
                    &*m.name,
                    o[0],
                    o[1],
                    o[2],
                    o[3],
                    o[4],
                    o[5],
                    int(m.counts.denied),
                    int(m.up as u64),
                    int(m.backends as u64),
                ])?;
                for (network, n) in &m.denied {
                    denied.execute(params![at, &*m.name, &**network, int(*n)])?;
                }
            }
            let mut event = tx.prepare_cached(
                "INSERT INTO certificate_events VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for e in events {
                let c = e.cert.as_ref();
                event.execute(params![
                    us(e.at),
                    &*e.host,
                    e.kind.label(),
                    c.map(|c| &c.fingerprint),
                    c.map(|c| &c.issuer),
                    c.map(|c| us(c.not_before)),
                    c.map(|c| us(c.not_after)),
                    e.error,
                ])?;
            }
            if !events.is_empty() {
                tx.execute("DELETE FROM certificates_seen", [])?;
                let mut seen = tx.prepare_cached(
                    "INSERT INTO certificates_seen VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                let hosts: std::collections::BTreeSet<&Arc<str>> =
                    timeline.seen.keys().chain(timeline.failed.keys()).collect();
                for host in hosts {
                    let c = timeline.seen.get(host);
                    seen.execute(params![
                        &**host,
                        c.map(|c| &c.fingerprint),
                        c.map(|c| &c.issuer),
                        c.map(|c| us(c.not_before)),
                        c.map(|c| us(c.not_after)),
                        timeline.failed.get(host),
                    ])?;
                }
            }
            let oldest = us(sample.at.checked_sub(KEEP_MINUTES).unwrap_or(sample.at));
            tx.execute("DELETE FROM service_minutes WHERE time_us < ?1", [oldest])?;
            tx.execute("DELETE FROM denied_minutes WHERE time_us < ?1", [oldest])?;
            tx.execute(
                "DELETE FROM certificate_events WHERE rowid NOT IN \
                 (SELECT rowid FROM certificate_events ORDER BY time_us DESC, rowid DESC LIMIT ?1)",
                [EVENTS as i64],
            )?;
        }
        tx.commit()
    }

    /// The samples taken since `since`, and the certificates' timeline.
    ///
    /// # Errors
    /// When SQLite cannot read the file.
    pub fn load(&self, since: SystemTime) -> Result<Loaded, Error> {
        self.load_inner(us(since)).map_err(|source| Error::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    fn load_inner(&self, since: i64) -> Result<Loaded, rusqlite::Error> {
        let mut samples: BTreeMap<i64, Vec<ServiceMinute>> = BTreeMap::new();
        let mut st = self.conn.prepare(
            "SELECT time_us, service, status_1xx, status_2xx, status_3xx, status_4xx, \
             status_5xx, no_response, denied, backends_up, backends FROM service_minutes \
             WHERE time_us >= ?1 ORDER BY time_us, service",
        )?;
        let mut rows = st.query([since])?;
        while let Some(r) = rows.next()? {
            let n = |i: usize| r.get::<_, i64>(i).map(uint);
            let mut counts = ServiceCounts::default();
            for (k, o) in counts.outcomes.iter_mut().enumerate() {
                *o = n(2 + k)?;
            }
            counts.denied = n(8)?;
            samples.entry(r.get(0)?).or_default().push(ServiceMinute {
                name: Arc::from(r.get::<_, String>(1)?),
                counts,
                denied: Vec::new(),
                up: usize::try_from(n(9)?).unwrap_or(0),
                backends: usize::try_from(n(10)?).unwrap_or(0),
            });
        }
        let mut st = self.conn.prepare(
            "SELECT time_us, service, network, denied FROM denied_minutes WHERE time_us >= ?1 \
             ORDER BY time_us, service, network",
        )?;
        let mut rows = st.query([since])?;
        while let Some(r) = rows.next()? {
            let (at, service, network): (i64, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
            let n = uint(r.get(3)?);
            if let Some(m) = samples
                .get_mut(&at)
                .and_then(|s| s.iter_mut().find(|m| *m.name == *service))
            {
                m.denied.push((Arc::from(network), n));
            }
        }
        let samples = samples
            .into_iter()
            .map(|(at, services)| Sample {
                at: time(at),
                services,
            })
            .collect();
        Ok(Loaded {
            samples,
            timeline: self.timeline()?,
        })
    }

    fn timeline(&self) -> Result<Timeline, rusqlite::Error> {
        let mut t = Timeline::default();
        let cert = |r: &rusqlite::Row<'_>, i: usize| -> Result<Option<Seen>, rusqlite::Error> {
            let fingerprint: Option<String> = r.get(i)?;
            Ok(match fingerprint {
                Some(fingerprint) => Some(Seen {
                    fingerprint,
                    issuer: r.get::<_, Option<String>>(i + 1)?.unwrap_or_default(),
                    not_before: time(r.get::<_, Option<i64>>(i + 2)?.unwrap_or(0)),
                    not_after: time(r.get::<_, Option<i64>>(i + 3)?.unwrap_or(0)),
                }),
                None => None,
            })
        };
        let mut st = self.conn.prepare(
            "SELECT host, fingerprint, issuer, not_before_us, not_after_us, error \
             FROM certificates_seen",
        )?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let host: Arc<str> = Arc::from(r.get::<_, String>(0)?);
            if let Some(c) = cert(r, 1)? {
                t.seen.insert(Arc::clone(&host), c);
            }
            if let Some(e) = r.get::<_, Option<String>>(5)? {
                t.failed.insert(host, e);
            }
        }
        let mut st = self.conn.prepare(
            "SELECT time_us, host, event, fingerprint, issuer, not_before_us, not_after_us, \
             error FROM (SELECT rowid, * FROM certificate_events \
             ORDER BY time_us DESC, rowid DESC LIMIT ?1) ORDER BY time_us, rowid",
        )?;
        let mut rows = st.query([EVENTS as i64])?;
        while let Some(r) = rows.next()? {
            let label: String = r.get(2)?;
            let Some(kind) = CertEventKind::from_label(&label) else {
                continue;
            };
            t.events.push_back(CertEvent {
                at: time(r.get(0)?),
                host: Arc::from(r.get::<_, String>(1)?),
                kind,
                cert: cert(r, 3)?,
                error: r.get(7)?,
            });
        }
        Ok(t)
    }

    /// The rows of a table (tests).
    #[cfg(test)]
    fn count(&self, table: &str) -> i64 {
        self.conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap_or(-1)
    }
}

/// Microseconds since the Unix epoch.
fn us(t: SystemTime) -> i64 {
    labgate_querylog::unix_us(t)
}

/// The time `us` microseconds after the Unix epoch (before it: the epoch).
fn time(us: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

/// A count as SQLite's integer (a count past `i64::MAX` is saturated).
fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// An integer read back as a count (a negative one, which labgate never writes, as 0).
fn uint(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::history::timeline::Reading;

    fn at(mins: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + mins * 60)
    }

    fn minute(name: &str, two: u64, denied: &[(&str, u64)], up: usize) -> ServiceMinute {
        let mut counts = ServiceCounts::default();
        counts.outcomes[1] = two;
        counts.denied = denied.iter().map(|d| d.1).sum();
        ServiceMinute {
            name: Arc::from(name),
            counts,
            denied: denied.iter().map(|(n, c)| (Arc::from(*n), *c)).collect(),
            up,
            backends: 1,
        }
    }

    fn cert(fingerprint: &str) -> Seen {
        Seen {
            fingerprint: fingerprint.into(),
            issuer: "CN=Pebble".into(),
            not_before: at(0),
            not_after: at(90 * 1440),
        }
    }

    #[test]
    fn what_is_written_is_read_back_quiet_minutes_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let sample = Sample {
            at: at(1),
            services: vec![
                minute("app", 5, &[("guest", 2), ("tunnel", 1)], 1),
                minute("quiet", 0, &[], 1),
                minute("down", 0, &[], 0),
            ],
        };
        let mut timeline = Timeline::default();
        let events = timeline.observe(
            at(1),
            &[Reading {
                host: Arc::from("app.lab.test"),
                served: Some(cert("aa")),
                error: Some("order failed".into()),
            }],
        );
        {
            let mut store = Store::open(&path).unwrap();
            store.write(&sample, &events, &timeline).unwrap();
        }
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let store = Store::open(&path).unwrap();
        let loaded = store.load(at(0)).unwrap();
        let want = Sample {
            at: at(1),
            services: vec![sample.services[0].clone(), sample.services[2].clone()],
        };
        assert_eq!(loaded.samples, [want]);
        assert_eq!(loaded.timeline, timeline);
        assert_eq!(loaded.timeline.events.len(), 2);
        // Since a later time: none.
        assert!(store.load(at(2)).unwrap().samples.is_empty());
    }

    #[test]
    fn minutes_past_retention_and_events_past_the_bound_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join(FILE)).unwrap();
        let mut timeline = Timeline::default();
        let keep = KEEP_MINUTES.as_secs() / 60;
        let mut write = |m: u64, store: &mut Store| {
            let sample = Sample {
                at: at(m),
                services: vec![minute("app", 1, &[("guest", 1)], 1)],
            };
            let events = timeline.observe(
                at(m),
                &[Reading {
                    host: Arc::from("app.lab.test"),
                    served: Some(cert(&m.to_string())),
                    error: None,
                }],
            );
            store.write(&sample, &events, &timeline).unwrap();
        };
        write(0, &mut store);
        write(1, &mut store);
        write(keep + 1, &mut store);
        assert_eq!(
            store.count("service_minutes"),
            2,
            "minute 0 is past 30 days"
        );
        assert_eq!(store.count("denied_minutes"), 2);
        for m in 0..EVENTS as u64 {
            write(keep + 2 + m, &mut store);
        }
        assert_eq!(store.count("certificate_events"), EVENTS as i64);
        let t = store.load(at(0)).unwrap().timeline;
        assert_eq!(t.events.len(), EVENTS);
        assert_eq!(
            t.seen["app.lab.test"].fingerprint,
            (keep + 1 + EVENTS as u64).to_string(),
            "the newest certificate is the one seen"
        );
    }

    #[test]
    fn a_corrupted_or_foreign_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.sqlite");
        std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
        assert!(
            matches!(Store::open(&garbage), Err(Error::Sqlite { .. })),
            "a file that is not a database"
        );
        let newer = dir.path().join("newer.sqlite");
        drop(Store::open(&newer).unwrap());
        Connection::open(&newer)
            .unwrap()
            .execute("UPDATE meta SET value = 2 WHERE key = 'version'", [])
            .unwrap();
        assert!(matches!(
            Store::open(&newer),
            Err(Error::Version { found: 2, .. })
        ));
        let missing = dir.path().join("no/such/dir/history.sqlite");
        assert!(matches!(Store::open(&missing), Err(Error::Create { .. })));
    }
}
