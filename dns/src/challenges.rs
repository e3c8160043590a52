//! ACME DNS-01 challenge values: answered as authoritative TXT records to any client (the CA's
//! resolvers are in no network), only while published. Two kinds of values: this node's own,
//! published by its `builtin` provider, which stay until it removes them; and the ones a pair's
//! peer sends (`update`), which expire after [`PEER_LIFETIME`] and of which at most
//! [`MAX_PEER_NAMES`] names × [`MAX_PEER_VALUES`] values are held. Everything else about the
//! name is the views' business.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use tokio::time::Instant;

use crate::answer::Answer;

/// The first label of every challenge name.
pub(crate) const LABEL: &[u8] = b"_acme-challenge";

/// How long a value the peer sent is answered: an order takes minutes, and a peer that died
/// midway must not leave its values for ever.
pub(crate) const PEER_LIFETIME: Duration = Duration::from_secs(60 * 60);
/// Most names holding values from the peer at once.
pub(crate) const MAX_PEER_NAMES: usize = 256;
/// Most values from the peer at one name (an apex and its wildcard share a name: two per
/// order, so eight is four orders of the same name at once).
pub(crate) const MAX_PEER_VALUES: usize = 8;

/// The table's key: questions carry fully qualified names.
fn key(name: &Name) -> LowerName {
    let mut n = name.clone();
    n.set_fqdn(true);
    LowerName::new(&n)
}

/// One published value.
#[derive(Debug, Clone)]
struct Value {
    text: Arc<str>,
    /// When a value from the peer stops being answered; `None` for this node's own.
    expires: Option<Instant>,
}

impl Value {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| now < at)
    }

    fn is_peers(&self) -> bool {
        self.expires.is_some()
    }
}

/// A change the pair's peer asked for (RFC 2136 update RRs, checked by `update::decide`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// Add a TXT value at a name (class IN).
    Add(LowerName, Arc<str>),
    /// Delete one TXT value at a name (class NONE, RFC 2136 §2.5.4).
    Remove(LowerName, Arc<str>),
    /// Delete every TXT value at a name (class ANY, RFC 2136 §2.5.2).
    Clear(LowerName),
}

impl Change {
    /// The name it changes.
    pub(crate) fn name(&self) -> &LowerName {
        match self {
            Self::Add(n, _) | Self::Remove(n, _) | Self::Clear(n) => n,
        }
    }
}

/// Applying the peer's changes would hold more than [`MAX_PEER_NAMES`] names or
/// [`MAX_PEER_VALUES`] values at a name: nothing was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

/// Published challenge values by name.
#[derive(Debug, Default)]
pub struct Challenges {
    values: RwLock<HashMap<LowerName, Vec<Value>>>,
}

impl Challenges {
    /// Adds `value` at `name` (alongside others: an apex and its wildcard share a name). This
    /// node's own values never expire.
    pub fn add(&self, name: &Name, value: &str) {
        if let Ok(mut v) = self.values.write() {
            v.entry(key(name)).or_default().push(Value {
                text: Arc::from(value),
                expires: None,
            });
        }
    }

    /// Removes one of this node's own `value`s at `name` (never the peer's); the name goes
    /// when its last value does.
    pub fn remove(&self, name: &Name, value: &str) {
        let key = key(name);
        if let Ok(mut v) = self.values.write()
            && let Some(values) = v.get_mut(&key)
        {
            if let Some(i) = values
                .iter()
                .position(|x| !x.is_peers() && &*x.text == value)
            {
                values.remove(i);
            }
            if values.is_empty() {
                v.remove(&key);
            }
        }
    }

    /// The answer for a TXT question at a published name.
    pub(crate) fn answer(&self, name: &LowerName, qtype: RecordType) -> Option<Answer> {
        // The clock is read only for a name that holds values: the query path pays a hash
        // lookup for TXT questions, as before values could expire.
        self.answer_with(name, qtype, Instant::now)
    }

    /// [`Challenges::answer`] at `now` (tests move the clock).
    fn answer_with(
        &self,
        name: &LowerName,
        qtype: RecordType,
        now: impl FnOnce() -> Instant,
    ) -> Option<Answer> {
        if qtype != RecordType::TXT {
            return None;
        }
        let values = self.values.read().ok()?;
        let found = values.get(name)?;
        let now = now();
        let owner = Name::from(name);
        // TTL 0: a CA retrying after a failed attempt must see the new value.
        let answers: Vec<Record> = found
            .iter()
            .filter(|v| v.live(now))
            .map(|v| {
                Record::from_rdata(
                    owner.clone(),
                    0,
                    RData::TXT(TXT::new(vec![v.text.to_string()])),
                )
            })
            .collect();
        // A name whose values all expired is gone until the next update sweeps it.
        (!answers.is_empty()).then_some(Answer {
            rcode: ResponseCode::NoError,
            authoritative: true,
            recursion_available: false,
            answers,
            soa: Vec::new(),
            blocked: None,
        })
    }

    /// Applies the peer's `changes` received at `now`, all or none: values it adds expire
    /// [`PEER_LIFETIME`] later (a value added again lives on from now), its deletions touch
    /// its own values only, and expired values are swept first.
    ///
    /// # Errors
    /// [`Full`] when the result would hold more than the limits allow; nothing is applied.
    pub(crate) fn apply(&self, changes: &[Change], now: Instant) -> Result<(), Full> {
        let Ok(mut map) = self.values.write() else {
            // A writer panicked: refuse rather than serve from a torn table.
            return Err(Full);
        };
        map.retain(|_, values| {
            values.retain(|v| v.live(now));
            !values.is_empty()
        });
        // The names changed, as they will be: checked whole before any is stored.
        let mut changed: HashMap<LowerName, Vec<Value>> = HashMap::new();
        for change in changes {
            let values = match changed.entry(change.name().clone()) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(map.get(change.name()).cloned().unwrap_or_default()),
            };
            match change {
                Change::Add(_, text) => {
                    let expires = Some(now + PEER_LIFETIME);
                    match values.iter_mut().find(|v| v.text == *text) {
                        // RFC 2136 §3.4.2.2: a duplicate is not added twice.
                        Some(v) if v.is_peers() => v.expires = expires,
                        Some(_) => {}
                        None => values.push(Value {
                            text: Arc::clone(text),
                            expires,
                        }),
                    }
                }
                Change::Remove(_, text) => {
                    values.retain(|v| !(v.is_peers() && v.text == *text));
                }
                Change::Clear(_) => values.retain(|v| !v.is_peers()),
            }
        }
        let peer_values = |values: &[Value]| values.iter().filter(|v| v.is_peers()).count();
        if changed
            .values()
            .any(|values| peer_values(values) > MAX_PEER_VALUES)
        {
            return Err(Full);
        }
        let names = map
            .iter()
            .filter(|(name, values)| !changed.contains_key(*name) && peer_values(values) > 0)
            .count()
            + changed
                .values()
                .filter(|values| peer_values(values) > 0)
                .count();
        if names > MAX_PEER_NAMES {
            return Err(Full);
        }
        for (name, values) in changed {
            if values.is_empty() {
                map.remove(&name);
            } else {
                map.insert(name, values);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lower(n: &str) -> LowerName {
        LowerName::new(&Name::from_ascii(n).expect("name"))
    }

    fn texts(c: &Challenges, name: &str, now: Instant) -> Vec<String> {
        c.answer_with(&lower(name), RecordType::TXT, || now)
            .map(|a| a.answers.iter().map(|r| r.data.to_string()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn values_are_found_by_their_question_whatever_the_case_and_go_one_by_one() {
        let c = Challenges::default();
        let name = Name::from_ascii("_acme-challenge.lab.example.test").expect("name");
        c.add(&name, "one");
        c.add(&name, "two");
        let question =
            LowerName::new(&Name::from_ascii("_ACME-challenge.Lab.example.test.").expect("name"));
        let a = c.answer(&question, RecordType::TXT).expect("published");
        assert_eq!(a.answers.len(), 2);
        assert!(c.answer(&question, RecordType::A).is_none(), "TXT only");
        c.remove(&name, "one");
        assert_eq!(
            c.answer(&question, RecordType::TXT)
                .expect("one left")
                .answers
                .len(),
            1
        );
        c.remove(&name, "two");
        assert!(c.answer(&question, RecordType::TXT).is_none());
    }

    #[test]
    fn the_peers_values_expire_after_an_hour_and_this_nodes_never() {
        let c = Challenges::default();
        let t0 = Instant::now();
        let at = "_acme-challenge.lab.test.";
        c.add(&Name::from_ascii(at).expect("name"), "mine");
        c.apply(&[Change::Add(lower(at), "peer".into())], t0)
            .expect("applied");
        assert_eq!(texts(&c, at, t0), ["mine", "peer"]);
        let almost = t0 + PEER_LIFETIME - Duration::from_secs(1);
        assert_eq!(texts(&c, at, almost), ["mine", "peer"]);
        let later = t0 + PEER_LIFETIME;
        assert_eq!(texts(&c, at, later), ["mine"], "expired, not answered");
        // Sent again, a value lives on from then.
        c.apply(&[Change::Add(lower(at), "peer".into())], almost)
            .expect("applied");
        assert_eq!(texts(&c, at, later), ["mine", "peer"]);
        // A peer-only name whose values expired answers nothing at all.
        let other = "_acme-challenge.other.lab.test.";
        c.apply(&[Change::Add(lower(other), "v".into())], t0)
            .expect("applied");
        assert!(
            c.answer_with(&lower(other), RecordType::TXT, || later)
                .is_none()
        );
        // The next update sweeps it.
        c.apply(&[], later).expect("applied");
        assert!(c.values.read().expect("lock").get(&lower(other)).is_none());
    }

    #[test]
    fn the_peer_adds_deletes_and_clears_only_its_own_values() {
        let c = Challenges::default();
        let now = Instant::now();
        let at = "_acme-challenge.lab.test.";
        c.add(&Name::from_ascii(at).expect("name"), "mine");
        let n = || lower(at);
        // (changes, the values answered after them)
        let table: &[(Vec<Change>, &[&str])] = &[
            (
                vec![Change::Add(n(), "a".into()), Change::Add(n(), "b".into())],
                &["mine", "a", "b"],
            ),
            (vec![Change::Add(n(), "a".into())], &["mine", "a", "b"]),
            (vec![Change::Add(n(), "mine".into())], &["mine", "a", "b"]),
            (vec![Change::Remove(n(), "a".into())], &["mine", "b"]),
            (vec![Change::Remove(n(), "mine".into())], &["mine", "b"]),
            (vec![Change::Clear(n())], &["mine"]),
            (
                vec![
                    Change::Add(n(), "c".into()),
                    Change::Remove(n(), "c".into()),
                ],
                &["mine"],
            ),
        ];
        for (changes, want) in table {
            c.apply(changes, now).expect("applied");
            assert_eq!(texts(&c, at, now), *want, "{changes:?}");
        }
        // This node's own removal leaves the peer's value of the same text.
        c.apply(&[Change::Add(n(), "same".into())], now)
            .expect("applied");
        c.add(&Name::from_ascii(at).expect("name"), "same");
        c.remove(&Name::from_ascii(at).expect("name"), "same");
        assert_eq!(texts(&c, at, now), ["mine", "same"]);
    }

    #[test]
    fn beyond_the_limits_nothing_of_an_update_is_applied() {
        let c = Challenges::default();
        let now = Instant::now();
        let name = |i: usize| lower(&format!("_acme-challenge.n{i}.lab.test."));
        let fill: Vec<Change> = (0..MAX_PEER_NAMES)
            .map(|i| Change::Add(name(i), "v".into()))
            .collect();
        c.apply(&fill, now).expect("exactly the limit");
        // One name more, with a change that would fit: neither is applied.
        let over = [
            Change::Add(name(0), "w".into()),
            Change::Add(name(MAX_PEER_NAMES), "v".into()),
        ];
        assert_eq!(c.apply(&over, now), Err(Full));
        assert_eq!(texts(&c, "_acme-challenge.n0.lab.test.", now), ["v"]);
        assert!(
            texts(
                &c,
                &format!("_acme-challenge.n{MAX_PEER_NAMES}.lab.test."),
                now
            )
            .is_empty()
        );
        // Freeing a name in the same update makes room.
        let swap = [
            Change::Clear(name(1)),
            Change::Add(name(MAX_PEER_NAMES), "v".into()),
        ];
        c.apply(&swap, now).expect("a name freed first");
        // This node's own names do not count.
        c.add(
            &Name::from_ascii("_acme-challenge.mine.lab.test.").expect("name"),
            "x",
        );
        c.apply(&[Change::Add(name(0), "w".into())], now)
            .expect("own names do not count");
        // Values at one name.
        let many: Vec<Change> = (0..=MAX_PEER_VALUES)
            .map(|i| Change::Add(name(2), format!("v{i}").into()))
            .collect();
        assert_eq!(c.apply(&many[1..], now), Err(Full), "nine values");
        assert_eq!(texts(&c, "_acme-challenge.n2.lab.test.", now), ["v"]);
        c.apply(&many[2..], now)
            .expect("eight values: v and seven more");
        // Expired values make room.
        let later = now + PEER_LIFETIME;
        c.apply(&[Change::Add(name(MAX_PEER_NAMES + 1), "v".into())], later)
            .expect("the rest expired");
    }
}
