//! Logging setup: human-readable lines on stderr, filtered by `--log` or `$LABGATE_LOG`.

use tracing_subscriber::EnvFilter;

/// Environment variable holding the default log filter.
pub const ENV_LOG: &str = "LABGATE_LOG";

/// The filter when none is given: hickory logs every query at info, which costs a third more
/// CPU per query and floods the journal (E4), so its crates start at warn.
pub const DEFAULT_FILTER: &str = "info,hickory_server=warn,hickory_proto=warn,hickory_net=warn";

/// Installs the global subscriber; a second call does nothing.
pub fn init(flag: Option<&str>) {
    let filter = flag
        .map(str::to_owned)
        .or_else(|| std::env::var(ENV_LOG).ok())
        .unwrap_or_else(|| DEFAULT_FILTER.to_owned());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
