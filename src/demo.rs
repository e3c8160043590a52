//! The built-in demo configuration: loopback ports, a local CA, no root needed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use labgate_config::{Snapshot, Sources};

/// The demo's TOML, compiled into the binary.
pub const DEMO_TOML: &str = include_str!("../deploy/examples/demo.toml");

/// The demo as sources.
pub fn sources() -> Sources {
    let mut s = Sources::new();
    s.add("<built-in demo>/demo.toml", DEMO_TOML);
    s
}

/// The demo's state directory (its local CA lives there).
pub fn state_dir() -> PathBuf {
    std::env::temp_dir().join("labgate-demo")
}

/// What to try once the demo runs.
pub fn try_it(s: &Snapshot, admin: SocketAddr, ca: &Path) -> String {
    let services: Vec<String> = s
        .services
        .iter()
        .map(|v| {
            format!(
                "  {} (allowed: {})",
                v.hosts.join(", "),
                s.networks.names(v.allow)
            )
        })
        .collect();
    format!(
        "\nlabgate demo: the built-in configuration (deploy/examples/demo.toml) on loopback.\n\
         Services declared:\n{}\n\n\
         Status page (the queries below show up in its query log): http://{admin}/\n\n\
         Try:\n\
         \x20 dig @127.0.0.1 -p 8053 app.demo.test                 # lab: 127.0.0.1\n\
         \x20 dig @127.0.0.1 -p 8053 -b 127.0.0.2 app.demo.test    # guest: NXDOMAIN, logged without its address\n\
         \x20 dig @127.0.0.1 -p 8053 -b 127.0.0.3 hass.demo.test   # iot: 127.0.0.3\n\
         \x20 curl -s http://{admin}/config\n\
         \x20 sqlite3 -readonly {log} 'SELECT client, network, name, rcode, source FROM queries'\n\
         \x20 curl -s http://{admin}/metrics\n\
         \x20 curl -s -X POST http://{admin}/reload\n\
         \x20 labgate explain --from 127.0.0.1 https://app.demo.test/\n\
         \x20 labgate explain --from 127.0.0.2 app.demo.test      # the `guest` network\n\
         \x20 labgate check deploy/examples/homelab.toml\n\
         \x20 curl --cacert {ca} --resolve app.demo.test:{port}:127.0.0.1 https://app.demo.test:{port}/healthz\n\
         \x20 curl --cacert {ca} --resolve app.demo.test:{port}:127.0.0.1 --interface 127.0.0.2 https://app.demo.test:{port}/   # guest: 403\n\
         \x20 curl -i -H 'Host: app.demo.test' http://127.0.0.1:{http}/   # redirect to HTTPS\n\
         Local CA for HTTPS clients: curl --cacert {ca}\n\
         DNS answers internal names and forwards the rest; HTTPS routes by name with the policy of each service.\n",
        services.join("\n"),
        ca = ca.display(),
        log = s.state_dir.join(labgate_querylog::FILE_NAME).display(),
        port = s.listen.https.first().map_or(443, SocketAddr::port),
        http = s.listen.http.first().map_or(80, SocketAddr::port),
    )
}
