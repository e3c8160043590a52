use super::*;

#[test]
fn a_wildcard_is_reached_on_loopback() {
    let cases = [
        ("0.0.0.0:53", "127.0.0.1:53"),
        ("[::]:53", "[::1]:53"),
        ("10.0.0.2:53", "10.0.0.2:53"),
        ("[fd00::2]:443", "[fd00::2]:443"),
    ];
    for (bound, want) in cases {
        let bound: SocketAddr = bound.parse().expect("address");
        assert_eq!(
            reachable(bound),
            want.parse::<SocketAddr>().expect("address")
        );
    }
}

/// A UDP server that answers each datagram as `reply` says (None: silence).
async fn udp_server(reply: fn(&[u8]) -> Option<Vec<u8>>) -> SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = socket.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            if let Some(r) = reply(&buf[..n]) {
                let _ = socket.send_to(&r, from).await;
            }
        }
    });
    addr
}

#[tokio::test]
async fn the_dns_check_wants_the_response_to_its_query() {
    let answers = udp_server(|q| {
        let mut r = q.to_vec();
        r[2] |= 0x80;
        Some(r)
    })
    .await;
    dns(answers).await.expect("answered");
    // Silence, a datagram that is not the response (no QR bit), a port nobody holds.
    let silent = udp_server(|_| None).await;
    let echo = udp_server(|q| Some(q.to_vec())).await;
    for to in [silent, echo] {
        let e = dns(to).await.expect_err("no answer");
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{to}: {e}");
    }
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let to = closed.local_addr().expect("addr");
    drop(closed);
    assert!(dns(to).await.is_err());
}

#[tokio::test]
async fn the_https_check_wants_a_handshake_or_an_alert() {
    // A listener that accepts and never speaks.
    let mute = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let to = mute.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = mute.accept().await {
            held.push(s);
        }
    });
    let e = https(to, "app.lab.test").await.expect_err("silence");
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");

    // A TLS server with a certificate for another name: the check takes any certificate.
    let cert = rcgen::generate_simple_self_signed(vec!["other.test".to_owned()]).expect("cert");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into()),
    )
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let tls = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let to = tls.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = tls.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(s).await;
            });
        }
    });
    https(to, "app.lab.test").await.expect("a handshake");
    // Nobody listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let to = closed.local_addr().expect("addr");
    drop(closed);
    assert!(https(to, "app.lab.test").await.is_err());
}

#[tokio::test(start_paused = true)]
async fn readiness_lasts_as_long_as_a_recent_check_passed() {
    let h = Health::default();
    assert_eq!(h.fresh(), Err("no self-check has passed yet".into()));
    h.record(&Ok(()));
    assert_eq!(h.fresh(), Ok(()));
    // A failure does not end readiness at once (one missed check), staleness does.
    h.record(&Err("DNS on 127.0.0.1:53 does not answer".into()));
    assert_eq!(h.fresh(), Ok(()));
    tokio::time::advance(FRESH).await;
    assert_eq!(h.fresh(), Err("DNS on 127.0.0.1:53 does not answer".into()));
    h.record(&Ok(()));
    assert_eq!(h.fresh(), Ok(()));
}

/// The watchdog is pinged after a check that passed, never after one that failed.
#[tokio::test]
async fn the_watchdog_is_pinged_only_while_the_checks_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify");
    let systemd = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
    systemd.set_nonblocking(true).expect("nonblocking");
    let notifier = Arc::new(
        crate::notify::Notifier::at(path.as_os_str().as_encoded_bytes()).expect("notifier"),
    );
    let pings = |within: Duration| {
        let systemd = systemd.try_clone().expect("clone");
        async move {
            tokio::time::sleep(within).await;
            let mut n = 0;
            let mut buf = [0u8; 64];
            while let Ok(len) = systemd.recv(&mut buf) {
                assert_eq!(&buf[..len], b"WATCHDOG=1");
                n += 1;
            }
            n
        }
    };
    let watchdog = Some(Duration::from_millis(400));
    for (answers, want_pings) in [(false, false), (true, true)] {
        let dns = if answers {
            udp_server(|q| {
                let mut r = q.to_vec();
                r[2] |= 0x80;
                Some(r)
            })
            .await
        } else {
            udp_server(|_| None).await
        };
        let health = Arc::new(Health::default());
        let cancel = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(run(
            Targets::new(Some(dns), None),
            || "app.lab.test".to_owned(),
            (Arc::clone(&health), Some(Arc::clone(&notifier))),
            watchdog,
            cancel.clone(),
        ));
        // Checks every 200 ms (half the watchdog), each given up after 1 s without an answer.
        let n = pings(Duration::from_millis(1500)).await;
        cancel.cancel();
        let _ = task.await;
        assert_eq!(n > 0, want_pings, "answers {answers}: {n} pings");
        assert_eq!(health.fresh().is_ok(), answers);
    }
}
