//! The data plane's self-check, every [`EVERY`]: a DNS query to labgate's own UDP listener
//! (`labgate-probe.invalid. CH TXT`, refused at once, never sent upstream, never logged) and
//! a TLS handshake with its own HTTPS listener (no request: no access line). Both must be
//! answered within [`TIMEOUT`]; a TLS alert is an answer (a name without a certificate yet
//! still proves the listener serves). `/readyz` says ready only while the last good check is
//! younger than [`FRESH`], and systemd's watchdog is pinged only then: a process whose
//! workers hang is restarted and taken out of a keepalived pair, though its admin endpoint
//! still answers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use labgate_outbound::SignaturesOnly;
use rustls::pki_types::ServerName;
use tokio::time::Instant;

/// Time between two checks.
pub const EVERY: Duration = Duration::from_secs(2);
/// Time before a failed check is tried again: a check that met a connection of the process
/// this one replaces (an upgrade's overlap) is not left to fail `/readyz` for [`EVERY`].
pub const RETRY: Duration = Duration::from_millis(250);
/// Time each listener has to answer.
pub const TIMEOUT: Duration = Duration::from_secs(1);
/// How old the last good check may be for `/readyz` (two checks missed).
pub const FRESH: Duration = Duration::from_secs(5);

/// What is checked: labgate's own listeners, as reachable from itself.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    /// A DNS UDP listener.
    pub dns: Option<SocketAddr>,
    /// An HTTPS listener.
    pub https: Option<SocketAddr>,
}

impl Targets {
    /// The first DNS UDP and HTTPS listeners of those bound; a wildcard address is reached on
    /// loopback.
    pub fn new(dns: Option<SocketAddr>, https: Option<SocketAddr>) -> Self {
        Self {
            dns: dns.map(reachable),
            https: https.map(reachable),
        }
    }
}

/// Where a listener bound to `a` is reached from the same host: loopback for a wildcard.
pub fn reachable(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), a.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), a.port())
        }
        _ => a,
    }
}

/// The last checks' outcome, for `/readyz`.
#[derive(Debug, Default)]
pub struct Health {
    inner: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When a check last passed.
    passed: Option<Instant>,
    /// What failed last, until a check passes.
    failure: Option<String>,
}

impl Health {
    /// Records a check's outcome.
    pub fn record(&self, outcome: &Result<(), String>) {
        let mut s = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        match outcome {
            Ok(()) => {
                s.passed = Some(Instant::now());
                s.failure = None;
            }
            Err(e) => s.failure = Some(e.clone()),
        }
    }

    /// Whether a check passed within [`FRESH`]; else what is wrong.
    pub fn fresh(&self) -> Result<(), String> {
        let s = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        match s.passed {
            Some(t) if t.elapsed() < FRESH => Ok(()),
            _ => Err(s
                .failure
                .clone()
                .unwrap_or_else(|| "no self-check has passed yet".into())),
        }
    }
}

/// One check of `targets`, the TLS handshake naming `sni`: what failed, if anything.
pub async fn check(targets: &Targets, sni: &str) -> Result<(), String> {
    let (dns, https) = tokio::join!(
        async {
            match targets.dns {
                Some(to) => dns(to)
                    .await
                    .map_err(|e| format!("DNS on {to} does not answer: {e}")),
                None => Ok(()),
            }
        },
        async {
            match targets.https {
                Some(to) => https(to, sni)
                    .await
                    .map_err(|e| format!("HTTPS on {to} does not answer: {e}")),
                None => Ok(()),
            }
        }
    );
    dns.and(https)
}

/// Sends the probe query to `to` and waits for its response.
pub async fn dns(to: SocketAddr) -> std::io::Result<()> {
    let local: SocketAddr = if to.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(local).await?;
    socket.connect(to).await?;
    let id = u16::try_from(std::process::id() & 0xffff).unwrap_or(0) ^ 0x5a5a;
    let mut query = Vec::with_capacity(12 + labgate_dns::PROBE_QUESTION.len());
    query.extend_from_slice(&id.to_be_bytes());
    query.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    query.extend_from_slice(labgate_dns::PROBE_QUESTION);
    let exchange = async {
        socket.send(&query).await?;
        let mut buf = [0u8; 512];
        loop {
            let n = socket.recv(&mut buf).await?;
            // The response to this query (QR set, same ID); anything else is skipped.
            if n >= 12 && buf[..2] == id.to_be_bytes() && buf[2] & 0x80 != 0 {
                return Ok(());
            }
        }
    };
    timeout(exchange).await
}

/// Makes a TLS handshake with `to` naming `sni`: done when the handshake completes or the
/// server answers with an alert. Any certificate is taken (the check asks whether the
/// listener answers, not who it is), with valid handshake signatures.
pub async fn https(to: SocketAddr, sni: &str) -> std::io::Result<()> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SignaturesOnly(provider)))
        .with_no_client_auth();
    let name = ServerName::try_from(sni.to_owned())
        .unwrap_or_else(|_| ServerName::IpAddress(to.ip().into()));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect(to).await?;
        match connector.connect(name, tcp).await {
            Ok(mut tls) => {
                use tokio::io::AsyncWriteExt;
                let _ = tls.shutdown().await;
                Ok(())
            }
            Err(e) if alert(&e) => Ok(()),
            Err(e) => Err(e),
        }
    };
    timeout(handshake).await
}

/// Whether a handshake failed on an alert the server sent (it answered).
fn alert(e: &std::io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|r| matches!(r, rustls::Error::AlertReceived(_)))
}

async fn timeout(f: impl Future<Output = std::io::Result<()>>) -> std::io::Result<()> {
    tokio::time::timeout(TIMEOUT, f).await.unwrap_or_else(|_| {
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no answer within 1 s",
        ))
    })
}

/// Checks `targets` every [`EVERY`] (sooner for a short watchdog; [`RETRY`] after a failed
/// check) into `health` until cancelled, naming in TLS the name `sni` gives now; pings systemd's watchdog (`watchdog`:
/// its interval) after each check that passed.
pub async fn run(
    targets: Targets,
    sni: impl Fn() -> String + Send,
    (health, notifier): (Arc<Health>, Option<Arc<crate::notify::Notifier>>),
    watchdog: Option<Duration>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let every = watchdog.map_or(EVERY, |w| EVERY.min(w / 2));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = cancel.cancelled() => return,
        }
        let outcome = check(&targets, &sni()).await;
        // Said once per streak of failures.
        match (&outcome, failing) {
            (Err(e), false) => tracing::warn!(
                "self-check failed: {e}; /readyz says not ready and systemd's watchdog is not \
                 pinged until it passes"
            ),
            (Ok(()), true) => tracing::info!("self-check passes again"),
            _ => {}
        }
        failing = outcome.is_err();
        if failing {
            tick.reset_after(RETRY);
        }
        health.record(&outcome);
        if let (Ok(()), Some(n), Some(_)) = (&outcome, &notifier, watchdog) {
            n.send("WATCHDOG=1");
        }
    }
}

#[cfg(test)]
mod tests;
