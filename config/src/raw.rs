//! The serde mirror of the TOML files. Every field's doc comment is the user reference
//! (`deploy/CONFIG.md` is written from it). Values stay string-ish here; `compile` parses them.

use serde::Deserialize;
use toml::Spanned;

/// One configuration file. In a directory, the files' arrays are concatenated and each
/// single table (`[server]`, `[listen]`, `[admin]`, `[dns]`, `[tunnel]`, `[tls]`, `[acme]`) may
/// appear in one file only.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    /// Process settings (restart-only).
    pub server: Option<Spanned<RawServer>>,
    /// Listening addresses (restart-only).
    pub listen: Option<Spanned<RawListen>>,
    /// Who may use the admin endpoint: networks and credentials.
    pub admin: Option<Spanned<RawAdmin>>,
    /// Resolver settings: upstreams, cache, defaults for internal records.
    pub dns: Option<Spanned<RawDns>>,
    /// The Cloudflare Tunnel connector: the built-in network `tunnel`.
    pub tunnel: Option<Spanned<RawTunnel>>,
    /// Certificate defaults.
    pub tls: Option<Spanned<RawTls>>,
    /// The ACME account that issues certificates by DNS-01.
    pub acme: Option<Spanned<RawAcme>>,
    /// Named trust zones (VLANs, VPNs), each with its CIDRs and policy.
    #[serde(default)]
    pub network: Vec<RawNetwork>,
    /// Internal domains answered authoritatively.
    #[serde(default)]
    pub zone: Vec<RawZone>,
    /// Explicit DNS records inside internal zones.
    #[serde(default)]
    pub record: Vec<RawRecord>,
    /// Applications: one declaration gives the DNS name, route, policy and certificate.
    #[serde(default)]
    pub service: Vec<RawService>,
    /// Conditional forwarders: a domain sent to its own upstreams.
    #[serde(default)]
    pub forward: Vec<RawForward>,
    /// Blocklists that networks can subscribe to.
    #[serde(default)]
    pub blocklist: Vec<RawBlocklist>,
    /// Certificates: ACME-managed name sets or PEM files.
    #[serde(default)]
    pub certificate: Vec<RawCertificate>,
    /// DNS providers that publish ACME DNS-01 challenges.
    #[serde(default)]
    pub dns_provider: Vec<RawDnsProvider>,
    /// The DNS query log: on or off, retention, clients never logged.
    pub query_log: Option<Spanned<RawQueryLog>>,
    /// A dnstap stream of the queries and responses to a collector.
    pub dnstap: Option<Spanned<RawDnstap>>,
    /// Two labgates behind one address sharing certificates.
    pub pair: Option<Spanned<RawPair>>,
}

/// `[pair]`: this labgate is one of two behind a virtual address (keepalived), both reading
/// this same configuration. Certificates are ordered once for both: the first node orders,
/// the second adopts the chain the first serves (its TLS handshake proves the shared key),
/// and orders itself only when the first has served none within `takeover`. Challenge values
/// of the `builtin` provider go to the peer as TSIG-signed RFC 2136 updates, which labgate
/// accepts only from the nodes' addresses and only for `_acme-challenge` TXT records.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPair {
    /// Both nodes' own addresses (not the virtual one), the first node first.
    pub nodes: Option<Spanned<Vec<Spanned<String>>>>,
    /// The certificates' private key both nodes share (PKCS#8 PEM, ECDSA P-256 or P-384).
    pub key_file: Option<Spanned<String>>,
    /// The TSIG key both nodes share, as `tsig-keygen` writes it (or its base64 secret alone).
    pub tsig_file: Option<Spanned<String>>,
    /// How long the second node waits for the first's certificate before ordering one
    /// itself (`15m` by default).
    pub takeover: Option<Spanned<String>>,
}

/// `[dnstap]`: every client query and response as a dnstap message (`CLIENT_QUERY`,
/// `CLIENT_RESPONSE`) in a Frame Streams connection to a collector (Vector, `dnstap`,
/// `fstrm_capture`) that listens on a Unix socket or a TCP address; labgate connects, and
/// connects again after a failure. The stream never delays an answer: when the collector is
/// away or slow, messages are dropped and counted (`labgate_dnstap_dropped_total`). Each
/// network's `query_log` and `[query_log] exclude_clients` apply (`anonymous`: no client
/// address; `off`: no message). Applied on reload.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDnstap {
    /// The collector's Unix socket, an absolute path (`/run/vector/dnstap.sock`).
    pub socket: Option<Spanned<String>>,
    /// The collector's TCP address, `IP:PORT` (`192.0.2.10:6000`).
    pub address: Option<Spanned<String>>,
    /// The `identity` of every message. Default: the host name.
    pub identity: Option<Spanned<String>>,
    /// The `version` of every message. Default: `labgate <version>`.
    pub version: Option<Spanned<String>>,
}

/// `[query_log]`: every DNS query (time, client, network, name, type, transport, rcode, where
/// the answer came from, answer summary, latency, flags) in an SQLite database,
/// `<state_dir>/querylog.sqlite`, readable with the `sqlite3` tool (schema in
/// `deploy/CONFIG.md`). Capture never delays an answer: when the writer falls behind or has
/// spent its share of the CPU (5 % of one core), records are dropped and counted
/// (`labgate_querylog_dropped_total`). Applied on reload. Each
/// network's `query_log` says how much of its clients' queries is kept.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueryLog {
    /// Log queries at all. Default true; false stops capture (the database stays).
    pub enabled: Option<bool>,
    /// Queries older than this are deleted, a block of rows at a time (a block holds at most
    /// an hour). Default `7d`.
    pub max_age: Option<Spanned<String>>,
    /// Largest size of the database; beyond it the oldest blocks of rows are deleted. Bytes
    /// with an optional `K`, `M` or `G` suffix; at least `16M`. Default `1G` (about 5 million
    /// queries).
    pub max_size: Option<Spanned<String>>,
    /// Client addresses or ranges whose queries are never logged (`10.0.20.7`,
    /// `fd00:20::/64`), whatever their network's `query_log`.
    #[serde(default)]
    pub exclude_clients: Vec<Spanned<String>>,
}

/// `[server]`: process settings. Restart-only.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Directory for state: the local CA, ACME account and certificates.
    /// Default `/var/lib/labgate`; relative paths are relative to the config file. It must
    /// belong to labgate's user (or root) and be writable by no one else; made 0700 if missing.
    pub state_dir: Option<Spanned<String>>,
    /// Proxies in front of labgate (CIDRs) whose `X-Forwarded-For` is kept and appended to;
    /// from anyone else the header is replaced. Default: none.
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
    /// One log line per HTTP request (target `labgate::access`). Default true.
    pub access_log: Option<bool>,
    /// Open client connections each HTTP listener (HTTPS, plain HTTP, each tunnel origin)
    /// holds at once, TLS handshakes included; beyond it new connections are closed as they
    /// are accepted (`labgate_http_connections_refused_total{reason="listener"}`). Default
    /// 4096 (about 100 MiB of idle connections). Applied on reload.
    pub max_connections: Option<Spanned<i64>>,
    /// Open connections one client address may hold on each HTTP listener; beyond it that
    /// address's new connections are closed as they are accepted
    /// (`labgate_http_connections_refused_total{reason="address"}`) while other clients are
    /// served. Not applied on the tunnel origins, where every connection comes from
    /// `cloudflared`. Default 256 (a browser opens at most 6 per host name). Applied on
    /// reload.
    pub max_connections_per_address: Option<Spanned<i64>>,
}

/// `[listen]`: socket addresses. Restart-only: a change is logged and applied at the next start.
/// IPv6 addresses listen for IPv6 only (`[::]` is not dual-stack): list `0.0.0.0` beside `[::]`
/// for both families, as the defaults do. Two TCP listeners cannot share a port on
/// overlapping addresses (DNS listens on TCP too); `check` says which.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListen {
    /// DNS over UDP and TCP, e.g. `["0.0.0.0:53", "[::]:53"]`. Default: both of those.
    pub dns: Option<Vec<Spanned<String>>>,
    /// DNS over TLS (RFC 7858) for clients that ask for it (Android's Private DNS, systemd-resolved
    /// with `DNSOverTLS=`), with the certificate of `tls.default_name` or the name the client
    /// sends. Same views and policy as plain DNS. Default: none; the usual port is 853.
    pub dns_tls: Option<Vec<Spanned<String>>>,
    /// HTTPS entrypoint. Default `["0.0.0.0:443", "[::]:443"]`.
    pub https: Option<Vec<Spanned<String>>>,
    /// Plain HTTP: redirects to HTTPS, except for services with `plain_http`. Default
    /// `["0.0.0.0:80", "[::]:80"]`.
    pub http: Option<Vec<Spanned<String>>>,
    /// Tunnel origin over plain HTTP that `cloudflared` connects to (keep it on loopback).
    /// Default: none.
    pub tunnel: Option<Vec<Spanned<String>>>,
    /// Tunnel origin over HTTPS with the normal certificates (`cloudflared` with
    /// `originServerName`). Default: none.
    pub tunnel_https: Option<Vec<Spanned<String>>>,
    /// Admin endpoint (`/healthz`, `/readyz`, `/metrics`, `/config`, `/certs`,
    /// `POST /reload`). Default `127.0.0.1:9153`. Who may use it is `[admin]`'s to say.
    pub admin: Option<Spanned<String>>,
}

/// `[admin]`: who may use the admin endpoint (`listen.admin`). Applied on reload. Every path
/// but `/healthz` and `/readyz` (probes from a supervisor, which carry no credentials and tell
/// only whether labgate is up) is subject to it, `POST /reload` included. A client is
/// admitted when its address is loopback (`127.0.0.0/8`, `::1`; whatever network that falls
/// in: the host itself, `labgate certs`, labgate's own proxy) or in a network `allow` names;
/// others get 403 saying what to change. A request forwarded by labgate's proxy (a
/// `[[service]]` whose backend is the admin endpoint, to serve it at `status.<zone>` with the
/// proxy's certificate) is judged again by the client the proxy forwarded (the last
/// `X-Forwarded-For` address): the service's `allow` decides who reaches the proxy, this
/// table who reaches the admin data. Requests through the Cloudflare Tunnel are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Networks whose clients may use the admin endpoint, besides loopback, e.g.
    /// `["mgmt"]`. Default: none (loopback only). `tunnel` cannot be listed.
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    /// Secret file of credentials every request must carry (loopback clients too), one per
    /// line: a bearer token alone (`Authorization: Bearer <token>`, e.g. the output of
    /// `openssl rand -hex 32`), or `user:password` for HTTP basic (browsers ask for it).
    /// Blank lines and `#` comments are skipped, whitespace around a line removed. Wrong or
    /// missing credentials get 401. Keep it 0600, out of Git; it is read at every load and
    /// reload, and never logged. Default: none (no credentials asked).
    pub auth_file: Option<Spanned<String>>,
}

/// `[dns]`: resolver settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    /// Upstream resolvers for names outside internal zones:
    /// `udp://IP[:PORT]`, `tcp://IP[:PORT]`, `tls://IP[:PORT]#TLS-NAME`,
    /// `https://IP[:PORT][/PATH]#TLS-NAME`. Addresses are IPs so labgate never needs itself to
    /// boot.
    #[serde(default)]
    pub upstreams: Vec<Spanned<String>>,
    /// Maximum number of cached answers. Default 10000.
    pub cache_size: Option<Spanned<i64>>,
    /// TTL in seconds of records that name none. Default 300.
    pub default_ttl: Option<Spanned<i64>>,
    /// Domains whose public answers may carry private addresses (e.g. `plex.direct`). Any
    /// other name outside the internal zones that answers with a LAN, loopback or link-local
    /// address is dropped (DNS rebinding protection).
    #[serde(default)]
    pub rebind_allow: Vec<Spanned<String>>,
    /// PEM file of extra CA certificates trusted for `tls://` and `https://` upstreams (a
    /// DoT server with a private CA); the public roots stay trusted.
    pub upstream_ca_file: Option<Spanned<String>>,
    /// How long past its TTL an answer may still be served while the upstreams are silent
    /// (RFC 8767 serve-stale), e.g. `1d`; `0s` turns it off. Default `1d`.
    pub serve_stale: Option<Spanned<String>>,
    /// Queries that may wait for the upstreams at once, over every listener; each UDP worker
    /// (one per core per DNS address) gets an equal share. A query beyond it is answered at
    /// once, stale or SERVFAIL. Internal names, blocked names and cache hits never wait and
    /// take no place. Default 1024.
    pub max_in_flight: Option<Spanned<i64>>,
    /// Of those, how many one client (an IPv4 address, an IPv6 /64) may take. Default 128.
    pub max_in_flight_per_client: Option<Spanned<i64>>,
}

/// `[tunnel]`: the Cloudflare Tunnel connector, seen as the built-in network `tunnel`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTunnel {
    /// Addresses `cloudflared` connects from; others are refused on the tunnel listener.
    /// Default `["127.0.0.1", "::1"]`.
    pub connectors: Option<Vec<Spanned<String>>>,
    /// Where Cloudflare Access signing keys are fetched, instead of
    /// `https://<team>.cloudflareaccess.com/cdn-cgi/access/certs` (a test server). `{team}`
    /// is replaced by the team name.
    pub access_jwks_url: Option<Spanned<String>>,
}

/// `[tls]`: certificate defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// Issue certificates from labgate's own CA (in the state directory) for names no other
    /// certificate covers. Default true. While it is off, nothing of the CA is made or
    /// printed; a reload that turns it on makes it (`local-ca/` in the state directory).
    pub local_ca: Option<bool>,
    /// Name whose certificate is served to clients that send no SNI. Default: none (alert).
    pub default_name: Option<Spanned<String>>,
}

/// `[acme]`: the ACME account (Let's Encrypt by default).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcme {
    /// Contact e-mail of the account.
    pub email: Spanned<String>,
    /// `letsencrypt` (default), `letsencrypt-staging`, or a directory URL.
    pub directory: Option<Spanned<String>>,
    /// Key type of issued certificates: `ecdsa-p256` (default) or `ecdsa-p384`.
    pub key_type: Option<Spanned<String>>,
    /// Certificate profile, e.g. `shortlived`, if the directory offers profiles.
    pub profile: Option<Spanned<String>>,
    /// External Account Binding key id, for CAs that require it.
    pub eab_kid: Option<Spanned<String>>,
    /// File holding the External Account Binding HMAC key (base64url). Never inline.
    pub eab_hmac_file: Option<Spanned<String>>,
    /// The `dns_provider` that publishes challenges for derived certificates.
    pub provider: Option<Spanned<String>>,
    /// PEM file of a private CA trusted for the directory's HTTPS (a private ACME server);
    /// the public roots stay trusted.
    pub directory_ca_file: Option<Spanned<String>>,
    /// Authoritative servers (`IP[:PORT]`) asked directly whether challenge values are
    /// published. Default: the zone's NS records, looked up through the upstreams.
    pub propagation_servers: Option<Vec<Spanned<String>>>,
}

/// `[[network]]`: a trust zone.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNetwork {
    /// Unique name, used in `allow` and `networks` lists. `tunnel` is reserved.
    pub name: Spanned<String>,
    /// Client address ranges, IPv4 and IPv6 (`10.0.30.0/24`, `fd00:30::/64`). The longest
    /// matching prefix over all networks decides a client's network.
    pub cidrs: Vec<Spanned<String>>,
    /// labgate's own address(es) on this network: what internal names resolve to here.
    #[serde(default)]
    pub addresses: Vec<Spanned<String>>,
    /// May clients here see internal names? Default true. False: every internal name is
    /// NXDOMAIN and no service may allow this network.
    pub internal: Option<bool>,
    /// May clients here resolve internet names through labgate? Default true.
    pub recursion: Option<bool>,
    /// Names of `[[blocklist]]`s applied to this network's queries.
    #[serde(default)]
    pub blocklists: Vec<Spanned<String>>,
    /// What the query log keeps of this network's queries: `full`, `anonymous` (everything
    /// but the client's address: a guest network's privacy), or `off`. Default `full`.
    pub query_log: Option<Spanned<String>>,
    /// Free text for people.
    pub description: Option<String>,
}

/// `[[zone]]`: an internal domain, answered authoritatively in every view.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawZone {
    /// The domain, e.g. `lab.example.com`.
    pub name: Spanned<String>,
    /// Name servers; default `ns.<zone>`, which resolves to labgate's address in each view.
    #[serde(default)]
    pub ns: Vec<Spanned<String>>,
    /// Mailbox of the zone's contact in SOA form; default `hostmaster.<zone>`.
    pub hostmaster: Option<Spanned<String>>,
    /// SOA minimum: the TTL of negative answers. Default 60.
    pub negative_ttl: Option<Spanned<i64>>,
}

/// `[[record]]`: an explicit DNS record.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecord {
    /// Owner name, fully qualified, inside an internal zone. `*.` wildcards are allowed.
    pub name: Spanned<String>,
    /// `A`, `AAAA`, `CNAME`, `TXT`, `MX`, `SRV`, `PTR`, `NS` or `SOA`.
    #[serde(rename = "type")]
    pub rtype: Spanned<String>,
    /// Data in zone-file form: `10.0.20.10`, `10 mail.example.com`, `0 5 5060 sip.lab.example.com`.
    pub value: Spanned<String>,
    /// TTL in seconds; default `dns.default_ttl`.
    pub ttl: Option<Spanned<i64>>,
    /// Networks that see this record; default every network with `internal = true`. Give the
    /// same name different values in different networks for split horizon.
    pub networks: Option<Vec<Spanned<String>>>,
}

/// `[[service]]`: one application, declared once.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    /// Short name for logs and metrics; default the first label of `host`.
    pub name: Option<Spanned<String>>,
    /// Fully qualified host name, inside an internal zone.
    pub host: Spanned<String>,
    /// More host names served by the same service.
    #[serde(default)]
    pub aliases: Vec<Spanned<String>>,
    /// Backend URLs, `http://`, `https://` or `h2c://` (HTTP/2 without TLS, for gRPC
    /// servers); several are load balanced.
    pub backends: Vec<Spanned<String>>,
    /// Networks allowed to reach it; `tunnel` for internet users through Cloudflare Tunnel.
    pub allow: Vec<Spanned<String>>,
    /// Path prefixes this service answers; default `["/"]`. Services may share a host with
    /// different prefixes.
    pub paths: Option<Vec<Spanned<String>>>,
    /// Pass WebSocket upgrades through. Default true.
    pub websockets: Option<bool>,
    /// Serve this service on the plain-HTTP listener too, instead of redirecting to HTTPS
    /// (devices that cannot do TLS). Default false.
    pub plain_http: Option<bool>,
    /// Accept any certificate from `https://` backends (self-signed appliances). Default false.
    pub danger_accept_invalid_backend_certs: Option<bool>,
    /// Time to connect to a backend, e.g. `5s`. Default `5s`.
    pub connect_timeout: Option<Spanned<String>>,
    /// Longest silence from a backend while a response is awaited or read. Default `60s`.
    pub timeout: Option<Spanned<String>>,
    /// Active health check of the backends.
    pub health_check: Option<RawHealthCheck>,
    /// How requests spread over `backends`: `round_robin` (default) or `least_connections`.
    pub balance: Option<Spanned<String>>,
    /// Host header sent to the backends: the client's (default), or this name, for backends
    /// that answer only their own name.
    pub host_header: Option<Spanned<String>>,
    /// Largest request body, in bytes with an optional `K`, `M` or `G` suffix (powers of
    /// 1024), e.g. `512M`; a larger request gets 413. Default: no limit.
    pub max_body: Option<Spanned<String>>,
    /// PEM file with the CA that signed the `https://` backends' certificates, trusted instead
    /// of the public roots (a pinned CA for a self-signed appliance).
    pub backend_ca_file: Option<Spanned<String>>,
    /// Require a valid Cloudflare Access token on requests through the tunnel.
    pub access: Option<RawAccess>,
}

/// `access` of a service: the Cloudflare Access application guarding it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccess {
    /// Team name: the `<team>` of `<team>.cloudflareaccess.com`.
    pub team: Spanned<String>,
    /// The application's audience tag (AUD) from the Access dashboard.
    pub aud: Spanned<String>,
    /// Header that carries the verified e-mail to the backends (any client copy is removed
    /// first). Default `Cf-Access-Authenticated-User-Email`.
    pub identity_header: Option<Spanned<String>>,
}

/// `health_check` of a service.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    /// Path requested with GET; a 2xx or 3xx answer is healthy. Default `/`.
    pub path: Option<Spanned<String>>,
    /// Time between checks. Default `10s`.
    pub interval: Option<Spanned<String>>,
    /// Time one check may take. Default `2s`.
    pub timeout: Option<Spanned<String>>,
    /// Failed checks in a row that take a backend out of rotation. Default 3.
    pub fall: Option<Spanned<i64>>,
    /// Passed checks in a row that bring it back. Default 2.
    pub rise: Option<Spanned<i64>>,
}

/// `[[forward]]`: a conditional forwarder.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForward {
    /// The domain whose names go to these upstreams, e.g. `corp.example`.
    pub domain: Spanned<String>,
    /// Upstreams, in the `dns.upstreams` form.
    pub upstreams: Vec<Spanned<String>>,
}

/// `[[blocklist]]`: a list of names to block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBlocklist {
    /// Unique name, used in networks' `blocklists`.
    pub name: Spanned<String>,
    /// A local file (relative to the config file). Exactly one of `file` and `url`.
    pub file: Option<Spanned<String>>,
    /// An `http(s)://` URL fetched in the background.
    pub url: Option<Spanned<String>>,
    /// `hosts`, `domains` (one name per line) or `adblock` (`||name^`). Default `domains`.
    pub format: Option<Spanned<String>>,
    /// `nxdomain` (default) or `null` (answer 0.0.0.0 / ::).
    pub action: Option<Spanned<String>>,
    /// Names never blocked by this list (suffix match).
    #[serde(default)]
    pub except: Vec<Spanned<String>>,
    /// Time between fetches of a URL list. Default `24h`.
    pub refresh: Option<Spanned<String>>,
}

/// `[[certificate]]`: where the certificate for some names comes from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    /// Names covered, e.g. `["lab.example.com", "*.lab.example.com"]`.
    pub names: Vec<Spanned<String>>,
    /// `acme` or `files`.
    pub source: Spanned<String>,
    /// For `files`: PEM chain, leaf first.
    pub cert_file: Option<Spanned<String>>,
    /// For `files`: PEM private key (a secret: keep it 0600, out of Git).
    pub key_file: Option<Spanned<String>>,
    /// For `acme`: the `dns_provider` to use; default `acme.provider`.
    pub provider: Option<Spanned<String>>,
}

/// `[[dns_provider]]`: publishes `_acme-challenge` TXT records.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDnsProvider {
    /// Unique name, used by `acme.provider` and certificates.
    pub name: Spanned<String>,
    /// `cloudflare`, `rfc2136` or `builtin`.
    pub kind: Spanned<String>,
    /// cloudflare: file holding an API token with Zone:DNS:Edit.
    pub token_file: Option<Spanned<String>>,
    /// cloudflare: API base URL. Default `https://api.cloudflare.com/client/v4`.
    pub api_url: Option<Spanned<String>>,
    /// rfc2136: the primary server, `IP[:PORT]`.
    pub server: Option<Spanned<String>>,
    /// rfc2136: TSIG key name.
    pub key_name: Option<Spanned<String>>,
    /// rfc2136: TSIG algorithm, `hmac-sha256` (default) or `hmac-sha512`.
    pub algorithm: Option<Spanned<String>>,
    /// rfc2136: file holding the TSIG secret (base64).
    pub secret_file: Option<Spanned<String>>,
}
