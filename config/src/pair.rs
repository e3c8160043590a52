//! Two labgates behind one virtual address (`[pair]`): both nodes' own addresses, the key their
//! certificates share, and the TSIG key that signs the challenge values one sends the other.
//! Which of the two addresses is this machine is found where labgate runs ([`this_node`]),
//! not in the configuration: both nodes read the same files.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hickory_proto::rr::Name;

use crate::Error;

/// The `[pair]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairSettings {
    /// Both nodes' own addresses, the first node first: it orders the certificates.
    pub nodes: [IpAddr; 2],
    /// The certificates' private key, the same file on both nodes.
    pub key_file: PathBuf,
    /// Signs the challenge values a node sends its peer, and checks the ones it receives.
    pub tsig: TsigKey,
    /// How long the second node waits for the first's certificate before ordering itself.
    pub takeover: Duration,
}

/// The default [`PairSettings::takeover`]: long enough for the first node to finish an
/// order, short enough that a dead first node costs a new certificate only minutes.
pub const DEFAULT_TAKEOVER: Duration = Duration::from_secs(15 * 60);

/// Which of a pair's nodes this machine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    /// This node's address.
    pub me: IpAddr,
    /// The other node's address.
    pub peer: IpAddr,
    /// Whether this is the first node (the one that orders without waiting).
    pub first: bool,
}

/// This machine's role in `nodes`: the address `given` on the command line, else the one
/// address of the two that `is_local` says is this machine's.
///
/// # Errors
/// [`Error::NotANode`] when `given` is not a node, [`Error::WhichNode`] when not exactly one
/// address is local.
pub fn this_node(
    nodes: [IpAddr; 2],
    given: Option<IpAddr>,
    is_local: impl Fn(IpAddr) -> bool,
) -> Result<Role, Error> {
    let index = match given {
        Some(ip) => nodes
            .iter()
            .position(|n| *n == ip)
            .ok_or(Error::NotANode { given: ip, nodes })?,
        None => match (is_local(nodes[0]), is_local(nodes[1])) {
            (true, false) => 0,
            (false, true) => 1,
            (a, b) => {
                return Err(Error::WhichNode {
                    local: usize::from(a) + usize::from(b),
                    nodes,
                });
            }
        },
    };
    Ok(Role {
        me: nodes[index],
        peer: nodes[1 - index],
        first: index == 0,
    })
}

/// A TSIG key (RFC 8945): its name, algorithm and secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    /// The key's name, as both ends know it.
    pub name: Name,
    /// Its HMAC.
    pub algorithm: TsigAlgorithm,
    /// The shared secret.
    pub secret: Vec<u8>,
}

impl fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SECURITY: the secret stays out of logs.
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// The TSIG algorithms labgate signs and checks with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsigAlgorithm {
    /// `hmac-sha256`, what `tsig-keygen` makes by default.
    HmacSha256,
    /// `hmac-sha512`.
    HmacSha512,
}

impl TsigAlgorithm {
    /// The same algorithm as hickory names it, to sign and check with.
    pub fn hickory(self) -> hickory_proto::rr::rdata::tsig::TsigAlgorithm {
        use hickory_proto::rr::rdata::tsig::TsigAlgorithm as Hickory;
        match self {
            Self::HmacSha256 => Hickory::HmacSha256,
            Self::HmacSha512 => Hickory::HmacSha512,
        }
    }

    /// The algorithm's name in a BIND key statement.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HmacSha256 => "hmac-sha256",
            Self::HmacSha512 => "hmac-sha512",
        }
    }
}

/// The key name when a file holds the secret alone.
pub const DEFAULT_TSIG_NAME: &str = "labgate-pair";

impl TsigKey {
    /// The key in `text` (any length: how strong a secret must be is its user's call): a BIND `key "name" { algorithm …; secret "…"; };` statement, as
    /// `tsig-keygen` prints it, or a base64 secret alone (named [`DEFAULT_TSIG_NAME`],
    /// `hmac-sha256`). The error never quotes the text.
    ///
    /// # Errors
    /// What is wrong with the text, to follow "is not a TSIG key file: ".
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        // The statement's clauses: `key "n" {`, `algorithm a`, `secret "s"` (a key may be
        // named `acme-secret`: clauses, not words).
        let clauses: Vec<&str> = text.split([';', '{', '}', '\n']).map(str::trim).collect();
        let clause = |word: &str| {
            clauses.iter().find_map(|c| {
                c.strip_prefix(word)
                    .filter(|r| r.starts_with([' ', '\t', '"']))
                    .map(|r| r.trim().trim_matches('"'))
            })
        };
        let (name, algorithm, b64) = match clause("secret") {
            Some(secret) => (
                clause("key").unwrap_or(DEFAULT_TSIG_NAME),
                clause("algorithm").unwrap_or("hmac-sha256"),
                secret,
            ),
            None => (DEFAULT_TSIG_NAME, "hmac-sha256", text.trim()),
        };
        let algorithm = match algorithm.to_ascii_lowercase().as_str() {
            "hmac-sha256" => TsigAlgorithm::HmacSha256,
            "hmac-sha512" => TsigAlgorithm::HmacSha512,
            _ => return Err("its algorithm is neither hmac-sha256 nor hmac-sha512"),
        };
        let name = Name::from_ascii(name).map_err(|_| "its key name is not a DNS name")?;
        let secret = STANDARD
            .decode(b64)
            .map_err(|_| "no base64 secret in it: write the `key` statement tsig-keygen prints, or the secret alone")?;
        Ok(Self {
            name,
            algorithm,
            secret,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    /// (given, local addresses, this node and whether it is the first, or the error)
    type NodeRow<'a> = (
        Option<&'a str>,
        &'a [&'a str],
        Result<(&'a str, bool), &'a str>,
    );
    /// The key's name and algorithm, or the error.
    type KeyRow<'a> = Result<(&'a str, TsigAlgorithm), &'a str>;

    #[test]
    fn the_node_is_the_one_given_else_the_one_local_address() {
        let nodes = [ip("10.0.0.11"), ip("10.0.0.12")];
        let local =
            |mine: &'static [&'static str]| move |a: IpAddr| mine.iter().any(|m| ip(m) == a);
        // (given, local addresses, this node or the error)
        let table: &[NodeRow<'_>] = &[
            (None, &["10.0.0.11"], Ok(("10.0.0.11", true))),
            (None, &["10.0.0.12", "127.0.0.1"], Ok(("10.0.0.12", false))),
            (
                Some("10.0.0.12"),
                &["10.0.0.11", "10.0.0.12"],
                Ok(("10.0.0.12", false)),
            ),
            (Some("10.0.0.11"), &[], Ok(("10.0.0.11", true))),
            (
                None,
                &["10.0.0.11", "10.0.0.12"],
                Err(
                    "both of `[pair] nodes` (10.0.0.11, 10.0.0.12) are this machine's: say which node this is with `--node ADDRESS` (net.ipv4.ip_nonlocal_bind = 1 makes every address look local)",
                ),
            ),
            (
                None,
                &["10.0.0.13"],
                Err(
                    "neither of `[pair] nodes` (10.0.0.11, 10.0.0.12) is this machine's: say which node this is with `--node ADDRESS`",
                ),
            ),
            (
                Some("10.0.0.13"),
                &["10.0.0.11"],
                Err(
                    "`--node 10.0.0.13` is not one of `[pair] nodes` (10.0.0.11, 10.0.0.12): give one of them",
                ),
            ),
        ];
        for (given, mine, want) in table {
            let got = this_node(nodes, given.map(ip), local(mine));
            match (got, want) {
                (Ok(role), Ok((me, first))) => {
                    assert_eq!(
                        (role.me, role.first),
                        (ip(me), *first),
                        "{given:?} {mine:?}"
                    );
                    assert_ne!(role.peer, role.me);
                }
                (Err(e), Err(text)) => assert_eq!(e.to_string(), *text),
                (got, want) => panic!("{given:?} {mine:?}: {got:?}, not {want:?}"),
            }
        }
    }

    #[test]
    fn tsig_keys_come_as_bind_statements_or_alone() {
        let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==";
        let bytes = STANDARD.decode(secret).expect("b64");
        // (file, name, algorithm) or the error
        let table: &[(String, KeyRow<'_>)] = &[
            (
                format!("{secret}\n"),
                Ok((DEFAULT_TSIG_NAME, TsigAlgorithm::HmacSha256)),
            ),
            (
                format!(
                    "key \"gate-pair\" {{\n\talgorithm hmac-sha512;\n\tsecret \"{secret}\";\n}};\n"
                ),
                Ok(("gate-pair", TsigAlgorithm::HmacSha512)),
            ),
            (
                format!("key \"acme-secret\" {{ algorithm HMAC-SHA256; secret \"{secret}\"; }};"),
                Ok(("acme-secret", TsigAlgorithm::HmacSha256)),
            ),
            (
                format!("key \"k\" {{ algorithm hmac-md5; secret \"{secret}\"; }};"),
                Err("its algorithm is neither hmac-sha256 nor hmac-sha512"),
            ),
            (
                "not base64 at all".into(),
                Err(
                    "no base64 secret in it: write the `key` statement tsig-keygen prints, or the secret alone",
                ),
            ),
        ];
        for (text, want) in table {
            match (TsigKey::parse(text), want) {
                (Ok(k), Ok((name, algorithm))) => {
                    assert_eq!(k.name.to_ascii(), *name, "{text}");
                    assert_eq!(k.algorithm, *algorithm, "{text}");
                    assert_eq!(k.secret, bytes, "{text}");
                    assert!(
                        !format!("{k:?}").contains("secret:"),
                        "Debug hides the secret"
                    );
                }
                (Err(e), Err(w)) => assert_eq!(e, *w, "{text}"),
                (got, want) => panic!("{text}: {got:?}, not {want:?}"),
            }
        }
    }
}
