//! Logging setup: human-readable lines on stderr, filtered by `--log` or `$LABGATE_LOG`.
//! pingora logs through the `log` crate; its records are bridged into `tracing`, where a
//! small layer turns its per-failure TLS handshake errors into a counter instead of lines.

use std::sync::atomic::Ordering;

use tracing::field::{Field, Visit};
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Environment variable holding the default log filter.
pub const ENV_LOG: &str = "LABGATE_LOG";

/// The filter when none is given: hickory logs every query at info, which costs a third more
/// CPU per query and floods the journal (E4), so its crates start at warn. pingora logs every
/// failed TLS handshake (scanners, wrong names) at error: those are counted
/// (`labgate_tls_handshake_failures_total`), never printed; its other listener errors (a
/// failed accept when file descriptors run out) are.
pub const DEFAULT_FILTER: &str =
    "info,hickory_server=warn,hickory_proto=warn,hickory_net=warn,pingora_core=warn";

/// The target pingora's listener logs handshake failures under.
const LISTENING: &str = "pingora_core::services::listening";

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

/// Lines on stderr as `filter` (else [`DEFAULT_FILTER`]) lets through, and the handshake
/// counter.
fn subscriber(filter: &str) -> impl tracing::Subscriber + Send + Sync {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // PERF: one combined filter. Stacked as two per-layer filters, the outer one (which lets
    // everything through) made every record look enabled: `tracing::enabled!` then said
    // yes to access-log lines the level drops, and each request built and queued one.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colours only for a terminal: journald and log files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .with_filter(filter.and(NoHandshakeLines));
    // PERF: the counter sees only its own records; an unfiltered layer would make every
    // debug record of pingora and hickory enabled, built and dispatched on the request path.
    let counter = HandshakeCounter.with_filter(filter_fn(|m| {
        m.target() == LISTENING && *m.level() == tracing::Level::ERROR
    }));
    tracing_subscriber::registry().with(fmt).with(counter)
}

/// Counts pingora's "Downstream handshake error" records.
struct HandshakeCounter;

impl<S: tracing::Subscriber> Layer<S> for HandshakeCounter {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if is_handshake_failure(event) {
            labgate_proxy::metrics::TLS_HANDSHAKE_FAILURES.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Keeps pingora's per-failure handshake records out of the log (they are counted).
struct NoHandshakeLines;

impl<S> tracing_subscriber::layer::Filter<S> for NoHandshakeLines {
    fn enabled(&self, _: &tracing::Metadata<'_>, _: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &tracing::Event<'_>, _: &Context<'_, S>) -> bool {
        !is_handshake_failure(event)
    }
}

/// Whether an event is pingora's record of one failed TLS handshake.
fn is_handshake_failure(event: &tracing::Event<'_>) -> bool {
    // PERF: the fields are read only for errors (an access-log line is not one).
    if *event.metadata().level() != tracing::Level::ERROR {
        return false;
    }
    // Records bridged from `log` carry their target in the `log.target` field.
    let mut v = Fields::default();
    event.record(&mut v);
    let target = v
        .target
        .as_deref()
        .unwrap_or_else(|| event.metadata().target());
    target == LISTENING && v.message.contains("handshake")
}

#[derive(Default)]
struct Fields {
    message: String,
    target: Option<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "log.target" {
            self.target = Some(value.to_owned());
        } else if field.name() == "message" {
            self.message = value.to_owned();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
    }
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
