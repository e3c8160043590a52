//! The real handler driven in-process, bytes in and bytes out, for the `dns_handle` fuzz
//! target, unit tests and benches (H2: the fuzz target is a shim over this).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use hickory_proto::op::Message;
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use labgate_config::{Snapshot, Sources, compile, parse};

use crate::{Handler, Metrics};

/// A response handler that keeps the encoded response.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut buf = Vec::with_capacity(512);
        let info = response
            .destructive_emit(&mut BinEncoder::new(&mut buf))
            .map_err(NetError::from)?;
        if let Ok(mut out) = self.0.lock() {
            *out = buf;
        }
        Ok(info)
    }
}

/// Runs one query's bytes through the handler; the response bytes, or `None` when the
/// packet does not parse as a request or nothing was sent.
pub async fn handle(handler: &Handler, data: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
    let request =
        Request::from_bytes(data.to_vec(), src, hickory_server::net::xfer::Protocol::Udp).ok()?;
    let capture = Capture::default();
    handler
        .handle_request::<_, TokioTime>(&request, capture.clone())
        .await;
    let out = capture.0.lock().ok()?.clone();
    (!out.is_empty()).then_some(out)
}

/// A handler over a small fixed configuration with no upstreams (nothing leaves the
/// process): views for 127.0.0.1 and 127.0.0.2, one zone, a service, a CNAME.
pub fn sample_handler() -> Handler {
    const TOML: &str = r#"
[[network]]
name = "lab"
cidrs = ["127.0.0.1/32"]
addresses = ["10.0.0.2", "fd00::2"]
[[network]]
name = "guest"
cidrs = ["127.0.0.2/32"]
addresses = ["10.0.1.2"]
internal = false
[[zone]]
name = "lab.test"
[[record]]
name = "www.lab.test"
type = "CNAME"
value = "app.lab.test"
[[record]]
name = "*.dev.lab.test"
type = "TXT"
value = "dev"
[[service]]
host = "app.lab.test"
backends = ["http://10.0.0.9"]
allow = ["lab"]
"#;
    let mut s = Sources::new();
    s.add("fuzz.toml", TOML);
    let snapshot: Snapshot = parse(s)
        .ok()
        .and_then(|l| compile(&l, 1).ok())
        .unwrap_or_else(|| unreachable!("the sample configuration compiles"));
    Handler::new(
        Arc::new(ArcSwap::from_pointee(snapshot)),
        Arc::new(Metrics::default()),
    )
}

/// Fuzz entry: any bytes as a query from a client of each network and from a stranger;
/// never panics, and every response parses and carries the query's ID.
pub fn handle_bytes(data: &[u8]) {
    static HANDLER: OnceLock<Handler> = OnceLock::new();
    thread_local! {
        static RUNTIME: Option<tokio::runtime::Runtime> =
            tokio::runtime::Builder::new_current_thread().enable_all().build().ok();
    }
    let handler = HANDLER.get_or_init(sample_handler);
    RUNTIME.with(|rt| {
        let Some(rt) = rt else { return };
        for src in ["127.0.0.1:5000", "127.0.0.2:5000", "192.0.2.1:5000"] {
            let src: SocketAddr = src
                .parse()
                .unwrap_or_else(|_| unreachable!("literal address"));
            if let Some(out) = rt.block_on(handle(handler, data, src)) {
                let msg =
                    Message::from_vec(&out).unwrap_or_else(|e| panic!("unparseable response: {e}"));
                assert_eq!(
                    msg.metadata.id,
                    u16::from_be_bytes([data[0], data[1]]),
                    "response ID"
                );
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `app.lab.test A`, RD set, id 0x1234.
    fn query(name: &[&str], qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        q
    }

    #[test]
    fn seed_corpus_passes_the_properties() {
        let mut n = 0;
        for e in std::fs::read_dir("../fuzz/corpus/dns_handle").expect("seed corpus") {
            handle_bytes(&std::fs::read(e.expect("entry").path()).expect("seed"));
            n += 1;
        }
        assert!(n >= 3, "seed corpus went missing");
    }

    #[test]
    fn answers_in_process_per_view() {
        let handler = sample_handler();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        let ask = |src: &str, q: &[u8]| {
            let out = rt
                .block_on(handle(&handler, q, src.parse().expect("src")))
                .expect("a response");
            Message::from_vec(&out).expect("parses")
        };
        let a = ask("127.0.0.1:1", &query(&["app", "lab", "test"], 1));
        assert_eq!(a.answers.len(), 1);
        assert!(a.metadata.authoritative);
        let guest = ask("127.0.0.2:1", &query(&["app", "lab", "test"], 1));
        assert_eq!(
            guest.metadata.response_code,
            hickory_proto::op::ResponseCode::NXDomain
        );
        let stranger = ask("192.0.2.1:1", &query(&["app", "lab", "test"], 1));
        assert_eq!(
            stranger.metadata.response_code,
            hickory_proto::op::ResponseCode::Refused
        );
    }
}
