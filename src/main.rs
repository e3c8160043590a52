//! `labgate`: parse the CLI, set up logging and TLS, dispatch, map the result to an exit code.

use std::process::ExitCode;

use clap::Parser;
use labgate::cli::{Cli, Command};
use labgate::logging::Format;
use labgate::{EX_USAGE, app, certs_cmd, check, explain, state_cmd, tunnel_config};

#[allow(
    clippy::disallowed_macros,
    reason = "main prints `version` and the error that ends the run"
)]
fn main() -> ExitCode {
    let cli = Cli::parse();
    labgate::logging::init(cli.log.as_deref(), cli.log_format);
    // F1: one crypto provider, ring, installed before any TLS configuration exists.
    pingora::tls::install_default_crypto_provider();
    let result = match cli.command.unwrap_or_default() {
        Command::Run(args) => app::run(args),
        Command::Check(args) => check::run(&args),
        Command::Explain(args) => explain::run(&args),
        Command::Certs(args) => certs_cmd::run(&args),
        Command::TunnelConfig(args) => tunnel_config::run(&args),
        Command::State(command) => state_cmd::run(&command),
        Command::Version => {
            println!("{}", labgate::version());
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // A journal asked for JSON gets the error that ended the run as JSON too (unless
            // the filter drops errors: then it is printed as ever).
            if cli.log_format == Format::Json && tracing::enabled!(tracing::Level::ERROR) {
                tracing::error!("{e:#}");
            } else {
                eprintln!("Error: {e:#}");
            }
            if e.downcast_ref::<labgate_config::Error>().is_some() {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
