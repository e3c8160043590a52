//! Cloudflare Access tokens: RS256 JWTs verified against the team's signing keys (JWKS),
//! fetched in the background and cached; an unknown key id triggers a refetch (at most one
//! per [`REFETCH_EVERY`] per team), which handles key rotation. `aud`, `iss`, `exp` and `nbf`
//! are checked with [`LEEWAY`]. Anything else is refused with a counted reason.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use labgate_config::Snapshot;
use labgate_config::route::AccessApp;

/// Clock difference tolerated on `exp` and `nbf`.
pub const LEEWAY: u64 = 30;
/// Shortest time between two fetches of one team's keys.
pub const REFETCH_EVERY: Duration = Duration::from_secs(10);
/// Longest a key fetch may take: finding the host may take the upstreams' 3.5 s and then
/// the system resolver's 5 s.
const FETCH_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest key set accepted.
const MAX_JWKS: usize = 256 * 1024;

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

/// Downloads a key set. The binary supplies it, with the same client (and name resolution)
/// as its other downloads: this crate opens no outbound connection of its own.
#[async_trait]
pub trait Fetch: Send + Sync {
    /// The body of a successful GET of `url`, at most `limit` bytes; else why not.
    async fn get(&self, url: &str, limit: usize) -> Result<Bytes, String>;
}

/// The teams' signing keys, by JWKS URL.
pub struct AccessKeys {
    sets: ArcSwap<KeySets>,
    /// When each URL was last fetched (the rate bound).
    fetched: Mutex<HashMap<Arc<str>, Instant>>,
    fetch: Arc<dyn Fetch>,
}

impl std::fmt::Debug for AccessKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKeys").finish_non_exhaustive()
    }
}

impl AccessKeys {
    /// No keys yet; they are downloaded with `fetch`.
    pub fn new(fetch: Arc<dyn Fetch>) -> Self {
        Self {
            sets: ArcSwap::from_pointee(KeySets::default()),
            fetched: Mutex::new(HashMap::new()),
            fetch,
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
        match tokio::time::timeout(FETCH_TIMEOUT, self.fetch(url)).await {
            Ok(Ok(keys)) => {
                tracing::info!("Cloudflare Access keys from {url}: {} key(s)", keys.len());
                let mut sets = self.sets.load().0.clone();
                sets.insert(Arc::clone(url), Arc::new(keys));
                self.sets.store(Arc::new(KeySets(sets)));
                true
            }
            Ok(Err(e)) => {
                tracing::warn!(
                    "cannot fetch Cloudflare Access keys from {url}: {e}; tokens signed by new keys are refused until it works"
                );
                false
            }
            Err(_) => {
                tracing::warn!(
                    "Cloudflare Access keys from {url}: no answer within {} s",
                    FETCH_TIMEOUT.as_secs()
                );
                false
            }
        }
    }

    async fn fetch(&self, url: &str) -> Result<KeySet, String> {
        let body = self.fetch.get(url, MAX_JWKS).await?;
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| format!("not a JWKS: {e}"))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), Ok(key)) = (&jwk.common.key_id, DecodingKey::from_jwk(jwk)) else {
                continue;
            };
            keys.insert(kid.clone(), key);
        }
        if keys.is_empty() {
            return Err("no usable key in the set".into());
        }
        Ok(keys)
    }
}
