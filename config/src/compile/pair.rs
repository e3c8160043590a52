//! `[pair]`: the two nodes' addresses, the shared certificate key and TSIG key, the takeover.

use std::net::IpAddr;

use super::dns::report;
use super::{Ctx, Explain, single, values};
use crate::pair::{DEFAULT_TAKEOVER, PairSettings, TsigKey};
use crate::raw::RawFile;
use crate::source::FileId;

/// Below this, a `takeover` is warned about: an order (propagation included) often takes longer.
const MIN_TAKEOVER: std::time::Duration = std::time::Duration::from_secs(60);

/// The shortest TSIG secret a pair accepts (`tsig-keygen` makes 32 bytes).
const MIN_SECRET: usize = 16;

pub(super) fn compile(cx: &mut Ctx<'_>, files: &[(FileId, RawFile)]) -> Option<PairSettings> {
    let (file, raw) = single(cx, files, "pair", |f| f.pair.as_ref())?;
    let whole = files
        .iter()
        .find(|(id, _)| *id == file)
        .and_then(|(_, f)| f.pair.as_ref())
        .map(|p| p.span())
        .unwrap_or_default();
    let missing = |cx: &mut Ctx<'_>, key: &str, example: &str| {
        cx.error(
            file,
            whole.clone(),
            format!("pair.{key}"),
            format!("`[pair]` needs `{key}`"),
        )
        .hint(format!("add {example}"));
    };
    let nodes = match &raw.nodes {
        None => {
            missing(
                cx,
                "nodes",
                "`nodes = [\"192.168.1.11\", \"192.168.1.12\"]`, both nodes' own addresses",
            );
            None
        }
        Some(list) => {
            let mut ips = Vec::new();
            for (i, n) in list.get_ref().iter().enumerate() {
                match n.get_ref().parse::<IpAddr>() {
                    Ok(ip) => ips.push(ip),
                    Err(_) => {
                        cx.error(
                            file,
                            n.span(),
                            format!("pair.nodes[{i}]"),
                            format!("`{}` is not an IP address", n.get_ref()),
                        )
                        .expected(
                            "a node's own address, like `192.168.1.11` (not the virtual one)",
                        );
                    }
                }
            }
            match ips[..] {
                [a, b] if a != b => Some([a, b]),
                [a, b] if a == b => {
                    cx.error(
                        file,
                        list.span(),
                        "pair.nodes",
                        format!("both nodes are `{a}`"),
                    )
                    .hint("list each node's own address once");
                    None
                }
                _ if ips.len() == list.get_ref().len() => {
                    cx.error(
                        file,
                        list.span(),
                        "pair.nodes",
                        format!("{} addresses: a pair has two", ips.len()),
                    )
                    .expected("`nodes = [\"192.168.1.11\", \"192.168.1.12\"]`");
                    None
                }
                _ => None,
            }
        }
    };
    let key_file = match &raw.key_file {
        Some(v) => Some(cx.readable(file, v, "pair.key_file")),
        None => {
            missing(
                cx,
                "key_file",
                "`key_file = \"/etc/labgate/secrets/pair-key.pem\"` (`openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`)",
            );
            None
        }
    };
    let tsig = match &raw.tsig_file {
        Some(v) => {
            let (path, bytes) = cx.secret(file, v, "pair.tsig_file");
            bytes.and_then(|b| match TsigKey::parse(&String::from_utf8_lossy(b)) {
                // SECURITY: the peer's updates are trusted on this key alone.
                Ok(k) if k.secret.len() < MIN_SECRET => {
                    cx.error(
                        file,
                        v.span(),
                        "pair.tsig_file",
                        format!(
                            "the secret in `{}` is shorter than {MIN_SECRET} bytes",
                            path.display()
                        ),
                    )
                    .hint("make one with `tsig-keygen labgate-pair`, the same file on both nodes");
                    None
                }
                Ok(k) => Some(k),
                Err(e) => {
                    cx.error(
                        file,
                        v.span(),
                        "pair.tsig_file",
                        format!("`{}` is not a TSIG key file: {e}", path.display()),
                    )
                    .hint(
                        "write what `tsig-keygen labgate-pair` prints, the same file on both nodes",
                    );
                    None
                }
            })
        }
        None => {
            missing(
                cx,
                "tsig_file",
                "`tsig_file = \"/etc/labgate/secrets/pair.tsig\"` (`tsig-keygen labgate-pair`)",
            );
            None
        }
    };
    let takeover = match &raw.takeover {
        Some(v) => {
            let t = report(cx, file, v, "pair.takeover", values::duration(v.get_ref()))?;
            if t < MIN_TAKEOVER {
                cx.warn(file, v.span(), "pair.takeover", format!("`{}` is shorter than an order takes", v.get_ref()))
                    .hint("the second node would order while the first still does: two orders for one certificate; keep the default `15m` unless testing");
            }
            t
        }
        None => DEFAULT_TAKEOVER,
    };
    Some(PairSettings {
        nodes: nodes?,
        key_file: key_file?,
        tsig: tsig?,
        takeover,
    })
}

#[cfg(test)]
mod tests {
    use crate::testing::{diagnostics, loaded};

    const KEY: &[u8] = b"key \"labgate-pair\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==\";\n};\n";

    /// Files by path.
    type Files<'a> = &'a [(&'a str, &'a [u8])];
    /// (the `[pair]` lines, the files, the diagnostics)
    type Case<'a> = (String, Files<'a>, &'a [&'a str]);

    #[test]
    fn pair_errors_name_the_key_and_the_fix() {
        let files: Files<'_> = &[("pair.pem", b"pem"), ("pair.tsig", KEY)];
        let full = "nodes = [\"10.0.0.11\", \"10.0.0.12\"]\nkey_file = \"pair.pem\"\ntsig_file = \"pair.tsig\"";
        // (the `[pair]` lines, the files, the diagnostics)
        let cases: &[Case<'_>] = &[
            (full.into(), files, &[]),
            (
                format!("{full}\ntakeover = \"2s\""),
                files,
                &["warning `pair.takeover`: `2s` is shorter than an order takes"],
            ),
            (format!("{full}\ntakeover = \"5m\""), files, &[]),
            (
                format!("{full}\ntakeover = \"soon\""),
                files,
                &["error `pair.takeover`: `soon` is not a duration (expected number at 0)"],
            ),
            (
                "key_file = \"pair.pem\"\ntsig_file = \"pair.tsig\"".into(),
                files,
                &["error `pair.nodes`: `[pair]` needs `nodes`"],
            ),
            (
                "nodes = [\"10.0.0.11\"]\nkey_file = \"pair.pem\"\ntsig_file = \"pair.tsig\"".into(),
                files,
                &["error `pair.nodes`: 1 addresses: a pair has two"],
            ),
            (
                "nodes = [\"10.0.0.11\", \"10.0.0.11\"]\nkey_file = \"pair.pem\"\ntsig_file = \"pair.tsig\"".into(),
                files,
                &["error `pair.nodes`: both nodes are `10.0.0.11`"],
            ),
            (
                "nodes = [\"10.0.0.11\", \"node2\"]\nkey_file = \"pair.pem\"\ntsig_file = \"pair.tsig\"".into(),
                files,
                &["error `pair.nodes[1]`: `node2` is not an IP address"],
            ),
            (
                full.into(),
                &[("pair.pem", b"pem")],
                &["error `pair.tsig_file`: cannot read `pair.tsig`: no such file"],
            ),
            (
                full.into(),
                &[("pair.pem", b"pem"), ("pair.tsig", b"c2hvcnQ=")],
                &["error `pair.tsig_file`: the secret in `pair.tsig` is shorter than 16 bytes"],
            ),
            (
                full.into(),
                &[("pair.pem", b"pem"), ("pair.tsig", b"key \"k\" { algorithm hmac-md5; secret \"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==\"; };")],
                &["error `pair.tsig_file`: `pair.tsig` is not a TSIG key file: its algorithm is neither hmac-sha256 nor hmac-sha512"],
            ),
            (
                "nodes = [\"10.0.0.11\", \"10.0.0.12\"]".into(),
                files,
                &[
                    "error `pair.key_file`: `[pair]` needs `key_file`",
                    "error `pair.tsig_file`: `[pair]` needs `tsig_file`",
                ],
            ),
        ];
        for (pair, files, want) in cases {
            let got = diagnostics(&format!("[pair]\n{pair}\n"), files);
            assert_eq!(got, *want, "{pair}");
        }
    }

    #[test]
    fn a_pair_compiles_with_its_default_takeover_and_a_new_tsig_key_is_a_change() {
        let text = "[pair]\nnodes = [\"10.0.0.11\", \"fd00::12\"]\nkey_file = \"pair.pem\"\ntsig_file = \"pair.tsig\"\n";
        let compile = |key: &[u8]| {
            crate::compile(
                &loaded(text, &[("pair.pem", b"pem"), ("pair.tsig", key)]),
                1,
            )
            .expect("compiles")
        };
        let s = compile(KEY);
        let pair = s.pair.as_ref().expect("[pair]");
        assert_eq!(
            pair.nodes[1],
            "fd00::12".parse::<std::net::IpAddr>().expect("ip")
        );
        assert_eq!(pair.takeover, crate::pair::DEFAULT_TAKEOVER);
        assert!(pair.key_file.ends_with("pair.pem"));
        let other = compile(b"b3RoZXItb3RoZXItb3RoZXItb3RoZXIh");
        assert_eq!(s.hash, other.hash, "the secret is not hashed");
        assert!(!s.same_as(&other), "a new TSIG key is a reload");
        assert!(s.same_as(&compile(KEY)));
    }
}
