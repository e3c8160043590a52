//! RFC 2136 dynamic updates signed with TSIG (RFC 8945): one TXT value added to the record
//! set (§2.5.1) or deleted by value (§2.5.4), never the whole set.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use hickory_net::client::{Client, ClientHandle};
use hickory_net::proto::op::ResponseCode;
use hickory_net::proto::rr::rdata::TXT;
use hickory_net::proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_net::proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigner};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::udp::UdpClientStream;

use crate::provider::{CHALLENGE_TTL, DnsProvider, Published};
use crate::{Error, secret};

/// How long one update or query may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// TSIG's allowed clock difference (RFC 8945 recommends 300 s).
const FUDGE: u16 = 300;

/// A primary server that accepts TSIG-signed updates.
pub struct Rfc2136 {
    server: SocketAddr,
    key_name: Name,
    algorithm: TsigAlgorithm,
    secret: Vec<u8>,
    /// The address updates are sent from, when it matters to the server (a pair's peer
    /// takes them from the nodes' own addresses only).
    source: Option<IpAddr>,
    /// The zones the server has, when known: the zone of a name is the longest of them
    /// holding it, else the one the server's SOA answer names.
    zones: Vec<Name>,
}

impl std::fmt::Debug for Rfc2136 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // SECURITY: the secret stays out of logs.
        f.debug_struct("Rfc2136")
            .field("server", &self.server)
            .field("key_name", &self.key_name)
            .finish_non_exhaustive()
    }
}

impl Rfc2136 {
    /// A provider for `server`, signing with the key `key_name` (`hmac-sha256` or
    /// `hmac-sha512`) whose secret is in `secret_file` (base64, or a BIND `key` statement as
    /// `tsig-keygen` writes it).
    ///
    /// # Errors
    /// [`Error::Secret`] when the file is unreadable or holds no base64 secret;
    /// [`Error::Provider`] for an algorithm other than the two.
    pub fn new(
        server: SocketAddr,
        key_name: Name,
        algorithm: &str,
        secret_file: &Path,
    ) -> Result<Self, Error> {
        let algorithm = match algorithm {
            "hmac-sha256" => TsigAlgorithm::HmacSha256,
            "hmac-sha512" => TsigAlgorithm::HmacSha512,
            other => {
                return Err(Error::Provider {
                    provider: format!("rfc2136 {server}"),
                    what: format!(
                        "TSIG algorithm `{other}` is not supported: use hmac-sha256 or hmac-sha512"
                    ),
                });
            }
        };
        Ok(Self {
            server,
            key_name,
            algorithm,
            secret: secret::tsig(secret_file)?,
            source: None,
            zones: Vec::new(),
        })
    }

    /// A pair's peer (`server`), sent to from this node's own address `source` with the
    /// pair's `key`, updating the internal `zones` it serves.
    pub fn to_peer(
        server: SocketAddr,
        source: IpAddr,
        key: &labgate_config::pair::TsigKey,
        zones: Vec<Name>,
    ) -> Self {
        Self {
            server,
            key_name: key.name.clone(),
            algorithm: key.algorithm.hickory(),
            secret: key.secret.clone(),
            source: Some(source),
            zones,
        }
    }

    fn fail(&self, what: impl Into<String>) -> Error {
        Error::Provider {
            provider: format!("rfc2136 {}", self.server),
            what: what.into(),
        }
    }

    /// A client whose every message is signed with the key.
    fn client(&self) -> Result<Client<TokioRuntimeProvider>, Error> {
        let signer = TSigner::new(
            self.secret.clone(),
            self.algorithm.clone(),
            self.key_name.clone(),
            FUDGE,
        )
        .map_err(|e| self.fail(format!("cannot sign with the TSIG key: {e}")))?;
        let stream = UdpClientStream::builder(self.server, TokioRuntimeProvider::default())
            .with_timeout(Some(TIMEOUT))
            .with_signer(Some(signer))
            .with_bind_addr(self.source.map(|ip| SocketAddr::new(ip, 0)))
            .build();
        let (client, background) = Client::<TokioRuntimeProvider>::from_sender(stream);
        tokio::spawn(background);
        Ok(client)
    }

    /// The zone holding `name` on the server: the owner of the SOA it answers with.
    async fn zone_of(
        &self,
        client: &mut Client<TokioRuntimeProvider>,
        name: &Name,
    ) -> Result<Name, Error> {
        let known = self.zones.iter().filter(|z| z.zone_of(name));
        if let Some(zone) = known.max_by_key(|z| z.num_labels()) {
            return Ok(zone.clone());
        }
        let response = client
            .query(name.clone(), DNSClass::IN, RecordType::SOA)
            .await
            .map_err(|e| self.fail(self.explain(&e.to_string())))?;
        response
            .answers
            .iter()
            .chain(&response.authorities)
            .find(|r| r.record_type() == RecordType::SOA && r.name.zone_of(name))
            .map(|r| r.name.clone())
            .ok_or_else(|| {
                self.fail(format!(
                    "the server is not authoritative for {name} (no SOA for it, rcode {}): point `server` at the zone's primary",
                    response.metadata.response_code
                ))
            })
    }

    /// What a transport or TSIG failure means for the user.
    fn explain(&self, error: &str) -> String {
        if error.contains("HMAC") || error.contains("TSIG") || error.contains("tsig") {
            format!(
                "the server rejected the TSIG signature: check `key_name` ({}), `algorithm` and the secret file",
                self.key_name
            )
        } else {
            format!("no usable answer from the server: {error}")
        }
    }

    /// The outcome of an update the server answered with `code`, saying what to change.
    fn checked(&self, code: ResponseCode, action: &str, name: &Name) -> Result<(), Error> {
        match code {
            ResponseCode::NoError => Ok(()),
            ResponseCode::Refused => Err(self.fail(format!(
                "{action} {name} TXT refused: the zone's update-policy must grant key {} `name {name} TXT`",
                self.key_name
            ))),
            ResponseCode::NotAuth => Err(self.fail(format!(
                "{action} {name} TXT: not authorized (a wrong TSIG key or secret, or a server that is not the zone's primary)"
            ))),
            code => Err(self.fail(format!("{action} {name} TXT: the server answered {code}"))),
        }
    }
}

#[async_trait]
impl DnsProvider for Rfc2136 {
    async fn publish(&self, name: &str, value: &str) -> Result<Published, Error> {
        let fqdn = fqdn(name).map_err(|e| self.fail(e))?;
        let mut client = self.client()?;
        let zone = self.zone_of(&mut client, &fqdn).await?;
        let record = txt(&fqdn, value);
        // A record outside the zone would trip an assertion in hickory's update builder.
        if !zone.zone_of(&fqdn) {
            return Err(self.fail(format!("{fqdn} is outside zone {zone}")));
        }
        let response = client
            .append(record, zone.clone(), false)
            .await
            .map_err(|e| self.fail(self.explain(&e.to_string())))?;
        self.checked(response.metadata.response_code, "adding", &fqdn)?;
        Ok(Published {
            name: name.trim_end_matches('.').to_ascii_lowercase(),
            value: value.to_owned(),
            id: None,
            zone: zone.to_string(),
        })
    }

    async fn unpublish(&self, record: &Published) -> Result<(), Error> {
        let fqdn = fqdn(&record.name).map_err(|e| self.fail(e))?;
        let zone = Name::from_ascii(&record.zone).map_err(|e| self.fail(e.to_string()))?;
        if !zone.zone_of(&fqdn) {
            return Err(self.fail(format!("{fqdn} is outside zone {zone}")));
        }
        let mut client = self.client()?;
        let response = client
            .delete_by_rdata(txt(&fqdn, &record.value), zone)
            .await
            .map_err(|e| self.fail(self.explain(&e.to_string())))?;
        self.checked(response.metadata.response_code, "deleting", &fqdn)
    }
}

fn fqdn(name: &str) -> Result<Name, String> {
    let mut n = Name::from_ascii(name).map_err(|e| format!("`{name}` is not a DNS name: {e}"))?;
    n.set_fqdn(true);
    Ok(n)
}

fn txt(name: &Name, value: &str) -> Record {
    Record::from_rdata(
        name.clone(),
        CHALLENGE_TTL,
        RData::TXT(TXT::new(vec![value.to_owned()])),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> Rfc2136 {
        Rfc2136 {
            server: "192.0.2.53:53".parse().expect("addr"),
            key_name: Name::from_ascii("acme-key.").expect("name"),
            algorithm: TsigAlgorithm::HmacSha256,
            secret: b"secret".to_vec(),
            source: None,
            zones: Vec::new(),
        }
    }

    #[test]
    fn each_update_answer_says_what_to_change() {
        let name = fqdn("_acme-challenge.lab.example.test").expect("name");
        // (rcode, accepted, or the words the error has)
        let table = [
            (ResponseCode::NoError, None),
            (
                ResponseCode::Refused,
                Some(
                    "update-policy must grant key acme-key. `name _acme-challenge.lab.example.test. TXT`",
                ),
            ),
            (
                ResponseCode::NotAuth,
                Some("not authorized (a wrong TSIG key or secret"),
            ),
            (
                ResponseCode::ServFail,
                Some("the server answered Server Failure"),
            ),
            (
                ResponseCode::NotZone,
                Some("adding _acme-challenge.lab.example.test. TXT: the server answered"),
            ),
        ];
        let p = provider();
        for (code, words) in table {
            match (p.checked(code, "adding", &name), words) {
                (Ok(()), None) => {}
                (Err(e), Some(words)) => {
                    let e = e.to_string();
                    assert!(e.starts_with("rfc2136 192.0.2.53:53: "), "{code}: {e}");
                    assert!(e.contains(words), "{code}: {e}");
                }
                (got, _) => panic!("{code}: {got:?}"),
            }
        }
    }

    #[test]
    fn a_signature_failure_points_at_the_key() {
        // (hickory's error text, the explanation has)
        let table = [
            (
                "tsig validation error: HMAC mismatch",
                "rejected the TSIG signature: check `key_name` (acme-key.)",
            ),
            ("TSIG: unknown key", "rejected the TSIG signature"),
            ("error verifying tsig", "rejected the TSIG signature"),
            (
                "request timed out",
                "no usable answer from the server: request timed out",
            ),
            (
                "io error: connection refused",
                "no usable answer from the server: io error",
            ),
        ];
        let p = provider();
        for (error, words) in table {
            let got = p.explain(error);
            assert!(got.contains(words), "{error}: {got}");
        }
    }
}
