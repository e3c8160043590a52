//! One issuance: order, publish every challenge value, wait until the zone's servers serve
//! them, mark ready, poll, finalize with our own key's CSR, download and verify the chain.
//! The published values are removed on every path, failures included.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use instant_acme::{
    Account, AuthorizationStatus, CertificateIdentifier, ChallengeType, Identifier, NewOrder,
    OrderStatus, RetryPolicy,
};
use labgate_config::settings::KeyType;
use tokio::task::JoinHandle;

use crate::Error;
use crate::account::describe;
use crate::propagation::{self, Authorities};
use crate::provider::{DnsProvider, Published};
use crate::store::Stored;
use crate::verify::verify;

/// How an order is placed.
pub(crate) struct Request<'a> {
    /// The certificate's names (`*.zone` for a wildcard).
    pub(crate) names: &'a [String],
    pub(crate) key_type: KeyType,
    pub(crate) profile: Option<&'a str>,
    /// The certificate this one replaces (ARI), when the directory supports it.
    pub(crate) replaces: Option<CertificateIdentifier<'static>>,
    pub(crate) provider: &'a Arc<dyn DnsProvider>,
    /// Where to check propagation; `None` when the provider serves the values itself.
    pub(crate) authorities: Option<&'a Authorities>,
    pub(crate) propagation_timeout: Duration,
    /// Removals still running for orders dropped midway: this order waits for them.
    pub(crate) pending: &'a Arc<PendingCleanups>,
}

/// Polling: quick at first (a CA validates in milliseconds to seconds), bounded overall.
fn retry() -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(50))
        .backoff(1.6)
        .timeout(Duration::from_secs(120))
}

/// Places the order and returns the verified certificate.
pub(crate) async fn issue(account: &Account, req: &Request<'_>) -> Result<Stored, Error> {
    let acme = |e: instant_acme::Error| Error::Acme(describe(&e));
    let identifiers: Vec<Identifier> = req
        .names
        .iter()
        .map(|n| Identifier::Dns(n.clone()))
        .collect();
    let mut new = NewOrder::new(&identifiers);
    if let Some(p) = req.profile {
        new = new.profile(p);
    }
    if let Some(r) = &req.replaces {
        new = new.replaces(r.clone());
    }
    // The CA may hand this order the pending authorization a dropped one published for:
    // the same record, which that order's late removal would take away mid-validation.
    req.pending.wait().await;
    let mut order = account.new_order(&new).await.map_err(acme)?;
    let mut cleanup = Cleanup {
        provider: Arc::clone(req.provider),
        published: Vec::new(),
        pending: Arc::clone(req.pending),
    };
    let result = validate_and_finalize(&mut order, req, &mut cleanup.published).await;
    cleanup.run().await;
    result
}

/// The challenge values one order published. Every path removes them, failures included;
/// an order dropped midway (its attempt timed out, a reload cancelled it) leaves the rest
/// to a task of their own, which the next order waits for. (A value whose publishing was
/// itself cut off is not known here and can stay behind.)
struct Cleanup {
    provider: Arc<dyn DnsProvider>,
    published: Vec<Published>,
    pending: Arc<PendingCleanups>,
}

/// Longest wait of a new order for the removals of dropped ones (each provider call is
/// bounded by its own timeout well below this).
const CLEANUP_WAIT: Duration = Duration::from_secs(60);

/// The removal tasks of orders dropped midway.
#[derive(Default)]
pub(crate) struct PendingCleanups(Mutex<Vec<JoinHandle<()>>>);

impl PendingCleanups {
    fn add(&self, task: JoinHandle<()>) {
        if let Ok(mut tasks) = self.0.lock() {
            tasks.retain(|t| !t.is_finished());
            tasks.push(task);
        }
    }

    /// Returns once every removal started so far has ended (or [`CLEANUP_WAIT`] passed).
    async fn wait(&self) {
        let tasks = match self.0.lock() {
            Ok(mut tasks) => std::mem::take(&mut *tasks),
            Err(_) => return,
        };
        let all = async {
            for t in tasks {
                let _ = t.await;
            }
        };
        let _ = tokio::time::timeout(CLEANUP_WAIT, all).await;
    }
}

impl Cleanup {
    async fn run(mut self) {
        // A value is forgotten only once its removal is done: a drop during it removes it
        // again, which providers take as success.
        while let Some(p) = self.published.last() {
            unpublish(self.provider.as_ref(), p).await;
            self.published.pop();
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.published.is_empty() {
            return;
        }
        let provider = Arc::clone(&self.provider);
        let published = std::mem::take(&mut self.published);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            for p in &published {
                tracing::warn!(
                    "left the challenge value at {} (labgate is stopping)",
                    p.name
                );
            }
            return;
        };
        self.pending.add(runtime.spawn(async move {
            for p in &published {
                unpublish(provider.as_ref(), p).await;
            }
        }));
    }
}

async fn unpublish(provider: &dyn DnsProvider, p: &Published) {
    if let Err(e) = provider.unpublish(p).await {
        tracing::warn!("could not remove the challenge value at {}: {e}", p.name);
    }
}

async fn validate_and_finalize(
    order: &mut instant_acme::Order,
    req: &Request<'_>,
    published: &mut Vec<Published>,
) -> Result<Stored, Error> {
    let acme = |e: instant_acme::Error| Error::Acme(describe(&e));
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.map_err(acme)?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            // Reused from an earlier order.
            AuthorizationStatus::Valid => continue,
            other => {
                return Err(Error::Acme(format!(
                    "authorization for {} is {other:?}",
                    authz.identifier()
                )));
            }
        }
        let challenge = authz
            .challenge(ChallengeType::Dns01)
            .ok_or_else(|| Error::Acme("the CA offers no dns-01 challenge for this name".into()))?;
        // The record name comes from the identifier without its `*.`.
        let Identifier::Dns(base) = &challenge.identifier().identifier else {
            return Err(Error::Acme("an identifier that is not a DNS name".into()));
        };
        let name = format!("_acme-challenge.{base}");
        let value = challenge.key_authorization().dns_value();
        published.push(req.provider.publish(&name, &value).await?);
    }
    if let Some(authorities) = req.authorities {
        let expected: Vec<(String, String)> = published
            .iter()
            .map(|p| (p.name.clone(), p.value.clone()))
            .collect();
        propagation::wait(authorities, &expected, req.propagation_timeout).await?;
    }
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.map_err(acme)?;
        if authz.status != AuthorizationStatus::Pending {
            continue;
        }
        if let Some(mut challenge) = authz.challenge(ChallengeType::Dns01) {
            challenge.set_ready().await.map_err(acme)?;
        }
    }
    let status = match order.poll_ready(&retry()).await {
        Ok(s) => s,
        Err(e) => return Err(Error::Acme(challenge_errors(order, &describe(&e)).await)),
    };
    if status != OrderStatus::Ready {
        return Err(Error::Acme(
            challenge_errors(order, &format!("the order is {status:?}")).await,
        ));
    }
    let key = match req.key_type {
        KeyType::EcdsaP256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyType::EcdsaP384 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
    }
    .map_err(|e| Error::Acme(format!("cannot make a key: {e}")))?;
    let mut params = rcgen::CertificateParams::new(req.names.to_vec())
        .map_err(|e| Error::Acme(format!("names for the CSR: {e}")))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| Error::Acme(format!("cannot make the CSR: {e}")))?;
    order.finalize_csr(csr.der()).await.map_err(acme)?;
    let chain_pem = order.poll_certificate(&retry()).await.map_err(acme)?;
    let info = verify(
        &chain_pem,
        req.names,
        &rcgen::PublicKeyData::subject_public_key_info(&key),
        SystemTime::now(),
    )?;
    Ok(Stored {
        chain_pem,
        key_pem: key.serialize_pem(),
        info,
    })
}

/// `headline` with each failed challenge's error, read afresh from the CA.
async fn challenge_errors(order: &mut instant_acme::Order, headline: &str) -> String {
    let mut out = headline.to_owned();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        let identifier = authz.identifier().to_string();
        let Ok(state) = authz.refresh().await else {
            continue;
        };
        for c in &state.challenges {
            if let Some(e) = &c.error {
                out.push_str(&format!(
                    "; {identifier}: {}",
                    e.detail.as_deref().unwrap_or("failed")
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use tokio::sync::mpsc;

    /// Reports each removal on a channel.
    struct Recorder(mpsc::UnboundedSender<String>);

    #[async_trait]
    impl DnsProvider for Recorder {
        async fn publish(&self, name: &str, value: &str) -> Result<Published, Error> {
            Ok(Published {
                name: name.to_owned(),
                value: value.to_owned(),
                id: None,
                zone: "lab.test".to_owned(),
            })
        }

        async fn unpublish(&self, record: &Published) -> Result<(), Error> {
            // A provider's call takes a while: a waiter must wait for it.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let _ = self.0.send(record.name.clone());
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_order_cut_off_after_publishing_still_removes_its_values_before_the_next() {
        let (tx, mut removed) = mpsc::unbounded_channel();
        let provider: Arc<dyn DnsProvider> = Arc::new(Recorder(tx));
        let pending = Arc::new(PendingCleanups::default());
        // An attempt that publishes two values, then waits for ever (a propagation wait, a
        // CA that never answers) until its timeout drops it.
        let attempt = async {
            let mut cleanup = Cleanup {
                provider: Arc::clone(&provider),
                published: Vec::new(),
                pending: Arc::clone(&pending),
            };
            for name in ["_acme-challenge.a.lab.test", "_acme-challenge.b.lab.test"] {
                let p = provider.publish(name, "v").await.expect("publish");
                cleanup.published.push(p);
            }
            std::future::pending::<()>().await;
            cleanup.run().await;
        };
        let cut = tokio::time::timeout(Duration::from_millis(10), attempt).await;
        assert!(cut.is_err(), "the attempt cannot end by itself");
        // The next order starts only once both removals are done.
        pending.wait().await;
        let mut names: Vec<String> = std::iter::from_fn(|| removed.try_recv().ok()).collect();
        names.sort();
        assert_eq!(
            names,
            ["_acme-challenge.a.lab.test", "_acme-challenge.b.lab.test"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_finished_order_removes_its_values_once() {
        let (tx, mut removed) = mpsc::unbounded_channel();
        let provider: Arc<dyn DnsProvider> = Arc::new(Recorder(tx));
        let mut cleanup = Cleanup {
            provider: Arc::clone(&provider),
            published: Vec::new(),
            pending: Arc::default(),
        };
        let p = provider
            .publish("_acme-challenge.lab.test", "v")
            .await
            .expect("publish");
        cleanup.published.push(p);
        cleanup.run().await;
        drop(provider);
        let limit = Duration::from_secs(10);
        let first = tokio::time::timeout(limit, removed.recv()).await;
        assert_eq!(
            first.expect("a removal within 10 s").as_deref(),
            Some("_acme-challenge.lab.test")
        );
        // Every sender is gone once the cleanup is: no second removal was spawned.
        let second = tokio::time::timeout(limit, removed.recv()).await;
        assert_eq!(second.expect("within 10 s"), None);
    }
}
