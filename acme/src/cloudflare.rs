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
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use crate::http::{Connector, Resolver};
use crate::provider::{CHALLENGE_TTL, DnsProvider, Published};
use crate::{Error, secret};

/// Longest one API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts per call when Cloudflare rate-limits or fails.
const ATTEMPTS: u32 = 3;
/// Longest wait a `retry-after` may ask for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

type Http = Client<hyper_rustls::HttpsConnector<Connector>, Full<Bytes>>;

/// A Cloudflare account reached with a scoped API token.
pub struct Cloudflare {
    api: url::Url,
    token_file: PathBuf,
    http: Http,
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
    /// loopback) with the token in `token_file`, finding its host through `resolver`.
    ///
    /// # Errors
    /// [`Error::Provider`] for a plain-HTTP URL off loopback (the token would travel in clear).
    pub fn new(api: url::Url, token_file: PathBuf, resolver: Resolver) -> Result<Self, Error> {
        let loopback = matches!(api.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
            || matches!(api.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
            || api.host_str() == Some("localhost");
        if api.scheme() != "https" && !loopback {
            return Err(Error::Provider {
                provider: "cloudflare".into(),
                what: format!(
                    "api_url {api} must be https (plain http only for a loopback test server)"
                ),
            });
        }
        let (tls, connector) = crate::http::parts(&[], resolver).map_err(|e| Error::Provider {
            provider: "cloudflare".into(),
            what: format!("TLS setup: {e}"),
        })?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        Ok(Self {
            api,
            token_file,
            http: Client::builder(TokioExecutor::new()).build(https),
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
                .header(header::ACCEPT, "application/json")
                .header(
                    header::USER_AGENT,
                    concat!("labgate/", env!("CARGO_PKG_VERSION")),
                );
            let payload = match &body {
                Some(b) => {
                    req = req.header(header::CONTENT_TYPE, "application/json");
                    Bytes::from(b.to_string())
                }
                None => Bytes::new(),
            };
            let req = req
                .body(Full::new(payload))
                .map_err(|e| Err(self.fail(e.to_string())))?;
            let sent = tokio::time::timeout(CALL_TIMEOUT, async {
                let rsp = self.http.request(req).await?;
                let (parts, body) = rsp.into_parts();
                let bytes = body.collect().await?.to_bytes();
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>((parts, bytes))
            })
            .await;
            let (parts, bytes) = match sent {
                Ok(Ok(r)) => r,
                Ok(Err(e)) if attempt < ATTEMPTS => {
                    tracing::debug!("cloudflare: {e}; retrying");
                    tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
                    continue;
                }
                Ok(Err(e)) => {
                    return Err(Err(self.fail(format!("cannot reach {}: {e}", self.api))));
                }
                Err(_) => {
                    return Err(Err(self.fail(format!(
                        "{} did not answer within {} s",
                        self.api,
                        CALL_TIMEOUT.as_secs()
                    ))));
                }
            };
            let status = parts.status;
            if (status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error())
                && attempt < ATTEMPTS
            {
                let wait = parts
                    .headers
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map_or_else(
                        || Duration::from_secs(u64::from(attempt)),
                        Duration::from_secs,
                    )
                    .min(MAX_RETRY_AFTER);
                tokio::time::sleep(wait).await;
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
        let advice = match (e.status.as_u16(), e.codes.as_slice()) {
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
        };
        self.fail(format!(
            "Cloudflare answered {} {doing}: {} ({advice})",
            e.status.as_u16(),
            e.message
        ))
    }

    /// The zone holding `name`: (zone name, zone id), found by walking up its labels.
    async fn zone(&self, name: &str) -> Result<(String, String), Error> {
        let labels: Vec<&str> = name.split('.').collect();
        for i in 1..labels.len().saturating_sub(1) {
            let candidate = labels[i..].join(".");
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
