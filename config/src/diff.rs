//! What changed between two snapshots, for the one-line reload log and `/config`.

use std::collections::BTreeMap;
use std::fmt;

use crate::snapshot::Snapshot;

/// Names added, changed and removed in one category.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Names only the new configuration has.
    pub added: Vec<String>,
    /// Names whose definition changed.
    pub changed: Vec<String>,
    /// Names only the old configuration had.
    pub removed: Vec<String>,
}

impl Changes {
    fn between(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Self {
        let mut c = Self::default();
        for (k, v) in new {
            match old.get(k) {
                None => c.added.push(k.clone()),
                Some(o) if o != v => c.changed.push(k.clone()),
                Some(_) => {}
            }
        }
        c.removed = old
            .keys()
            .filter(|k| !new.contains_key(*k))
            .cloned()
            .collect();
        c
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

impl fmt::Display for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (sign, names) in [
            ("+", &self.added),
            ("~", &self.changed),
            ("-", &self.removed),
        ] {
            if !names.is_empty() {
                if !first {
                    f.write_str(" ")?;
                }
                write!(f, "{sign}{}", names.join(&format!(" {sign}")))?;
                first = false;
            }
        }
        Ok(())
    }
}

/// The difference between two snapshots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Services, by name.
    pub services: Changes,
    /// Explicit and derived DNS names, by `network/name`.
    pub records: Changes,
    /// Networks, by name.
    pub networks: Changes,
    /// Whether `[admin]` changed: its networks or its credentials (never shown).
    pub admin: bool,
    /// Whether restart-only settings (listen addresses, state directory) changed.
    pub restart_required: bool,
}

impl Diff {
    /// Compares an old and a new snapshot.
    pub fn between(old: &Snapshot, new: &Snapshot) -> Self {
        Self {
            services: Changes::between(&services(old), &services(new)),
            records: Changes::between(&records(old), &records(new)),
            networks: Changes::between(&networks(old), &networks(new)),
            admin: old.admin != new.admin,
            restart_required: old.listen != new.listen || old.state_dir != new.state_dir,
        }
    }

    /// Whether nothing visible changed.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
            && self.records.is_empty()
            && self.networks.is_empty()
            && !self.admin
            && !self.restart_required
    }
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("no effective change");
        }
        let mut parts = Vec::new();
        for (what, c) in [
            ("services", &self.services),
            ("records", &self.records),
            ("networks", &self.networks),
        ] {
            if !c.is_empty() {
                parts.push(format!("{what} {c}"));
            }
        }
        if self.admin {
            parts.push("admin access changed".to_owned());
        }
        if self.restart_required {
            parts.push("listen/state_dir changed (restart to apply)".to_owned());
        }
        f.write_str(&parts.join("; "))
    }
}

fn services(s: &Snapshot) -> BTreeMap<String, String> {
    s.services
        .iter()
        .map(|svc| {
            let allow = s.networks.names(svc.allow);
            (svc.name.to_string(), format!("{svc:?}|{allow}"))
        })
        .collect()
}

fn networks(s: &Snapshot) -> BTreeMap<String, String> {
    s.networks
        .iter()
        .map(|n| (n.name.to_string(), format!("{n:?}")))
        .collect()
}

fn records(s: &Snapshot) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for view in &s.views {
        let net = &s.networks.get(view.network).name;
        for (name, node) in &view.nodes {
            if node.records.is_empty() {
                continue;
            }
            let mut data: Vec<String> = node
                .records
                .iter()
                .filter(|r| r.record_type() != hickory_proto::rr::RecordType::SOA)
                .map(|r| format!("{} {} {}", r.ttl, r.record_type(), r.data))
                .collect();
            data.sort();
            out.insert(
                format!("{net}/{}", name.to_string().trim_end_matches('.')),
                data.join(","),
            );
        }
    }
    out
}
