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
use crate::problem::{ChallengeFailure, Problem, ProblemType};
use crate::propagation::{self, Authorities};
use crate::provider::{DnsProvider, Published};
use crate::store::Stored;
use crate::verify::verify;

/// How an order is placed.
pub(crate) struct Request<'a> {
    /// The certificate's names (`*.zone` for a wildcard).
    pub(crate) names: &'a [String],
    pub(crate) key_type: KeyType,
    /// The certificate's key when it is given (a pair's shared key); else one is made.
    pub(crate) key: Option<&'a rcgen::KeyPair>,
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
    let identifiers: Vec<Identifier> = req
        .names
        .iter()
        .map(|n| Identifier::Dns(n.clone()))
        .collect();
    let new = |replaces: Option<&CertificateIdentifier<'static>>| {
        let mut new = NewOrder::new(&identifiers);
        if let Some(p) = req.profile {
            new = new.profile(p);
        }
        if let Some(r) = replaces {
            new = new.replaces(r.clone());
        }
        new
    };
    // The CA may hand this order the pending authorization a dropped one published for:
    // the same record, which that order's late removal would take away mid-validation.
    req.pending.wait().await;
    let mut order = match account.new_order(&new(req.replaces.as_ref())).await {
        Ok(order) => order,
        Err(e) => match Error::from(e) {
            e if req.replaces.is_some() && replaces_refused(&e) => {
                tracing::debug!("{}: {e}; ordering without `replaces`", req.names.join(", "));
                account.new_order(&new(None)).await?
            }
            e => return Err(e),
        },
    };
    let mut cleanup = Cleanup {
        provider: Arc::clone(req.provider),
        published: Vec::new(),
        pending: Arc::clone(req.pending),
    };
    let result = validate_and_finalize(&mut order, req, &mut cleanup.published).await;
    cleanup.run().await;
    result
}

/// Whether the CA refused an order's `replaces` (RFC 9773 §5), so the order is placed again
/// without it: a directory without ARI (instant-acme refuses before sending), a certificate
/// that already has a replacement order (`alreadyReplaced`, left by an earlier attempt that
/// failed after ordering: every later attempt would fail the same until that order expired),
/// or one the CA cannot match (`malformed`: Boulder's answer for a certificate it does not
/// know, such as one from another CA). Any other `malformed` order fails the same again.
fn replaces_refused(e: &Error) -> bool {
    match e {
        Error::Refused(p) => p.is(&ProblemType::AlreadyReplaced) || p.is(&ProblemType::Malformed),
        Error::Client(instant_acme::Error::Unsupported(_)) => true,
        _ => false,
    }
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
    pub(crate) async fn wait(&self) {
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
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            // Reused from an earlier order.
            AuthorizationStatus::Valid => continue,
            other => {
                return Err(Error::Authorization {
                    identifier: authz.identifier().to_string(),
                    status: format!("{other:?}"),
                });
            }
        }
        let identifier = authz.identifier().to_string();
        let no_dns01 = || Error::NoDnsChallenge {
            identifier: identifier.clone(),
        };
        let challenge = authz.challenge(ChallengeType::Dns01).ok_or_else(no_dns01)?;
        // The record name comes from the identifier without its `*.`.
        let Identifier::Dns(base) = &challenge.identifier().identifier else {
            return Err(no_dns01());
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
        let mut authz = authz?;
        if authz.status != AuthorizationStatus::Pending {
            continue;
        }
        if let Some(mut challenge) = authz.challenge(ChallengeType::Dns01) {
            challenge.set_ready().await?;
        }
    }
    let (state, source) = match order.poll_ready(&retry()).await {
        Ok(OrderStatus::Ready) => (None, None),
        Ok(status) => (Some(format!("{status:?}")), None),
        Err(e) => (Some("not ready".to_owned()), Some(Box::new(Error::from(e)))),
    };
    if let Some(state) = state {
        return Err(Error::NotReady {
            state,
            failed: failed_challenges(order).await,
            source,
        });
    }
    let cannot_make = |what| move |source| Error::Csr { what, source };
    let made;
    let key = match req.key {
        Some(key) => key,
        None => {
            made = match req.key_type {
                KeyType::EcdsaP256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
                KeyType::EcdsaP384 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            }
            .map_err(cannot_make("the certificate's key"))?;
            &made
        }
    };
    let mut params = rcgen::CertificateParams::new(req.names.to_vec())
        .map_err(cannot_make("the CSR's names"))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(key)
        .map_err(cannot_make("the CSR"))?;
    order.finalize_csr(csr.der()).await?;
    let chain_pem = order.poll_certificate(&retry()).await?;
    let info = verify(
        &chain_pem,
        req.names,
        &rcgen::PublicKeyData::subject_public_key_info(key),
        SystemTime::now(),
    )?;
    Ok(Stored {
        chain_pem,
        key_pem: key.serialize_pem(),
        info,
    })
}

/// Each failed challenge's problem, read afresh from the CA.
async fn failed_challenges(order: &mut instant_acme::Order) -> Vec<ChallengeFailure> {
    let mut out = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        let identifier = authz.identifier().to_string();
        let Ok(state) = authz.refresh().await else {
            continue;
        };
        for c in &state.challenges {
            if let Some(e) = &c.error {
                out.push(ChallengeFailure {
                    identifier: identifier.clone(),
                    problem: Problem::from(e),
                });
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

    #[test]
    fn an_order_whose_replaces_is_refused_is_placed_again_without_it() {
        let refused = |kind: Option<&str>| {
            Error::Refused(Problem {
                kind: kind.map(ProblemType::parse),
                detail: Some("the CA's words".into()),
                subproblems: Vec::new(),
            })
        };
        let acme = |t: &str| Some(format!("urn:ietf:params:acme:error:{t}"));
        // (the first order's error, placed again without `replaces`)
        let table = [
            (refused(acme("alreadyReplaced").as_deref()), true),
            (refused(acme("malformed").as_deref()), true),
            (
                Error::Client(instant_acme::Error::Unsupported(
                    "ACME renewal information (ARI)",
                )),
                true,
            ),
            (refused(acme("rateLimited").as_deref()), false),
            (refused(acme("accountDoesNotExist").as_deref()), false),
            (refused(acme("unauthorized").as_deref()), false),
            (refused(acme("serverInternal").as_deref()), false),
            (refused(Some("urn:example:malformed")), false),
            (refused(None), false),
            (Error::Client(instant_acme::Error::Timeout(None)), false),
            (
                Error::Unanswered {
                    server: "ca.test:443".into(),
                    after: Duration::from_secs(30),
                },
                false,
            ),
        ];
        for (e, again) in table {
            assert_eq!(replaces_refused(&e), again, "{e}");
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
