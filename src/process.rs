//! The process's own metrics on `/metrics`: the `process_*` names every Prometheus client
//! library exports (so dashboards and alerts written for any exporter work on labgate), read
//! from `/proc/self` at each scrape (the start time once), and `labgate_build_info`.
//!
//! Linux only, like the client libraries: where `/proc/self` cannot be read the `process_*`
//! samples are left out (a scrape never fails for them), and `labgate_build_info` stays.

use std::fmt::Write as _;

use nix::unistd::{SysconfVar, sysconf};

/// Appends `labgate_build_info` and, when `/proc/self` can be read, the `process_*` metrics.
pub fn render(out: &mut String) {
    let _ = writeln!(
        out,
        "# HELP labgate_build_info labgate's version, as a label; the value is always 1.\n\
         # TYPE labgate_build_info gauge\nlabgate_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    match read() {
        Ok(sample) => sample.render(out),
        Err(e) => tracing::debug!("process metrics left out: /proc/self: {e}"),
    }
}

/// What `/proc/self` says about this process, in the units Prometheus expects.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    /// User and system CPU time, seconds.
    cpu_seconds: f64,
    /// Start time, seconds since the Unix epoch.
    start_time_seconds: f64,
    /// Resident set size, bytes.
    resident_bytes: u64,
    /// Open file descriptors.
    open_fds: u64,
    /// The soft limit on open file descriptors (`None`: unlimited).
    max_fds: Option<u64>,
}

impl Sample {
    fn render(&self, out: &mut String) {
        let mut metric = |name: &str, kind: &str, help: &str, value: &dyn std::fmt::Display| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            &self.cpu_seconds,
        );
        metric(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            &self.start_time_seconds,
        );
        metric(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            &self.resident_bytes,
        );
        metric(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            &self.open_fds,
        );
        if let Some(max) = self.max_fds {
            metric(
                "process_max_fds",
                "gauge",
                "Maximum number of open file descriptors.",
                &max,
            );
        }
    }
}

/// Reads `/proc/self/stat`, `/proc/stat` (boot time), `/proc/self/limits` and
/// `/proc/self/fd`.
fn read() -> std::io::Result<Sample> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let stat = parse_stat(&stat).ok_or_else(|| invalid("/proc/self/stat: unexpected format"))?;
    let boot = std::fs::read_to_string("/proc/stat")?;
    let boot = parse_boot_time(&boot).ok_or_else(|| invalid("/proc/stat: no btime line"))?;
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    let max_fds = parse_max_fds(&limits)
        .ok_or_else(|| invalid("/proc/self/limits: no `Max open files` line"))?;
    // The directory's own descriptor is counted too, as the client libraries count it.
    let open_fds = std::fs::read_dir("/proc/self/fd")?.count() as u64;
    let mut sample = stat.sample(Units::system(), boot, open_fds, max_fds);
    // The first start time read is kept: `btime` is derived from the wall clock and moves
    // when the clock is stepped, and a start time that moved would look like a restart.
    sample.start_time_seconds = *START_TIME.get_or_init(|| sample.start_time_seconds);
    Ok(sample)
}

/// The process's start time as first read, seconds since the Unix epoch.
static START_TIME: std::sync::OnceLock<f64> = std::sync::OnceLock::new();

/// The units `/proc` counts in.
#[derive(Debug, Clone, Copy)]
struct Units {
    /// Clock ticks per second (`USER_HZ`).
    ticks: u64,
    /// Bytes per page.
    page: u64,
}

impl Units {
    /// The running system's, from `sysconf`; `USER_HZ` is 100 and pages are 4 KiB on every
    /// Linux architecture labgate is built for, the values should `sysconf` ever fail.
    fn system() -> Self {
        let value = |var, default| match sysconf(var) {
            Ok(Some(v)) if v > 0 => v.unsigned_abs(),
            _ => default,
        };
        Self {
            ticks: value(SysconfVar::CLK_TCK, 100),
            page: value(SysconfVar::PAGE_SIZE, 4096),
        }
    }
}

/// The fields of `/proc/self/stat` the metrics use, in `/proc`'s units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    /// `utime + stime`, clock ticks.
    cpu_ticks: u64,
    /// `starttime`: clock ticks after boot.
    start_ticks: u64,
    /// `rss`: pages.
    rss_pages: u64,
}

impl Stat {
    fn sample(self, units: Units, boot_time: u64, open_fds: u64, max_fds: Option<u64>) -> Sample {
        let ticks = units.ticks as f64;
        Sample {
            cpu_seconds: self.cpu_ticks as f64 / ticks,
            start_time_seconds: boot_time as f64 + self.start_ticks as f64 / ticks,
            resident_bytes: self.rss_pages.saturating_mul(units.page),
            open_fds,
            max_fds,
        }
    }
}

/// Parses `/proc/[pid]/stat` (proc(5)). The command name (field 2) is in parentheses and may
/// itself hold spaces and parentheses, so the fields are counted after its last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    // `rest` starts at field 3 (state): field n is at index n - 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        cpu_ticks: field(14)?.checked_add(field(15)?)?,
        start_ticks: field(22)?,
        rss_pages: field(24)?,
    })
}

/// The boot time (`btime`, seconds since the epoch) from `/proc/stat`.
fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// The soft limit of `Max open files` in `/proc/[pid]/limits`: `Some(None)` when unlimited.
fn parse_max_fds(text: &str) -> Option<Option<u64>> {
    let soft = text
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?;
    match soft {
        "unlimited" => Some(None),
        n => n.parse().ok().map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line of a process whose name holds `) (` and spaces.
    const STAT: &str = "4242 (lab gate) (x) S 1 4242 4242 0 -1 4194560 1500 0 3 0 \
                        250 75 0 0 20 0 9 0 123456 1234567168 2048 18446744073709551615 1 1 \
                        0 0 0 0 0 4096 17640 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        assert_eq!(
            parse_stat(STAT),
            Some(Stat {
                cpu_ticks: 325,
                start_ticks: 123_456,
                rss_pages: 2048,
            })
        );
        for broken in [
            "",
            "4242 (labgate",
            "4242 (labgate) S 1 2 3",
            "1 (x) S a b c",
        ] {
            assert_eq!(parse_stat(broken), None, "{broken:?}");
        }
    }

    #[test]
    fn a_sample_is_in_seconds_and_bytes() {
        let stat = parse_stat(STAT).expect("stat");
        let units = Units {
            ticks: 100,
            page: 4096,
        };
        assert_eq!(
            stat.sample(units, 1_700_000_000, 12, Some(1024)),
            Sample {
                cpu_seconds: 3.25,
                start_time_seconds: 1_700_001_234.56,
                resident_bytes: 8 * 1024 * 1024,
                open_fds: 12,
                max_fds: Some(1024),
            }
        );
    }

    #[test]
    fn boot_time_and_fd_limit_are_read_from_their_lines() {
        let stat = "cpu  1 2 3\nintr 5\nbtime 1764979200\nprocesses 99\n";
        assert_eq!(parse_boot_time(stat), Some(1_764_979_200));
        assert_eq!(parse_boot_time("cpu 1 2 3\n"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max processes             63423                63423                processes\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_max_fds(limits), Some(Some(1024)));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_max_fds(unlimited), Some(None));
        assert_eq!(parse_max_fds("Max processes 1 1 processes\n"), None);
    }

    #[test]
    fn this_process_is_described_on_linux() {
        let mut out = String::new();
        render(&mut out);
        let value = |name: &str| -> f64 {
            out.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("no {name} in\n{out}"))
                .parse()
                .unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        let version = format!(
            "labgate_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(value(&version), 1.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after the epoch")
            .as_secs_f64();
        let started = value("process_start_time_seconds");
        let mut again = String::new();
        render(&mut again);
        let start_line = |text: &str| {
            text.lines()
                .find(|l| l.starts_with("process_start_time_seconds "))
                .map(str::to_owned)
        };
        assert_eq!(start_line(&out), start_line(&again));
        // This test process started a moment ago (a day covers any slow machine).
        assert!(
            started <= now + 1.0 && started > now - 86_400.0,
            "{started} vs {now}"
        );
        assert!(value("process_cpu_seconds_total") >= 0.0);
        assert!(value("process_resident_memory_bytes") > 1e6, "{out}");
        let open = value("process_open_fds");
        assert!(open >= 3.0, "{out}");
        assert!(value("process_max_fds") >= open, "{out}");
        for kind in [
            "# TYPE process_cpu_seconds_total counter",
            "# TYPE process_start_time_seconds gauge",
        ] {
            assert!(out.contains(kind), "{out}");
        }
    }
}
