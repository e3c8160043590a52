//! The acme crate's error, and the one line that shows an error with its causes.

use std::path::PathBuf;
use std::time::Duration;

use crate::problem::{ChallengeFailure, Problem};

/// What went wrong with certificate material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file in the state directory could not be read or written.
    #[error("cannot {action} {}: check the state directory's permissions", path.display())]
    Io {
        /// `read`, `write`...
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A secret file (API token, TSIG secret, EAB key) is missing, unreadable or malformed.
    /// Its content is never part of the message.
    #[error("secret file {}: {what}", path.display())]
    Secret {
        /// The file.
        path: PathBuf,
        /// What is wrong, and what to do.
        what: String,
    },
    /// A DNS provider refused or failed a change.
    #[error("{provider}: {what}")]
    Provider {
        /// The provider's kind and target (`rfc2136 127.0.0.1:53`, `cloudflare`).
        provider: String,
        /// What it answered, and what to change.
        what: String,
    },
    /// The challenge values did not show at the zone's authoritative servers in time.
    #[error("{name}: {what}")]
    Propagation {
        /// The TXT name.
        name: String,
        /// Which server lacked what.
        what: String,
    },
    /// The state directory, or the link to it, belongs to another user.
    #[error("the state {what} {} belongs to user id {owner}, not to this user ({me}): it holds private keys, so another user's is not used; remove it, or set another with --state-dir or server.state_dir", path.display())]
    StateDirOwner {
        /// The state directory's path.
        path: PathBuf,
        /// `link` or `directory`.
        what: &'static str,
        /// Its owner's user id.
        owner: u32,
        /// labgate's (effective) user id.
        me: u32,
    },
    /// The state directory's path leads to something other than a directory.
    #[error("the state directory {} is not a directory: remove it, or set another with --state-dir or server.state_dir", path.display())]
    StateDirNotADirectory {
        /// The state directory's path.
        path: PathBuf,
    },
    /// Users outside labgate's groups can write in the state directory.
    #[error("the state directory {0} can be written by users outside labgate's groups: it holds private keys; run `chmod o-w,g-w {0}`", path.display())]
    StateDirWritable {
        /// The state directory's path.
        path: PathBuf,
    },
    /// The ACME server refused a request with a problem document.
    #[error("ACME: {0}")]
    Refused(Problem),
    /// The ACME server could not be reached (its name, a connection, TLS).
    #[error("cannot reach the ACME server {server}")]
    Unreachable {
        /// The server's host and port.
        server: String,
        /// Why.
        #[source]
        source: labgate_outbound::Error,
    },
    /// The ACME server did not answer a request in time.
    #[error("the ACME server {server} did not answer within {} s", after.as_secs())]
    Unanswered {
        /// The server's host and port.
        server: String,
        /// How long labgate waited.
        after: Duration,
    },
    /// The ACME client failed otherwise: an answer it cannot read, a feature the server does
    /// not offer, an order still pending when polling ended.
    #[error("ACME request failed")]
    Client(#[source] instant_acme::Error),
    /// One order took longer than labgate gives one.
    #[error("ACME: the order took longer than {} s", .0.as_secs())]
    OrderTimeout(Duration),
    /// `acme.profile` names a profile the directory does not offer.
    #[error("{}", unoffered(wanted, directory, offered))]
    ProfileNotOffered {
        /// The configured profile.
        wanted: String,
        /// The directory's URL.
        directory: String,
        /// The profiles it offers.
        offered: Vec<String>,
    },
    /// `acme.directory_ca_file` holds a certificate that cannot be a root to check the ACME
    /// server with.
    #[error("acme.directory_ca_file: a certificate in it cannot be used as a root")]
    DirectoryCa(#[source] rustls::Error),
    /// An authorization of the order is neither pending nor valid (RFC 8555 §7.1.6).
    #[error("ACME: authorization for {identifier} is {status}")]
    Authorization {
        /// The authorization's identifier.
        identifier: String,
        /// Its status (`Invalid`, `Expired`...).
        status: String,
    },
    /// The CA offers no dns-01 challenge for an identifier of the order.
    #[error(
        "ACME: the CA offers no dns-01 challenge for {identifier}; labgate validates by DNS-01 only"
    )]
    NoDnsChallenge {
        /// The identifier.
        identifier: String,
    },
    /// The order did not become ready to finalize: its state, and the CA's reason for each
    /// challenge it failed.
    #[error("ACME: the order is {state}{}", failures(failed))]
    NotReady {
        /// The order's status (`Invalid`), or `not ready` when polling it failed.
        state: String,
        /// The failed challenges, read afresh from the CA.
        failed: Vec<ChallengeFailure>,
        /// Why polling failed, when it did.
        #[source]
        source: Option<Box<Self>>,
    },
    /// The certificate's key or its CSR could not be made.
    #[error("cannot make {what}")]
    Csr {
        /// `the key`, `the CSR`...
        what: &'static str,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },
    /// An issued certificate failed the checks made before it is served.
    #[error("issued certificate rejected: {0}")]
    Verify(String),
    /// The file given to `labgate state import` is not a state archive, or one of a newer
    /// format.
    #[error("not a labgate state archive: {what}")]
    ArchiveFormat {
        /// What is wrong, and what to do.
        what: String,
    },
    /// The state archive ends early: its last line, the checksum, is missing or incomplete.
    #[error(
        "the state archive is cut short (its last line, the checksum, is missing or incomplete): copy it again from where it is kept, or export it again"
    )]
    ArchiveTruncated,
    /// The state archive changed since it was exported: its checksum or an entry's SHA-256
    /// or size does not match.
    #[error(
        "the state archive is corrupted: {what}; it changed since it was exported: use another copy, or export it again"
    )]
    ArchiveCorrupted {
        /// What does not match (never the content).
        what: String,
    },
    /// An entry of the state archive names a path labgate never writes (outside the state
    /// directory, or not key material), or appears twice.
    #[error(
        "the state archive's entry {path:?} {what}: `labgate state export` writes no such entry"
    )]
    ArchivePath {
        /// The entry's path, as the archive gives it.
        path: String,
        /// What is wrong with it.
        what: &'static str,
    },
    /// A key in the state archive (or the state directory) does not parse or does not match
    /// its certificate, or one of a pair is missing. The key is never part of the message.
    #[error("{path}: {what}")]
    ArchiveMaterial {
        /// The file, relative to the state directory.
        path: String,
        /// What is wrong with it.
        what: String,
    },
    /// `labgate state import` would replace the local CA the state directory already holds.
    #[error(
        "the state directory {} already holds another local CA: clients that trust it would stop trusting labgate's certificates; import into an empty state directory, or pass --force to replace it", path.display()
    )]
    StateDirOtherCa {
        /// The state directory.
        path: PathBuf,
    },
    /// A symbolic link where labgate keeps key material (labgate writes none).
    #[error(
        "{} is a symbolic link: labgate keeps its keys in plain files and directories; replace the link with what it points to", path.display()
    )]
    StateLink {
        /// The link.
        path: PathBuf,
    },
    /// Key or certificate generation failed, or stored material does not parse.
    #[error("certificate material in {}: {what}; remove the directory to let labgate make a new one", path.display())]
    Material {
        /// Where the material is.
        path: PathBuf,
        /// What failed.
        what: String,
    },
}

impl From<instant_acme::Error> for Error {
    /// A problem document becomes [`Error::Refused`]; what labgate's own HTTP client failed
    /// with (handed through instant-acme) comes back as itself; the rest is
    /// [`Error::Client`].
    fn from(e: instant_acme::Error) -> Self {
        match e {
            instant_acme::Error::Api(p) => Self::Refused(Problem::from(&p)),
            instant_acme::Error::Other(inner) => match inner.downcast::<Self>() {
                Ok(ours) => *ours,
                Err(inner) => Self::Client(instant_acme::Error::Other(inner)),
            },
            other => Self::Client(other),
        }
    }
}

/// `e` and its causes on one line, as the certificate's status and the log show it:
/// `cannot reach the ACME server acme.test:14000: client error (Connect): tcp connect error:
/// Connection refused (os error 111)`. A cause whose text its parent already ends with is
/// not repeated.
pub(crate) fn report(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// The message of [`Error::ProfileNotOffered`], with the fix.
fn unoffered(wanted: &str, directory: &str, offered: &[String]) -> String {
    if offered.is_empty() {
        format!(
            "acme.profile = \"{wanted}\", but {directory} offers no profiles: remove the setting"
        )
    } else {
        format!(
            "acme.profile = \"{wanted}\" is not offered by {directory}: choose one of {}",
            offered.join(", ")
        )
    }
}

/// `; identifier: detail` for each failed challenge.
fn failures(failed: &[ChallengeFailure]) -> String {
    failed
        .iter()
        .map(|f| {
            let detail = f.problem.detail.as_deref().unwrap_or("failed");
            format!("; {}: {detail}", f.identifier)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::ProblemType;

    fn problem(kind: ProblemType, detail: &str) -> Problem {
        Problem {
            kind: Some(kind),
            detail: Some(detail.into()),
            subproblems: Vec::new(),
        }
    }

    #[test]
    fn instant_acme_errors_keep_their_kind() {
        let api: instant_acme::Problem = serde_json::from_str(
            r#"{"type": "urn:ietf:params:acme:error:accountDoesNotExist", "detail": "no such account"}"#,
        )
        .expect("problem");
        let e = Error::from(instant_acme::Error::Api(api));
        assert!(
            matches!(&e, Error::Refused(p) if p.is(&ProblemType::AccountDoesNotExist)),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "ACME: accountDoesNotExist: no such account");
        // labgate's client error, carried through instant-acme, comes back as itself.
        let ours = Error::Unanswered {
            server: "acme.test:443".into(),
            after: Duration::from_secs(30),
        };
        let e = Error::from(instant_acme::Error::Other(Box::new(ours)));
        assert_eq!(
            e.to_string(),
            "the ACME server acme.test:443 did not answer within 30 s"
        );
        let other = std::io::Error::other("a stranger");
        let e = Error::from(instant_acme::Error::Other(Box::new(other)));
        assert!(matches!(&e, Error::Client(_)), "{e:?}");
        assert_eq!(report(&e), "ACME request failed: a stranger");
        let e = Error::from(instant_acme::Error::Unsupported(
            "ACME renewal information (ARI)",
        ));
        assert!(
            matches!(&e, Error::Client(instant_acme::Error::Unsupported(_))),
            "{e:?}"
        );
    }

    #[test]
    fn a_report_shows_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = Error::Io {
            action: "read",
            path: "/state/acme/x".into(),
            source: io,
        };
        assert_eq!(
            report(&e),
            "cannot read /state/acme/x: check the state directory's permissions: refused"
        );
        // instant-acme's JSON error repeats its cause in its own text.
        let json = serde_json::from_str::<u8>("x").expect_err("not JSON");
        let e = Error::Client(instant_acme::Error::Json(json));
        let shown = report(&e);
        assert_eq!(shown.matches("expected value").count(), 1, "{shown}");
        let e = Error::NotReady {
            state: "not ready".into(),
            failed: vec![ChallengeFailure {
                identifier: "app.lab.test".into(),
                problem: problem(ProblemType::Other("dns".into()), "NXDOMAIN for the TXT"),
            }],
            source: Some(Box::new(Error::Client(instant_acme::Error::Timeout(None)))),
        };
        assert_eq!(
            report(&e),
            "ACME: the order is not ready; app.lab.test: NXDOMAIN for the TXT: ACME request failed: timed out waiting for an order update"
        );
    }

    #[test]
    fn a_profile_the_directory_lacks_is_named_with_the_fix() {
        let e = |offered: &[&str]| Error::ProfileNotOffered {
            wanted: "shortlived".into(),
            directory: "https://ca.test/dir".into(),
            offered: offered.iter().map(|s| (*s).to_owned()).collect(),
        };
        assert_eq!(
            e(&[]).to_string(),
            "acme.profile = \"shortlived\", but https://ca.test/dir offers no profiles: remove the setting"
        );
        assert_eq!(
            e(&["classic", "tlsserver"]).to_string(),
            "acme.profile = \"shortlived\" is not offered by https://ca.test/dir: choose one of classic, tlsserver"
        );
    }
}
