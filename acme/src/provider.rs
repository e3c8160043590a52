//! DNS providers publish the `_acme-challenge` TXT values of an order. They add and remove
//! single values, never whole record sets: an apex and its wildcard share one TXT name.

use async_trait::async_trait;

use crate::Error;

/// TTL of published challenge values, in seconds: short, so a value that a failed removal
/// left behind does not stay long in resolvers' caches.
pub const CHALLENGE_TTL: u32 = 60;

/// One TXT value as published, with what its provider needs to remove exactly it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The record's name, lower-case, without the trailing dot (`_acme-challenge.lab.example.com`).
    pub name: String,
    /// The TXT value (the challenge's 43-character digest).
    pub value: String,
    /// The provider's own handle for the record (Cloudflare's record id), if it has one.
    pub id: Option<String>,
    /// The zone the record went into (its apex, or the provider's zone id).
    pub zone: String,
}

/// Publishes and removes `_acme-challenge` TXT values in some DNS.
#[async_trait]
pub trait DnsProvider: Send + Sync {
    /// Adds `value` to the TXT record set at `name` (keeping any other value there).
    ///
    /// # Errors
    /// [`Error::Provider`] saying what the DNS answered and what to change.
    async fn publish(&self, name: &str, value: &str) -> Result<Published, Error>;

    /// Removes exactly one value published before; a value already gone is not an error.
    ///
    /// # Errors
    /// [`Error::Provider`] saying what the DNS answered.
    async fn unpublish(&self, record: &Published) -> Result<(), Error>;
}
