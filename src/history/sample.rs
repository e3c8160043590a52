//! What the history holds: a minute's sample of the services, and the certificates' events.
//! Plain data, shared by the in-memory history, its file and the status page.

use std::sync::Arc;
use std::time::SystemTime;

use labgate_proxy::metrics::ServiceCounts;

/// One service in one sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceMinute {
    /// The service's name.
    pub name: Arc<str>,
    /// What it counted since the sample before.
    pub counts: ServiceCounts,
    /// Its denials since the sample before, by the client's network (name), those above
    /// zero only; they add up to `counts.denied`.
    pub denied: Vec<(Arc<str>, u64)>,
    /// Its backends taking requests at the sample, of `backends`.
    pub up: usize,
    /// Its backends.
    pub backends: usize,
}

impl ServiceMinute {
    /// Whether it says anything: a request, a denial, or a backend down. The file keeps only
    /// those (a quiet service's minute is all zeros, and the page reads a missing one so).
    pub fn is_quiet(&self) -> bool {
        self.counts.requests() == 0 && self.up >= self.backends
    }
}

/// One sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// When it was taken.
    pub at: SystemTime,
    /// Every service (read back from the file: those that were not quiet).
    pub services: Vec<ServiceMinute>,
}

/// The certificate a host was served at a sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// SHA-256 of the leaf's DER, hex: the certificate's identity.
    pub fingerprint: String,
    /// The issuer's distinguished name.
    pub issuer: String,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
}

/// What happened to a host's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertEventKind {
    /// The first certificate the history saw for the host.
    Issued,
    /// A new certificate from the same issuer, valid from later than the one before.
    Renewed,
    /// A different certificate otherwise: another issuer (the local CA's replaced by ACME's,
    /// a file's changed), or one not newer than the one before.
    Replaced,
    /// An ACME order for the host's certificate failed.
    Failed,
}

impl CertEventKind {
    /// Every kind.
    pub const ALL: [Self; 4] = [Self::Issued, Self::Renewed, Self::Replaced, Self::Failed];

    /// The word for it, on the page and in the file.
    pub fn label(self) -> &'static str {
        match self {
            Self::Issued => "issued",
            Self::Renewed => "renewed",
            Self::Replaced => "replaced",
            Self::Failed => "failed",
        }
    }

    /// The kind a [`CertEventKind::label`] names.
    pub fn from_label(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.label() == s)
    }
}

/// One event of a host's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertEvent {
    /// When the history saw it (the sample's time).
    pub at: SystemTime,
    /// The service host.
    pub host: Arc<str>,
    /// What happened.
    pub kind: CertEventKind,
    /// The certificate served after it (`None` for a failure).
    pub cert: Option<Seen>,
    /// The ACME error of a failure.
    pub error: Option<String>,
}
