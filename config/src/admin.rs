//! Who may use the admin endpoint (`[admin]`): a pure decision over the client's address and
//! the request's fields, shared by every admin path but the supervisor's probes.
//!
//! ```text
//! peer address ──┐
//! Cf-Connecting-IP ──▶ decide ──▶ Allow | Forbidden (403, what to change) | Unauthorized (401)
//! X-Forwarded-For ┤
//! Authorization ──┘
//! ```
//!
//! The rules, in order:
//! 1. The connection's peer must be admitted: a loopback address (`127.0.0.0/8`, `::1`, and
//!    IPv4-mapped loopback), whatever network it falls in, or an address in a network that
//!    `[admin] allow` names.
//! 2. A request carrying `Cf-Connecting-IP` came through the Cloudflare Tunnel (labgate's
//!    proxy removes that field on every other listener) and is refused: the admin endpoint
//!    judges clients by address, which internet users have none of here.
//! 3. A request carrying `X-Forwarded-For` is judged a second time, by the last address of
//!    the field: the client labgate's proxy forwarded (see [`AdminPolicy::decide`]).
//! 4. With `auth_file`, the request must carry one of its credentials.

use std::fmt;
use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use crate::network::{NetworkId, NetworkSet, Networks};

/// Paths every client may ask for, without address check or credentials: `/healthz` and
/// `/readyz`. A supervisor's probe (systemd, a container runtime, a kubelet on the node's
/// address) carries no credentials and may come from outside loopback; the probes answer one
/// bit of liveness and nothing of the configuration, so they stay open.
pub const PROBES: [&str; 2] = ["/healthz", "/readyz"];

/// Whether a path is one of the open [`PROBES`].
pub fn is_probe(path: &str) -> bool {
    PROBES.contains(&path)
}

/// The admin endpoint's access policy, compiled from `[admin]`. The default admits loopback
/// clients only, without credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminPolicy {
    /// Networks whose clients are admitted, besides loopback.
    pub allow: NetworkSet,
    /// Credentials one of which every request must carry, from `auth_file`.
    pub auth: Option<Credentials>,
}

/// What the admin endpoint does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Serve it.
    Allow,
    /// 403: the client may not use the admin endpoint, whatever it sends.
    Forbidden(Forbidden),
    /// 401 with `WWW-Authenticate` ([`Credentials::challenges`]): credentials missing or wrong.
    Unauthorized,
}

/// Why a client is refused with 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Forbidden {
    /// Its address is neither loopback nor in a network `[admin] allow` names.
    Network {
        /// The address judged.
        client: IpAddr,
        /// Its network, if it is in one.
        network: Option<NetworkId>,
        /// Whether the address came from `X-Forwarded-For` (labgate's proxy forwarded it).
        forwarded: bool,
    },
    /// It came through the Cloudflare Tunnel.
    Tunnel,
    /// The last address of `X-Forwarded-For` is not an address.
    UnreadableForwardedFor,
}

impl AdminPolicy {
    /// What a request from `peer` with these fields (name, value; names in any case) gets.
    ///
    /// SECURITY: `X-Forwarded-For` only ever narrows. A `[[service]]` whose backend is the
    /// admin endpoint makes labgate's proxy the peer (a loopback address, or labgate's own
    /// address on a network), and the proxy always writes the client it judged as the last
    /// address of `X-Forwarded-For` (replacing any the client sent, unless the client is a
    /// `server.trusted_proxies` address). Judging that address too applies this policy to the
    /// original client: a guest that the service's `allow` lets through still gets 403 when
    /// `[admin] allow` leaves guests out. Anyone else who writes the field is judged by their
    /// own address first, so writing it can lose access but never gain it. This holds for
    /// every way a service can reach the endpoint (a loopback or LAN address, a host name,
    /// a port chosen at start), which a check at compile time could not see.
    pub fn decide<'h>(
        &self,
        networks: &Networks,
        peer: IpAddr,
        fields: impl IntoIterator<Item = (&'h str, &'h [u8])>,
    ) -> Decision {
        if let Some(f) = self.judge(networks, peer, false) {
            return Decision::Forbidden(f);
        }
        let mut forwarded_for = None;
        let mut authorization = None;
        for (name, value) in fields {
            if name.eq_ignore_ascii_case("cf-connecting-ip") {
                return Decision::Forbidden(Forbidden::Tunnel);
            } else if name.eq_ignore_ascii_case("x-forwarded-for") {
                forwarded_for = Some(value);
            } else if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value);
            }
        }
        if let Some(value) = forwarded_for {
            // The last field's last address: the one labgate's proxy appended.
            let last = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.rsplit(',').next())
                .and_then(|a| a.trim().parse::<IpAddr>().ok());
            let Some(client) = last else {
                return Decision::Forbidden(Forbidden::UnreadableForwardedFor);
            };
            if let Some(f) = self.judge(networks, client, true) {
                return Decision::Forbidden(f);
            }
        }
        match &self.auth {
            Some(c) if !c.admits(authorization) => Decision::Unauthorized,
            _ => Decision::Allow,
        }
    }

    /// `None` when `client` is admitted by address, else why not.
    fn judge(&self, networks: &Networks, client: IpAddr, forwarded: bool) -> Option<Forbidden> {
        let client = client.to_canonical();
        if client.is_loopback() {
            return None;
        }
        let network = networks.lookup(client).map(|m| m.network);
        match network {
            Some(n) if self.allow.contains(n) => None,
            _ => Some(Forbidden::Network {
                client,
                network,
                forwarded,
            }),
        }
    }
}

impl Forbidden {
    /// The 403 body: why, and what to change in the configuration.
    pub fn message(&self, networks: &Networks, policy: &AdminPolicy) -> String {
        let allowed = if policy.allow == NetworkSet::EMPTY {
            "loopback only".to_owned()
        } else {
            format!("loopback and {}", networks.names(policy.allow))
        };
        match *self {
            Self::Network {
                client,
                network,
                forwarded,
            } => {
                let who = if forwarded {
                    format!("client {client} (forwarded by labgate's proxy)")
                } else {
                    format!("client {client}")
                };
                let fix = match network {
                    Some(n) => {
                        let name = &networks.get(n).name;
                        format!(
                            "{who} is in network `{name}`; to let it in, add `{name}` to `allow` \
                             under `[admin]`"
                        )
                    }
                    None => format!(
                        "{who} is in no network; to let it in, add its range to a \
                         `[[network]]` and that network to `allow` under `[admin]`"
                    ),
                };
                format!("forbidden: {fix} (the admin endpoint admits: {allowed})\n")
            }
            Self::Tunnel => format!(
                "forbidden: requests through the Cloudflare Tunnel never reach the admin \
                 endpoint; remove `tunnel` from the `allow` of the service that points here \
                 (the admin endpoint admits: {allowed})\n"
            ),
            Self::UnreadableForwardedFor => format!(
                "forbidden: the last entry of X-Forwarded-For is not an address; send none, or \
                 the client's address (the admin endpoint admits: {allowed})\n"
            ),
        }
    }
}

/// The credentials of `auth_file`, kept as SHA-256 digests: a request's credential is hashed
/// and compared with each digest in constant time, so neither a credential's bytes nor its
/// length show in the time an answer takes. `Debug` shows counts only.
///
/// The file holds one credential per line; blank lines and lines starting with `#` are
/// skipped, and whitespace around a line is removed:
/// - `user:password` (a line with a `:`): HTTP basic credentials, for browsers;
/// - anything else: a bearer token (`Authorization: Bearer <token>`), without whitespace.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    tokens: Vec<[u8; 32]>,
    basic: Vec<[u8; 32]>,
}

/// Why an `auth_file` is not a credentials file: the line, never its contents (a secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialsError {
    /// Not UTF-8.
    NotText,
    /// No credential at all: every request would get 401.
    Empty,
    /// A token with whitespace inside, at this 1-based line.
    TokenWithSpace(usize),
    /// `user:password` with an empty user or password, at this 1-based line.
    EmptyUserOrPassword(usize),
}

impl fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotText => f.write_str("it is not UTF-8 text"),
            Self::Empty => f.write_str("it holds no credential"),
            Self::TokenWithSpace(l) => write!(f, "line {l}: a token may not contain whitespace"),
            Self::EmptyUserOrPassword(l) => {
                write!(
                    f,
                    "line {l}: `user:password` needs both a user and a password"
                )
            }
        }
    }
}

impl Credentials {
    /// Reads an `auth_file`'s contents.
    ///
    /// # Errors
    /// [`CredentialsError`] naming the line at fault.
    pub fn parse(bytes: &[u8]) -> Result<Self, CredentialsError> {
        let text = std::str::from_utf8(bytes).map_err(|_| CredentialsError::NotText)?;
        let mut c = Self {
            tokens: Vec::new(),
            basic: Vec::new(),
        };
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once(':') {
                Some((user, password)) if user.is_empty() || password.is_empty() => {
                    return Err(CredentialsError::EmptyUserOrPassword(i + 1));
                }
                Some(_) => c.basic.push(digest(line.as_bytes())),
                None if line.contains(char::is_whitespace) => {
                    return Err(CredentialsError::TokenWithSpace(i + 1));
                }
                None => c.tokens.push(digest(line.as_bytes())),
            }
        }
        if c.tokens.is_empty() && c.basic.is_empty() {
            return Err(CredentialsError::Empty);
        }
        Ok(c)
    }

    /// Whether an `Authorization` value carries one of the credentials.
    pub fn admits(&self, authorization: Option<&[u8]>) -> bool {
        let Some(value) = authorization.and_then(|v| std::str::from_utf8(v).ok()) else {
            return false;
        };
        let Some((scheme, rest)) = value.trim().split_once(' ') else {
            return false;
        };
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            any_equal(&self.tokens, &digest(rest.as_bytes()))
        } else if scheme.eq_ignore_ascii_case("basic") {
            STANDARD
                .decode(rest)
                .is_ok_and(|pair| any_equal(&self.basic, &digest(&pair)))
        } else {
            false
        }
    }

    /// The `WWW-Authenticate` values of a 401: `Basic` when the file has `user:password`
    /// lines (browsers then ask for them), `Bearer` when it has tokens.
    pub fn challenges(&self) -> impl Iterator<Item = &'static str> {
        let basic =
            (!self.basic.is_empty()).then_some("Basic realm=\"labgate admin\", charset=\"UTF-8\"");
        let bearer = (!self.tokens.is_empty()).then_some("Bearer realm=\"labgate admin\"");
        basic.into_iter().chain(bearer)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("tokens", &self.tokens.len())
            .field("basic", &self.basic.len())
            .finish()
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Whether any of `known` equals `presented`, looking at every byte of every entry.
fn any_equal(known: &[[u8; 32]], presented: &[u8; 32]) -> bool {
    let mut found = 0u8;
    for k in known {
        let diff = k
            .iter()
            .zip(presented)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        // 1 when every byte matched, else 0, without a branch on the bytes.
        found |= u8::from(std::hint::black_box(diff) == 0);
    }
    found == 1
}

// The tables compile TOML through the `testing` module, which is above this one: in a file of
// their own they are a module on top of the graph, not part of this one.
#[cfg(test)]
mod tests;
