//! Statistics derived from the log as the writer writes it, in the same database:
//! `minutes`, one row per minute and network (queries, blocked, answered from the cache or the
//! internal data, forwarded, NXDOMAIN, SERVFAIL, refused, upstream latency), added to with
//! each batch; and per hour the most asked names (`names`) and the busiest clients
//! (`clients`), counted in memory through the hour and written at each maintenance (every
//! minute), when it ends and at shutdown; a restart within the hour reads them back. A hour's counts are kept for its [`TOP`] busiest names and clients: the memory
//! an hour takes is bounded ([`CAPACITY`] keys; beyond it the rarest are forgotten, so a
//! count is at least the true one minus what a forgotten key had), whatever a flood of
//! random names does.

use std::collections::HashMap;

use rusqlite::{Connection, Transaction, params};

use crate::row::Row;

/// Names and clients an hour keeps in memory at most.
pub const CAPACITY: usize = 20_000;
/// Names and clients written per hour.
pub const TOP: usize = 1_000;
const MINUTE_US: i64 = 60_000_000;
const HOUR_US: i64 = 3_600_000_000;

/// The statistics' tables.
pub(crate) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS minutes (minute_us INTEGER NOT NULL, network TEXT NOT NULL,
        queries INTEGER NOT NULL, blocked INTEGER NOT NULL, cached INTEGER NOT NULL,
        forwarded INTEGER NOT NULL, nxdomain INTEGER NOT NULL, servfail INTEGER NOT NULL,
        refused INTEGER NOT NULL, upstream_us INTEGER NOT NULL,
        PRIMARY KEY (minute_us, network)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS names (hour_us INTEGER NOT NULL, name TEXT NOT NULL,
        queries INTEGER NOT NULL, blocked INTEGER NOT NULL,
        PRIMARY KEY (hour_us, name)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS clients (hour_us INTEGER NOT NULL, client TEXT NOT NULL,
        network TEXT NOT NULL, queries INTEGER NOT NULL, blocked INTEGER NOT NULL,
        PRIMARY KEY (hour_us, client)) WITHOUT ROWID;";

/// One minute of one network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Minute {
    /// Queries answered.
    pub queries: u64,
    /// Of those, blocked by a list.
    pub blocked: u64,
    /// Answered from the cache or the internal data.
    pub cached: u64,
    /// Sent to the upstreams.
    pub forwarded: u64,
    /// NXDOMAIN answers.
    pub nxdomain: u64,
    /// SERVFAIL answers.
    pub servfail: u64,
    /// REFUSED answers.
    pub refused: u64,
    /// Microseconds the forwarded queries waited, in all.
    pub upstream_us: u64,
}

impl Minute {
    fn add(&mut self, r: &Row) {
        self.queries += 1;
        match r.source {
            "blocklist" => self.blocked += 1,
            "cache" | "internal" => self.cached += 1,
            "upstream" => {
                self.forwarded += 1;
                self.upstream_us += u64::try_from(r.latency_us).unwrap_or(0);
            }
            _ => {}
        }
        match r.rcode.as_str() {
            "NXDOMAIN" => self.nxdomain += 1,
            "SERVFAIL" => self.servfail += 1,
            "REFUSED" => self.refused += 1,
            _ => {}
        }
    }
}

/// Queries and blocked queries of one key (a name, a client).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    /// Queries.
    pub queries: u64,
    /// Of those, blocked.
    pub blocked: u64,
}

/// Counts by key, bounded: past [`CAPACITY`] keys, the rarest are dropped until half remain.
#[derive(Debug, Default)]
struct Bounded<V> {
    map: HashMap<String, (Count, V)>,
}

impl<V: Clone> Bounded<V> {
    fn add(&mut self, key: &str, blocked: bool, value: &V) {
        if let Some((c, _)) = self.map.get_mut(key) {
            c.queries += 1;
            c.blocked += u64::from(blocked);
            return;
        }
        if self.map.len() >= CAPACITY {
            self.forget();
        }
        let count = Count {
            queries: 1,
            blocked: u64::from(blocked),
        };
        self.map.insert(key.to_owned(), (count, value.clone()));
    }

    /// Drops the keys with the fewest queries until at most half the capacity is left.
    fn forget(&mut self) {
        let mut counts: Vec<u64> = self.map.values().map(|(c, _)| c.queries).collect();
        let keep = CAPACITY / 2;
        let (_, &mut cut, _) = counts.select_nth_unstable_by(keep, |a, b| b.cmp(a));
        self.map.retain(|_, (c, _)| c.queries > cut);
    }

    /// The `n` keys with the most queries (ties by key), and those with the most blocked ones.
    fn top(&self, n: usize) -> Vec<(&str, Count, &V)> {
        let mut all: Vec<_> = self
            .map
            .iter()
            .map(|(k, (c, v))| (k.as_str(), *c, v))
            .collect();
        let by_queries = |a: &(&str, Count, &V), b: &(&str, Count, &V)| {
            b.1.queries.cmp(&a.1.queries).then(a.0.cmp(b.0))
        };
        all.sort_by(by_queries);
        let mut top: Vec<_> = all.iter().take(n).cloned().collect();
        all.sort_by(|a, b| b.1.blocked.cmp(&a.1.blocked).then(a.0.cmp(b.0)));
        let blocked: Vec<_> = all
            .into_iter()
            .take(n)
            .filter(|e| e.1.blocked > 0 && !top.iter().any(|t| t.0 == e.0))
            .collect();
        top.extend(blocked);
        top
    }
}

/// The hour being counted.
#[derive(Debug, Default)]
pub(crate) struct Hour {
    /// Its start; `None` before the first row (then it is read back from the database).
    start_us: Option<i64>,
    names: Bounded<()>,
    clients: Bounded<String>,
}

impl Hour {
    /// Counts `rows` into the minutes (written in `tx`) and into the hour, writing the hour
    /// first when a row belongs to a later one.
    pub(crate) fn add(&mut self, tx: &Transaction<'_>, rows: &[Row]) -> rusqlite::Result<()> {
        let mut minutes: HashMap<(i64, &str), Minute> = HashMap::new();
        for r in rows {
            let hour = r.time_us - r.time_us.rem_euclid(HOUR_US);
            // A row of an earlier hour (a query that waited for the upstreams across the
            // hour) counts in this one.
            if self.start_us.is_none_or(|start| hour > start) {
                self.write(tx)?;
                *self = Self::load(tx, hour)?;
            }
            let minute = r.time_us - r.time_us.rem_euclid(MINUTE_US);
            let network = r.network.as_deref().unwrap_or("");
            minutes.entry((minute, network)).or_default().add(r);
            let blocked = r.source == "blocklist";
            self.names.add(&r.name, blocked, &());
            if let Some(client) = &r.client {
                self.clients.add(client, blocked, &network.to_owned());
            }
        }
        let mut st = tx.prepare_cached(
            "INSERT INTO minutes VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (minute_us, network) DO UPDATE SET queries = queries + ?3,
             blocked = blocked + ?4, cached = cached + ?5, forwarded = forwarded + ?6,
             nxdomain = nxdomain + ?7, servfail = servfail + ?8, refused = refused + ?9,
             upstream_us = upstream_us + ?10",
        )?;
        for ((minute, network), m) in minutes {
            let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            st.execute(params![
                minute,
                network,
                n(m.queries),
                n(m.blocked),
                n(m.cached),
                n(m.forwarded),
                n(m.nxdomain),
                n(m.servfail),
                n(m.refused),
                n(m.upstream_us),
            ])?;
        }
        Ok(())
    }

    /// The hour starting at `start_us`, with what an earlier run wrote of it (a restart
    /// within the hour goes on counting).
    fn load(conn: &Connection, start_us: i64) -> rusqlite::Result<Self> {
        let mut hour = Self {
            start_us: Some(start_us),
            ..Self::default()
        };
        let count = |q: i64, b: i64| Count {
            queries: u64::try_from(q).unwrap_or(0),
            blocked: u64::try_from(b).unwrap_or(0),
        };
        let mut st =
            conn.prepare_cached("SELECT name, queries, blocked FROM names WHERE hour_us = ?1")?;
        let names = st.query_map([start_us], |r| {
            Ok((r.get::<_, String>(0)?, count(r.get(1)?, r.get(2)?)))
        })?;
        for row in names {
            let (name, c) = row?;
            hour.names.map.insert(name, (c, ()));
        }
        let mut st = conn.prepare_cached(
            "SELECT client, network, queries, blocked FROM clients WHERE hour_us = ?1",
        )?;
        let clients = st.query_map([start_us], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                count(r.get(2)?, r.get(3)?),
            ))
        })?;
        for row in clients {
            let (client, network, c) = row?;
            hour.clients.map.insert(client, (c, network));
        }
        Ok(hour)
    }

    /// Writes the hour's busiest names and clients in place of what an earlier write of the
    /// same hour left.
    pub(crate) fn write(&self, conn: &Connection) -> rusqlite::Result<()> {
        let Some(start_us) = self.start_us.filter(|_| !self.names.map.is_empty()) else {
            return Ok(());
        };
        conn.execute("DELETE FROM names WHERE hour_us = ?1", [start_us])?;
        conn.execute("DELETE FROM clients WHERE hour_us = ?1", [start_us])?;
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let mut st = conn.prepare_cached("INSERT INTO names VALUES (?1, ?2, ?3, ?4)")?;
        for (name, c, ()) in self.names.top(TOP) {
            st.execute(params![start_us, name, n(c.queries), n(c.blocked)])?;
        }
        let mut st = conn.prepare_cached("INSERT INTO clients VALUES (?1, ?2, ?3, ?4, ?5)")?;
        for (client, c, network) in self.clients.top(TOP) {
            st.execute(params![
                start_us,
                client,
                network,
                n(c.queries),
                n(c.blocked)
            ])?;
        }
        Ok(())
    }
}

/// Deletes the statistics older than `cutoff_us`.
pub(crate) fn forget_before(conn: &Connection, cutoff_us: i64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM minutes WHERE minute_us < ?1", [cutoff_us])?;
    conn.execute("DELETE FROM names WHERE hour_us < ?1", [cutoff_us])?;
    conn.execute("DELETE FROM clients WHERE hour_us < ?1", [cutoff_us])?;
    Ok(())
}

// The tables drive the store, which is above this module: in a file of their own they are a
// module on top of the graph, not part of this one.
#[cfg(test)]
mod tests;
