//! `labgate certs`: the running instance's ACME certificates, from its admin endpoint.
#![allow(
    clippy::disallowed_macros,
    reason = "a subcommand: it prints what was asked"
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use crate::cli::CertsArgs;

/// Prints each certificate: names, issuer, expiry, next renewal, last attempt and error.
///
/// # Errors
/// When the admin endpoint cannot be reached or answers something else than the list.
pub fn run(args: &CertsArgs) -> anyhow::Result<ExitCode> {
    let token = match &args.token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the token file {}", path.display()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    let body = get(args.admin, "/certs", token.as_deref()).with_context(|| {
        format!(
            "cannot read certificates from labgate's admin endpoint at {}: is labgate running (`--admin` sets the address)?",
            args.admin
        )
    })?;
    let certs: Vec<Value> = serde_json::from_str(&body)
        .context("the admin endpoint answered something else than a certificate list")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&certs)?);
        return Ok(ExitCode::SUCCESS);
    }
    if certs.is_empty() {
        println!("no ACME certificates (configure [acme] to have labgate obtain them)");
        return Ok(ExitCode::SUCCESS);
    }
    let field = |c: &Value, k: &str| c[k].as_str().unwrap_or("-").to_owned();
    for c in &certs {
        let names: Vec<&str> = c["names"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        println!("{}", names.join(", "));
        println!("  provider      {}", field(c, "provider"));
        println!("  issuer        {}", field(c, "issuer"));
        println!("  not after     {}", field(c, "not_after"));
        println!("  next renewal  {}", field(c, "next_renewal"));
        println!("  last attempt  {}", field(c, "last_attempt"));
        if let Some(e) = c["last_error"].as_str() {
            println!(
                "  last error    {e} ({} failure(s) in a row)",
                c["failures"]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One HTTP/1.1 GET to the admin endpoint (loopback, tiny answers), with a bearer token if
/// given: the body of a 200.
fn get(admin: SocketAddr, path: &str, token: Option<&str>) -> anyhow::Result<String> {
    let mut s = TcpStream::connect_timeout(&admin, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let authorization =
        token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {admin}\r\n{authorization}Connection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    s.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("no HTTP response")?;
    anyhow::ensure!(
        !head.starts_with("HTTP/1.1 401"),
        "401 Unauthorized: the admin endpoint asks for credentials; pass `--token-file` with a \
         token of `[admin] auth_file`"
    );
    anyhow::ensure!(
        head.starts_with("HTTP/1.1 200"),
        "{}",
        head.lines().next().unwrap_or("")
    );
    Ok(body.to_owned())
}
