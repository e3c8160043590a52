//! Logging setup: lines on stderr, filtered by `--log` or `$LABGATE_LOG`, human-readable or
//! one JSON object each (`--log-format` or `$LABGATE_LOG_FORMAT`). pingora logs through the
//! `log` crate; its records are bridged into `tracing`.
//!
//! The format is a flag, not a `[server]` key: logging starts before the configuration is
//! read (its errors are logged), and `check`, `explain` and `certs` log without serving one;
//! a key would leave those lines in text, and a journal with two formats breaks the parsers
//! that asked for JSON.

use std::sync::OnceLock;

use labgate_proxy::access::Style;
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

/// Environment variable holding the log format, `text` or `json` (`--log-format` wins).
pub const ENV_LOG_FORMAT: &str = "LABGATE_LOG_FORMAT";

/// How log lines are written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line, the event's fields as fields (`timestamp`, `level`,
    /// `target`, `message` and the rest), for journald and Loki; access lines carry
    /// `client`, `service`, `method`, `host`, `path`, `status`, `took_ms` and `ray`.
    Json,
}

/// The format the global subscriber writes, once [`init`] installed it.
static FORMAT: OnceLock<Format> = OnceLock::new();

/// Installs the global subscriber; a second call does nothing.
pub fn init(flag: Option<&str>, format: Format) {
    let filter = flag
        .map(str::to_owned)
        .or_else(|| std::env::var(ENV_LOG).ok())
        .unwrap_or_else(|| DEFAULT_FILTER.to_owned());
    if subscriber(&filter, format).try_init().is_ok() {
        let _ = FORMAT.set(format);
        // pingora's `log` records below warn never reach tracing (cut at the `log` macro).
        let _ = tracing_log::LogTracer::builder()
            .with_max_level(tracing_log::log::LevelFilter::Warn)
            .init();
    }
}

/// How the access log hands requests to the installed subscriber: structured fields for
/// JSON, one preformatted line otherwise (also before [`init`], when nothing is written).
pub fn access_style() -> Style {
    match FORMAT.get() {
        Some(Format::Json) => Style::Fields,
        _ => Style::Line,
    }
}

/// Lines on stderr in `format` as `filter` (else [`DEFAULT_FILTER`]) lets through.
fn subscriber(filter: &str, format: Format) -> impl tracing::Subscriber + Send + Sync {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        Format::Text => fmt
            // Colours only for a terminal: journald and log files get plain text.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
            .boxed(),
        // The event's fields beside `timestamp`, `level` and `target`, not under `fields`;
        // labgate opens no spans, so none are listed.
        Format::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .boxed(),
    };
    // PERF: the filter is the layer's own, so `tracing::enabled!` says no to access-log
    // lines the level drops and none is built (a filter stacked over one that let everything
    // through once made every record look enabled).
    tracing_subscriber::registry().with(fmt.with_filter(filter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_level_that_drops_access_lines_says_so_before_one_is_built() {
        let access = || tracing::enabled!(target: "labgate::access", tracing::Level::INFO);
        for format in [Format::Text, Format::Json] {
            assert!(!tracing::subscriber::with_default(
                subscriber("warn", format),
                access
            ));
            assert!(tracing::subscriber::with_default(
                subscriber(DEFAULT_FILTER, format),
                access
            ));
            assert!(!tracing::subscriber::with_default(
                subscriber("info,labgate::access=off", format),
                access
            ));
        }
    }
}
