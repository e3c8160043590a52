//! What the tunnel listener trusts and nothing else does: the client address Cloudflare
//! reports (`Cf-Connecting-IP`) and the other `Cf-*` fields. On every other listener those
//! fields are removed before a request goes on, so no LAN client can claim another address
//! or an Access identity.

use std::net::IpAddr;
use std::sync::Arc;

use labgate_config::route::Service;

use crate::ConnInfo;
use crate::cf_access::{KeySets, Reason};
use crate::decide::Via;

/// Fields Cloudflare sets on tunnel traffic; removed from requests on every other listener.
pub const CLOUDFLARE_FIELDS: [&str; 9] = [
    "cf-connecting-ip",
    "cf-connecting-ipv6",
    "cf-ray",
    "cf-ipcountry",
    "cf-visitor",
    "cf-worker",
    "cf-access-jwt-assertion",
    "cf-access-authenticated-user-email",
    "true-client-ip",
];

/// The identity field Cloudflare Access sets. labgate passes it on only when it verified the
/// token itself (as a service's `identity_header`): anyone can write it, even through the
/// tunnel for an application Access does not guard.
pub const ACCESS_IDENTITY: &str = "cf-access-authenticated-user-email";

/// Whether a request field is removed before a request goes on: an unverified identity
/// always, every Cloudflare field unless the request came through the tunnel.
pub fn strip(name: &str, via: Via) -> bool {
    // PERF: every field of every request passes here; all but one of these names start `cf-`.
    let candidate = name
        .as_bytes()
        .get(..3)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"cf-"))
        || name.eq_ignore_ascii_case("true-client-ip");
    candidate
        && (name.eq_ignore_ascii_case(ACCESS_IDENTITY)
            || (via == Via::Direct && is_cloudflare_field(name)))
}

/// Whether a request field is one only the tunnel may carry.
pub fn is_cloudflare_field(name: &str) -> bool {
    CLOUDFLARE_FIELDS
        .iter()
        .any(|f| name.eq_ignore_ascii_case(f))
}

/// The client a tunnel request stands for: `Cf-Connecting-IP` when it holds an address, else
/// the connector itself.
pub fn real_client(connector: IpAddr, cf_connecting_ip: Option<&[u8]>) -> IpAddr {
    cf_connecting_ip
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<IpAddr>().ok())
        .map_or(connector, |ip| ip.to_canonical())
}

/// The Access token of a request: the `Cf-Access-Jwt-Assertion` field, else the
/// `CF_Authorization` cookie.
pub fn access_token<'a>(
    mut field: impl FnMut(&str) -> Option<&'a [u8]>,
    cookies: impl Iterator<Item = &'a [u8]>,
) -> Option<&'a str> {
    if let Some(v) = field("cf-access-jwt-assertion") {
        return std::str::from_utf8(v).ok().map(str::trim);
    }
    for header in cookies {
        let Ok(header) = std::str::from_utf8(header) else {
            continue;
        };
        for pair in header.split(';') {
            if let Some(v) = pair.trim().strip_prefix("CF_Authorization=") {
                return Some(v.trim());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reported_address_is_used_only_when_it_is_one() {
        let connector: IpAddr = "127.0.0.1".parse().expect("ip");
        assert_eq!(
            real_client(connector, Some(b"203.0.113.7")),
            "203.0.113.7".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(
            real_client(connector, Some(b"2001:db8::1")),
            "2001:db8::1".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(real_client(connector, Some(b"not an address")), connector);
        assert_eq!(real_client(connector, None), connector);
        assert!(is_cloudflare_field("CF-Connecting-IP") && !is_cloudflare_field("cookie"));
        assert!(strip("cf-ray", Via::Direct) && !strip("cf-ray", Via::Tunnel));
        assert!(strip("Cf-Access-Authenticated-User-Email", Via::Tunnel));
        assert!(strip("True-Client-IP", Via::Direct) && !strip("cookie", Via::Direct));
    }

    #[test]
    fn the_token_comes_from_the_field_or_the_cookie() {
        let none = |_: &str| None;
        let cookies = [&b"a=1; CF_Authorization=tok.en.sig; b=2"[..]];
        assert_eq!(access_token(none, cookies.into_iter()), Some("tok.en.sig"));
        let field = |n: &str| (n == "cf-access-jwt-assertion").then_some(&b"from.the.field"[..]);
        assert_eq!(
            access_token(field, cookies.into_iter()),
            Some("from.the.field")
        );
        assert_eq!(access_token(none, std::iter::empty()), None);
    }
}

/// What a forwarded request carries beyond the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passage {
    /// The client it stands for: the peer, or through the tunnel `Cf-Connecting-IP`.
    pub client: IpAddr,
    /// The identity Cloudflare Access verified, for the service's identity header.
    pub identity: Option<String>,
    /// Cloudflare's request id, for the log.
    pub ray: Option<String>,
}

/// The tunnel's part of admitting a request `decide` forwards.
#[derive(Debug)]
pub enum Gate {
    /// Forward it.
    Pass(Passage),
    /// 403: the Access token is refused.
    Refuse(Reason),
    /// The token names a key not fetched yet: fetch the team's keys, then admit again.
    RefreshKeys(Arc<str>),
}

/// Admits a request to `svc` on a connection `info`: through the tunnel, the client from
/// `Cf-Connecting-IP` and, when the service requires Access, a token `keys` verify at `now`
/// (Unix seconds). `field` finds a request field by lower-case name; `cookies` yields the
/// `Cookie` fields.
pub fn admit<'a>(
    keys: &KeySets,
    now: u64,
    svc: &Service,
    info: &ConnInfo,
    mut field: impl FnMut(&str) -> Option<&'a [u8]>,
    cookies: impl Iterator<Item = &'a [u8]>,
    keys_refreshed: bool,
) -> Gate {
    if info.via == Via::Direct {
        return Gate::Pass(Passage {
            client: info.client,
            identity: None,
            ray: None,
        });
    }
    let client = real_client(info.client, field("cf-connecting-ip"));
    let ray = field("cf-ray").map(|r| String::from_utf8_lossy(r).into_owned());
    let identity = match &svc.access {
        None => None,
        Some(app) => match keys.verify(app, access_token(&mut field, cookies), now) {
            Ok(id) => Some(id),
            Err(Reason::UnknownKey) if !keys_refreshed => {
                return Gate::RefreshKeys(Arc::clone(&app.jwks_url));
            }
            Err(r) => {
                tracing::info!(client = %client, ray = ray.as_deref().unwrap_or("-"), service = %svc.name, "Cloudflare Access token refused: {}", r.label());
                return Gate::Refuse(r);
            }
        },
    };
    Gate::Pass(Passage {
        client,
        identity,
        ray,
    })
}
