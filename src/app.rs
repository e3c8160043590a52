//! `labgate run` as a library: [`App::build`] wires the subsystems around a compiled snapshot
//! and already-bound sockets, [`App::run`] serves until SIGTERM/SIGINT. pingora's `Server` owns
//! the process (F3): the proxy's listeners are its listening services, and everything else
//! (DNS, admin, reload, watcher, blocklists, backends, access keys, certificates, ACME) runs
//! as tasks of its `labgate control` background service, each tracked in one `JoinSet` and
//! cancelled on shutdown.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use labgate_acme::local_ca::LocalCa;
use labgate_config::Snapshot;
use pingora::server::configuration::ServerConf;
use pingora::server::{
    RunArgs, Server, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch, UnixShutdownSignalWatch,
};
use pingora::services::background::{BackgroundService, background_service};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::admin::{self, Admin};
use crate::blocklists;
use crate::certs::{self, CertBuilder, Certificates};
use crate::cli;
use crate::demo;
use crate::listen::{self, Listeners};
use crate::reload::{self, ConfigSource, Origin, Overrides, Trigger};
use crate::status::Shared;
use crate::watch;

/// Time the tasks get to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Loads the configuration (the demo without `--config`), binds its listeners and serves
/// until SIGTERM/SIGINT.
///
/// # Errors
/// A `labgate_config::Error` for an invalid configuration (exit 64), anything else for a
/// runtime failure (exit 1), including one of a subsystem after start-up.
pub fn run(args: cli::RunArgs) -> anyhow::Result<ExitCode> {
    listen::raise_open_file_limit();
    let source = ConfigSource::of_run(&args);
    let snapshot = source.compile(1)?;
    for w in &snapshot.warnings {
        warn!("{w}");
    }
    labgate_acme::store::prepare_state_dir(&snapshot.state_dir)?;
    if let Some(pair) = &snapshot.pair {
        let role =
            labgate_config::pair::this_node(pair.nodes, args.node, labgate_acme::pair::is_local)
                .context("[pair]")?;
        info!(
            "[pair]: this is node {} ({}), its peer {}",
            role.me,
            if role.first { "first" } else { "second" },
            role.peer
        );
    }
    // A running labgate that started this one hands over its sockets (issue 25's upgrade).
    let from = crate::upgrade::inherit()
        .context("cannot take over the listening sockets of the running labgate")?;
    let (from, mut inherited) = match from {
        Some((stream, inherited)) => (Some(stream), inherited),
        // Or systemd kept them across a restart.
        None => {
            let passed = crate::fdstore::inherit();
            if let Some(n) = crate::notify::Notifier::from_env() {
                // Before binding: systemd closes what labgate binds anew.
                crate::fdstore::remove(&n, &passed.remove);
            }
            (None, passed.inherited)
        }
    };
    let listeners = Listeners::bind(&snapshot.listen, workers(), &mut inherited)?;
    let mut unstored = Vec::new();
    for e in inherited.close_left() {
        info!("{e} is no longer configured: closed");
        unstored.push(crate::fdstore::name(&e));
    }
    let handover = listeners
        .handover(&snapshot.listen)
        .context("cannot keep the listening sockets for an upgrade")?;
    let upgrade = Upgrade {
        handover,
        from,
        unstored,
    };
    App::build(source, snapshot, listeners, upgrade, args.node)?.run()?;
    Ok(ExitCode::SUCCESS)
}

/// labgate wired and ready to serve: pingora's server with the proxy's listening services and
/// the control service.
pub struct App {
    server: Server,
    fatal: Arc<Fatal>,
}

impl App {
    /// Wires every subsystem around `snapshot` (compiled from `source`, which reloads read
    /// again) and `listeners`, bound by the caller. Nothing is served until [`App::run`].
    ///
    /// # Errors
    /// When the local CA cannot be set up or the proxy's TLS settings cannot be made.
    pub fn build(
        source: ConfigSource,
        snapshot: Snapshot,
        listeners: Listeners,
        upgrade: Upgrade,
        node: Option<std::net::IpAddr>,
    ) -> anyhow::Result<Self> {
        let state_dir = snapshot.state_dir.clone();
        // Nothing of the local CA is made while it is off (a reload that turns it on makes it).
        let ca = if snapshot.certificates.local_ca {
            let ca = LocalCa::load_or_create(&state_dir).context("cannot set up the local CA")?;
            Some(Arc::new(ca))
        } else {
            None
        };
        let Listeners {
            admin,
            dns_udp,
            dns_tcp,
            dns_tls,
            proxy: sockets,
        } = listeners;
        let bound = Bound::of(&admin, &dns_udp, &dns_tcp, &dns_tls, &sockets)?;
        let snapshots = Arc::new(ArcSwap::new(Arc::new(snapshot)));
        let first = snapshots.load_full();
        let udp_workers = dns_udp.iter().map(Vec::len).sum();
        let querylog = Arc::new(
            labgate_querylog::QueryLog::start(Arc::clone(&first), udp_workers)
                .context("cannot start the query log's writer")?,
        );
        let dnstap = Arc::new(
            labgate_dnstap::Dnstap::start(&first, udp_workers)
                .context("cannot start the dnstap writer")?,
        );
        let handler = labgate_dns::Dns::new(
            Arc::clone(&first),
            Arc::new(labgate_dns::Metrics::default()),
        )
        .logging(querylog.sink())
        .tapping(dnstap.tap());
        let names = Arc::new(crate::outbound::names(
            Arc::clone(&snapshots),
            handler.clone(),
        ));
        let client = labgate_outbound::Client::new(Arc::clone(&names) as _)
            .context("cannot set up TLS for labgate's own HTTP client")?;
        let (access, access_rx) = labgate_proxy::access::AccessLog::new();
        let certs = Arc::new(Certificates::new(
            CertBuilder::new(state_dir.clone(), ca),
            Arc::new(labgate_proxy::CertStore::default()),
            Arc::clone(&first),
        ));
        let proxy = Arc::new(labgate_proxy::Proxy::new(
            Arc::clone(&first),
            Arc::clone(certs.store()),
            Arc::new(labgate_proxy::metrics::Metrics::default()),
            access,
            bound.https.first().map_or(443, SocketAddr::port),
            client.clone(),
        ));
        let shared = Shared::new(
            snapshots,
            handler.clone(),
            Arc::clone(&proxy),
            (Arc::clone(&certs), querylog, dnstap),
        );
        let threads = workers();
        let conf = ServerConf {
            threads,
            work_stealing: false,
            grace_period_seconds: Some(1),
            graceful_shutdown_timeout_seconds: Some(SHUTDOWN_GRACE.as_secs()),
            pid_file: state_dir.join("labgate.pid").display().to_string(),
            upgrade_sock: state_dir.join("labgate-upgrade.sock").display().to_string(),
            ..ServerConf::default()
        };
        let mut server = Server::new_with_opt_and_conf(None, conf);
        for service in labgate_proxy::listeners(&proxy, sockets, threads)? {
            server.add_service(service);
        }
        let fatal = Arc::new(Fatal::default());
        let mut control = background_service(
            "labgate control",
            Control {
                parts: Mutex::new(Some(Parts {
                    source,
                    shared,
                    certs,
                    proxy,
                    access_rx,
                    handler,
                    names,
                    client,
                    dns: Dns {
                        udp: dns_udp.into_iter().flatten().collect(),
                        tcp: dns_tcp,
                        tls: dns_tls,
                    },
                    admin,
                    bound,
                    upgrade,
                    node,
                })),
                fatal: Arc::clone(&fatal),
            },
        );
        control.threads = Some(1);
        server.add_service(control);
        Ok(Self { server, fatal })
    }

    /// Serves until SIGTERM or SIGINT (or a subsystem's failure), then shuts down gracefully.
    ///
    /// # Errors
    /// The failure of a subsystem that ended the process.
    pub fn run(self) -> anyhow::Result<()> {
        let fatal = Arc::clone(&self.fatal);
        self.server.run(RunArgs {
            shutdown_signal: Box::new(Stop(Arc::clone(&fatal))),
        });
        match fatal.error.lock().ok().and_then(|mut e| e.take()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl ConfigSource {
    /// The configuration `labgate run` serves: its `--config` (the demo without one) and the
    /// flags that override it.
    fn of_run(args: &cli::RunArgs) -> Self {
        let is_demo = args.config.is_none();
        Self {
            origin: match &args.config {
                Some(p) => Origin::Path(p.clone()),
                None => Origin::Memory(demo::sources()),
            },
            overrides: Overrides {
                admin: args.admin,
                dns: args.dns.clone(),
                https: args.https.clone(),
                http: args.http.clone(),
                state_dir: args
                    .state_dir
                    .clone()
                    .or_else(|| is_demo.then(demo::state_dir)),
            },
        }
    }
}

/// Worker threads: one per core, for pingora's services and the DNS UDP sockets.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// A subsystem's failure after pingora took the process: kept for [`App::run`] to return,
/// and the signal that shuts pingora down.
#[derive(Default)]
struct Fatal {
    error: Mutex<Option<anyhow::Error>>,
    stop: Notify,
}

impl Fatal {
    fn report(&self, e: anyhow::Error) {
        if let Ok(mut error) = self.error.lock() {
            error.get_or_insert(e);
        }
        self.stop.notify_one();
    }
}

/// pingora's shutdown signals (SIGTERM graceful, SIGINT fast, SIGQUIT upgrade), and a
/// subsystem's failure as a graceful stop.
struct Stop(Arc<Fatal>);

#[async_trait::async_trait]
impl ShutdownSignalWatch for Stop {
    async fn recv(&self) -> ShutdownSignal {
        tokio::select! {
            signal = UnixShutdownSignalWatch.recv() => signal,
            () = self.0.stop.notified() => ShutdownSignal::GracefulTerminate,
        }
    }
}

/// The DNS sockets, bound before pingora runs.
struct Dns {
    udp: Vec<std::net::UdpSocket>,
    tcp: Vec<std::net::TcpListener>,
    tls: Vec<std::net::TcpListener>,
}

/// What the control service needs, handed over once when it starts.
struct Parts {
    source: ConfigSource,
    shared: Arc<Shared>,
    certs: Arc<Certificates>,
    proxy: Arc<labgate_proxy::Proxy>,
    access_rx: mpsc::Receiver<labgate_proxy::access::Entry>,
    handler: labgate_dns::Dns,
    names: Arc<labgate_outbound::Names>,
    client: labgate_outbound::Client,
    dns: Dns,
    admin: std::net::TcpListener,
    bound: Bound,
    upgrade: Upgrade,
    /// This machine's address in `[pair] nodes`, if given (`--node`).
    node: Option<std::net::IpAddr>,
}

/// The sockets kept for a new binary, and the connection to the process that handed this one
/// its sockets (to say `ready` on), if one did.
#[derive(Debug)]
pub struct Upgrade {
    /// Duplicates of every listening socket.
    pub handover: crate::upgrade::Handover,
    /// The previous process, waiting for this one to serve.
    pub from: Option<std::os::unix::net::UnixStream>,
    /// The descriptor store's names of sockets passed to this process for addresses no
    /// longer configured (closed).
    pub unstored: Vec<String>,
}

/// The `labgate control` background service.
struct Control {
    parts: Mutex<Option<Parts>>,
    fatal: Arc<Fatal>,
}

#[async_trait::async_trait]
impl BackgroundService for Control {
    async fn start(&self, shutdown: ShutdownWatch) {
        let Some(parts) = self.parts.lock().ok().and_then(|mut p| p.take()) else {
            return;
        };
        if let Err(e) = serve(parts, shutdown, Arc::clone(&self.fatal)).await {
            // pingora owns the process: its shutdown ends it, and `App::run` returns this.
            self.fatal.report(e);
        }
    }
}

async fn serve(parts: Parts, mut shutdown: ShutdownWatch, fatal: Arc<Fatal>) -> anyhow::Result<()> {
    let Parts {
        source,
        shared,
        certs,
        proxy,
        access_rx,
        handler,
        names,
        client,
        dns,
        admin: admin_listener,
        bound,
        upgrade,
        node,
    } = parts;
    let snapshot = shared.snapshot.load_full();
    let admin_listener =
        tokio::net::TcpListener::from_std(admin_listener).context("cannot serve admin")?;
    let tokio_tcp = |l: std::net::TcpListener| tokio::net::TcpListener::from_std(l);
    let tcp = dns
        .tcp
        .into_iter()
        .map(tokio_tcp)
        .collect::<Result<_, _>>()?;
    let tls = dns
        .tls
        .into_iter()
        .map(tokio_tcp)
        .collect::<Result<_, _>>()?;
    let (tx, rx) = mpsc::channel(16);
    let watch = match source.path() {
        Some(p) => Some(
            watch::start(
                p,
                &snapshot.state_dir,
                tx.clone(),
                watch::blocklist_file(Arc::clone(&shared)),
            )
            .with_context(|| format!("cannot watch {} for changes", p.display()))?,
        ),
        None => None,
    };
    let served: Arc<dyn rustls::server::ResolvesServerCert> = proxy.certs.clone();
    // The last step that can fail: nothing runs yet that would have to be stopped.
    let dns = labgate_dns::serve(handler.clone(), dns.udp, tcp, (tls, served))
        .context("cannot start DNS")?;
    // ACME: certificates on disk are loaded and served before `ready`; issuance and renewal
    // run in the manager's tasks.
    let manager = labgate_acme::Manager::new(
        snapshot.state_dir.clone(),
        Arc::new(labgate_acme::Metrics::default()),
        labgate_acme::Helpers {
            builtin: Some(Arc::new(crate::acme::Builtin(handler.challenges()))),
            lookup: Some(Arc::new(crate::acme::Upstreams(handler.clone()))),
            client: client.clone(),
            node,
        },
    );
    let _ = shared.acme.set(Arc::clone(&manager));
    manager.reconcile(&snapshot);
    let issued = manager.subscribe();
    let acme = (Arc::clone(&certs), Arc::clone(&manager));
    if let Err(e) = tokio::task::spawn_blocking(move || acme.0.with_acme(acme.1)).await {
        warn!("the certificates could not be built with ACME's: {e}");
    }
    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();
    tasks.spawn(reload::run(
        source.clone(),
        shared.clone(),
        rx,
        cancel.child_token(),
    ));
    let admin = Admin {
        shared: shared.clone(),
        reload: tx.clone(),
        ui: crate::page::Ui {
            shared: shared.clone(),
            config: source.path().map(std::path::Path::to_path_buf),
            started: std::time::SystemTime::now(),
        },
    };
    tasks.spawn(admin::serve(admin_listener, admin, cancel.child_token()));
    if let Some(watch) = watch {
        tasks.spawn(watch::follow_list_dirs(
            watch,
            Arc::clone(&shared),
            cancel.child_token(),
        ));
    }
    tasks.spawn(sighup(tx, cancel.child_token()));
    tasks.spawn(blocklists::run(
        Arc::clone(&shared),
        handler,
        client,
        cancel.child_token(),
    ));
    tasks.spawn(access_keys(
        Arc::clone(&shared),
        Arc::clone(&proxy),
        cancel.child_token(),
    ));
    // Named backends resolve before `ready`, so the first request finds them.
    crate::backends::resolve_all(&proxy, &names).await;
    tasks.spawn(crate::backends::run(
        Arc::clone(&shared),
        Arc::clone(&proxy),
        names,
        cancel.child_token(),
    ));
    tasks.spawn(crate::history::run(
        Arc::clone(&shared.http_history),
        crate::history::Sources {
            state_dir: snapshot.state_dir.clone(),
            proxy: Arc::clone(&shared.proxy),
            acme: Arc::clone(&manager),
        },
        cancel.child_token(),
    ));
    tasks.spawn(labgate_proxy::access::write(
        access_rx,
        (crate::logging::access_style(), Arc::clone(&shared.refused)),
        cancel.child_token().cancelled_owned(),
    ));
    tasks.spawn(labgate_proxy::health::run(
        Arc::clone(&proxy),
        cancel.child_token().cancelled_owned(),
    ));
    tasks.spawn(certs::follow_issuance(certs, issued, cancel.child_token()));
    tasks.spawn(crate::acme::run(
        Arc::clone(&manager),
        Arc::clone(&shared),
        cancel.child_token(),
    ));
    // The proxy's sockets were listening before pingora started: connections wait in their
    // queues until its accept loops run.
    shared.ready.store(true, Ordering::Release);
    banner(&shared.snapshot.load(), &bound, source.path().is_none());
    let notifier = crate::notify::Notifier::from_env().map(Arc::new);
    let watchdog = crate::notify::watchdog(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    );
    tasks.spawn(crate::probe::run(
        bound.probe.clone(),
        {
            let snapshots = Arc::clone(&shared.snapshot);
            move || probe_name(&snapshots.load())
        },
        (Arc::clone(&shared.health), notifier.clone()),
        watchdog,
        cancel.child_token(),
    ));
    let Upgrade {
        handover,
        from,
        unstored,
    } = upgrade;
    if let Some(mut from) = from {
        // The previous process drains and exits; systemd is told this one is the service now.
        if let Err(e) = crate::upgrade::ready(&mut from) {
            warn!("upgrade: the previous process is gone ({e})");
        }
        if let Some(n) = &notifier {
            n.send(&format!("MAINPID={}", std::process::id()));
        }
        info!("upgrade: serving on the sockets the previous process handed over");
    }
    if let Some(n) = &notifier {
        // Every listener outlives a restart in systemd's store, the dropped ones leave it.
        crate::fdstore::store(n, &handover);
        crate::fdstore::remove(n, &unstored);
        let s = shared.snapshot.load();
        n.send(&format!(
            "READY=1\nSTATUS=serving generation {} (hash {})",
            s.generation, s.hash
        ));
    }
    let upgraded = Arc::new(AtomicBool::new(false));
    tasks.spawn(upgrade_on_signal(
        Arc::new(handover),
        snapshot.state_dir.clone(),
        Arc::clone(&fatal),
        Arc::clone(&upgraded),
    ));

    let _ = shutdown.wait_for(|stop| *stop).await;
    info!("shutting down");
    // Keep-alive clients are told their next response is the last on its connection.
    shared.proxy.drain();
    // After an upgrade the service goes on in the new process: systemd is not told it stops.
    if let (Some(n), false) = (&notifier, upgraded.load(Ordering::Acquire)) {
        n.send("STOPPING=1\nSTATUS=stopping: finishing what is in flight");
    }
    shared.ready.store(false, Ordering::Release);
    cancel.cancel();
    // All at once: pingora drops this runtime's tasks once its grace period (1 s) is over,
    // so the ACME orders' challenge removals must not wait behind the DNS drain (up to 4 s
    // for an open DNS-over-TCP client). Orders midway are dropped and their challenge values
    // removed.
    let stopped = async {
        tokio::join!(
            async {
                dns.shutdown().await;
                // The answers are out: what the log and the stream still hold is written.
                let log = Arc::clone(&shared.querylog);
                let tap = Arc::clone(&shared.dnstap);
                let _ = tokio::task::spawn_blocking(move || {
                    log.stop();
                    tap.stop();
                })
                .await;
            },
            manager.shutdown(),
            async { while tasks.join_next().await.is_some() {} }
        );
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, stopped).await.is_err() {
        warn!("tasks did not stop within {SHUTDOWN_GRACE:?}; exiting anyway");
    }
    Ok(())
}

/// Fetches the Cloudflare Access keys each published snapshot names and labgate has not
/// fetched yet (the first snapshot's at once), until cancelled.
async fn access_keys(
    shared: Arc<Shared>,
    proxy: Arc<labgate_proxy::Proxy>,
    cancel: CancellationToken,
) {
    let mut published = shared.published.subscribe();
    loop {
        let snapshot = shared.snapshot.load_full();
        tokio::select! {
            () = proxy.access_keys.prefetch(&snapshot) => {}
            () = cancel.cancelled() => return,
        }
        tokio::select! {
            changed = published.changed() => if changed.is_err() { return },
            () = cancel.cancelled() => return,
        }
    }
}

async fn sighup(tx: mpsc::Sender<Trigger>, cancel: CancellationToken) {
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        warn!("cannot handle SIGHUP; reload with POST /reload instead");
        return;
    };
    loop {
        tokio::select! {
            s = hup.recv() => {
                if s.is_none() || tx.send(Trigger::Signal).await.is_err() {
                    return;
                }
                info!("SIGHUP: reloading");
            }
            () = cancel.cancelled() => return,
        }
    }
}

/// How long a new binary may take from its start to serving before an upgrade is given up.
const UPGRADE_WAIT: Duration = Duration::from_secs(60);

/// On each SIGUSR2, starts the binary this process was started from (a new one, once
/// installed over it) and hands it the sockets; once it serves, this process stops gracefully
/// (`fatal`'s stop, no error) and `upgraded` says so. A failed upgrade is logged and this
/// process keeps serving.
async fn upgrade_on_signal(
    handover: Arc<crate::upgrade::Handover>,
    state_dir: std::path::PathBuf,
    fatal: Arc<Fatal>,
    upgraded: Arc<AtomicBool>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut usr2 = match signal(SignalKind::user_defined2()) {
        Ok(s) => s,
        Err(e) => {
            warn!("cannot listen for SIGUSR2: binary upgrades are off ({e})");
            return;
        }
    };
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    while usr2.recv().await.is_some() {
        let exe = match std::env::current_exe() {
            Ok(p) => crate::upgrade::binary_path(p),
            Err(e) => {
                warn!(
                    "upgrade: cannot find this process's binary ({e}); this process keeps serving"
                );
                continue;
            }
        };
        info!(binary = %exe.display(), "upgrade: starting the binary and handing it the sockets");
        let (h, args, dir) = (Arc::clone(&handover), args.clone(), state_dir.clone());
        let handed = tokio::task::spawn_blocking(move || {
            crate::upgrade::hand_over(&h, (&exe, &args), &dir, UPGRADE_WAIT)
        })
        .await;
        match handed {
            Ok(Ok(pid)) => {
                info!(
                    "upgrade: process {pid} serves; this one finishes what is in flight and exits"
                );
                upgraded.store(true, Ordering::Release);
                fatal.stop.notify_one();
                return;
            }
            Ok(Err(e)) => warn!("upgrade failed: {e:#}; this process keeps serving"),
            Err(e) => warn!("upgrade failed: {e}; this process keeps serving"),
        }
    }
}

/// The name the self-check's TLS handshake asks for: the default name, else the first
/// service's host (a certificate labgate serves), else one it has none for (an alert is an
/// answer too).
fn probe_name(s: &Snapshot) -> String {
    s.certificates
        .default_name
        .as_deref()
        .or_else(|| {
            s.services
                .first()
                .and_then(|svc| svc.hosts.first())
                .map(|h| &**h)
        })
        .unwrap_or("labgate-probe.invalid")
        .to_owned()
}

/// What start-up bound, for the banner.
struct Bound {
    admin: SocketAddr,
    dns: Vec<String>,
    /// What the data plane's self-check asks.
    probe: crate::probe::Targets,
    https: Vec<SocketAddr>,
    http: Vec<SocketAddr>,
    tunnel: Vec<SocketAddr>,
    tunnel_https: Vec<SocketAddr>,
}

impl Bound {
    /// The addresses the sockets hold (a port 0 resolved).
    fn of(
        admin: &std::net::TcpListener,
        udp: &[Vec<std::net::UdpSocket>],
        tcp: &[std::net::TcpListener],
        tls: &[std::net::TcpListener],
        proxy: &labgate_proxy::Sockets,
    ) -> std::io::Result<Self> {
        let addrs = |ls: &[std::net::TcpListener]| -> std::io::Result<Vec<SocketAddr>> {
            ls.iter().map(std::net::TcpListener::local_addr).collect()
        };
        let first_udp = (udp.iter().find_map(|group| group.first()))
            .map(std::net::UdpSocket::local_addr)
            .transpose()?;
        let udp = (udp.iter().filter_map(|group| group.first()))
            .map(|s| s.local_addr().map(|a| format!("udp {a}")));
        let tcp = tcp
            .iter()
            .map(|l| l.local_addr().map(|a| format!("tcp {a}")));
        let tls = tls
            .iter()
            .map(|l| l.local_addr().map(|a| format!("tls {a}")));
        Ok(Self {
            admin: admin.local_addr()?,
            probe: crate::probe::Targets::new(first_udp, addrs(&proxy.https)?.first().copied()),
            dns: udp.chain(tcp).chain(tls).collect::<Result<_, _>>()?,
            https: addrs(&proxy.https)?,
            http: addrs(&proxy.http)?,
            tunnel: addrs(&proxy.tunnel)?,
            tunnel_https: addrs(&proxy.tunnel_https)?,
        })
    }
}

/// The lines operators and tests wait for, on stdout.
fn banner(s: &Snapshot, bound: &Bound, is_demo: bool) {
    println!("labgate: admin listening on http://{}", bound.admin);
    println!("labgate: status page at http://{}/", bound.admin);
    for d in &bound.dns {
        println!("labgate: dns listening on {d}");
    }
    for a in &bound.https {
        println!("labgate: https listening on {a}");
    }
    for a in &bound.tunnel {
        println!("labgate: tunnel listening on http://{a}");
    }
    for a in &bound.tunnel_https {
        println!("labgate: tunnel listening on https://{a}");
    }
    for a in &bound.http {
        println!("labgate: http listening on {a}");
    }
    // The demo's built-in configuration has the local CA on.
    if s.certificates.local_ca {
        let ca = LocalCa::cert_path_in(&s.state_dir);
        println!("labgate: local CA certificate at {}", ca.display());
        if is_demo {
            println!("{}", demo::try_it(s, bound.admin, &ca));
        }
    }
    // Printed last: tests and supervisors wait for this line.
    println!(
        "labgate: ready: generation {} (hash {}), {} networks, {} zones, {} services",
        s.generation,
        s.hash.short(),
        s.networks.iter().len(),
        s.zones.len(),
        s.services.len()
    );
}
