//! Compiled settings that are not per-request tables: listeners, upstreams, blocklists,
//! certificates, ACME and DNS providers.

use std::fmt;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::Name;

use crate::blocklist::{BlockSet, BlocklistFormat};

/// Bounds on open client connections of each HTTP listener (`[server]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open at once on one listener, from all clients together.
    pub per_listener: NonZeroU32,
    /// From one client address (not applied on the tunnel origins).
    pub per_address: NonZeroU32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            per_listener: NonZeroU32::new(4096).unwrap_or(NonZeroU32::MIN),
            per_address: NonZeroU32::new(256).unwrap_or(NonZeroU32::MIN),
        }
    }
}

/// Listening addresses. Restart-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// DNS, UDP and TCP.
    pub dns: Vec<SocketAddr>,
    /// DNS over TLS.
    pub dns_tls: Vec<SocketAddr>,
    /// The HTTPS proxy (TLS by SNI, HTTP/1.1 and HTTP/2).
    pub https: Vec<SocketAddr>,
    /// HTTP (redirects only).
    pub http: Vec<SocketAddr>,
    /// Tunnel origin for `cloudflared`, plain HTTP.
    pub tunnel: Vec<SocketAddr>,
    /// Tunnel origin for `cloudflared`, HTTPS.
    pub tunnel_https: Vec<SocketAddr>,
    /// The admin endpoint (`/healthz`, `/metrics`, `/reload`, ...).
    pub admin: SocketAddr,
}

/// Resolver settings.
#[derive(Debug, Clone)]
pub struct DnsSettings {
    /// Upstreams for names outside internal zones.
    pub upstreams: Vec<Upstream>,
    /// Conditional forwarders, longest domain first.
    pub forwarders: Vec<Forwarder>,
    /// Maximum cached answers.
    pub cache_size: NonZeroUsize,
    /// TTL of records that name none.
    pub default_ttl: u32,
    /// Blocklists, indexed by networks' `blocklists`.
    pub blocklists: Vec<Blocklist>,
    /// Domains exempt from rebinding protection.
    pub rebind_allow: Vec<Name>,
    /// How long past its TTL an answer may be served while the upstreams are silent.
    pub serve_stale: Duration,
    /// Extra CA certificates (DER) trusted for TLS upstreams.
    pub upstream_roots: Vec<Arc<[u8]>>,
    /// Queries that may wait for the upstreams at once, over every listener.
    pub max_in_flight: NonZeroUsize,
    /// Queries of one client that may wait for the upstreams at once.
    pub max_in_flight_per_client: NonZeroUsize,
}

/// Transport of an upstream resolver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Plain DNS over UDP (TCP on truncation).
    Udp,
    /// Plain DNS over TCP.
    Tcp,
    /// DNS over TLS (RFC 7858).
    Tls,
    /// DNS over HTTPS (RFC 8484).
    Https,
}

/// An upstream resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// How it is reached: UDP (TCP on truncation), TCP, TLS or HTTPS.
    pub protocol: Protocol,
    /// Its IP address and port.
    pub addr: SocketAddr,
    /// Name checked in the server's certificate (TLS and HTTPS).
    pub tls_name: Option<Arc<str>>,
    /// URL path for HTTPS, `/dns-query` by default.
    pub path: Option<Arc<str>>,
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.protocol {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
            Protocol::Tls => "tls",
            Protocol::Https => "https",
        };
        write!(f, "{scheme}://{}", self.addr)?;
        if let Some(p) = &self.path {
            f.write_str(p)?;
        }
        if let Some(n) = &self.tls_name {
            write!(f, "#{n}")?;
        }
        Ok(())
    }
}

/// A domain forwarded to its own upstreams.
#[derive(Debug, Clone)]
pub struct Forwarder {
    /// The domain, lower-case.
    pub domain: Name,
    /// Where queries under the domain go, instead of the default upstreams.
    pub upstreams: Vec<Upstream>,
}

/// What a blocked name gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockAction {
    /// NXDOMAIN: the name does not exist.
    NxDomain,
    /// `0.0.0.0` / `::` for A / AAAA, NODATA for other types.
    NullAddress,
}

/// Where a blocklist comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlocklistSource {
    /// A local file.
    File(PathBuf),
    /// A URL fetched in the background.
    Url(url::Url),
}

/// A list of names DNS answers with [`BlockAction`] instead of resolving.
#[derive(Debug, Clone)]
pub struct Blocklist {
    /// Its name in the configuration, metrics and logs.
    pub name: Arc<str>,
    /// The file or URL it is read from.
    pub source: BlocklistSource,
    /// How its lines are read: hosts file, one name a line, or adblock rules.
    pub format: BlocklistFormat,
    /// What blocked names get.
    pub action: BlockAction,
    /// Names never blocked (suffix match).
    pub except: Vec<Name>,
    /// Time between fetches of a URL.
    pub refresh: Duration,
    /// The listed names: read from a file at compile time; empty for a URL until fetched.
    pub names: Arc<BlockSet>,
}

impl Blocklist {
    /// Whether `names` (this list's, or its fetched content) blocks a lower-case name
    /// without trailing dot; the list's exceptions win.
    pub fn blocks(&self, names: &BlockSet, name: &str) -> bool {
        names.blocks(name)
            && !self.except.iter().any(|e| {
                let e = e.to_ascii();
                let e = e.trim_end_matches('.');
                name == e || name.strip_suffix(e).is_some_and(|p| p.ends_with('.'))
            })
    }
}

/// Which certificates the proxy serves, and for which names ([`Certificates::cover`]).
#[derive(Debug, Clone, Default)]
pub struct Certificates {
    /// Whether names without another source get a local-CA certificate.
    pub local_ca: bool,
    /// Name served to clients without SNI.
    pub default_name: Option<Arc<str>>,
    /// Certificates, explicit or derived.
    pub specs: Vec<CertSpec>,
}

/// One certificate: its names and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    /// Names covered (`*.zone` for one wildcard level).
    pub names: Vec<Arc<str>>,
    /// Where it comes from: ACME or PEM files.
    pub source: CertSource,
}

/// Where a certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// Issued by ACME with a DNS provider.
    Acme {
        /// Index of the provider in the snapshot's providers.
        provider: usize,
        /// Whether the name set was derived from services rather than written.
        derived: bool,
    },
    /// PEM files, read again when they change.
    Files {
        /// The certificate chain, leaf first.
        cert: PathBuf,
        /// The private key of the leaf.
        key: PathBuf,
    },
}

/// Which certificate a TLS handshake for a name gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// A configured certificate, by index in [`Certificates::specs`].
    Spec(usize),
    /// A certificate from labgate's own CA.
    LocalCa,
    /// None: the handshake fails.
    Uncovered,
}

impl Certificates {
    /// The certificate for a host: an exact name first, then one wildcard level, then the
    /// local CA if enabled.
    pub fn cover(&self, host: &str) -> Coverage {
        self.cover_from(host, |_| true)
    }

    /// [`Self::cover`] when only the certificates for which `ready(index)` holds are at hand
    /// (a PEM file that does not load, an ACME certificate not yet issued): the others are
    /// passed over, as if not configured.
    pub fn cover_from(&self, host: &str, ready: impl Fn(usize) -> bool) -> Coverage {
        let exact = self.find(&ready, |n| n.eq_ignore_ascii_case(host));
        let wildcard = || {
            let parent = host.split_once('.')?.1;
            self.find(&ready, |n| {
                n.strip_prefix("*.")
                    .is_some_and(|p| p.eq_ignore_ascii_case(parent))
            })
        };
        match exact.or_else(wildcard) {
            Some(i) => Coverage::Spec(i),
            None if self.local_ca => Coverage::LocalCa,
            None => Coverage::Uncovered,
        }
    }

    fn find(&self, ready: impl Fn(usize) -> bool, pred: impl Fn(&str) -> bool) -> Option<usize> {
        self.specs
            .iter()
            .enumerate()
            .position(|(i, s)| ready(i) && s.names.iter().any(|n| pred(n)))
    }
}

/// Let's Encrypt's production directory.
pub const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Cloudflare's API.
pub const CLOUDFLARE_API: &str = "https://api.cloudflare.com/client/v4";
/// Let's Encrypt's staging directory.
pub const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// ACME account settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    /// The account's contact, where the CA sends expiry warnings.
    pub email: Arc<str>,
    /// The CA's ACME directory (Let's Encrypt's production one by default).
    pub directory: url::Url,
    /// Key type of issued certificates.
    pub key_type: KeyType,
    /// The certificate profile asked of the CA (e.g. `shortlived`), if any.
    pub profile: Option<Arc<str>>,
    /// External Account Binding: key id and the file holding the HMAC key.
    pub eab: Option<(Arc<str>, PathBuf)>,
    /// Default provider for derived certificates.
    pub provider: Option<usize>,
    /// Private CA trusted for the directory's HTTPS.
    pub directory_ca: Option<PathBuf>,
    /// Authoritative servers checked for propagation instead of the zone's NS.
    pub propagation_servers: Vec<SocketAddr>,
}

/// Key type of issued certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// ECDSA P-256.
    EcdsaP256,
    /// ECDSA P-384.
    EcdsaP384,
}

/// A DNS provider for ACME challenges. Holds secret file paths only, never secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsProvider {
    /// Its name, as `[[certificate]]` and `[acme]` refer to it.
    pub name: Arc<str>,
    /// Its kind and settings.
    pub kind: ProviderKind,
}

/// Kinds of DNS provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderKind {
    /// Cloudflare's API.
    Cloudflare {
        /// File holding the API token.
        token_file: PathBuf,
        /// API base URL.
        api_url: url::Url,
    },
    /// RFC 2136 dynamic update with TSIG.
    Rfc2136 {
        /// The primary server.
        server: SocketAddr,
        /// TSIG key name.
        key_name: Name,
        /// TSIG algorithm name (`hmac-sha256`, `hmac-sha512`).
        algorithm: Arc<str>,
        /// File holding the TSIG secret.
        secret_file: PathBuf,
    },
    /// labgate's own DNS serves the challenge.
    Builtin,
}

/// The query log's settings (`[query_log]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryLogSettings {
    /// Whether queries are logged at all.
    pub enabled: bool,
    /// Rows older than this are deleted.
    pub max_age: Duration,
    /// Largest size of the database, in bytes.
    pub max_size: u64,
    /// Clients never logged.
    pub exclude_clients: Vec<ipnet::IpNet>,
}

impl Default for QueryLogSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_size: 1 << 30,
            exclude_clients: Vec::new(),
        }
    }
}

impl QueryLogSettings {
    /// What the log keeps of one query from `client`, in a network whose level is `level`
    /// (`None`: the client is in no network, whose refused queries are kept in full: they
    /// are what an operator looks for). Pure; the capture's one decision.
    pub fn level(
        &self,
        level: Option<crate::network::LogLevel>,
        client: std::net::IpAddr,
    ) -> crate::network::LogLevel {
        use crate::network::LogLevel;
        if !self.enabled {
            return LogLevel::Off;
        }
        self.privacy(level, client)
    }

    /// What any record of a query from `client` in a network whose level is `level` may keep,
    /// whether the log is on or not: the query log and dnstap alike. Pure.
    pub fn privacy(
        &self,
        level: Option<crate::network::LogLevel>,
        client: std::net::IpAddr,
    ) -> crate::network::LogLevel {
        use crate::network::LogLevel;
        let client = crate::network::canonical(client);
        if self.exclude_clients.iter().any(|n| n.contains(&client)) {
            return LogLevel::Off;
        }
        level.unwrap_or_default()
    }
}

/// The dnstap stream's settings (`[dnstap]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnstapSettings {
    /// Where the collector listens.
    pub destination: DnstapDestination,
    /// The messages' `identity`; `None`: the host name.
    pub identity: Option<Arc<str>>,
    /// The messages' `version`.
    pub version: Arc<str>,
}

/// Where a dnstap collector listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnstapDestination {
    /// A Unix stream socket.
    Unix(PathBuf),
    /// A TCP address.
    Tcp(SocketAddr),
}

impl fmt::Display for DnstapDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
            Self::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}
