//! Cloudflare Access tokens: RS256 JWTs verified against the team's signing keys (JWKS),
//! fetched in the background and cached; an unknown key id triggers a refetch (at most one
//! per [`REFETCH_EVERY`] per team), which handles key rotation. `aud`, `iss`, `exp` and `nbf`
//! are checked with [`LEEWAY`]. Anything else is refused with a counted reason.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use labgate_config::Snapshot;
use labgate_config::route::AccessApp;
use labgate_outbound::{Client, Limits};

use crate::Error;
use tokio::time::Instant;

/// Clock difference tolerated on `exp` and `nbf`.
pub const LEEWAY: u64 = 30;
/// Shortest time between two fetches of one team's keys.
pub const REFETCH_EVERY: Duration = Duration::from_secs(10);
/// What a key fetch may take: the largest key set accepted, and the longest the download may
/// take (finding the host may take the upstreams' 3.5 s and then the system resolver's 5 s).
const FETCH_LIMITS: Limits = Limits {
    body: 256 * 1024,
    time: Duration::from_secs(15),
};

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No `Cf-Access-Jwt-Assertion` field nor `CF_Authorization` cookie.
    Missing,
    /// Not a JWT.
    Malformed,
    /// Signed with an algorithm other than RS256 (`none`, HS256 with the public key...).
    Algorithm,
    /// Signed by a key the team does not publish.
    UnknownKey,
    /// The signature does not verify.
    Signature,
    /// Past `exp`.
    Expired,
    /// Before `nbf`.
    NotYetValid,
    /// `aud` does not name this application.
    Audience,
    /// `iss` is not the team.
    Issuer,
    /// No e-mail (nor service-token name) to pass on.
    NoIdentity,
}

impl Reason {
    /// Every reason, in counter order.
    pub const ALL: [Self; 10] = [
        Self::Missing,
        Self::Malformed,
        Self::Algorithm,
        Self::UnknownKey,
        Self::Signature,
        Self::Expired,
        Self::NotYetValid,
        Self::Audience,
        Self::Issuer,
        Self::NoIdentity,
    ];

    /// The label in metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Algorithm => "algorithm",
            Self::UnknownKey => "unknown_key",
            Self::Signature => "signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Audience => "audience",
            Self::Issuer => "issuer",
            Self::NoIdentity => "no_identity",
        }
    }
}

#[derive(serde::Deserialize)]
struct Claims {
    email: Option<String>,
    /// Service tokens carry their name here instead of an e-mail.
    common_name: Option<String>,
    /// Expiry, Unix seconds (required).
    exp: u64,
    /// Not before, Unix seconds.
    nbf: Option<u64>,
}

/// One team's keys by key id.
type KeySet = HashMap<String, DecodingKey>;

/// Every team's keys by JWKS URL, as fetched at one moment: what a request is checked with.
#[derive(Default)]
pub struct KeySets(HashMap<Arc<str>, Arc<KeySet>>);

impl std::fmt::Debug for KeySets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl KeySets {
    /// Checks `token` for `app` at `now` (Unix seconds): the verified identity (e-mail, or a
    /// service token's name). Pure: the caller reads the clock.
    ///
    /// # Errors
    /// The reason it is refused.
    pub fn verify(&self, app: &AccessApp, token: Option<&str>, now: u64) -> Result<String, Reason> {
        let token = token.filter(|t| !t.is_empty()).ok_or(Reason::Missing)?;
        let header = decode_header(token).map_err(|_| Reason::Malformed)?;
        if header.alg != Algorithm::RS256 {
            return Err(Reason::Algorithm);
        }
        let kid = header.kid.ok_or(Reason::UnknownKey)?;
        let key = self
            .0
            .get(&app.jwks_url)
            .and_then(|s| s.get(&kid))
            .ok_or(Reason::UnknownKey)?;
        let mut v = Validation::new(Algorithm::RS256);
        v.set_audience(&[&*app.aud]);
        v.set_issuer(&[&*app.issuer]);
        v.set_required_spec_claims(&["exp", "aud", "iss"]);
        // The times are checked below against `now`, not jsonwebtoken's own clock.
        v.validate_exp = false;
        v.validate_nbf = false;
        let data = decode::<Claims>(token, key, &v).map_err(|e| match e.kind() {
            ErrorKind::InvalidAudience => Reason::Audience,
            ErrorKind::InvalidIssuer => Reason::Issuer,
            ErrorKind::InvalidSignature => Reason::Signature,
            ErrorKind::InvalidAlgorithm => Reason::Algorithm,
            _ => Reason::Malformed,
        })?;
        let claims = data.claims;
        if claims.exp.saturating_add(LEEWAY) < now {
            return Err(Reason::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(LEEWAY))
        {
            return Err(Reason::NotYetValid);
        }
        claims
            .email
            .or(claims.common_name)
            .filter(|e| !e.is_empty() && !e.contains(['\r', '\n']))
            .ok_or(Reason::NoIdentity)
    }
}

/// The teams' signing keys, by JWKS URL.
pub struct AccessKeys {
    sets: ArcSwap<KeySets>,
    /// When each URL was last fetched (the rate bound).
    fetched: Mutex<HashMap<Arc<str>, Instant>>,
    /// labgate's own client, as for its other downloads.
    client: Client,
}

impl std::fmt::Debug for AccessKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKeys").finish_non_exhaustive()
    }
}

impl AccessKeys {
    /// No keys yet; they are downloaded with `client`.
    pub fn new(client: Client) -> Self {
        Self {
            sets: ArcSwap::from_pointee(KeySets::default()),
            fetched: Mutex::new(HashMap::new()),
            client,
        }
    }

    /// The keys fetched so far, for [`KeySets::verify`].
    pub fn current(&self) -> arc_swap::Guard<Arc<KeySets>> {
        self.sets.load()
    }

    /// Fetches the keys of every Access application in `s` not fetched yet, side by side,
    /// and returns when every fetch has ended (each is bounded by its timeout). The fetches
    /// are owned here: dropping the future cancels them.
    pub async fn prefetch(self: &Arc<Self>, s: &Snapshot) {
        let mut fetches = tokio::task::JoinSet::new();
        for svc in &s.services {
            let Some(app) = &svc.access else { continue };
            if !self.sets.load().0.contains_key(&app.jwks_url) {
                let (keys, url) = (Arc::clone(self), Arc::clone(&app.jwks_url));
                fetches.spawn(async move { keys.refresh(&url).await });
            }
        }
        while fetches.join_next().await.is_some() {}
    }

    /// Fetches `url`'s keys again unless that happened less than [`REFETCH_EVERY`] ago;
    /// whether a new set was stored.
    pub async fn refresh(&self, url: &Arc<str>) -> bool {
        {
            let Ok(mut fetched) = self.fetched.lock() else {
                return false;
            };
            if fetched
                .get(url)
                .is_some_and(|t| t.elapsed() < REFETCH_EVERY)
            {
                return false;
            }
            fetched.insert(Arc::clone(url), Instant::now());
        }
        match self.fetch(url).await {
            Ok(keys) => {
                tracing::info!("Cloudflare Access keys from {url}: {} key(s)", keys.len());
                // Read, copy and swap as one step: two teams' keys fetched at once both stay.
                let keys = Arc::new(keys);
                self.sets.rcu(|current| {
                    let mut sets = current.0.clone();
                    sets.insert(Arc::clone(url), Arc::clone(&keys));
                    KeySets(sets)
                });
                true
            }
            Err(e) => {
                tracing::warn!(
                    error = &e as &dyn std::error::Error,
                    "tokens signed by new keys are refused until the keys can be fetched"
                );
                false
            }
        }
    }

    async fn fetch(&self, url: &Arc<str>) -> Result<KeySet, Error> {
        let unusable = |what: String| Error::AccessKeySet {
            url: Arc::clone(url),
            what,
        };
        let parsed = url::Url::parse(url).map_err(|e| unusable(format!("not a URL: {e}")))?;
        let fetched = self.client.get(&parsed, FETCH_LIMITS).await;
        let body = fetched.map_err(|source| Error::AccessKeysFetch {
            url: Arc::clone(url),
            source,
        })?;
        let set: JwkSet =
            serde_json::from_slice(&body).map_err(|e| unusable(format!("not a JWKS: {e}")))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), Ok(key)) = (&jwk.common.key_id, DecodingKey::from_jwk(jwk)) else {
                continue;
            };
            keys.insert(kid.clone(), key);
        }
        if keys.is_empty() {
            return Err(unusable("no usable key in the set".into()));
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    use super::*;

    /// Two RSA keys made once with `openssl genrsa 2048` (ring signs RSA but cannot make a
    /// key): PKCS#1 DER, private and public. Test keys, trusted by nothing.
    const RSA1: &[u8] = include_bytes!("../testdata/access_rsa1.der");
    const RSA1_PUB: &[u8] = include_bytes!("../testdata/access_rsa1.pub.der");
    const RSA2: &[u8] = include_bytes!("../testdata/access_rsa2.der");
    const RSA2_PUB: &[u8] = include_bytes!("../testdata/access_rsa2.pub.der");
    const JWKS: &str = "https://team.cloudflareaccess.com/cdn-cgi/access/certs";
    const NOW: u64 = 1_800_000_000;

    fn app() -> AccessApp {
        AccessApp {
            team: "team".into(),
            aud: "aud-tag".into(),
            issuer: "https://team.cloudflareaccess.com".into(),
            jwks_url: JWKS.into(),
            identity_header: "x-user".into(),
        }
    }

    /// The team's published keys by key id.
    fn published(keys: &[(&str, &[u8])]) -> KeySets {
        let set = keys
            .iter()
            .map(|(kid, der)| ((*kid).to_owned(), DecodingKey::from_rsa_der(der)))
            .collect();
        KeySets(HashMap::from([(Arc::from(JWKS), Arc::new(set))]))
    }

    /// Claims Access would sign, with `change` applied (a `null` removes the claim).
    fn claims(change: serde_json::Value) -> serde_json::Value {
        let mut c = json!({
            "aud": ["aud-tag"],
            "iss": "https://team.cloudflareaccess.com",
            "email": "ada@lab.test",
            "exp": NOW + 600,
            "nbf": NOW - 60,
        });
        for (k, v) in change.as_object().expect("an object") {
            match v {
                serde_json::Value::Null => c.as_object_mut().expect("object").remove(k),
                v => c
                    .as_object_mut()
                    .expect("object")
                    .insert(k.clone(), v.clone()),
            };
        }
        c
    }

    fn rs256(kid: Option<&str>, der: &[u8], change: serde_json::Value) -> String {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = kid.map(str::to_owned);
        encode(&h, &claims(change), &EncodingKey::from_rsa_der(der)).expect("signs")
    }

    fn signed(alg: Algorithm, key: &EncodingKey) -> String {
        let mut h = Header::new(alg);
        h.kid = Some("k1".into());
        encode(&h, &claims(json!({})), key).expect("signs")
    }

    /// Every way a token is taken or refused, one decision a row.
    #[test]
    fn verify() {
        let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("EC key");
        let ec = EncodingKey::from_ec_der(&ec.serialize_der());
        // HS256 with the RSA public key as the shared secret: the classic confusion attack.
        let hs = EncodingKey::from_secret(RSA1_PUB);
        let k1 = |change| rs256(Some("k1"), RSA1, change);
        let unsigned = format!(
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIiwia2lkIjoiazEifQ.{}.",
            k1(json!({})).split('.').nth(1).expect("claims part")
        );
        let cases: Vec<(&str, Option<String>, Result<&str, Reason>)> = vec![
            ("valid", Some(k1(json!({}))), Ok("ada@lab.test")),
            (
                "a service token names itself",
                Some(k1(json!({"email": null, "common_name": "backup.token"}))),
                Ok("backup.token"),
            ),
            ("no token", None, Err(Reason::Missing)),
            ("an empty token", Some(String::new()), Err(Reason::Missing)),
            ("not a JWT", Some("garbage".into()), Err(Reason::Malformed)),
            (
                "expired beyond the leeway",
                Some(k1(json!({"exp": NOW - LEEWAY - 1}))),
                Err(Reason::Expired),
            ),
            (
                "expired within the leeway",
                Some(k1(json!({"exp": NOW - LEEWAY}))),
                Ok("ada@lab.test"),
            ),
            (
                "not yet valid beyond the leeway",
                Some(k1(json!({"nbf": NOW + LEEWAY + 1}))),
                Err(Reason::NotYetValid),
            ),
            (
                "not yet valid within the leeway",
                Some(k1(json!({"nbf": NOW + LEEWAY}))),
                Ok("ada@lab.test"),
            ),
            (
                "no exp",
                Some(k1(json!({"exp": null}))),
                Err(Reason::Malformed),
            ),
            (
                "another application's audience",
                Some(k1(json!({"aud": ["other-app"]}))),
                Err(Reason::Audience),
            ),
            (
                "no audience",
                Some(k1(json!({"aud": null}))),
                Err(Reason::Malformed),
            ),
            (
                "another team",
                Some(k1(json!({"iss": "https://evil.cloudflareaccess.com"}))),
                Err(Reason::Issuer),
            ),
            (
                "a key the team does not publish",
                Some(rs256(Some("k9"), RSA1, json!({}))),
                Err(Reason::UnknownKey),
            ),
            (
                "no key id",
                Some(rs256(None, RSA1, json!({}))),
                Err(Reason::UnknownKey),
            ),
            (
                "another key under k1's id",
                Some(rs256(Some("k1"), RSA2, json!({}))),
                Err(Reason::Signature),
            ),
            (
                "HS256 keyed with the public key",
                Some(signed(Algorithm::HS256, &hs)),
                Err(Reason::Algorithm),
            ),
            (
                "ES256",
                Some(signed(Algorithm::ES256, &ec)),
                Err(Reason::Algorithm),
            ),
            (
                "HS256 under a key id the team does not publish: the algorithm is refused first",
                Some(
                    encode(&Header::new(Algorithm::HS256), &claims(json!({})), &hs).expect("signs"),
                ),
                Err(Reason::Algorithm),
            ),
            ("alg none", Some(unsigned), Err(Reason::Malformed)),
            (
                "no identity",
                Some(k1(json!({"email": null}))),
                Err(Reason::NoIdentity),
            ),
            (
                "an identity with a bare CR",
                Some(k1(json!({"email": "ada@lab.test\rx-admin: 1"}))),
                Err(Reason::NoIdentity),
            ),
            (
                "an identity with a bare LF",
                Some(k1(json!({"email": "ada@lab.test\nx-admin: 1"}))),
                Err(Reason::NoIdentity),
            ),
        ];
        let keys = published(&[("k1", RSA1_PUB)]);
        for (what, token, expected) in cases {
            let got = keys.verify(&app(), token.as_deref(), NOW);
            assert_eq!(got.as_deref().map_err(|e| *e), expected, "{what}");
        }
    }

    /// After the team rotates its keys, tokens signed by the new key verify and the old key's
    /// are unknown; another team's key set is never consulted.
    #[test]
    fn key_rotation() {
        let old = rs256(Some("k1"), RSA1, json!({}));
        let new = rs256(Some("k2"), RSA2, json!({}));
        type Row = (&'static str, KeySets, [Result<&'static str, Reason>; 2]);
        let cases: &[Row] = &[
            (
                "before",
                published(&[("k1", RSA1_PUB)]),
                [Ok("ada@lab.test"), Err(Reason::UnknownKey)],
            ),
            (
                "during",
                published(&[("k1", RSA1_PUB), ("k2", RSA2_PUB)]),
                [Ok("ada@lab.test"), Ok("ada@lab.test")],
            ),
            (
                "after",
                published(&[("k2", RSA2_PUB)]),
                [Err(Reason::UnknownKey), Ok("ada@lab.test")],
            ),
            (
                "another team's keys",
                KeySets(HashMap::from([(
                    Arc::from("https://other.cloudflareaccess.com/cdn-cgi/access/certs"),
                    Arc::new(HashMap::from([(
                        "k1".to_owned(),
                        DecodingKey::from_rsa_der(RSA1_PUB),
                    )])),
                )])),
                [Err(Reason::UnknownKey), Err(Reason::UnknownKey)],
            ),
        ];
        for (when, keys, expected) in cases {
            let got = [&old, &new].map(|t| keys.verify(&app(), Some(t), NOW));
            let got = got.each_ref().map(|r| r.as_deref().map_err(|e| *e));
            assert_eq!(got, *expected, "{when}");
        }
    }
}
