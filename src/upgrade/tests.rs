use super::*;

#[test]
fn manifest_lines_read_back_and_nothing_else_does() {
    for kind in Kind::ALL {
        for at in ["127.0.0.1:0", "[::]:53", "10.0.0.2:443"] {
            let e = Entry {
                kind,
                at: at.parse().expect("address"),
            };
            assert_eq!(Entry::parse(&e.line()), Some(e));
        }
    }
    for bad in [
        "",
        "dns-udp",
        "dns-udp 127.0.0.1",
        "smtp 127.0.0.1:25",
        "admin  127.0.0.1:1",
    ] {
        assert_eq!(Entry::parse(bad), None, "{bad:?}");
    }
}

/// The sockets arrive as the same sockets (same bound addresses), however many there are,
/// each taken by its kind and configured address.
#[test]
fn sockets_handed_over_are_the_same_sockets() {
    let udp: Vec<std::net::UdpSocket> = (0..70)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").expect("udp"))
        .collect();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("tcp");
    let configured: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let admin_at: SocketAddr = "127.0.0.1:9153".parse().expect("address");
    let mut h = Handover::default();
    for s in &udp {
        h.keep(Kind::DnsUdp, configured, s).expect("keep");
    }
    h.keep(Kind::Admin, admin_at, &tcp).expect("keep");
    let (old, new) = UnixStream::pair().expect("pair");
    let sender = std::thread::spawn(move || h.send(&old));
    let mut got = Inherited::receive(&new).expect("receive");
    sender.join().expect("sender").expect("sent");
    assert!(
        got.take(Kind::Admin, configured).is_empty(),
        "by kind and address"
    );
    let admin = got.take(Kind::Admin, admin_at);
    assert_eq!(admin.len(), 1);
    let admin = std::net::TcpListener::from(admin.into_iter().next().expect("one"));
    assert_eq!(admin.local_addr().ok(), tcp.local_addr().ok());
    let dns = got.take(Kind::DnsUdp, configured);
    let ports: Vec<_> = dns
        .into_iter()
        .map(|fd| std::net::UdpSocket::from(fd).local_addr().expect("addr"))
        .collect();
    let want: Vec<_> = udp.iter().map(|s| s.local_addr().expect("addr")).collect();
    assert_eq!(ports, want);
    assert!(got.close_left().is_empty());
}

#[test]
fn a_manifest_that_does_not_pair_up_is_refused() {
    let (old, new) = UnixStream::pair().expect("pair");
    // Two lines, no descriptors.
    (&old)
        .write_all(b"admin 127.0.0.1:1\nhttp 127.0.0.1:2\n\n")
        .expect("write");
    let e = Inherited::receive(&new).expect_err("refused");
    assert!(e.to_string().contains("do not pair up"), "{e}");
    let (old, new) = UnixStream::pair().expect("pair");
    drop(old);
    let e = Inherited::receive(&new).expect_err("refused");
    assert!(e.to_string().contains("closed the connection"), "{e}");
    // Nothing to hand over is a manifest too.
    let (old, new) = UnixStream::pair().expect("pair");
    Handover::default().send(&old).expect("send");
    assert!(
        Inherited::receive(&new)
            .expect("an empty hand-over")
            .close_left()
            .is_empty()
    );
}

#[test]
fn a_socket_nobody_took_is_closed_and_named() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let at = listener.local_addr().expect("addr");
    let entry = Entry {
        kind: Kind::Http,
        at,
    };
    let inherited = Inherited::new(vec![(entry, OwnedFd::from(listener))]);
    assert_eq!(inherited.close_left(), [entry]);
    // Closed: the address is free again (no SO_REUSEADDR on a listener still open).
    std::net::TcpListener::bind(at).expect("the address is free");
}

#[test]
fn the_binary_is_the_file_at_the_path_even_once_replaced() {
    for (exe, want) in [
        ("/usr/local/bin/labgate", "/usr/local/bin/labgate"),
        ("/usr/local/bin/labgate (deleted)", "/usr/local/bin/labgate"),
        ("/opt/lab gate/labgate (deleted)", "/opt/lab gate/labgate"),
    ] {
        assert_eq!(binary_path(PathBuf::from(exe)), PathBuf::from(want));
    }
}

/// A new process given up on (here one that never connects) is killed, not left to serve
/// beside the old one.
#[test]
fn a_new_process_given_up_on_is_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = format!("{}.{}", 30, std::process::id());
    let args = [std::ffi::OsString::from(&marker)];
    let started = tokio::time::Instant::now();
    let e = hand_over(
        &Handover::default(),
        (Path::new("/bin/sleep"), &args),
        dir.path(),
        std::time::Duration::from_millis(300),
    )
    .expect_err("it never connects");
    assert!(e.to_string().contains("did not connect"), "{e:#}");
    // Stopped, not waited out (it would sleep 30 s).
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let left = std::process::Command::new("pgrep")
        .args(["-f", &format!("sleep {marker}")])
        .output()
        .expect("pgrep");
    assert!(!left.status.success(), "still running: {left:?}");
    assert!(!dir.path().join(SOCKET).exists(), "the socket is removed");
    // A binary that cannot start at all.
    let e = hand_over(
        &Handover::default(),
        (Path::new("/nonexistent/labgate"), &[]),
        dir.path(),
        std::time::Duration::from_millis(300),
    )
    .expect_err("no such binary");
    assert!(e.to_string().contains("cannot start"), "{e:#}");
}
