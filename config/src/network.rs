//! Networks (trust zones) and the longest-prefix table that maps a client address to one.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

/// Index of a network in [`Networks`]; small so sets of them fit in a [`NetworkSet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetworkId(pub(crate) u8);

impl NetworkId {
    /// Position in [`Networks::iter`].
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// The most networks a configuration may declare (the built-in `tunnel` included).
pub const MAX_NETWORKS: usize = 64;

/// A set of networks as a bit mask: membership is one AND.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct NetworkSet(u64);

impl NetworkSet {
    /// The empty set.
    pub const EMPTY: Self = Self(0);

    /// Adds a network.
    pub fn insert(&mut self, id: NetworkId) {
        self.0 |= 1 << id.0;
    }

    /// Whether the set holds a network.
    pub fn contains(self, id: NetworkId) -> bool {
        self.0 & (1 << id.0) != 0
    }

    /// The union of two sets.
    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The members, lowest id first.
    pub fn iter(self) -> impl Iterator<Item = NetworkId> {
        (0..64u8)
            .filter(move |i| self.0 & (1 << i) != 0)
            .map(NetworkId)
    }
}

/// What kind of traffic a network stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkKind {
    /// A LAN or VPN whose clients are known by source address.
    Local,
    /// Internet users arriving through the Cloudflare Tunnel connector.
    Tunnel,
}

/// A named trust zone, compiled.
#[derive(Debug, Clone)]
pub struct Network {
    /// Its id.
    pub id: NetworkId,
    /// Its name from the config.
    pub name: Arc<str>,
    /// Local network or the tunnel.
    pub kind: NetworkKind,
    /// Client ranges (empty for the tunnel).
    pub cidrs: Vec<IpNet>,
    /// labgate's own addresses on this network: what internal names resolve to here.
    pub addresses: Vec<IpAddr>,
    /// Whether clients here see internal names.
    pub internal: bool,
    /// Whether clients here may resolve internet names through labgate.
    pub recursion: bool,
    /// Indexes into the snapshot's blocklists.
    pub blocklists: Vec<usize>,
    /// What the query log keeps of this network's queries.
    pub query_log: LogLevel,
}

/// How much of a network's queries the query log keeps (`[[network]] query_log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogLevel {
    /// Every field, the client's address included.
    #[default]
    Full,
    /// Every field but the client's address.
    Anonymous,
    /// Nothing.
    Off,
}

/// Why an address belongs to a network: the prefix that matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkMatch {
    /// The network.
    pub network: NetworkId,
    /// The longest prefix containing the address.
    pub prefix: IpNet,
}

/// All networks and the lookup table over their CIDRs.
#[derive(Debug, Clone)]
pub struct Networks {
    list: Vec<Network>,
    table: PrefixTable,
    tunnel: NetworkId,
    /// Addresses the tunnel connector may connect from.
    pub tunnel_connectors: Vec<IpNet>,
}

impl Networks {
    pub(crate) fn new(list: Vec<Network>, tunnel: NetworkId, connectors: Vec<IpNet>) -> Self {
        let table = PrefixTable::new(
            list.iter()
                .flat_map(|n| n.cidrs.iter().map(move |c| (*c, n.id))),
        );
        Self {
            list,
            table,
            tunnel,
            tunnel_connectors: connectors,
        }
    }

    /// The network of a client address by longest-prefix match; `None`: refuse the client.
    /// IPv4-mapped IPv6 addresses count as their IPv4 address.
    pub fn lookup(&self, ip: IpAddr) -> Option<NetworkMatch> {
        self.table.lookup(ip)
    }

    /// A network by id.
    ///
    /// # Panics
    /// If the id came from another snapshot.
    pub fn get(&self, id: NetworkId) -> &Network {
        &self.list[id.index()]
    }

    /// A network by name.
    pub fn by_name(&self, name: &str) -> Option<&Network> {
        self.list.iter().find(|n| &*n.name == name)
    }

    /// The built-in `tunnel` network.
    pub fn tunnel(&self) -> &Network {
        self.get(self.tunnel)
    }

    /// Whether `peer` may use the tunnel listener (a `tunnel.connectors` address).
    pub fn is_connector(&self, peer: IpAddr) -> bool {
        let peer = canonical(peer);
        self.tunnel_connectors.iter().any(|c| c.contains(&peer))
    }

    /// Every network, the tunnel last.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Network> {
        self.list.iter()
    }

    /// The names of a set, comma-separated, for messages.
    pub fn names(&self, set: NetworkSet) -> String {
        let names: Vec<&str> = set.iter().map(|id| &*self.get(id).name).collect();
        names.join(", ")
    }
}

/// Longest-prefix match without hashing: one sorted array per prefix length, longest first,
/// binary-searched. Homelabs use two or three distinct lengths, so a lookup is a few
/// comparisons.
#[derive(Debug, Clone, Default)]
struct PrefixTable {
    v4: Vec<Level<u32>>,
    v6: Vec<Level<u128>>,
}

#[derive(Debug, Clone)]
struct Level<T> {
    len: u8,
    mask: T,
    entries: Vec<(T, NetworkId)>,
}

impl PrefixTable {
    fn new(prefixes: impl Iterator<Item = (IpNet, NetworkId)>) -> Self {
        let mut t = Self::default();
        for (net, id) in prefixes {
            match net {
                IpNet::V4(n) => insert(&mut t.v4, n.prefix_len(), u32::from(n.network()), id),
                IpNet::V6(n) => insert(&mut t.v6, n.prefix_len(), u128::from(n.network()), id),
            }
        }
        for l in &mut t.v4 {
            l.entries.sort_unstable();
        }
        for l in &mut t.v6 {
            l.entries.sort_unstable();
        }
        t
    }

    fn lookup(&self, ip: IpAddr) -> Option<NetworkMatch> {
        match canonical(ip) {
            IpAddr::V4(a) => {
                let (len, id) = find(&self.v4, u32::from(a))?;
                let prefix = ipnet::Ipv4Net::new(a, len).ok()?.trunc();
                Some(NetworkMatch {
                    network: id,
                    prefix: IpNet::V4(prefix),
                })
            }
            IpAddr::V6(a) => {
                let (len, id) = find(&self.v6, u128::from(a))?;
                let prefix = ipnet::Ipv6Net::new(a, len).ok()?.trunc();
                Some(NetworkMatch {
                    network: id,
                    prefix: IpNet::V6(prefix),
                })
            }
        }
    }
}

/// IPv4-mapped IPv6 (`::ffff:10.0.0.1`, as dual-stack sockets report) becomes IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

trait Bits: Copy + Ord + std::ops::BitAnd<Output = Self> {
    fn mask(len: u8) -> Self;
}

impl Bits for u32 {
    fn mask(len: u8) -> Self {
        Self::MAX.checked_shl(32 - Self::from(len)).unwrap_or(0)
    }
}

impl Bits for u128 {
    fn mask(len: u8) -> Self {
        Self::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
    }
}

fn insert<T: Bits>(levels: &mut Vec<Level<T>>, len: u8, net: T, id: NetworkId) {
    let pos = match levels.binary_search_by(|l| len.cmp(&l.len)) {
        Ok(p) => p,
        Err(p) => {
            levels.insert(
                p,
                Level {
                    len,
                    mask: T::mask(len),
                    entries: Vec::new(),
                },
            );
            p
        }
    };
    levels[pos].entries.push((net, id));
}

fn find<T: Bits>(levels: &[Level<T>], addr: T) -> Option<(u8, NetworkId)> {
    levels.iter().find_map(|l| {
        let key = addr & l.mask;
        l.entries
            .binary_search_by(|(n, _)| n.cmp(&key))
            .ok()
            .map(|i| (l.len, l.entries[i].1))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(nets: &[(&str, u8)]) -> PrefixTable {
        PrefixTable::new(
            nets.iter()
                .map(|(n, id)| (n.parse().expect("test cidr"), NetworkId(*id))),
        )
    }

    fn net_of(t: &PrefixTable, ip: &str) -> Option<u8> {
        t.lookup(ip.parse().expect("test ip")).map(|m| m.network.0)
    }

    #[test]
    fn longest_prefix_wins() {
        let t = table(&[
            ("10.0.0.0/8", 1),
            ("10.0.30.0/24", 2),
            ("10.0.30.128/25", 3),
            ("0.0.0.0/0", 4),
        ]);
        assert_eq!(net_of(&t, "10.0.30.5"), Some(2));
        assert_eq!(net_of(&t, "10.0.30.200"), Some(3));
        assert_eq!(net_of(&t, "10.9.9.9"), Some(1));
        assert_eq!(net_of(&t, "192.168.1.1"), Some(4));
    }

    #[test]
    fn no_match_is_none_and_families_are_separate() {
        let t = table(&[("10.0.30.0/24", 1), ("fd00:30::/64", 2)]);
        assert_eq!(net_of(&t, "10.0.31.1"), None);
        assert_eq!(net_of(&t, "fd00:30::1234"), Some(2));
        assert_eq!(net_of(&t, "fd00:31::1"), None);
    }

    #[test]
    fn v4_mapped_v6_is_canonicalized() {
        let t = table(&[("10.0.30.0/24", 1)]);
        assert_eq!(net_of(&t, "::ffff:10.0.30.7"), Some(1));
        let m = t.lookup("::ffff:10.0.30.7".parse().expect("ip"));
        assert_eq!(m.map(|m| m.prefix.to_string()), Some("10.0.30.0/24".into()));
    }

    #[test]
    fn host_routes_and_default_routes() {
        let t = table(&[("10.0.0.1/32", 1), ("::/0", 2), ("::1/128", 3)]);
        assert_eq!(net_of(&t, "10.0.0.1"), Some(1));
        assert_eq!(net_of(&t, "10.0.0.2"), None);
        assert_eq!(net_of(&t, "2001:db8::1"), Some(2));
        assert_eq!(net_of(&t, "::1"), Some(3));
    }

    #[test]
    fn network_set_membership() {
        let mut s = NetworkSet::EMPTY;
        s.insert(NetworkId(0));
        s.insert(NetworkId(63));
        assert!(s.contains(NetworkId(63)) && s.contains(NetworkId(0)));
        assert!(!s.contains(NetworkId(5)));
        assert_eq!(s.iter().count(), 2);
    }
}
