//! The fast path for cache hits: the general path's response to a fresh cache hit, kept as
//! bytes per (network, type, name) with the offsets of its TTLs, served by patching the query
//! (as `fast` does) and counting the TTLs down exactly as the cache does.
//!
//! A kept response is the general path's decision for that network (recursion allowed, not
//! blocked, not internal), so it is only valid for the snapshot and fetched blocklists it was
//! made with: each published `state::DnsState` has a table of its own, and a new snapshot or
//! new lists start an empty one. A response is served until the last tenth of the cached
//! answer's life, which goes to the general path: it prefetches popular names, and its next hit
//! keeps the refreshed answer.

use std::collections::HashMap;
use std::sync::RwLock;

use hickory_proto::op::ResponseCode;
use tokio::time::Instant;

use crate::cache::Lifetime;
use crate::fast::{Parsed, patch};

/// Fresh cache hits kept as response bytes.
#[derive(Default)]
pub(crate) struct HitTable {
    inner: RwLock<Hits>,
}

#[derive(Default)]
struct Hits {
    /// Responses to queries without EDNS, and with a plain OPT.
    plain: HashMap<Box<[u8]>, Hit>,
    edns: HashMap<Box<[u8]>, Hit>,
}

/// One kept response.
struct Hit {
    bytes: Box<[u8]>,
    /// Where each record's TTL is, and its value in `bytes` (lowered by `life.age`).
    ttls: Box<[(usize, u32)]>,
    life: Lifetime,
    rcode: ResponseCode,
}

impl HitTable {
    /// Writes the kept response to the parsed `query` into `out`, TTLs counted down: its
    /// length and rcode, or `None` (nothing kept, too old, or too large for the client).
    pub(crate) fn answer(
        &self,
        p: &Parsed,
        query: &[u8],
        out: &mut [u8],
    ) -> Option<(usize, ResponseCode)> {
        let hits = self.inner.read().ok()?;
        let map = if p.edns_size.is_some() {
            &hits.edns
        } else {
            &hits.plain
        };
        let hit = map.get(p.key())?;
        let age = hit.life.age_at(Instant::now());
        if hit.life.ending(age) {
            return None;
        }
        let len = patch(&hit.bytes, p, query, out)?;
        // The cache's own countdown (`age` ≥ `life.age`, and no TTL is below the cache TTL).
        let since_kept = age.saturating_sub(hit.life.age);
        for &(at, ttl) in &hit.ttls {
            out[at..at + 4].copy_from_slice(&ttl.saturating_sub(since_kept).max(1).to_be_bytes());
        }
        Some((len, hit.rcode))
    }

    /// Keeps `response`, the general path's answer to the parsed query from a fresh cache hit
    /// of lifetime `life`, decided with the inputs this table belongs to. At most `capacity`
    /// responses per EDNS form are kept; a full table first drops what can no longer be
    /// served, then keeps nothing new.
    pub(crate) fn keep(&self, capacity: usize, p: &Parsed, response: &[u8], life: Lifetime) {
        if life.ending(life.age) || response.get(2).is_none_or(|flags| flags & 0x02 != 0) {
            // In its last tenth (the general path's), or truncated (likewise).
            return;
        }
        let Some(ttls) = ttl_offsets(response) else {
            return;
        };
        let Ok(mut hits) = self.inner.write() else {
            return;
        };
        let now = Instant::now();
        let map = if p.edns_size.is_some() {
            &mut hits.edns
        } else {
            &mut hits.plain
        };
        if map.len() >= capacity && !map.contains_key(p.key()) {
            map.retain(|_, h| !h.life.ending(h.life.age_at(now)));
            if map.len() >= capacity {
                return;
            }
        }
        let rcode = ResponseCode::from(0, response[3] & 0x0F);
        map.insert(
            p.key().into(),
            Hit {
                bytes: response.into(),
                ttls,
                life,
                rcode,
            },
        );
    }
}

/// The offset and value of the TTL of every record in a response but the OPT; `None` when
/// it does not walk cleanly.
fn ttl_offsets(m: &[u8]) -> Option<Box<[(usize, u32)]>> {
    let count = |i: usize| {
        Some(usize::from(u16::from_be_bytes([
            *m.get(i)?,
            *m.get(i + 1)?,
        ])))
    };
    let (questions, records) = (count(4)?, count(6)? + count(8)? + count(10)?);
    let mut i = 12;
    for _ in 0..questions {
        i = skip_name(m, i)? + 4;
    }
    let mut ttls = Vec::with_capacity(records);
    for _ in 0..records {
        i = skip_name(m, i)?;
        let fixed = m.get(i..i + 10)?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        if rtype != 41 {
            ttls.push((
                i + 4,
                u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
            ));
        }
        i += 10 + usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
    }
    (i == m.len()).then(|| ttls.into_boxed_slice())
}

/// The offset just past the name at `i` (labels ending in the root or a compression pointer).
fn skip_name(m: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let len = *m.get(i)?;
        match len & 0xC0 {
            0 if len == 0 => return Some(i + 1),
            0 => i += 1 + usize::from(len),
            0xC0 => return m.get(i + 1).map(|_| i + 2),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_found_past_compressed_names_and_the_opt_is_skipped() {
        // One question (a.b), one answer (pointer to it, A, TTL 300), one OPT.
        let mut m = vec![0, 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 1];
        m.extend_from_slice(&[1, b'a', 1, b'b', 0, 0, 1, 0, 1]);
        m.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1]);
        m.extend_from_slice(&[0, 0, 41, 4, 208, 0, 0, 0, 0, 0, 0]);
        let ttls = ttl_offsets(&m).expect("walks");
        assert_eq!(&*ttls, &[(27, 300)]);
        assert!(ttl_offsets(&m[..m.len() - 1]).is_none(), "a cut record");
        m.push(0);
        assert!(ttl_offsets(&m).is_none(), "trailing bytes");
    }
}
