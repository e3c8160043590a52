//! Tables for the admin policy, over policies compiled from TOML.

use super::*;

const NETWORKS: &str = r#"
[[network]]
name = "mgmt"
cidrs = ["10.0.10.0/24"]
[[network]]
name = "guest"
cidrs = ["10.0.50.0/24", "127.0.0.2/32"]
"#;

/// `[admin]` with the lines given, over [`NETWORKS`].
fn policy(admin: &str) -> (AdminPolicy, Networks) {
    let text = format!("{NETWORKS}[admin]\n{admin}\n");
    let secret: &[u8] = b"# tokens and users\n s3cr3t-token \n\nalice:open sesame\n";
    let loaded = crate::testing::loaded(&text, &[("admin.secret", secret)]);
    let s = crate::compile(&loaded, 1).unwrap_or_else(|d| panic!("{d}"));
    (s.admin, s.networks)
}

/// What, under which policy, from which peer, with which fields, gets what.
type Case<'a> = (
    &'a str,
    &'a (AdminPolicy, Networks),
    &'a str,
    Vec<(&'a str, &'a str)>,
    Decision,
);

fn basic(pair: &str) -> String {
    format!("Basic {}", STANDARD.encode(pair))
}

#[test]
fn address_fields_and_credentials_decide() {
    use Decision::{Allow, Unauthorized};
    let open = policy("");
    let mgmt = policy("allow = [\"mgmt\"]");
    let locked = policy("allow = [\"mgmt\"]\nauth_file = \"admin.secret\"");
    let net = |p: &(AdminPolicy, Networks), name: &str| p.1.by_name(name).map(|n| n.id);
    let refused = |p: &(AdminPolicy, Networks), client: &str, name: Option<&str>, fwd| {
        Decision::Forbidden(Forbidden::Network {
            client: client.parse().expect("ip"),
            network: name.and_then(|n| net(p, n)),
            forwarded: fwd,
        })
    };
    let token = "Bearer s3cr3t-token".to_owned();
    let alice = basic("alice:open sesame");
    let typo = basic("alice:open sesam");
    let token_as_basic = basic("s3cr3t-token");
    #[rustfmt::skip]
    let cases: Vec<Case<'_>> = vec![
        ("default: loopback", &open, "127.0.0.1", vec![], Allow),
        ("default: IPv6 loopback", &open, "::1", vec![], Allow),
        ("default: mapped loopback", &open, "::ffff:127.0.0.9", vec![], Allow),
        ("loopback in a guest network is still loopback", &open, "127.0.0.2", vec![], Allow),
        ("default: no LAN network", &open, "10.0.10.5", vec![], refused(&open, "10.0.10.5", Some("mgmt"), false)),
        ("allowed network", &mgmt, "10.0.10.5", vec![], Allow),
        ("mapped address of an allowed network", &mgmt, "::ffff:10.0.10.5", vec![], Allow),
        ("other network", &mgmt, "10.0.50.5", vec![], refused(&mgmt, "10.0.50.5", Some("guest"), false)),
        ("no network", &mgmt, "192.0.2.1", vec![], refused(&mgmt, "192.0.2.1", None, false)),
        ("proxy forwards mgmt", &mgmt, "127.0.0.1", vec![("X-Forwarded-For", "10.0.10.7")], Allow),
        ("proxy forwards guest", &mgmt, "127.0.0.1", vec![("x-forwarded-for", "10.0.50.7")], refused(&mgmt, "10.0.50.7", Some("guest"), true)),
        ("the last address counts", &mgmt, "127.0.0.1", vec![("X-Forwarded-For", "10.0.10.7, 10.0.50.7")], refused(&mgmt, "10.0.50.7", Some("guest"), true)),
        ("the last field counts", &mgmt, "127.0.0.1", vec![("X-Forwarded-For", "10.0.50.7"), ("X-Forwarded-For", "10.0.10.7")], Allow),
        ("forwarded loopback", &mgmt, "127.0.0.1", vec![("X-Forwarded-For", "127.0.0.1")], Allow),
        ("a guest cannot forward itself in", &mgmt, "10.0.50.5", vec![("X-Forwarded-For", "10.0.10.7")], refused(&mgmt, "10.0.50.5", Some("guest"), false)),
        ("unreadable forwarded address", &mgmt, "127.0.0.1", vec![("X-Forwarded-For", "unknown")], Decision::Forbidden(Forbidden::UnreadableForwardedFor)),
        ("through the tunnel", &mgmt, "127.0.0.1", vec![("X-Forwarded-For", "10.0.10.7"), ("Cf-Connecting-IP", "10.0.10.7")], Decision::Forbidden(Forbidden::Tunnel)),
        ("no credentials", &locked, "10.0.10.5", vec![], Unauthorized),
        ("token", &locked, "10.0.10.5", vec![("Authorization", &token)], Allow),
        ("scheme in any case", &locked, "10.0.10.5", vec![("authorization", "bearer s3cr3t-token")], Allow),
        ("wrong token", &locked, "10.0.10.5", vec![("Authorization", "Bearer s3cr3t-tokem")], Unauthorized),
        ("token prefix", &locked, "10.0.10.5", vec![("Authorization", "Bearer s3cr3t")], Unauthorized),
        ("basic", &locked, "10.0.10.5", vec![("Authorization", &alice)], Allow),
        ("basic, wrong password", &locked, "10.0.10.5", vec![("Authorization", &typo)], Unauthorized),
        ("a token is no basic password", &locked, "10.0.10.5", vec![("Authorization", &token_as_basic)], Unauthorized),
        ("a basic pair is no token", &locked, "10.0.10.5", vec![("Authorization", "Bearer alice:open sesame")], Unauthorized),
        ("basic, not base64", &locked, "10.0.10.5", vec![("Authorization", "Basic !!!")], Unauthorized),
        ("loopback needs credentials too", &locked, "127.0.0.1", vec![], Unauthorized),
        ("credentials do not open other networks", &locked, "10.0.50.5", vec![("Authorization", &token)], refused(&locked, "10.0.50.5", Some("guest"), false)),
    ];
    for (what, p, peer, fields, want) in cases {
        let got = p.0.decide(
            &p.1,
            peer.parse().expect("peer"),
            fields.iter().map(|(n, v)| (*n, v.as_bytes())),
        );
        assert_eq!(got, want, "{what}");
    }
}

#[test]
fn a_refusal_says_what_to_change() {
    let (p, n) = policy("allow = [\"mgmt\"]");
    let guest = n.by_name("guest").map(|g| g.id);
    let m = |f: Forbidden| f.message(&n, &p);
    let network = |network, forwarded| Forbidden::Network {
        client: "10.0.50.5".parse().expect("ip"),
        network,
        forwarded,
    };
    assert_eq!(
        m(network(guest, false)),
        "forbidden: client 10.0.50.5 is in network `guest`; to let it in, add `guest` to \
         `allow` under `[admin]` (the admin endpoint admits: loopback and mgmt)\n"
    );
    assert!(m(network(guest, true)).contains("client 10.0.50.5 (forwarded by labgate's proxy)"));
    assert!(m(network(None, false)).contains("is in no network; to let it in, add its range"));
    assert!(m(Forbidden::Tunnel).contains("remove `tunnel` from the `allow`"));
    let (open, n) = policy("");
    assert!(
        Forbidden::Tunnel
            .message(&n, &open)
            .contains("admits: loopback only")
    );
}

#[test]
fn credentials_files_are_checked_and_never_shown() {
    let c = Credentials::parse(b"# admin\ntok\n\nbob:pw\n").expect("parses");
    assert_eq!(format!("{c:?}"), "Credentials { tokens: 1, basic: 1 }");
    assert_eq!(
        c.challenges().collect::<Vec<_>>(),
        [
            "Basic realm=\"labgate admin\", charset=\"UTF-8\"",
            "Bearer realm=\"labgate admin\""
        ]
    );
    let only_token = Credentials::parse(b"tok").expect("parses");
    assert_eq!(
        only_token.challenges().collect::<Vec<_>>(),
        ["Bearer realm=\"labgate admin\""]
    );
    for (text, err) in [
        (&b""[..], CredentialsError::Empty),
        (b"# nothing\n\n", CredentialsError::Empty),
        (b"tok\ntwo words\n", CredentialsError::TokenWithSpace(2)),
        (b"bob:\n", CredentialsError::EmptyUserOrPassword(1)),
        (b":pw\n", CredentialsError::EmptyUserOrPassword(1)),
        (b"\xff\n", CredentialsError::NotText),
    ] {
        assert_eq!(Credentials::parse(text), Err(err));
        assert!(!err.to_string().contains("two words"));
    }
    assert!(!any_equal(&[], &digest(b"x")));
    assert!(any_equal(&[digest(b"y"), digest(b"x")], &digest(b"x")));
}
