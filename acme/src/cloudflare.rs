//! Cloudflare's API v4 as a DNS provider: the zone found by name (walking up the record's
//! labels), one TXT record created per value (TTL 60) and deleted by its record id. The
//! token is read from a file and sent only in the `Authorization` header. Rate limits (429)
//! and server errors are retried a bounded number of times.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use labgate_outbound::{Client, Limits};
use serde_json::{Value, json};

use crate::error::report;
use crate::provider::{CHALLENGE_TTL, DnsProvider, Published};
use crate::{Error, secret};

/// What one API call may take: its answer (a page of zones or records) and time.
const CALL_LIMITS: Limits = Limits {
    body: 1 << 20,
    time: Duration::from_secs(30),
};
/// Attempts per call when Cloudflare rate-limits or fails.
const ATTEMPTS: u32 = 3;
/// Longest wait a `retry-after` may ask for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A Cloudflare account reached with a scoped API token.
pub struct Cloudflare {
    api: url::Url,
    token_file: PathBuf,
    client: Client,
    /// Zone ids by zone name, found once.
    zones: Mutex<HashMap<String, (String, String)>>,
}

impl std::fmt::Debug for Cloudflare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // SECURITY: only where the token is, never the token.
        f.debug_struct("Cloudflare")
            .field("api", &self.api.as_str())
            .field("token_file", &self.token_file)
            .finish_non_exhaustive()
    }
}

/// An API failure: HTTP status, Cloudflare's error codes and messages.
struct ApiError {
    status: StatusCode,
    codes: Vec<i64>,
    message: String,
}

impl Cloudflare {
    /// A provider calling `api` (Cloudflare's, or a local test server over plain HTTP on
    /// loopback) with the token in `token_file`, through labgate's own `client`.
    ///
    /// # Errors
    /// [`Error::Provider`] for a plain-HTTP URL off loopback (the token would travel in clear).
    pub fn new(api: url::Url, token_file: PathBuf, client: Client) -> Result<Self, Error> {
        if !token_may_travel_to(&api) {
            return Err(Error::Provider {
                provider: "cloudflare".into(),
                what: format!(
                    "api_url {api} must be https (plain http only for a loopback test server)"
                ),
            });
        }
        Ok(Self {
            api,
            token_file,
            client,
            zones: Mutex::new(HashMap::new()),
        })
    }

    fn fail(&self, what: impl Into<String>) -> Error {
        Error::Provider {
            provider: "cloudflare".into(),
            what: what.into(),
        }
    }

    /// One API call, retried on 429 (after `retry-after`) and 5xx; the `result` of a success.
    async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Value>,
    ) -> Result<Value, Result<ApiError, Error>> {
        let token = secret::token(&self.token_file).map_err(Err)?;
        let url = format!(
            "{}{path_and_query}",
            self.api.as_str().trim_end_matches('/')
        );
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = Request::builder()
                .method(method.clone())
                .uri(&url)
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header(header::ACCEPT, "application/json");
            let payload = match &body {
                Some(b) => {
                    req = req.header(header::CONTENT_TYPE, "application/json");
                    Bytes::from(b.to_string())
                }
                None => Bytes::new(),
            };
            let req = req
                .body(payload)
                .map_err(|e| Err(self.fail(e.to_string())))?;
            let (parts, bytes) = match self.client.send(req, CALL_LIMITS).await {
                Ok(rsp) => rsp.into_parts(),
                Err(labgate_outbound::Error::Timeout { after, .. }) => {
                    return Err(Err(self.fail(format!(
                        "{} did not answer within {} s",
                        self.api,
                        after.as_secs()
                    ))));
                }
                Err(e) if attempt < ATTEMPTS => {
                    tracing::debug!("cloudflare: {}; retrying", report(&e));
                    tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
                    continue;
                }
                Err(e) => {
                    return Err(Err(self.fail(format!(
                        "cannot reach {}: {}",
                        self.api,
                        report(&e)
                    ))));
                }
            };
            let status = parts.status;
            if (status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error())
                && attempt < ATTEMPTS
            {
                let asked = parts
                    .headers
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok());
                tokio::time::sleep(retry_wait(attempt, asked)).await;
                continue;
            }
            let envelope: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if status.is_success() && envelope["success"].as_bool() == Some(true) {
                return Ok(envelope["result"].clone());
            }
            let errors = envelope["errors"].as_array().cloned().unwrap_or_default();
            let mut codes = Vec::new();
            let mut messages = Vec::new();
            for e in errors.iter().chain(
                errors
                    .iter()
                    .flat_map(|e| e["error_chain"].as_array().into_iter().flatten()),
            ) {
                if let Some(c) = e["code"].as_i64() {
                    codes.push(c);
                }
                if let Some(m) = e["message"].as_str() {
                    messages.push(m.to_owned());
                }
            }
            return Err(Ok(ApiError {
                status,
                codes,
                message: if messages.is_empty() {
                    "no error details".into()
                } else {
                    messages.join("; ")
                },
            }));
        }
    }

    /// An API error as a sentence saying what to change.
    fn explain(&self, e: Result<ApiError, Error>, doing: &str) -> Error {
        let e = match e {
            Ok(e) => e,
            Err(e) => return e,
        };
        self.fail(format!(
            "Cloudflare answered {} {doing}: {} ({})",
            e.status.as_u16(),
            e.message,
            advice(e.status.as_u16(), &e.codes)
        ))
    }

    /// The zone holding `name`: (zone name, zone id), found by walking up its labels.
    async fn zone(&self, name: &str) -> Result<(String, String), Error> {
        for candidate in zone_candidates(name) {
            if let Some(z) = self
                .zones
                .lock()
                .ok()
                .and_then(|z| z.get(&candidate).cloned())
            {
                return Ok(z);
            }
            let result = self
                .call(
                    Method::GET,
                    &format!("/zones?name={candidate}&status=active&per_page=50"),
                    None,
                )
                .await
                .map_err(|e| self.explain(e, &format!("for zone {candidate}")))?;
            if let Some(id) = result[0]["id"].as_str() {
                let zone = (candidate.clone(), id.to_owned());
                if let Ok(mut z) = self.zones.lock() {
                    z.insert(candidate, zone.clone());
                }
                return Ok(zone);
            }
        }
        Err(self.fail(format!(
            "no zone holding {name} is visible to this token: the token needs Zone:Read on it, or the zone is not on Cloudflare"
        )))
    }

    /// The id of the TXT record at `name` holding `value`, if there is one.
    async fn find(
        &self,
        zone: &(String, String),
        name: &str,
        value: &str,
    ) -> Result<Option<String>, Error> {
        let result = self
            .call(
                Method::GET,
                &format!(
                    "/zones/{}/dns_records?type=TXT&name.exact={name}&per_page=100",
                    zone.1
                ),
                None,
            )
            .await
            .map_err(|e| self.explain(e, &format!("listing TXT records in zone {}", zone.0)))?;
        Ok(result
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["content"].as_str().map(|c| c.trim_matches('"')) == Some(value))
            .and_then(|r| r["id"].as_str().map(str::to_owned)))
    }
}

/// Whether the API token may be sent to `api`: over HTTPS, or plain HTTP to a loopback test
/// server (SECURITY: anywhere else the token would travel in clear).
fn token_may_travel_to(api: &url::Url) -> bool {
    let loopback = match api.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    };
    api.scheme() == "https" || (api.scheme() == "http" && loopback)
}

/// What to change after Cloudflare answered `status` with error `codes`.
fn advice(status: u16, codes: &[i64]) -> &'static str {
    match (status, codes) {
        (403, _) | (_, [10000, ..]) => {
            "the token needs Zone:DNS:Edit (and Zone:Read to find the zone) on this zone"
        }
        (_, c) if c.contains(&1000) => {
            "the API token is invalid or revoked: write a new one to token_file"
        }
        (_, c) if c.contains(&6003) || c.contains(&6111) => {
            "the API token is malformed: token_file must hold the token alone"
        }
        (_, c) if c.contains(&9021) => "Cloudflare refused the TTL",
        (429, _) => "rate limited: labgate will try again later",
        _ => "see Cloudflare's message",
    }
}

/// The wait before attempt `attempt + 1` after a 429 or 5xx: the `retry-after` seconds
/// Cloudflare `asked` for, else one second per attempt made, at most [`MAX_RETRY_AFTER`].
fn retry_wait(attempt: u32, asked: Option<&str>) -> Duration {
    asked
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or_else(
            || Duration::from_secs(u64::from(attempt)),
            Duration::from_secs,
        )
        .min(MAX_RETRY_AFTER)
}

/// The names that may be the zone holding `name`, closest first: every parent with at least
/// two labels (`_acme-challenge.app.lab.example.com` → `app.lab.example.com`,
/// `lab.example.com`, `example.com`).
fn zone_candidates(name: &str) -> impl Iterator<Item = String> + '_ {
    let labels: Vec<&str> = name.split('.').collect();
    (1..labels.len().saturating_sub(1)).map(move |i| labels[i..].join("."))
}

#[async_trait]
impl DnsProvider for Cloudflare {
    async fn publish(&self, name: &str, value: &str) -> Result<Published, Error> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let zone = self.zone(&name).await?;
        let record = json!({
            "type": "TXT",
            "name": name,
            "content": format!("\"{value}\""),
            "ttl": CHALLENGE_TTL,
            "comment": "labgate ACME dns-01 challenge",
        });
        let id = match self
            .call(
                Method::POST,
                &format!("/zones/{}/dns_records", zone.1),
                Some(record),
            )
            .await
        {
            Ok(result) => result["id"].as_str().map(str::to_owned),
            // Already there (a retried attempt): use the existing record.
            Err(Ok(e)) if e.codes.iter().any(|c| matches!(c, 81057 | 81058)) => {
                self.find(&zone, &name, value).await?
            }
            Err(e) => return Err(self.explain(e, &format!("for zone {}", zone.0))),
        };
        let id =
            id.ok_or_else(|| self.fail(format!("no record id for {name} in Cloudflare's answer")))?;
        Ok(Published {
            name,
            value: value.to_owned(),
            id: Some(id),
            zone: zone.1,
        })
    }

    async fn unpublish(&self, record: &Published) -> Result<(), Error> {
        let Some(id) = &record.id else {
            return Ok(());
        };
        match self
            .call(
                Method::DELETE,
                &format!("/zones/{}/dns_records/{id}", record.zone),
                None,
            )
            .await
        {
            Ok(_) => Ok(()),
            // Already gone.
            Err(Ok(e)) if e.status == StatusCode::NOT_FOUND || e.codes.contains(&81044) => Ok(()),
            Err(e) => Err(self.explain(e, &format!("deleting {}", record.name))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_goes_over_https_or_to_loopback_only() {
        // (API URL, the token may be sent there)
        let table = [
            ("https://api.cloudflare.com/client/v4", true),
            ("https://203.0.113.7/client/v4", true),
            ("http://127.0.0.1:8080/client/v4", true),
            ("http://127.8.9.10:8080", true),
            ("http://[::1]:8080/client/v4", true),
            ("http://localhost:8080", true),
            ("http://api.cloudflare.com/client/v4", false),
            ("http://192.0.2.1:8080", false),
            ("http://[2001:db8::1]:8080", false),
            ("http://localhost.example.com:8080", false),
            ("ftp://127.0.0.1/", false),
        ];
        for (url, allowed) in table {
            let api = url::Url::parse(url).expect("URL");
            assert_eq!(token_may_travel_to(&api), allowed, "{url}");
        }
    }

    #[test]
    fn each_refusal_names_what_to_change() {
        // (HTTP status, Cloudflare's error codes, advice begins with)
        let table: [(u16, &[i64], &str); 10] = [
            (403, &[], "the token needs Zone:DNS:Edit"),
            (400, &[10000], "the token needs Zone:DNS:Edit"),
            (403, &[1000], "the token needs Zone:DNS:Edit"),
            (400, &[1000], "the API token is invalid or revoked"),
            (400, &[7003, 1000], "the API token is invalid or revoked"),
            (400, &[6003], "the API token is malformed"),
            (400, &[6111], "the API token is malformed"),
            (400, &[9021], "Cloudflare refused the TTL"),
            (429, &[], "rate limited"),
            (500, &[81053], "see Cloudflare's message"),
        ];
        for (status, codes, starts) in table {
            let got = advice(status, codes);
            assert!(got.starts_with(starts), "{status} {codes:?}: {got}");
        }
    }

    #[test]
    fn a_retry_waits_as_asked_within_a_bound() {
        let s = Duration::from_secs;
        // (attempts made, retry-after, wait)
        let table = [
            (1, None, s(1)),
            (2, None, s(2)),
            (1, Some("5"), s(5)),
            (1, Some(" 7 "), s(7)),
            (1, Some("0"), s(0)),
            (2, Some("3600"), MAX_RETRY_AFTER),
            (3, Some("Wed, 21 Oct 2015 07:28:00 GMT"), s(3)),
            (1, Some("-1"), s(1)),
        ];
        for (attempt, asked, wait) in table {
            assert_eq!(retry_wait(attempt, asked), wait, "{attempt} {asked:?}");
        }
    }

    #[test]
    fn the_zone_is_looked_for_from_the_closest_parent_up() {
        let got: Vec<String> = zone_candidates("_acme-challenge.app.lab.example.com").collect();
        assert_eq!(
            got,
            ["app.lab.example.com", "lab.example.com", "example.com"]
        );
        let got: Vec<String> = zone_candidates("_acme-challenge.example.com").collect();
        assert_eq!(got, ["example.com"]);
        assert_eq!(zone_candidates("example.com").count(), 0, "no TLD alone");
        assert_eq!(zone_candidates("com").count(), 0);
    }
}
