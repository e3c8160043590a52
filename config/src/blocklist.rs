//! Blocklist contents: parsing hosts, domain-list and adblock formats into a set of names,
//! and suffix matching (a listed name blocks its subdomains too). A leaf module: the settings
//! hold its types, it imports none of theirs.

use std::collections::HashSet;

/// How a blocklist writes its names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlocklistFormat {
    /// `0.0.0.0 name` lines.
    Hosts,
    /// One name per line.
    Domains,
    /// `||name^` lines.
    Adblock,
}

/// The names of one blocklist, lower-case, without trailing dots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockSet {
    names: HashSet<Box<str>>,
    /// Lines that were neither a name nor a comment, for the load log.
    pub skipped: usize,
}

/// Names that hosts files list for the machine itself, never meant as blocks.
const HOSTS_SELF: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
];

impl BlockSet {
    /// Parses a list. Comments (`#`, and `!` in adblock lists), blank lines and the hosts
    /// file's own names are ignored; anything unparseable is counted in `skipped`.
    pub fn parse(text: &str, format: BlocklistFormat) -> Self {
        let mut set = Self::default();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() || (format == BlocklistFormat::Adblock && line.starts_with('!')) {
                continue;
            }
            let names: Vec<&str> = match format {
                BlocklistFormat::Domains => vec![line.strip_prefix("*.").unwrap_or(line)],
                BlocklistFormat::Hosts => {
                    let mut fields = line.split_whitespace();
                    match fields.next() {
                        Some(ip) if ip.parse::<std::net::IpAddr>().is_ok() => fields.collect(),
                        _ => Vec::new(),
                    }
                }
                BlocklistFormat::Adblock => line
                    .strip_prefix("||")
                    .and_then(|r| r.strip_suffix('^'))
                    .into_iter()
                    .collect(),
            };
            let mut any = false;
            for n in names {
                let n = n.trim_end_matches('.').to_ascii_lowercase();
                if HOSTS_SELF.contains(&n.as_str()) {
                    any = true;
                } else if valid(&n) {
                    set.names.insert(n.into_boxed_str());
                    any = true;
                }
            }
            if !any {
                set.skipped += 1;
            }
        }
        set
    }

    /// Whether a lower-case name without trailing dot, or one of its parents, is listed.
    pub fn blocks(&self, name: &str) -> bool {
        let mut rest = name;
        loop {
            if self.names.contains(rest) {
                return true;
            }
            match rest.split_once('.') {
                Some((_, parent)) if !parent.is_empty() => rest = parent,
                _ => return false,
            }
        }
    }

    /// Number of listed names.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

fn valid(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.contains('.')
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_format() {
        let s = BlockSet::parse(
            "# StevenBlack\n127.0.0.1 localhost\n0.0.0.0 0.0.0.0\n0.0.0.0 ads.example.com tracker.example.net # two\n::1 ip6-localhost\nbogus line\n",
            BlocklistFormat::Hosts,
        );
        assert_eq!(s.len(), 2);
        assert_eq!(s.skipped, 1);
        assert!(s.blocks("ads.example.com") && s.blocks("x.tracker.example.net"));
        assert!(!s.blocks("example.com") && !s.blocks("localhost"));
    }

    #[test]
    fn domains_and_adblock_formats_with_suffix_matching() {
        let d = BlockSet::parse(
            "Doubleclick.NET.\n*.telemetry.test\n\nnot a name\n",
            BlocklistFormat::Domains,
        );
        assert!(
            d.blocks("doubleclick.net")
                && d.blocks("a.b.doubleclick.net")
                && d.blocks("x.telemetry.test")
        );
        assert!(
            !d.blocks("notdoubleclick.net"),
            "suffix matching is per label"
        );
        assert_eq!(d.skipped, 1);
        let a = BlockSet::parse(
            "! comment\n||ads.example.org^\n@@||ok.example.org^\n||x.test^$third-party\n",
            BlocklistFormat::Adblock,
        );
        assert!(a.blocks("ads.example.org") && a.blocks("cdn.ads.example.org"));
        assert!(!a.blocks("ok.example.org") && !a.blocks("x.test"));
    }
}
