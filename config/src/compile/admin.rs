//! `[admin]`: the admin endpoint's networks and credentials.

use super::networks::TUNNEL;
use super::{Ctx, Explain, single};
use crate::admin::{AdminPolicy, Credentials};
use crate::network::{NetworkSet, Networks};
use crate::raw::RawFile;
use crate::source::FileId;

pub(super) fn compile(
    cx: &mut Ctx<'_>,
    files: &[(FileId, RawFile)],
    networks: &Networks,
) -> AdminPolicy {
    let Some((file, raw)) = single(cx, files, "admin", |f| f.admin.as_ref()) else {
        return AdminPolicy::default();
    };
    let mut allow = NetworkSet::EMPTY;
    for (j, n) in raw.allow.iter().enumerate() {
        let key = format!("admin.allow[{j}]");
        if n.get_ref() == TUNNEL {
            cx.error(
                file,
                n.span(),
                key,
                "the admin endpoint cannot be opened to the Cloudflare Tunnel",
            )
            .hint("it judges clients by address, which tunnel users have none of here: remove `tunnel`");
            continue;
        }
        match networks.by_name(n.get_ref()) {
            Some(net) => allow.insert(net.id),
            // As other network references, without the tunnel among the choices.
            None => super::dns::report_unknown_network(cx, networks, (file, n, key), false),
        }
    }
    let auth = raw.auth_file.as_ref().and_then(|v| {
        let (path, bytes) = cx.secret(file, v, "admin.auth_file");
        match Credentials::parse(bytes?) {
            Ok(c) => Some(c),
            Err(e) => {
                // The message names the line, never what is on it.
                cx.error(
                    file,
                    v.span(),
                    "admin.auth_file",
                    format!("`{}` is not a credentials file: {e}", path.display()),
                )
                .expected(
                    "one credential per line: a token alone (`openssl rand -hex 32`), or \
                     `user:password`; `#` starts a comment",
                );
                None
            }
        }
    });
    AdminPolicy { allow, auth }
}

#[cfg(test)]
mod tests {
    use crate::loaded::Found;
    use crate::testing::{diagnostics, diagnostics_of, loaded};

    const NETS: &str = "[[network]]\nname = \"mgmt\"\ncidrs = [\"10.0.10.0/24\"]\n";

    #[test]
    fn admin_errors() {
        // `[admin]` lines, the files they name, the diagnostics.
        type Files<'a> = &'a [(&'a str, &'a [u8])];
        let cases: &[(&str, Files<'_>, &[&str])] = &[
            ("allow = [\"mgmt\"]", &[], &[]),
            (
                "allow = [\"mgmt\", \"wifi\"]",
                &[],
                &["error `admin.allow[1]`: no network named `wifi`"],
            ),
            (
                "allow = [\"tunnel\"]",
                &[],
                &[
                    "error `admin.allow[0]`: the admin endpoint cannot be opened to the Cloudflare Tunnel",
                ],
            ),
            (
                "auth_file = \"secrets/admin\"",
                &[],
                &["error `admin.auth_file`: cannot read `secrets/admin`: no such file"],
            ),
            (
                "auth_file = \"secrets/admin\"",
                &[("secrets/admin", b"tok\n")],
                &[],
            ),
            (
                "auth_file = \"secrets/admin\"",
                &[("secrets/admin", b"# only a comment\n")],
                &[
                    "error `admin.auth_file`: `secrets/admin` is not a credentials file: it holds no credential",
                ],
            ),
            (
                "auth_file = \"secrets/admin\"",
                &[("secrets/admin", b"hunter2 and more\n")],
                &[
                    "error `admin.auth_file`: `secrets/admin` is not a credentials file: line 1: a token may not contain whitespace",
                ],
            ),
        ];
        for (admin, files, want) in cases {
            let got = diagnostics(&format!("{NETS}[admin]\n{admin}\n"), files);
            assert_eq!(got, *want, "{admin}");
        }
    }

    /// A secret others may read is used, with a warning that names the file, not its
    /// contents.
    #[test]
    fn a_shared_secret_is_used_and_warned_about() {
        let mut loaded = loaded(&format!("{NETS}[admin]\nauth_file = \"admin\"\n"), &[]);
        loaded
            .named
            .insert("admin", Found::Shared(b"tok-secret-value\n".to_vec()));
        assert_eq!(
            diagnostics_of(&loaded),
            ["warning `admin.auth_file`: secret file `admin` can be read by other users"]
        );
        assert!(
            crate::compile(&loaded, 1)
                .expect("compiles")
                .admin
                .auth
                .is_some()
        );
    }

    /// New credentials alone are a change to publish, though the content hash (logged, shown
    /// on `/config`) does not cover them.
    #[test]
    fn new_credentials_are_a_change_the_hash_does_not_show() {
        let text = format!("{NETS}[admin]\nauth_file = \"admin\"\n");
        let with = |secret: &[u8]| {
            crate::compile(&loaded(&text, &[("admin", secret)]), 1).expect("compiles")
        };
        let (a, b) = (with(b"old-token\n"), with(b"new-token\n"));
        assert_eq!(a.hash, b.hash);
        assert!(a.same_as(&with(b"old-token\n")));
        assert!(!a.same_as(&b));
        let diff = crate::diff::Diff::between(&a, &b);
        assert_eq!(diff.to_string(), "admin access changed");
    }
}
