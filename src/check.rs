//! `labgate check`: parse and compile without binding sockets.
#![allow(
    clippy::disallowed_macros,
    reason = "a subcommand: it prints what was asked"
)]

use std::process::ExitCode;

use labgate_config::load_and_compile;

use crate::EX_USAGE;
use crate::cli::CheckArgs;

/// Checks each path; exit 0 when all are valid, 64 when any is not.
///
/// # Errors
/// Never: invalid configurations are reported and give exit code 64.
pub fn run(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    for path in &args.paths {
        match load_and_compile(path, 1) {
            Ok(s) => {
                for w in &s.warnings {
                    eprintln!("{w}");
                }
                failed |= args.deny_warnings && !s.warnings.is_empty();
                println!(
                    "{}: ok: {} networks, {} zones, {} services, {} warning(s)",
                    path.display(),
                    s.networks.iter().len(),
                    s.zones.len(),
                    s.services.len(),
                    s.warnings.len()
                );
            }
            Err(e) => {
                eprintln!("{e}");
                println!("{}: invalid", path.display());
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(EX_USAGE)
    } else {
        ExitCode::SUCCESS
    })
}
