//! `labgate run`: start-up order (config, state, listeners, tasks, ready), signals, shutdown.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use labgate_acme::local_ca::LocalCa;
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{BackgroundService, background_service};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::admin::{self, Admin};
use crate::blocklists;
use crate::certs::CertBuilder;
use crate::cli::RunArgs;
use crate::demo;
use crate::listen;
use crate::reload::{self, ConfigSource, Origin, Overrides, Trigger};
use crate::status::Shared;
use crate::watch;

/// Time the tasks get to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often certificate files are checked for changes.
const CERT_CHECK: Duration = Duration::from_secs(5);

/// Loads the configuration (the demo without `--config`) and serves until SIGTERM/SIGINT.
/// pingora's `Server` owns the process (F3): the HTTPS and HTTP listeners are its listening
/// services, and everything else (DNS, admin, reload, watcher, blocklists, certificates) runs
/// in its `labgate control` background service.
///
/// # Errors
/// A `labgate_config::Error` for an invalid configuration (exit 64), anything else for a
/// runtime failure (exit 1).
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    raise_open_file_limit();
    let is_demo = args.config.is_none();
    let source = ConfigSource {
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
    };
    let snapshot = source.compile(1)?;
    for w in &snapshot.warnings {
        warn!("{w}");
    }
    let state_dir = snapshot.state_dir.clone();
    labgate_acme::store::prepare_state_dir(&state_dir)?;
    // Nothing of the local CA is made while it is off (a reload that turns it on makes it).
    let ca = if snapshot.certificates.local_ca {
        let ca = LocalCa::load_or_create(&state_dir).context("cannot set up the local CA")?;
        Some(Arc::new(ca))
    } else {
        None
    };
    let listen = snapshot.listen.clone();
    // pingora would retry a busy port, then panic in its service thread: check here, with
    // a message.
    for (addrs, key) in [
        (&listen.https, "listen.https"),
        (&listen.http, "listen.http"),
        (&listen.tunnel, "listen.tunnel"),
        (&listen.tunnel_https, "listen.tunnel_https"),
    ] {
        for &addr in addrs {
            listen::check_tcp(addr, key)?;
        }
    }
    let shared = Shared::new(snapshot, Arc::new(labgate_dns::Metrics::default()));
    let handler = shared.dns.clone();
    let names = Arc::new(crate::outbound::names(
        shared.snapshot.clone(),
        handler.clone(),
    ));
    let client = labgate_outbound::Client::new(Arc::clone(&names) as _)
        .context("cannot set up TLS for labgate's own HTTP client")?;
    let (access, access_rx) = labgate_proxy::access::AccessLog::new();
    let mut certs = CertBuilder::new(state_dir.clone(), ca);
    let store = Arc::new(labgate_proxy::CertStore::default());
    store.publish(certs.build(&shared.snapshot.load()));
    let proxy = Arc::new(labgate_proxy::Proxy::new(
        shared.snapshot.load_full(),
        Arc::clone(&store),
        Arc::new(labgate_proxy::metrics::Metrics::default()),
        access,
        listen.https.first().map_or(443, std::net::SocketAddr::port),
        client.clone(),
    ));
    let _ = shared.proxy.set(Arc::clone(&proxy));
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
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
    let addresses = labgate_proxy::Addresses {
        https: &listen.https,
        http: &listen.http,
        tunnel: &listen.tunnel,
        tunnel_https: &listen.tunnel_https,
    };
    for service in labgate_proxy::listeners(&proxy, addresses, threads)? {
        server.add_service(service);
    }
    let mut control = background_service(
        "labgate control",
        Control(Mutex::new(Some(Parts {
            source,
            shared,
            certs,
            proxy,
            access_rx,
            is_demo,
            handler,
            names,
            client,
        }))),
    );
    control.threads = Some(1);
    server.add_service(control);
    server.run(pingora::server::RunArgs::default());
    Ok(ExitCode::SUCCESS)
}

/// What the control service needs, handed over once when it starts.
struct Parts {
    source: ConfigSource,
    shared: Arc<Shared>,
    certs: CertBuilder,
    proxy: Arc<labgate_proxy::Proxy>,
    access_rx: mpsc::Receiver<labgate_proxy::access::Entry>,
    is_demo: bool,
    handler: labgate_dns::Dns,
    names: Arc<labgate_outbound::Names>,
    client: labgate_outbound::Client,
}

/// The `labgate control` background service.
struct Control(Mutex<Option<Parts>>);

#[async_trait::async_trait]
impl BackgroundService for Control {
    async fn start(&self, shutdown: ShutdownWatch) {
        let Some(parts) = self.0.lock().ok().and_then(|mut p| p.take()) else {
            return;
        };
        if let Err(e) = serve(parts, shutdown).await {
            // Start-up failed after pingora took the process: report it as `main` would.
            eprintln!("Error: {e:#}");
            std::process::exit(1);
        }
    }
}

async fn serve(parts: Parts, mut shutdown: ShutdownWatch) -> anyhow::Result<()> {
    let Parts {
        source,
        shared,
        mut certs,
        proxy,
        access_rx,
        is_demo,
        handler,
        names,
        client,
    } = parts;
    let snapshot = shared.snapshot.load_full();
    let admin_addr = snapshot.listen.admin;
    let admin_listener = listen::tcp(admin_addr, "listen.admin")?;
    let admin_addr = admin_listener.local_addr()?;
    let mut udp = Vec::new();
    let mut tcp = Vec::new();
    let mut udp_bound = Vec::new();
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    for &addr in &snapshot.listen.dns {
        let group = listen::udp_group(addr, "listen.dns", workers)?;
        udp_bound.push(group[0].local_addr()?);
        udp.extend(group);
        tcp.push(listen::tcp(addr, "listen.dns")?);
    }
    let tls = (snapshot.listen.dns_tls.iter())
        .map(|&addr| listen::tcp(addr, "listen.dns_tls"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let dns_bound: Vec<String> = udp_bound
        .iter()
        .map(|a| Ok::<_, std::io::Error>(format!("udp {a}")))
        .chain(
            tcp.iter()
                .map(|l| l.local_addr().map(|a| format!("tcp {a}"))),
        )
        .chain(
            tls.iter()
                .map(|l| l.local_addr().map(|a| format!("tls {a}"))),
        )
        .collect::<Result<_, _>>()?;
    let served: Arc<dyn rustls::server::ResolvesServerCert> = proxy.certs.clone();
    let dns =
        labgate_dns::serve(handler.clone(), udp, tcp, (tls, served)).context("cannot start DNS")?;
    // ACME: certificates on disk are loaded and served before `ready`; issuance and renewal
    // run in the manager's tasks.
    let manager = labgate_acme::Manager::new(
        snapshot.state_dir.clone(),
        Arc::new(labgate_acme::Metrics::default()),
        labgate_acme::Helpers {
            builtin: Some(Arc::new(crate::acme::Builtin(handler.challenges()))),
            lookup: Some(Arc::new(crate::acme::Upstreams(handler.clone()))),
            client: client.clone(),
        },
    );
    let _ = shared.acme.set(Arc::clone(&manager));
    manager.reconcile(&snapshot);
    proxy.access_keys.prefetch(&snapshot);
    certs.with_acme(Arc::clone(&manager));
    proxy.certs.publish(certs.build(&snapshot));
    let (tx, rx) = mpsc::channel(16);
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
    };
    tasks.spawn(admin::serve(admin_listener, admin, cancel.child_token()));
    if let Some(p) = source.path() {
        let watch = watch::start(p, tx.clone(), blocklist_file(Arc::clone(&shared)))
            .with_context(|| format!("cannot watch {} for changes", p.display()))?;
        tasks.spawn(follow_list_dirs(
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
    // Named backends resolve before `ready`, so the first request finds them.
    crate::backends::resolve_all(&proxy, &names).await;
    tasks.spawn(crate::backends::run(
        Arc::clone(&shared),
        Arc::clone(&proxy),
        names,
        cancel.child_token(),
    ));
    tasks.spawn(labgate_proxy::access::write(
        access_rx,
        cancel.child_token().cancelled_owned(),
    ));
    tasks.spawn(labgate_proxy::health::run(
        Arc::clone(&proxy),
        cancel.child_token().cancelled_owned(),
    ));
    tasks.spawn(follow_reloads(
        Arc::clone(&shared),
        proxy,
        certs,
        manager.subscribe(),
        cancel.child_token(),
    ));
    tasks.spawn(crate::acme::run(
        manager,
        Arc::clone(&shared),
        cancel.child_token(),
    ));
    let https = wait_listening(&snapshot.listen.https).await?;
    let http = wait_listening(&snapshot.listen.http).await?;
    let tunnel = wait_listening(&snapshot.listen.tunnel).await?;
    let tunnel_https = wait_listening(&snapshot.listen.tunnel_https).await?;

    shared.ready.store(true, Ordering::Release);
    let bound = Bound {
        admin: admin_addr,
        dns: dns_bound,
        https,
        http,
        tunnel,
        tunnel_https,
    };
    banner(&shared, &bound, is_demo);

    let _ = shutdown.wait_for(|stop| *stop).await;
    info!("shutting down");
    shared.ready.store(false, Ordering::Release);
    cancel.cancel();
    dns.shutdown().await;
    if tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        warn!("tasks did not stop within {SHUTDOWN_GRACE:?}; exiting anyway");
    }
    Ok(())
}

/// Raises the soft limit on open files to the hard one, as nginx's `worker_rlimit_nofile`
/// or Go's runtime do: every connection is a descriptor (two through the proxy), and the
/// usual soft limit of 1024 would stall labgate at a few hundred clients, with no error a
/// client could see.
fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => info!("open-file limit raised from {soft} to {hard}"),
            Err(e) => warn!("cannot raise the open-file limit from {soft} to {hard}: {e}"),
        }
    }
}

/// Waits until pingora listens on the proxy's addresses (bounded), so `ready` is true.
async fn wait_listening(
    addrs: &[std::net::SocketAddr],
) -> anyhow::Result<Vec<std::net::SocketAddr>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for &a in addrs {
        while !listen::held(a) {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the listener on {a} did not come up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(addrs.to_vec())
}

/// Rebuilds the proxy's certificates on reload, when ACME issues one, and when certificate
/// files change.
async fn follow_reloads(
    shared: Arc<Shared>,
    proxy: Arc<labgate_proxy::Proxy>,
    certs: CertBuilder,
    mut issued: tokio::sync::watch::Receiver<u64>,
    cancel: CancellationToken,
) {
    let mut published = shared.published.subscribe();
    let certs = Arc::new(Mutex::new(certs));
    let mut tick = tokio::time::interval(CERT_CHECK);
    loop {
        tokio::select! {
            changed = published.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            changed = issued.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tick.tick() => {}
            () = cancel.cancelled() => return,
        };
        let snapshot = shared.snapshot.load_full();
        let certs = Arc::clone(&certs);
        let built =
            tokio::task::spawn_blocking(move || certs.lock().map(|mut c| c.build(&snapshot)).ok())
                .await;
        if let Ok(Some(map)) = built {
            proxy.certs.publish(map);
        }
    }
}

/// The files of the file blocklists of a configuration.
fn list_files(s: &labgate_config::Snapshot) -> impl Iterator<Item = &std::path::Path> {
    s.dns.blocklists.iter().filter_map(|l| match &l.source {
        labgate_config::settings::BlocklistSource::File(p) => Some(p.as_path()),
        labgate_config::settings::BlocklistSource::Url(_) => None,
    })
}

/// The directories of the file blocklists of the running configuration.
fn blocklist_dirs(shared: &Shared) -> Vec<std::path::PathBuf> {
    list_files(&shared.snapshot.load())
        .filter_map(|p| p.parent().map(std::path::Path::to_owned))
        .collect()
}

/// Keeps the watch on the directories of the serving snapshot's blocklist files (a reload
/// may name lists in a new one) until cancelled, when the watch stops. Subscribed before
/// its first look, so no reload falls in between.
fn follow_list_dirs(
    mut watch: watch::ConfigWatch,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) -> impl Future<Output = ()> {
    let mut published = shared.published.subscribe();
    watch.follow(&blocklist_dirs(&shared));
    async move {
        loop {
            tokio::select! {
                changed = published.changed() => if changed.is_err() { return },
                () = cancel.cancelled() => return,
            }
            watch.follow(&blocklist_dirs(&shared));
        }
    }
}

/// Whether a changed path is a blocklist file of the serving snapshot.
fn blocklist_file(shared: Arc<Shared>) -> impl Fn(&std::path::Path) -> bool + Send + 'static {
    move |changed| {
        let Ok(changed) = changed.canonicalize() else {
            return false;
        };
        list_files(&shared.snapshot.load()).any(|p| p.canonicalize().is_ok_and(|p| p == changed))
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

/// What start-up bound, for the banner.
struct Bound {
    admin: std::net::SocketAddr,
    dns: Vec<String>,
    https: Vec<std::net::SocketAddr>,
    http: Vec<std::net::SocketAddr>,
    tunnel: Vec<std::net::SocketAddr>,
    tunnel_https: Vec<std::net::SocketAddr>,
}

/// The lines operators and tests wait for, on stdout.
fn banner(shared: &Arc<Shared>, bound: &Bound, is_demo: bool) {
    let s = shared.snapshot.load();
    println!("labgate: admin listening on http://{}", bound.admin);
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
            println!("{}", demo::try_it(&s, bound.admin, &ca));
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
