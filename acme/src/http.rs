//! The ACME server's HTTP client: labgate's own ([`labgate_outbound::Client`]), trusting an
//! optional private CA besides the public roots (a private ACME server, Pebble in tests),
//! over HTTPS only, and every request timed for the latency histogram.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use labgate_outbound::{Client, Limits, Redacted};
use rustls_pki_types::CertificateDer;

use crate::Error;
use crate::metrics::Metrics;

/// What one ACME request may take: its answer (a certificate chain is a few KiB) and time.
const LIMITS: Limits = Limits {
    body: 1 << 20,
    time: Duration::from_secs(30),
};

/// An [`HttpClient`] for instant-acme.
#[derive(Clone)]
pub(crate) struct AcmeHttp {
    client: Client,
    metrics: Arc<Metrics>,
}

impl AcmeHttp {
    /// `client`, trusting `extra` (DER) too.
    pub(crate) fn new(
        client: &Client,
        extra: &[CertificateDer<'static>],
        metrics: Arc<Metrics>,
    ) -> Result<Self, Error> {
        let client = if extra.is_empty() {
            client.clone()
        } else {
            client.with_roots(extra).map_err(Error::DirectoryCa)?
        };
        Ok(Self { client, metrics })
    }
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let server = req
            .uri()
            .authority()
            .map_or_else(String::new, ToString::to_string);
        // SECURITY: the directory is https (config checks it); a server that sends labgate
        // elsewhere in clear is not followed.
        let refused = (req.uri().scheme_str() != Some("https")).then(|| {
            let url = url::Url::parse(&req.uri().to_string())
                .map(|u| Redacted(&u).to_string())
                .unwrap_or_default();
            labgate_outbound::Error::Url {
                url,
                what: "the ACME server named a URL that is not https",
            }
        });
        let client = self.client.clone();
        let metrics = Arc::clone(&self.metrics);
        Box::pin(async move {
            // labgate's own errors, handed through instant-acme (`From<instant_acme::Error>`
            // takes them back out).
            let fail = |e: Error| instant_acme::Error::Other(Box::new(e));
            if let Some(source) = refused {
                return Err(fail(Error::Unreachable { server, source }));
            }
            let (parts, body) = req.into_parts();
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(never) => match never {},
            };
            #[allow(
                clippy::disallowed_methods,
                reason = "a request's latency is the time that really passed, not a test clock's"
            )]
            let started = Instant::now();
            let sent = client.send(Request::from_parts(parts, body), LIMITS).await;
            metrics.request(started.elapsed());
            match sent {
                Ok(rsp) => {
                    let (parts, body) = rsp.into_parts();
                    Ok(BytesResponse {
                        parts,
                        body: Box::new(body),
                    })
                }
                Err(labgate_outbound::Error::Timeout { after, .. }) => {
                    Err(fail(Error::Unanswered { server, after }))
                }
                Err(source) => Err(fail(Error::Unreachable { server, source })),
            }
        })
    }
}
