//! The ACME manager's wiring: labgate's DNS as the `builtin` provider and as the lookup that
//! finds a zone's authoritative servers, and the task that hands it every published snapshot.

use std::sync::Arc;

use async_trait::async_trait;
use hickory_proto::rr::{Name, RData, RecordType};
use labgate_acme::propagation::Lookup;
use labgate_acme::provider::{DnsProvider, Published};
use labgate_acme::{Error, Manager};
use tokio_util::sync::CancellationToken;

use crate::status::Shared;

/// The `builtin` provider: challenge values served by labgate's own DNS.
pub struct Builtin(pub Arc<labgate_dns::Challenges>);

#[async_trait]
impl DnsProvider for Builtin {
    async fn publish(&self, name: &str, value: &str) -> Result<Published, Error> {
        let owner = Name::from_ascii(name).map_err(|e| Error::Provider {
            provider: "builtin".into(),
            what: format!("`{name}` is not a DNS name ({e})"),
        })?;
        self.0.add(&owner, value);
        Ok(Published {
            name: name.to_ascii_lowercase(),
            value: value.to_owned(),
            id: None,
            zone: String::new(),
        })
    }

    async fn unpublish(&self, record: &Published) -> Result<(), Error> {
        if let Ok(owner) = Name::from_ascii(&record.name) {
            self.0.remove(&owner, &record.value);
        }
        Ok(())
    }
}

/// Lookups through labgate's upstreams (never its own views).
pub struct Upstreams(pub labgate_dns::Dns);

#[async_trait]
impl Lookup for Upstreams {
    async fn records(&self, name: &Name, rtype: RecordType) -> Vec<RData> {
        self.0.upstream_records(name, rtype).await
    }
}

/// Reconciles the manager with each published snapshot until cancelled.
pub async fn run(manager: Arc<Manager>, shared: Arc<Shared>, cancel: CancellationToken) {
    let mut published = shared.published.subscribe();
    loop {
        tokio::select! {
            changed = published.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = cancel.cancelled() => return,
        }
        manager.reconcile(&shared.snapshot.load());
    }
}
