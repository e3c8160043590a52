//! Command-line interface (clap derive; doc comments are the help text).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// labgate: a homelab's front door. Split-horizon DNS, HTTPS entrypoint, ACME certificates,
/// from one declaration per service.
///
/// Exit codes: 0 success, 1 runtime failure, 64 invalid configuration or usage.
#[derive(Debug, Parser)]
#[command(name = "labgate", version, about, long_about = None)]
pub struct Cli {
    /// Log filter, e.g. `info` or `labgate=debug` (default: $LABGATE_LOG, else `info`).
    #[arg(long, global = true)]
    pub log: Option<String>,
    /// Log format: `text` (default) or `json`, one object per line with the event's fields
    /// (for journald and Loki).
    #[arg(long, global = true, value_enum, env = crate::logging::ENV_LOG_FORMAT, default_value_t)]
    pub log_format: crate::logging::Format,
    /// What to do (default: `run` on the built-in demo config).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve: load the configuration, bind the listeners, hot-reload on change.
    Run(RunArgs),
    /// Validate configuration files without binding sockets; exit 0 if valid, 64 if not.
    Check(CheckArgs),
    /// Show how labgate treats a client: network, DNS answer, route, policy, certificate.
    Explain(ExplainArgs),
    /// List the running instance's ACME certificates: names, issuer, expiry, next renewal,
    /// last attempt and error.
    Certs(CertsArgs),
    /// Print cloudflared's `ingress:` rules for the services that allow `tunnel`.
    TunnelConfig(TunnelConfigArgs),
    /// Back up or restore what cannot be rebuilt: the local CA, the ACME accounts and the
    /// issued certificates. The archive holds private keys: keep it out of Git.
    #[command(subcommand)]
    State(StateCommand),
    /// Print the version.
    Version,
}

impl Default for Command {
    fn default() -> Self {
        Self::Run(RunArgs::default())
    }
}

/// `labgate run`.
#[derive(Debug, Default, Args)]
pub struct RunArgs {
    /// Configuration file or directory of `*.toml` files. Without it: the built-in demo on
    /// loopback ports.
    #[arg(long, short, env = "LABGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Override `server.state_dir` (the demo defaults to a directory under $TMPDIR).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Override `listen.admin`, e.g. `127.0.0.1:0` for any free port.
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// Override `listen.dns` (repeat for several addresses), e.g. `127.0.0.1:0`.
    #[arg(long)]
    pub dns: Vec<SocketAddr>,
    /// Override `listen.https` (repeat for several addresses).
    #[arg(long)]
    pub https: Vec<SocketAddr>,
    /// Override `listen.http`, the HTTP-to-HTTPS redirect (repeat for several addresses).
    #[arg(long)]
    pub http: Vec<SocketAddr>,
    /// This machine's address in `[pair] nodes`. Without it: the one of the two addresses
    /// this machine has.
    #[arg(long, value_name = "ADDRESS")]
    pub node: Option<IpAddr>,
}

/// `labgate check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Files or directories to check; each is one configuration.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Treat warnings as errors.
    #[arg(long)]
    pub deny_warnings: bool,
}

/// `labgate tunnel-config`.
#[derive(Debug, Args)]
pub struct TunnelConfigArgs {
    /// Configuration file or directory (default: the built-in demo).
    #[arg(long, short, env = "LABGATE_CONFIG")]
    pub config: Option<PathBuf>,
}

/// How an explained request arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ViaArg {
    /// From a LAN address to the HTTPS listener.
    Direct,
    /// Through the Cloudflare Tunnel (network `tunnel`).
    Tunnel,
}

/// `labgate certs`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// The admin endpoint of the running labgate (`listen.admin`).
    #[arg(long, default_value = "127.0.0.1:9153")]
    pub admin: SocketAddr,
    /// File holding one of the tokens of `[admin] auth_file` (the token alone), for an admin
    /// endpoint that asks for credentials.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

/// `labgate explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The client's address (through the tunnel: the address Cloudflare reports; default a
    /// documentation address).
    #[arg(long, required_unless_present = "via")]
    pub from: Option<IpAddr>,
    /// `tunnel`: explain a request arriving through the Cloudflare Tunnel.
    #[arg(long, value_enum)]
    pub via: Option<ViaArg>,
    /// A host name or URL (`https://cloud.lab.example.com/path`).
    pub target: String,
    /// Configuration file or directory (default: the built-in demo).
    #[arg(long, short, env = "LABGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

/// `labgate state`: the state directory's key material, backed up and restored.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Write the local CA (certificate and key), the ACME accounts (keys and URLs) and the
    /// issued certificates with their keys to one archive, with a manifest (labgate version,
    /// time, each file's mode and SHA-256). The query log, the history, the pid file and the
    /// upgrade socket stay out: they rebuild.
    ///
    /// The archive holds PRIVATE KEYS: it is written 0600, no key is ever printed, and it
    /// belongs with the secrets (never in the configuration's Git repository).
    Export(StateExportArgs),
    /// Restore an archive made by `state export` into the state directory, after checking it
    /// whole: its checksum, each file's SHA-256, each key against its certificate, every path
    /// inside the state directory. A damaged archive writes nothing. Files are written 0600,
    /// directories 0700. Stop labgate first, start it after.
    Import(StateImportArgs),
    /// Check the key material of a state directory as `state import` checks an archive:
    /// each key parses and matches its certificate.
    Check(StateDirArgs),
}

/// Which state directory: `--state-dir`, else the configuration's `server.state_dir`.
#[derive(Debug, Args)]
pub struct StateDirArgs {
    /// Configuration file or directory, for its `server.state_dir`.
    #[arg(long, short, env = "LABGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The state directory (overrides the configuration's).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

/// `labgate state export`.
#[derive(Debug, Args)]
pub struct StateExportArgs {
    #[command(flatten)]
    pub dir: StateDirArgs,
    /// The archive to write (mode 0600, replaced whole), or `-` for stdout (never a terminal).
    #[arg(long, short)]
    pub output: PathBuf,
}

/// `labgate state import`.
#[derive(Debug, Args)]
pub struct StateImportArgs {
    #[command(flatten)]
    pub dir: StateDirArgs,
    /// The archive `state export` wrote, or `-` for stdin.
    #[arg(long, short)]
    pub input: PathBuf,
    /// Replace a local CA the state directory already holds (clients that trust it will stop
    /// trusting labgate's certificates).
    #[arg(long)]
    pub force: bool,
}
