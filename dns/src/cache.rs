//! The forwarder's answer cache: TTLs count down, negative answers are cached for the SOA's
//! negative TTL (RFC 2308), and expired answers stay usable for serve-stale (RFC 8767) up to
//! a bound. SERVFAIL is never cached.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, RData, RecordType};
use tokio::time::Instant;

use crate::answer::Answer;

/// TTL given to stale answers (RFC 8767 recommends 30 s).
pub const STALE_TTL: u32 = 30;
/// Longest time an answer is cached, whatever its TTL says.
pub const MAX_TTL: u32 = 86_400;

/// A cache lookup.
#[derive(Debug)]
pub(crate) enum Cached {
    /// Within its TTL; TTLs already counted down by `life.age`. `prefetch` when it is
    /// popular and about to expire.
    Fresh {
        answer: Answer,
        life: Lifetime,
        prefetch: bool,
    },
    /// Expired but within the stale bound; TTLs set to [`STALE_TTL`].
    Stale(Answer),
    /// Not cached, or past the stale bound: the upstreams are asked.
    Miss,
}

/// A fresh answer's place in its life: what its TTLs count down from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lifetime {
    /// When it was stored.
    pub(crate) stored: Instant,
    /// Its cache TTL.
    pub(crate) ttl: u32,
    /// Whole seconds since `stored` when it was looked up (its TTLs are lowered by this).
    pub(crate) age: u32,
}

impl Lifetime {
    /// Whole seconds since it was stored, at `now`.
    pub(crate) fn age_at(&self, now: Instant) -> u32 {
        u32::try_from(now.saturating_duration_since(self.stored).as_secs()).unwrap_or(u32::MAX)
    }

    /// Whether `age` is in the last tenth of the life, when popular names are refreshed.
    pub(crate) fn ending(&self, age: u32) -> bool {
        age >= self.ttl || self.ttl - age <= self.ttl / 10
    }
}

struct Entry {
    answer: Answer,
    stored: Instant,
    ttl: u32,
    hits: u32,
    /// Its last fresh hit, or when it was stored.
    used: Instant,
}

/// Frees a tenth of a full cache: answers past their TTL first (they only serve stale, and
/// a day of them would fill any cache), then the least recently used. PERF: linear, once
/// per tenth of the capacity inserted (dropping one entry at a time made every insert into
/// a full cache a walk of all of it, and its choice, the fewest hits, was most often the
/// newest answer).
fn make_room(map: &mut HashMap<(LowerName, RecordType), Entry>, capacity: usize, now: Instant) {
    let target = capacity - capacity / 10 - 1;
    map.retain(|_, e| {
        now.saturating_duration_since(e.stored) < Duration::from_secs(u64::from(e.ttl))
    });
    if map.len() <= target {
        return;
    }
    let mut used: Vec<Instant> = map.values().map(|e| e.used).collect();
    let (_, &mut cut, _) = used.select_nth_unstable(map.len() - target - 1);
    map.retain(|_, e| e.used > cut);
}

/// Answers by (name, type), bounded in entries.
pub(crate) struct Cache {
    entries: Mutex<HashMap<(LowerName, RecordType), Entry>>,
    capacity: usize,
    max_stale: Duration,
}

impl Cache {
    pub(crate) fn new(capacity: usize, max_stale: Duration) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            max_stale,
        }
    }

    pub(crate) fn get(&self, name: &LowerName, rtype: RecordType, now: Instant) -> Cached {
        let Ok(mut map) = self.entries.lock() else {
            return Cached::Miss;
        };
        let Some(e) = map.get_mut(&(name.clone(), rtype)) else {
            return Cached::Miss;
        };
        let mut life = Lifetime {
            stored: e.stored,
            ttl: e.ttl,
            age: 0,
        };
        let age = life.age_at(now);
        if age < e.ttl {
            e.hits = e.hits.saturating_add(1);
            e.used = now;
            life.age = age;
            // Refresh popular names in the last tenth of their life, before clients see a miss.
            let prefetch = e.hits >= 3 && life.ending(age);
            return Cached::Fresh {
                answer: with_ttl(&e.answer, |t| t.saturating_sub(age).max(1)),
                life,
                prefetch,
            };
        }
        if now.saturating_duration_since(e.stored)
            < Duration::from_secs(u64::from(e.ttl)) + self.max_stale
        {
            return Cached::Stale(with_ttl(&e.answer, |_| STALE_TTL));
        }
        map.remove(&(name.clone(), rtype));
        Cached::Miss
    }

    pub(crate) fn put(&self, name: &LowerName, rtype: RecordType, answer: &Answer, now: Instant) {
        let Some(ttl) = cache_ttl(answer) else { return };
        let Ok(mut map) = self.entries.lock() else {
            return;
        };
        let key = (name.clone(), rtype);
        // A refreshed answer keeps its name's popularity (prefetch counts it).
        let hits = map.get(&key).map(|e| e.hits);
        if hits.is_none() && map.len() >= self.capacity {
            make_room(&mut map, self.capacity, now);
        }
        map.insert(
            key,
            Entry {
                answer: answer.clone(),
                stored: now,
                ttl,
                hits: hits.unwrap_or(0),
                used: now,
            },
        );
    }

    /// Capacity and stale bound, to tell whether a new configuration needs a new cache.
    pub(crate) fn settings(&self) -> (usize, Duration) {
        (self.capacity, self.max_stale)
    }
}

/// How long an answer may be cached: the smallest record TTL, or for negative answers
/// min(SOA TTL, SOA minimum); `None` for answers that must not be cached.
fn cache_ttl(a: &Answer) -> Option<u32> {
    let ttl = match a.rcode {
        ResponseCode::NoError if !a.answers.is_empty() => a.answers.iter().map(|r| r.ttl).min(),
        ResponseCode::NoError | ResponseCode::NXDomain => {
            a.soa.iter().find_map(|r| match &r.data {
                RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                _ => None,
            })
        }
        _ => None,
    }?;
    (ttl > 0).then_some(ttl.min(MAX_TTL))
}

fn with_ttl(a: &Answer, f: impl Fn(u32) -> u32) -> Answer {
    let mut out = a.clone();
    for r in out.answers.iter_mut().chain(out.soa.iter_mut()) {
        r.ttl = f(r.ttl);
    }
    out
}

#[cfg(test)]
mod tests {
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::{Name, Record};

    use super::*;

    fn name() -> LowerName {
        LowerName::new(&Name::from_ascii("www.example.com.").expect("name"))
    }

    fn a(ttl: u32) -> Answer {
        let r = Record::from_rdata(
            Name::from_ascii("www.example.com.").expect("name"),
            ttl,
            RData::A(A::new(1, 2, 3, 4)),
        );
        Answer::recursive(ResponseCode::NoError, vec![r], Vec::new())
    }

    #[tokio::test(start_paused = true)]
    async fn ttls_count_down_then_go_stale_then_expire() {
        let c = Cache::new(10, Duration::from_secs(60));
        let t0 = Instant::now();
        c.put(&name(), RecordType::A, &a(100), t0);
        let Cached::Fresh { answer, .. } =
            c.get(&name(), RecordType::A, t0 + Duration::from_secs(40))
        else {
            panic!("not fresh")
        };
        assert_eq!(answer.answers[0].ttl, 60);
        let Cached::Stale(s) = c.get(&name(), RecordType::A, t0 + Duration::from_secs(130)) else {
            panic!("not stale")
        };
        assert_eq!(s.answers[0].ttl, STALE_TTL);
        assert!(matches!(
            c.get(&name(), RecordType::A, t0 + Duration::from_secs(161)),
            Cached::Miss
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn negative_answers_use_the_soa_minimum_and_servfail_is_not_cached() {
        let c = Cache::new(10, Duration::ZERO);
        let t0 = Instant::now();
        let apex = Name::from_ascii("example.com.").expect("name");
        let soa = SOA::new(apex.clone(), apex.clone(), 1, 1, 1, 1, 30);
        let nx = Answer::recursive(
            ResponseCode::NXDomain,
            Vec::new(),
            vec![Record::from_rdata(apex, 300, RData::SOA(soa))],
        );
        c.put(&name(), RecordType::A, &nx, t0);
        assert!(matches!(
            c.get(&name(), RecordType::A, t0 + Duration::from_secs(29)),
            Cached::Fresh { .. }
        ));
        assert!(matches!(
            c.get(&name(), RecordType::A, t0 + Duration::from_secs(31)),
            Cached::Miss
        ));
        c.put(&name(), RecordType::AAAA, &Answer::servfail(), t0);
        assert!(matches!(c.get(&name(), RecordType::AAAA, t0), Cached::Miss));
    }

    #[tokio::test(start_paused = true)]
    async fn popular_names_are_prefetched_near_expiry_and_capacity_is_bounded() {
        let c = Cache::new(1, Duration::ZERO);
        let t0 = Instant::now();
        c.put(&name(), RecordType::A, &a(100), t0);
        for _ in 0..3 {
            let _ = c.get(&name(), RecordType::A, t0);
        }
        assert!(matches!(
            c.get(&name(), RecordType::A, t0 + Duration::from_secs(95)),
            Cached::Fresh { prefetch: true, .. }
        ));
        c.put(&name(), RecordType::AAAA, &a(100), t0);
        assert_eq!(c.entries.lock().map(|m| m.len()).unwrap_or(0), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_cache_drops_stale_answers_then_the_least_recently_used() {
        let c = Cache::new(20, Duration::from_secs(86_400));
        let t0 = Instant::now();
        let ms = |t: Instant, i: usize| t + Duration::from_millis(u64::try_from(i).expect("small"));
        let host = |i: usize| {
            LowerName::new(&Name::from_ascii(format!("h{i}.example.com.")).expect("name"))
        };
        let kept = |i: usize| {
            c.entries
                .lock()
                .map(|m| m.contains_key(&(host(i), RecordType::A)))
                .unwrap_or(false)
        };
        // Ten short-lived answers (stale after 10 s), then ten long ones.
        for i in 0..20 {
            let ttl = if i < 10 { 10 } else { 3600 };
            c.put(&host(i), RecordType::A, &a(ttl), ms(t0, i));
        }
        // Full: the stale ten go first, and every new answer is kept.
        let t1 = t0 + Duration::from_secs(60);
        for i in 20..30 {
            c.put(&host(i), RecordType::A, &a(3600), ms(t1, i));
        }
        assert!((0..10).all(|i| !kept(i)), "stale answers stayed");
        assert!(
            (10..30).all(kept),
            "live answers were dropped for stale ones"
        );
        // Full of live answers: the least recently used go; names in use stay.
        let t2 = t0 + Duration::from_secs(120);
        for i in [10, 11] {
            assert!(matches!(
                c.get(&host(i), RecordType::A, t2),
                Cached::Fresh { .. }
            ));
        }
        for i in 30..40 {
            c.put(&host(i), RecordType::A, &a(3600), ms(t2, i));
        }
        assert!(kept(10) && kept(11), "names in use were dropped");
        assert!((30..40).all(kept), "new answers were dropped");
        assert!(!kept(12), "the least recently used stayed");
        assert!(c.entries.lock().map(|m| m.len()).unwrap_or(usize::MAX) <= 20);
    }
}
