//! ACME DNS-01 challenge values published by labgate's `builtin` provider: answered as
//! authoritative TXT records to any client (the CA's resolvers are in no network), only while
//! published. Everything else about the name is the views' business.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use crate::answer::Answer;

/// The first label of every challenge name.
pub(crate) const LABEL: &[u8] = b"_acme-challenge";

/// The table's key: questions carry fully qualified names.
fn key(name: &Name) -> LowerName {
    let mut n = name.clone();
    n.set_fqdn(true);
    LowerName::new(&n)
}

/// Published challenge values by name.
#[derive(Debug, Default)]
pub struct Challenges {
    values: RwLock<HashMap<LowerName, Vec<Arc<str>>>>,
}

impl Challenges {
    /// Adds `value` at `name` (alongside others: an apex and its wildcard share a name).
    pub fn add(&self, name: &Name, value: &str) {
        if let Ok(mut v) = self.values.write() {
            v.entry(key(name)).or_default().push(Arc::from(value));
        }
    }

    /// Removes one `value` at `name`; the name goes when its last value does.
    pub fn remove(&self, name: &Name, value: &str) {
        let key = key(name);
        if let Ok(mut v) = self.values.write()
            && let Some(values) = v.get_mut(&key)
        {
            if let Some(i) = values.iter().position(|x| &**x == value) {
                values.remove(i);
            }
            if values.is_empty() {
                v.remove(&key);
            }
        }
    }

    /// The answer for a TXT question at a published name.
    pub(crate) fn answer(&self, name: &LowerName, qtype: RecordType) -> Option<Answer> {
        if qtype != RecordType::TXT {
            return None;
        }
        let values = self.values.read().ok()?;
        let found = values.get(name)?;
        let owner = Name::from(name);
        Some(Answer {
            rcode: ResponseCode::NoError,
            authoritative: true,
            recursion_available: false,
            // TTL 0: a CA retrying after a failed attempt must see the new value.
            answers: found
                .iter()
                .map(|v| {
                    Record::from_rdata(owner.clone(), 0, RData::TXT(TXT::new(vec![v.to_string()])))
                })
                .collect(),
            soa: Vec::new(),
            blocked: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
