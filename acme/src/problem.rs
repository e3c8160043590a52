//! What an ACME server says when it refuses: its problem documents (RFC 8555 §6.7, RFC 7807)
//! as data. The type is an enum for the decisions that depend on it (a forgotten account, a
//! refused `replaces`); the detail and subproblems stay as the server wrote them, for people.

use std::fmt;

/// The URN prefix of the problem types ACME registers.
const ACME_URN: &str = "urn:ietf:params:acme:error:";

/// A problem's type: those labgate decides on, and every other as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemType {
    /// `accountDoesNotExist` (RFC 8555 §6.7): the CA does not know the account (a reset, a
    /// test CA's restart). labgate makes a new one.
    AccountDoesNotExist,
    /// `alreadyReplaced` (RFC 9773 §7.4): the certificate the order `replaces` already has
    /// a replacement order. labgate orders again without `replaces`.
    AlreadyReplaced,
    /// `malformed` (RFC 8555 §6.7): the request was malformed. CAs also refuse a `replaces`
    /// they cannot match this way (Boulder for a certificate it does not know).
    Malformed,
    /// Any other type, its URI as sent (`urn:ietf:params:acme:error:rateLimited`, or a CA's
    /// own).
    Other(String),
}

impl ProblemType {
    /// The type a problem document names by `uri`.
    pub fn parse(uri: &str) -> Self {
        match uri.strip_prefix(ACME_URN) {
            Some("accountDoesNotExist") => Self::AccountDoesNotExist,
            Some("alreadyReplaced") => Self::AlreadyReplaced,
            Some("malformed") => Self::Malformed,
            _ => Self::Other(uri.to_owned()),
        }
    }
}

impl fmt::Display for ProblemType {
    /// ACME's types by their short name (`malformed`, `rateLimited`), any other by its URI.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AccountDoesNotExist => "accountDoesNotExist",
            Self::AlreadyReplaced => "alreadyReplaced",
            Self::Malformed => "malformed",
            Self::Other(uri) => uri.strip_prefix(ACME_URN).unwrap_or(uri),
        })
    }
}

/// A problem document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Its type; `None` when the document names none.
    pub kind: Option<ProblemType>,
    /// The server's explanation, for people.
    pub detail: Option<String>,
    /// Problems with single identifiers of the request (RFC 8555 §6.7.1).
    pub subproblems: Vec<Subproblem>,
}

/// A problem with one identifier of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subproblem {
    /// Its type; `None` when it names none.
    pub kind: Option<ProblemType>,
    /// The identifier (a DNS name), when the server names it.
    pub identifier: Option<String>,
    /// The server's explanation.
    pub detail: Option<String>,
}

impl Problem {
    /// Whether the problem is of type `kind`.
    pub fn is(&self, kind: &ProblemType) -> bool {
        self.kind.as_ref() == Some(kind)
    }
}

impl From<&instant_acme::Problem> for Problem {
    fn from(p: &instant_acme::Problem) -> Self {
        Self {
            kind: p.r#type.as_deref().map(ProblemType::parse),
            detail: p.detail.clone(),
            subproblems: p
                .subproblems
                .iter()
                .map(|s| Subproblem {
                    kind: s.r#type.as_deref().map(ProblemType::parse),
                    identifier: s
                        .identifier
                        .as_ref()
                        .map(|i| i.authorized(false).to_string()),
                    detail: s.detail.clone(),
                })
                .collect(),
        }
    }
}

impl fmt::Display for Problem {
    /// `type: detail`, then each subproblem's detail: `rejectedIdentifier: Error creating new
    /// order; Invalid character in DNS name`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Some(kind) => write!(f, "{kind}: ")?,
            None => f.write_str("error: ")?,
        }
        f.write_str(self.detail.as_deref().unwrap_or("no detail"))?;
        for detail in self.subproblems.iter().filter_map(|s| s.detail.as_deref()) {
            write!(f, "; {detail}")?;
        }
        Ok(())
    }
}

/// A challenge the CA failed to validate, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeFailure {
    /// The identifier of the challenge's authorization.
    pub identifier: String,
    /// The CA's problem with it.
    pub problem: Problem,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_types_are_read_by_their_acme_urn() {
        // (type URI as sent, type, as shown)
        let table = [
            (
                "urn:ietf:params:acme:error:accountDoesNotExist",
                ProblemType::AccountDoesNotExist,
                "accountDoesNotExist",
            ),
            (
                "urn:ietf:params:acme:error:alreadyReplaced",
                ProblemType::AlreadyReplaced,
                "alreadyReplaced",
            ),
            (
                "urn:ietf:params:acme:error:malformed",
                ProblemType::Malformed,
                "malformed",
            ),
            (
                "urn:ietf:params:acme:error:rateLimited",
                ProblemType::Other("urn:ietf:params:acme:error:rateLimited".into()),
                "rateLimited",
            ),
            // Only ACME's namespace: the same word elsewhere is another type.
            (
                "urn:example:malformed",
                ProblemType::Other("urn:example:malformed".into()),
                "urn:example:malformed",
            ),
            (
                "malformed",
                ProblemType::Other("malformed".into()),
                "malformed",
            ),
            // Types are case-sensitive.
            (
                "urn:ietf:params:acme:error:Malformed",
                ProblemType::Other("urn:ietf:params:acme:error:Malformed".into()),
                "Malformed",
            ),
            ("", ProblemType::Other(String::new()), ""),
        ];
        for (uri, kind, shown) in table {
            assert_eq!(ProblemType::parse(uri), kind, "{uri}");
            assert_eq!(kind.to_string(), shown, "{uri}");
        }
    }

    fn sent(json: &str) -> Problem {
        let p: instant_acme::Problem = serde_json::from_str(json).expect("a problem document");
        Problem::from(&p)
    }

    #[test]
    fn a_problem_reads_as_type_detail_and_each_subproblem() {
        // (document as sent, as shown)
        let table = [
            (
                r#"{"type": "urn:ietf:params:acme:error:unauthorized", "detail": "EAB key invalid", "status": 401}"#,
                "unauthorized: EAB key invalid",
            ),
            (r#"{"detail": "no type"}"#, "error: no type"),
            (
                r#"{"type": "urn:ietf:params:acme:error:malformed"}"#,
                "malformed: no detail",
            ),
            (
                r#"{"type": "urn:ietf:params:acme:error:rejectedIdentifier", "detail": "Error creating new order",
                    "subproblems": [
                        {"type": "urn:ietf:params:acme:error:rejectedIdentifier", "detail": "Invalid character in DNS name",
                         "identifier": {"type": "dns", "value": "a_b.example.com"}},
                        {"type": "urn:ietf:params:acme:error:caa"},
                        {"detail": "CAA record forbids issuance", "identifier": {"type": "dns", "value": "c.example.com"}}
                    ]}"#,
                "rejectedIdentifier: Error creating new order; Invalid character in DNS name; CAA record forbids issuance",
            ),
        ];
        for (json, shown) in table {
            assert_eq!(sent(json).to_string(), shown, "{json}");
        }
        let p = sent(table[3].0);
        assert_eq!(
            p.subproblems[0],
            Subproblem {
                kind: Some(ProblemType::Other(
                    "urn:ietf:params:acme:error:rejectedIdentifier".into()
                )),
                identifier: Some("a_b.example.com".into()),
                detail: Some("Invalid character in DNS name".into()),
            }
        );
        assert!(
            sent(r#"{"type": "urn:ietf:params:acme:error:malformed"}"#).is(&ProblemType::Malformed)
        );
        assert!(!sent(r#"{"detail": "x"}"#).is(&ProblemType::Malformed));
    }
}
