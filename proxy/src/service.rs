//! pingora listening services: HTTPS (and plain HTTP for a tunnel origin later) through the
//! fast path, and the redirecting HTTP listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::listeners::tls::TlsSettings;
use pingora::protocols::http::ServerSession;
use pingora::protocols::{ALPN, Stream};
use pingora::server::ShutdownWatch;
use pingora::services::listening::Service;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::certs::SniCapture;
use crate::fast::{self, HEAD_TIMEOUT, Outcome};
use crate::general::General;
use crate::head::{self, HeadError, header_array};
use crate::{ConnInfo, Proxy, pages};

/// The app behind the HTTPS listeners: h2 to pingora's sessions, HTTP/1.1 to the fast path.
#[derive(Debug)]
pub struct Entry {
    proxy: Arc<Proxy>,
    general: Arc<General>,
}

#[async_trait]
impl ServerApp for Entry {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return self.general.process_new(stream, shutdown).await;
        }
        let socket = stream.get_socket_digest();
        let ssl = stream.get_ssl_digest();
        let info =
            ConnInfo::from_digests(socket.as_ref().and_then(|d| d.peer_addr()), ssl.as_deref())?;
        match fast::serve(&self.proxy, stream, info).await {
            Outcome::Done => None,
            Outcome::Fallback(stream, prefix) => {
                let mut session = ServerSession::new_http1(stream);
                session.set_pipelined_prefix(prefix);
                session.set_keepalive(None);
                self.general.process_new_http(session, shutdown).await;
                None
            }
        }
    }
}

/// The HTTPS listeners: TLS 1.2 and 1.3, ALPN h2 and http/1.1, certificates from the store.
///
/// # Errors
/// When pingora cannot build the TLS settings.
pub fn listeners(
    proxy: &Arc<Proxy>,
    https: &[SocketAddr],
    threads: usize,
) -> Result<Service<Entry>, crate::Error> {
    let app = Entry {
        proxy: Arc::clone(proxy),
        general: Arc::new(General {
            proxy: Arc::clone(proxy),
        }),
    };
    let mut service = Service::new("labgate https".to_owned(), app);
    service.threads = Some(threads);
    for addr in https {
        let mut tls = TlsSettings::with_callbacks(Box::new(SniCapture {
            metrics: Arc::clone(&proxy.metrics),
        }))
        .map_err(|e| crate::Error::Certificate(format!("cannot set up TLS: {e}")))?;
        tls.set_cert_resolver(proxy.certs.clone());
        tls.enable_h2();
        service.add_tls_with_settings(&addr.to_string(), None, tls);
    }
    Ok(service)
}

/// The plain-HTTP listeners: every request gets a redirect to HTTPS, nothing else.
pub fn redirect_service(http: &[SocketAddr], https_port: u16, threads: usize) -> Service<Redirect> {
    let mut service = Service::new("labgate http".to_owned(), Redirect { https_port });
    service.threads = Some(threads);
    for addr in http {
        service.add_tcp(&addr.to_string());
    }
    service
}

/// Redirects to HTTPS: 301 for GET and HEAD, 308 (method kept) otherwise.
#[derive(Debug)]
pub struct Redirect {
    https_port: u16,
}

#[async_trait]
impl ServerApp for Redirect {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        _shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let mut buf = bytes::BytesMut::with_capacity(2048);
        let deadline = tokio::time::Instant::now() + HEAD_TIMEOUT;
        let mut out = Vec::with_capacity(512);
        loop {
            {
                let mut headers = header_array();
                match head::parse_request(&buf, &mut headers) {
                    Err(HeadError::Partial) => {}
                    Ok(h) => {
                        let mut host_buf = [0u8; labgate_config::route::MAX_HOST_LEN];
                        let host = h.host.and_then(|raw| {
                            labgate_config::route::normalize_host(raw, &mut host_buf)
                        });
                        match host {
                            Some(host) => {
                                let status = if matches!(h.method, "GET" | "HEAD") {
                                    301
                                } else {
                                    308
                                };
                                let port = if self.https_port == 443 {
                                    String::new()
                                } else {
                                    format!(":{}", self.https_port)
                                };
                                let location = format!("https://{host}{port}{}", h.path);
                                pages::write(
                                    &mut out,
                                    status,
                                    "Use HTTPS.\n",
                                    true,
                                    &[("location", &location)],
                                );
                            }
                            None => pages::write(
                                &mut out,
                                400,
                                "400 Bad Request: no valid Host.\n",
                                true,
                                &[],
                            ),
                        }
                        break;
                    }
                    Err(HeadError::TooLarge) => {
                        pages::write(
                            &mut out,
                            431,
                            "431 Request Header Fields Too Large\n",
                            true,
                            &[],
                        );
                        break;
                    }
                    Err(_) => {
                        pages::write(&mut out, 400, "400 Bad Request\n", true, &[]);
                        break;
                    }
                }
            }
            match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            stream.write_all(&out).await?;
            stream.flush().await
        })
        .await;
        None
    }
}
