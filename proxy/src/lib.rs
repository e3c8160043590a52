//! labgate's HTTPS entrypoint: pingora-core listeners, an HTTP/1.1 fast path and pingora's
//! sessions for the rest, routing by Host through the snapshot's route table and policy.
//! This crate receives snapshots, certificate handles and bound listeners; it reads no files.
//!
//! Today it holds the error model and its mapping to pingora's error type (D4); the
//! listeners and forwarding follow.
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]
#![deny(unused_must_use)]

use pingora::{ErrorSource, ErrorType, RetryType};

/// Expected per-request outcomes that are not a forwarded response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No service has the requested host.
    #[error("unknown host")]
    UnknownHost,
    /// The TLS server name and the Host header name different services.
    #[error("SNI and Host disagree")]
    MisdirectedRequest,
    /// The client's network is not in the service's `allow`.
    #[error("network not allowed")]
    Forbidden,
    /// The backend could not be reached.
    #[error("backend unreachable")]
    BackendUnreachable,
    /// The backend did not answer in time.
    #[error("backend timed out")]
    BackendTimeout,
}

impl Error {
    /// The HTTP status the client gets.
    pub fn status(self) -> u16 {
        match self {
            Self::UnknownHost => 404,
            Self::MisdirectedRequest => 421,
            Self::Forbidden => 403,
            Self::BackendUnreachable => 502,
            Self::BackendTimeout => 504,
        }
    }

    /// Converts into pingora's error with source, status and retryability set (D4).
    pub fn into_pingora(self) -> Box<pingora::Error> {
        // Only a failed connect is safe to retry on another backend: nothing was sent yet.
        let (source, retry) = match self {
            Self::BackendUnreachable => (ErrorSource::Upstream, true),
            Self::BackendTimeout => (ErrorSource::Upstream, false),
            _ => (ErrorSource::Downstream, false),
        };
        let mut e = pingora::Error::new(ErrorType::HTTPStatus(self.status()));
        e.retry = RetryType::Decided(retry);
        e.esource = source;
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_sources() {
        let e = Error::BackendUnreachable.into_pingora();
        assert_eq!(e.etype, ErrorType::HTTPStatus(502));
        assert_eq!(e.esource, ErrorSource::Upstream);
        assert!(e.retry());
        assert_eq!(
            Error::MisdirectedRequest.into_pingora().etype,
            ErrorType::HTTPStatus(421)
        );
    }
}
