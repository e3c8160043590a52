//! The HPACK static table (RFC 7541 Appendix A) and dynamic table (§2.3.2, §4).
//!
//! The dynamic table keeps its entries' bytes in one buffer allocated once, twice the
//! largest table size: entries are appended at the end and evicted from the front, and the
//! live bytes move back to the start when the end is reached. No allocation after
//! construction.

use std::collections::VecDeque;

/// The static table; index 1 is `STATIC[0]`.
pub(crate) const STATIC: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// Bytes an entry counts for beyond its name and value (§4.1).
pub(crate) const ENTRY_OVERHEAD: usize = 32;

/// The decoder's dynamic table.
#[derive(Debug)]
pub(crate) struct Dynamic {
    /// Entry bytes, name then value; live from `start`. Empty until the peer indexes a
    /// field (many never do), it grows with what the table holds, to at most twice `limit`.
    buf: Vec<u8>,
    start: usize,
    /// Newest first: `(offset in buf, name length, value length)`.
    entries: VecDeque<(usize, usize, usize)>,
    /// Sum of entry sizes (§4.1).
    size: usize,
    /// Current maximum size, set by size updates.
    max: usize,
    /// The largest maximum the peer may set (our SETTINGS_HEADER_TABLE_SIZE).
    limit: usize,
}

impl Dynamic {
    /// An empty table whose size may reach `limit`, its initial maximum.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            entries: VecDeque::new(),
            size: 0,
            max: limit,
            limit,
        }
    }

    /// Entries now in the table.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The `i`th entry, newest first.
    pub(crate) fn get(&self, i: usize) -> Option<(&[u8], &[u8])> {
        let &(off, n, v) = self.entries.get(i)?;
        Some((&self.buf[off..off + n], &self.buf[off + n..off + n + v]))
    }

    /// The largest maximum a size update may set.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Applies a dynamic table size update (§6.3); the caller checked it against the limit.
    pub(crate) fn set_max(&mut self, max: usize) {
        debug_assert!(max <= self.limit);
        self.max = max;
        self.evict_to(max);
    }

    /// Inserts an entry (§4.4): evicts until it fits; an entry larger than the table empties
    /// it. `name` and `value` are copied, so they must not borrow the table. `lens` are the
    /// true lengths, which may exceed the given slices when the caller could not keep the
    /// bytes; such an entry is always larger than the table.
    pub(crate) fn insert(&mut self, name: &[u8], value: &[u8], lens: (usize, usize)) {
        let size = lens.0 + lens.1 + ENTRY_OVERHEAD;
        if size > self.max {
            self.evict_to(0);
            return;
        }
        debug_assert!(name.len() == lens.0 && value.len() == lens.1);
        self.evict_to(self.max - size);
        let bytes = name.len() + value.len();
        if self.buf.len() + bytes > self.buf.capacity() {
            self.make_room(bytes);
        }
        let off = self.buf.len();
        self.buf.extend_from_slice(name);
        self.buf.extend_from_slice(value);
        self.entries.push_front((off, name.len(), value.len()));
        self.size += size;
    }

    fn evict_to(&mut self, max: usize) {
        while self.size > max {
            let Some((off, n, v)) = self.entries.pop_back() else {
                break;
            };
            self.size -= n + v + ENTRY_OVERHEAD;
            self.start = off + n + v;
        }
        if self.entries.is_empty() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Makes room for `bytes` more at the end of the buffer: moves the live bytes to its
    /// start when at least half of what it holds is dead (each byte moved was paid for by an
    /// insert), else grows it. It never needs more than `2 * limit`: the live bytes and the
    /// new entry fit in `limit`, and the dead ones are fewer than the live ones.
    fn make_room(&mut self, bytes: usize) {
        if self.start >= self.buf.len() / 2 {
            self.compact();
        }
        let need = self.buf.len() + bytes;
        if need > self.buf.capacity() {
            let floor = need.max(256).min(2 * self.limit);
            let grown = (2 * self.buf.capacity()).clamp(floor, 2 * self.limit);
            self.buf.reserve_exact(grown - self.buf.len());
        }
    }

    /// Moves the live bytes to the start of the buffer.
    fn compact(&mut self) {
        let start = self.start;
        self.buf.copy_within(start.., 0);
        self.buf.truncate(self.buf.len() - start);
        for e in &mut self.entries {
            e.0 -= start;
        }
        self.start = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s4_4_eviction_and_oversized_entry() {
        let mut t = Dynamic::new(100);
        t.insert(b"aaaa", b"1111", (4, 4)); // 40
        t.insert(b"bbbb", b"2222", (4, 4)); // 80
        assert_eq!(t.len(), 2);
        t.insert(b"cccc", b"3333", (4, 4)); // evicts aaaa
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(0), Some((&b"cccc"[..], &b"3333"[..])));
        assert_eq!(t.get(1), Some((&b"bbbb"[..], &b"2222"[..])));
        t.insert(b"x", b"", (200, 0));
        assert_eq!(t.len(), 0);
        t.set_max(0);
        t.insert(b"a", b"b", (1, 1));
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn buffer_is_taken_when_used_and_stays_bounded() {
        let mut t = Dynamic::new(4096);
        assert_eq!(
            t.buf.capacity(),
            0,
            "a table nobody indexes into holds no buffer"
        );
        t.insert(b"name", b"value", (4, 5));
        assert!(t.buf.capacity() < 1024, "small entries take a small buffer");
        for i in 0..10_000usize {
            let v = vec![b'v'; (i * 37) % 4000];
            t.insert(b"name", &v, (4, v.len()));
            assert!(t.size <= 4096);
            assert_eq!(t.get(0), Some((&b"name"[..], &v[..])));
            assert!(t.buf.capacity() <= 2 * 4096, "{}", t.buf.capacity());
        }
        // A table the peer keeps small keeps a small buffer, however much goes through it.
        let mut t = Dynamic::new(4096);
        t.set_max(512);
        for i in 0..1000usize {
            let v = vec![b'v'; 50 + i % 100];
            t.insert(b"name", &v, (4, v.len()));
            assert!(t.buf.capacity() <= 2 * 512, "{}", t.buf.capacity());
        }
        // Every entry still in the table reads back whole after the compactions.
        let mut t = Dynamic::new(256);
        for i in 0..1000u32 {
            let v = i.to_string();
            t.insert(b"k", v.as_bytes(), (1, v.len()));
            for j in 0..t.len() {
                let want = (i as usize - j).to_string();
                assert_eq!(t.get(j), Some((&b"k"[..], want.as_bytes())));
            }
            assert!(t.buf.capacity() <= 512);
        }
    }
}
