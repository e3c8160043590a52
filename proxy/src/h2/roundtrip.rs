//! Round trips against a real client: the `h2` crate's, over an in-memory duplex, with the
//! core driven by hand the way the executor will drive it (one task, a read buffer, the
//! output written out after each batch of events).

use std::collections::HashMap;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::{Connection, Event, Limits, StreamId};

/// The test server's work on one stream: body bytes to send and how it ends.
#[derive(Default)]
struct Out {
    body: Vec<u8>,
    sent: usize,
    /// The body is complete once `body` is sent.
    fin: bool,
    /// Echo: release request bytes as they leave again (back-pressure end to end).
    echo: bool,
    trailers: Option<(Vec<u8>, Vec<u8>)>,
    done: bool,
}

/// What to do after an event (events borrow the connection).
enum Act {
    Respond(StreamId, String),
    Data(StreamId, Vec<u8>, bool),
    Trailers(StreamId, Vec<(Vec<u8>, Vec<u8>)>),
    Pump(StreamId),
    Forget(StreamId),
    Nothing,
}

/// Serves: `GET /small` → "hello"; `GET /big/N` → N bytes; `POST /echo` → the body back,
/// then the request's trailers back as response trailers.
async fn serve(io: DuplexStream) -> Result<(), super::ConnError> {
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut conn = Connection::new(Limits::default());
    let mut buf = vec![0u8; Connection::MIN_INPUT + 4096];
    let mut len = 0;
    let mut streams: HashMap<StreamId, Out> = HashMap::new();
    loop {
        let mut pos = 0;
        loop {
            let r = conn.recv(&buf[pos..len])?;
            pos += r.consumed;
            let act = match r.event {
                None => {
                    if conn.output().is_empty() {
                        break;
                    }
                    // Output full: write it before reading more frames.
                    wr.write_all(conn.output()).await.expect("write");
                    let n = conn.output().len();
                    conn.advance(n);
                    continue;
                }
                Some(Event::Request { stream, head, .. }) => {
                    Act::Respond(stream, String::from_utf8_lossy(head.path).into_owned())
                }
                Some(Event::Data {
                    stream,
                    data,
                    end_stream,
                }) => Act::Data(stream, data.to_vec(), end_stream),
                Some(Event::Trailers { stream, fields }) => Act::Trailers(
                    stream,
                    fields.map(|(n, v)| (n.to_vec(), v.to_vec())).collect(),
                ),
                Some(Event::Capacity { stream }) => Act::Pump(stream),
                Some(Event::Reset { stream, .. }) => Act::Forget(stream),
                Some(_) => Act::Nothing,
            };
            match act {
                Act::Respond(stream, path) => {
                    let mut out = Out::default();
                    if path == "/small" {
                        out.body = b"hello".to_vec();
                        out.fin = true;
                    } else if let Some(n) = path.strip_prefix("/big/") {
                        out.body = vec![b'b'; n.parse().expect("size")];
                        out.fin = true;
                    } else {
                        out.echo = true;
                    }
                    let fields: [(&[u8], &[u8]); 2] = [
                        (b"Content-Type", b"text/plain"),
                        (b"Connection", b"keep-alive"),
                    ];
                    conn.send_response(stream, 200, fields, false)
                        .expect("head");
                    streams.insert(stream, out);
                    pump(&mut conn, &mut streams, stream);
                }
                Act::Data(stream, data, end_stream) => {
                    let out = streams.get_mut(&stream).expect("known stream");
                    out.body.extend_from_slice(&data);
                    out.fin |= end_stream;
                    pump(&mut conn, &mut streams, stream);
                }
                Act::Trailers(stream, fields) => {
                    let out = streams.get_mut(&stream).expect("known stream");
                    out.trailers = fields.into_iter().next();
                    out.fin = true;
                    pump(&mut conn, &mut streams, stream);
                }
                Act::Pump(stream) => pump(&mut conn, &mut streams, stream),
                Act::Forget(stream) => {
                    streams.remove(&stream);
                }
                Act::Nothing => {}
            }
        }
        buf.copy_within(pos..len, 0);
        len -= pos;
        if !conn.output().is_empty() {
            wr.write_all(conn.output()).await.expect("write");
            let n = conn.output().len();
            conn.advance(n);
        }
        let n = rd.read(&mut buf[len..]).await.expect("read");
        if n == 0 {
            return Ok(());
        }
        len += n;
    }
}

/// Sends what the stream has and the windows allow.
fn pump(conn: &mut Connection, streams: &mut HashMap<StreamId, Out>, stream: StreamId) {
    let Some(out) = streams.get_mut(&stream) else {
        return;
    };
    if out.done {
        return;
    }
    let rest = &out.body[out.sent..];
    let end = out.fin && out.trailers.is_none();
    if !rest.is_empty() || end {
        let n = conn.send_data(stream, rest, end).expect("send");
        out.sent += n;
        if out.echo {
            conn.release(stream, n);
        }
        if n < rest.len() {
            return;
        }
        if end {
            out.done = true;
            return;
        }
    }
    if out.fin
        && let Some((n, v)) = out.trailers.take()
    {
        conn.send_trailers(stream, [(&n[..], &v[..])])
            .expect("trailers");
        out.done = true;
    }
}

async fn client() -> h2::client::SendRequest<Bytes> {
    let (a, b) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move { serve(b).await.expect("no connection error") });
    let (send, conn) = h2::client::handshake(a).await.expect("handshake");
    tokio::spawn(async move { conn.await.expect("client connection") });
    send
}

async fn body(mut rx: h2::RecvStream) -> Vec<u8> {
    let mut v = Vec::new();
    while let Some(chunk) = rx.data().await {
        let chunk = chunk.expect("chunk");
        rx.flow_control()
            .release_capacity(chunk.len())
            .expect("release");
        v.extend_from_slice(&chunk);
    }
    v
}

fn get(path: &str) -> http::Request<()> {
    http::Request::get(format!("https://app.lab.test{path}"))
        .body(())
        .expect("request")
}

#[tokio::test]
async fn concurrent_small_requests() {
    let send = client().await;
    let mut tasks = Vec::new();
    for _ in 0..150 {
        let mut send = send.clone().ready().await.expect("ready");
        tasks.push(tokio::spawn(async move {
            let (resp, _) = send.send_request(get("/small"), true).expect("send");
            let resp = resp.await.expect("response");
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.headers()["content-type"], "text/plain");
            assert!(!resp.headers().contains_key("connection"));
            body(resp.into_body()).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), b"hello");
    }
}

#[tokio::test]
async fn large_response_waits_for_window() {
    let mut send = client().await;
    let (resp, _) = send.send_request(get("/big/3000000"), true).expect("send");
    let resp = resp.await.expect("response");
    assert_eq!(body(resp.into_body()).await.len(), 3_000_000);
}

#[tokio::test]
async fn echo_with_trailers_both_ways() {
    let mut send = client().await;
    let req = http::Request::post("https://app.lab.test/echo")
        .body(())
        .expect("request");
    let (resp, mut tx) = send.send_request(req, false).expect("send");
    let payload: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let sender = {
        let payload = payload.clone();
        tokio::spawn(async move {
            for c in payload.chunks(100_000) {
                tx.reserve_capacity(c.len());
                let mut left = c;
                while !left.is_empty() {
                    let cap = std::future::poll_fn(|cx| tx.poll_capacity(cx))
                        .await
                        .expect("capacity")
                        .expect("open");
                    let n = cap.min(left.len());
                    tx.send_data(Bytes::copy_from_slice(&left[..n]), false)
                        .expect("data");
                    left = &left[n..];
                    tx.reserve_capacity(left.len());
                }
            }
            let mut t = http::HeaderMap::new();
            t.insert("x-checksum", "42".parse().expect("value"));
            tx.send_trailers(t).expect("trailers");
        })
    };
    let resp = resp.await.expect("response");
    let mut rx = resp.into_body();
    let mut got = Vec::new();
    while let Some(chunk) = rx.data().await {
        let chunk = chunk.expect("chunk");
        rx.flow_control()
            .release_capacity(chunk.len())
            .expect("release");
        got.extend_from_slice(&chunk);
    }
    let trailers = rx.trailers().await.expect("trailers").expect("some");
    sender.await.expect("sender");
    assert_eq!(got.len(), payload.len());
    assert!(got == payload);
    assert_eq!(trailers["x-checksum"], "42");
}

#[tokio::test]
async fn client_reset_then_more_requests() {
    let send = client().await;
    let mut s = send.clone().ready().await.expect("ready");
    let req = http::Request::post("https://app.lab.test/echo")
        .body(())
        .expect("request");
    let (resp, mut tx) = s.send_request(req, false).expect("send");
    tx.send_data(Bytes::from_static(b"partial"), false)
        .expect("data");
    let resp = resp.await.expect("head");
    tx.send_reset(h2::Reason::CANCEL);
    let mut rx = resp.into_body();
    while let Some(Ok(_)) = rx.data().await {}
    let mut s = send.ready().await.expect("ready");
    let (resp, _) = s.send_request(get("/small"), true).expect("send");
    let resp = resp.await.expect("response");
    assert_eq!(body(resp.into_body()).await, b"hello");
}
