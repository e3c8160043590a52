//! Logging setup: human-readable lines on stderr, filtered by `--log` or `$LABGATE_LOG`.
//! pingora logs through the `log` crate; its records are bridged into `tracing`.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Environment variable holding the default log filter.
pub const ENV_LOG: &str = "LABGATE_LOG";

/// The filter when none is given: hickory logs every query at info, which costs a third more
/// CPU per query and floods the journal (E4), so its crates start at warn. Failed TLS
/// handshakes (scanners, wrong names) are labgate's to count
/// (`labgate_tls_handshake_failures_total`) and log at debug; pingora's listener errors (a
/// failed accept when file descriptors run out) are printed. pingora logs every h2 client
/// that fails its connection preface (garbage, or silent past its 10 s) at error under
/// `pingora_core::apps`, its only records there: per client, not for an operator, so off.
pub const DEFAULT_FILTER: &str = "info,hickory_server=warn,hickory_proto=warn,hickory_net=warn,pingora_core=warn,pingora_core::apps=off";

/// Installs the global subscriber; a second call does nothing.
pub fn init(flag: Option<&str>) {
    let filter = flag
        .map(str::to_owned)
        .or_else(|| std::env::var(ENV_LOG).ok())
        .unwrap_or_else(|| DEFAULT_FILTER.to_owned());
    if subscriber(&filter).try_init().is_ok() {
        // pingora's `log` records below warn never reach tracing (cut at the `log` macro).
        let _ = tracing_log::LogTracer::builder()
            .with_max_level(tracing_log::log::LevelFilter::Warn)
            .init();
    }
}

/// Lines on stderr as `filter` (else [`DEFAULT_FILTER`]) lets through.
fn subscriber(filter: &str) -> impl tracing::Subscriber + Send + Sync {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // PERF: the filter is the layer's own, so `tracing::enabled!` says no to access-log
    // lines the level drops and none is built (a filter stacked over one that let everything
    // through once made every record look enabled).
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colours only for a terminal: journald and log files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .with_filter(filter);
    tracing_subscriber::registry().with(fmt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_level_that_drops_access_lines_says_so_before_one_is_built() {
        let access = || tracing::enabled!(target: "labgate::access", tracing::Level::INFO);
        assert!(!tracing::subscriber::with_default(
            subscriber("warn"),
            access
        ));
        assert!(tracing::subscriber::with_default(
            subscriber(DEFAULT_FILTER),
            access
        ));
        assert!(!tracing::subscriber::with_default(
            subscriber("info,labgate::access=off"),
            access
        ));
    }
}
