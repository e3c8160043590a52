//! `labgate run`: start-up order (config, state, listeners, tasks, ready), signals, shutdown.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use labgate_acme::local_ca::LocalCa;
use labgate_config::Snapshot;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::admin::{self, Admin};
use crate::blocklists;
use crate::cli::RunArgs;
use crate::demo;
use crate::listen;
use crate::reload::{self, ConfigSource, Origin, Overrides, Trigger};
use crate::status::Shared;
use crate::watch;

/// Time the tasks get to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Loads the configuration (the demo without `--config`) and serves until SIGTERM/SIGINT.
///
/// # Errors
/// A `labgate_config::Error` for an invalid configuration (exit 64), anything else for a
/// runtime failure (exit 1).
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let is_demo = args.config.is_none();
    let source = ConfigSource {
        origin: match &args.config {
            Some(p) => Origin::Path(p.clone()),
            None => Origin::Memory(demo::sources()),
        },
        overrides: Overrides {
            admin: args.admin,
            dns: args.dns.clone(),
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("labgate")
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(serve(source, snapshot, is_demo))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(source: ConfigSource, snapshot: Snapshot, is_demo: bool) -> anyhow::Result<()> {
    let state_dir = snapshot.state_dir.clone();
    let ca = tokio::task::spawn_blocking(move || LocalCa::load_or_create(&state_dir))
        .await
        .context("local CA task failed")?
        .context("cannot set up the local CA")?;
    let dns_addrs = snapshot.listen.dns.clone();
    let admin_addr = snapshot.listen.admin;
    let admin_listener = TcpListener::bind(admin_addr)
        .await
        .with_context(|| format!("cannot listen on {admin_addr} (listen.admin)"))?;
    let admin_addr = admin_listener.local_addr()?;
    let mut udp = Vec::new();
    let mut tcp = Vec::new();
    for addr in dns_addrs {
        udp.push(listen::udp(addr, "listen.dns")?);
        tcp.push(listen::tcp(addr, "listen.dns")?);
    }
    let dns_bound: Vec<String> = udp
        .iter()
        .map(|s| s.local_addr().map(|a| format!("udp {a}")))
        .chain(
            tcp.iter()
                .map(|l| l.local_addr().map(|a| format!("tcp {a}"))),
        )
        .collect::<Result<_, _>>()?;
    let dns_metrics = Arc::new(labgate_dns::Metrics::default());
    let shared = Shared::new(snapshot, Arc::clone(&dns_metrics));
    let handler = labgate_dns::Handler::new(shared.snapshot.clone(), dns_metrics);
    let mut dns = labgate_dns::serve(handler.clone(), udp, tcp);
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
    let _watcher = match source.path() {
        Some(p) => Some(
            watch::start(p, tx.clone(), blocklist_file(Arc::clone(&shared)))
                .with_context(|| format!("cannot watch {} for changes", p.display()))?,
        ),
        None => None,
    };
    tasks.spawn(sighup(tx, cancel.child_token()));
    tasks.spawn(blocklists::run(
        Arc::clone(&shared),
        handler,
        cancel.child_token(),
    ));

    shared.ready.store(true, Ordering::Release);
    banner(&shared, admin_addr, &dns_bound, &ca.cert_path(), is_demo);

    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    info!("shutting down");
    shared.ready.store(false, Ordering::Release);
    cancel.cancel();
    if let Err(e) = dns.shutdown_gracefully().await {
        warn!("dns server stopped with an error: {e}");
    }
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

/// Whether a changed path is a blocklist file of the serving snapshot.
fn blocklist_file(shared: Arc<Shared>) -> impl Fn(&std::path::Path) -> bool + Send + 'static {
    move |changed| {
        let Ok(changed) = changed.canonicalize() else {
            return false;
        };
        shared
            .snapshot
            .load()
            .dns
            .blocklists
            .iter()
            .any(|l| match &l.source {
                labgate_config::settings::BlocklistSource::File(p) => {
                    p.canonicalize().is_ok_and(|p| p == changed)
                }
                labgate_config::settings::BlocklistSource::Url(_) => false,
            })
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

/// The lines operators and tests wait for, on stdout.
fn banner(
    shared: &Arc<Shared>,
    admin: std::net::SocketAddr,
    dns: &[String],
    ca: &std::path::Path,
    is_demo: bool,
) {
    let s = shared.snapshot.load();
    println!("labgate: admin listening on http://{admin}");
    for d in dns {
        println!("labgate: dns listening on {d}");
    }
    println!("labgate: local CA certificate at {}", ca.display());
    if is_demo {
        println!("{}", demo::try_it(&s, admin, ca));
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
