//! One certificate's state as `/config`, `/metrics` and `labgate certs` show it: what the
//! manager records and the metrics render, kept apart from both.

use std::time::SystemTime;

use serde::Serialize;

/// One certificate's state, as `/config` and `labgate certs` show it.
#[derive(Debug, Clone, Serialize)]
pub struct CertStatus {
    /// Its names.
    pub names: Vec<String>,
    /// The DNS provider publishing its challenges.
    pub provider: String,
    /// Issuer of the certificate served, if any.
    pub issuer: Option<String>,
    /// End of validity of the certificate served.
    #[serde(serialize_with = "rfc3339")]
    pub not_after: Option<SystemTime>,
    /// When it will next be renewed (or retried).
    #[serde(serialize_with = "rfc3339")]
    pub next_renewal: Option<SystemTime>,
    /// When an order was last attempted.
    #[serde(serialize_with = "rfc3339")]
    pub last_attempt: Option<SystemTime>,
    /// Why the last attempt failed; `None` after a success.
    pub last_error: Option<String>,
    /// Failed attempts in a row.
    pub failures: u32,
}

fn rfc3339<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&humantime::format_rfc3339_seconds(*t).to_string()),
        None => s.serialize_none(),
    }
}
