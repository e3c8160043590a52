//! `[tls]`, `[acme]`, `[[dns_provider]]` and `[[certificate]]`, and the coverage check.

use std::collections::BTreeSet;
use std::sync::Arc;

use hickory_proto::rr::LowerName;
use toml::Spanned;

use super::dns::report;
use super::values;
use super::{Ctx, Explain, choose, items, list, single};
use crate::raw::RawFile;
use crate::route::Service;
use crate::settings::{
    AcmeSettings, CLOUDFLARE_API, CertSource, CertSpec, Certificates, Coverage, DnsProvider,
    KeyType, LETSENCRYPT, LETSENCRYPT_STAGING, ProviderKind,
};
use crate::source::FileId;
use crate::view::{Zone, zone_of};

pub(super) struct Certs {
    pub(super) certificates: Certificates,
    pub(super) acme: Option<AcmeSettings>,
    pub(super) providers: Vec<DnsProvider>,
}

pub(super) fn compile(
    cx: &mut Ctx<'_>,
    files: &[(FileId, RawFile)],
    zones: &[Zone],
    services: &[Service],
) -> Certs {
    let providers = providers(cx, files);
    let acme = acme(cx, files, &providers);
    let mut certificates = Certificates {
        local_ca: true,
        ..Certificates::default()
    };
    if let Some((file, tls)) = single(cx, files, "tls", |f| f.tls.as_ref()) {
        certificates.local_ca = tls.local_ca.unwrap_or(true);
        if let Some(n) = &tls.default_name {
            certificates.default_name =
                report(cx, file, n, "tls.default_name", values::host(n.get_ref()))
                    .map(|(_, t)| Arc::from(t));
        }
    }
    let mut explicit_acme = false;
    for (file, i, raw) in items(files, |f| &f.certificate) {
        let key = format!("certificate[{i}]");
        let names: Vec<Arc<str>> = raw
            .names
            .iter()
            .enumerate()
            .filter_map(|(j, n)| cert_name(cx, file, n, &format!("{key}.names[{j}]")))
            .collect();
        if raw.names.is_empty() {
            cx.error(
                file,
                raw.source.span(),
                format!("{key}.names"),
                "a certificate needs names",
            )
            .expected("e.g. `names = [\"lab.example.com\", \"*.lab.example.com\"]`");
        }
        let source = match raw.source.get_ref().as_str() {
            "acme" => {
                explicit_acme = true;
                if acme.is_none() {
                    cx.error(
                        file,
                        raw.source.span(),
                        format!("{key}.source"),
                        "`source = \"acme\"` needs an `[acme]` account",
                    )
                    .hint("add `[acme]` with `email` and `provider`");
                }
                let provider = match &raw.provider {
                    Some(p) => provider_ref(cx, file, p, &format!("{key}.provider"), &providers),
                    None => acme.as_ref().and_then(|a| a.provider),
                };
                let Some(provider) = provider else {
                    if acme.is_some() {
                        cx.error(
                            file,
                            raw.source.span(),
                            format!("{key}.provider"),
                            "no DNS provider for this certificate",
                        )
                        .hint("set `provider` here or `acme.provider`");
                    }
                    continue;
                };
                CertSource::Acme {
                    provider,
                    derived: false,
                }
            }
            "files" => {
                let (Some(c), Some(k)) = (&raw.cert_file, &raw.key_file) else {
                    cx.error(file, raw.source.span(), key, "`source = \"files\"` needs `cert_file` and `key_file`")
                        .expected("PEM paths, e.g. `cert_file = \"certs/lab.pem\"`, `key_file = \"certs/lab.key\"`");
                    continue;
                };
                CertSource::Files {
                    cert: cx.readable(file, c, &format!("{key}.cert_file")),
                    key: cx.readable(file, k, &format!("{key}.key_file")),
                }
            }
            other => {
                cx.error(
                    file,
                    raw.source.span(),
                    format!("{key}.source"),
                    format!("unknown certificate source `{other}`"),
                )
                .expected("`acme` or `files` (names without a certificate use the local CA)");
                continue;
            }
        };
        certificates.specs.push(CertSpec { names, source });
    }
    if let Some(acme) = &acme
        && !explicit_acme
    {
        derive(&mut certificates, acme, zones, services);
    }
    coverage(cx, files, &certificates, acme.is_some());
    Certs {
        certificates,
        acme,
        providers,
    }
}

/// One wildcard plus apex per internal zone that has services, so adding a service never
/// orders a new certificate.
fn derive(certs: &mut Certificates, acme: &AcmeSettings, zones: &[Zone], services: &[Service]) {
    let Some(provider) = acme.provider else {
        return;
    };
    let mut apexes = BTreeSet::new();
    for host in services.iter().flat_map(|s| s.hosts.iter()) {
        if let Some(z) = hickory_proto::rr::Name::from_ascii(&**host)
            .ok()
            .and_then(|n| zone_of(zones, &LowerName::new(&n)))
        {
            apexes.insert(z.name.to_string().trim_end_matches('.').to_owned());
        }
    }
    for apex in apexes {
        certs.specs.push(CertSpec {
            names: vec![Arc::from(apex.as_str()), Arc::from(format!("*.{apex}"))],
            source: CertSource::Acme {
                provider,
                derived: true,
            },
        });
    }
}

fn coverage(cx: &mut Ctx<'_>, files: &[(FileId, RawFile)], certs: &Certificates, acme: bool) {
    for (file, i, raw) in items(files, |f| &f.service) {
        for h in std::iter::once(&raw.host).chain(&raw.aliases) {
            let host = h.get_ref().trim_end_matches('.').to_ascii_lowercase();
            match certs.cover(&host) {
                Coverage::Spec(_) => {}
                Coverage::LocalCa if !acme => {}
                Coverage::LocalCa => {
                    cx.warn(
                        file,
                        h.span(),
                        format!("service[{i}].host"),
                        format!("only the local CA covers `{host}`: browsers will warn"),
                    )
                    .hint("a wildcard covers one level; add a [[certificate]] with this name");
                }
                Coverage::Uncovered => {
                    cx.warn(
                        file,
                        h.span(),
                        format!("service[{i}].host"),
                        format!(
                            "no certificate covers `{host}`: HTTPS handshakes for it will fail"
                        ),
                    )
                    .hint("add a [[certificate]], configure [acme], or set `tls.local_ca = true`");
                }
            }
        }
    }
}

fn cert_name(cx: &mut Ctx<'_>, file: FileId, n: &Spanned<String>, key: &str) -> Option<Arc<str>> {
    let s = n.get_ref();
    let (prefix, rest) = match s.strip_prefix("*.") {
        Some(rest) => ("*.", rest),
        None => ("", s.as_str()),
    };
    report(cx, file, n, key, values::host(rest)).map(|(_, t)| Arc::from(format!("{prefix}{t}")))
}

fn provider_ref(
    cx: &mut Ctx<'_>,
    file: FileId,
    p: &Spanned<String>,
    key: &str,
    providers: &[DnsProvider],
) -> Option<usize> {
    let idx = providers.iter().position(|d| &*d.name == p.get_ref());
    if idx.is_none() {
        cx.error(
            file,
            p.span(),
            key,
            format!("no dns_provider named `{}`", p.get_ref()),
        )
        .hint(format!(
            "dns_providers are: {}",
            list(providers.iter().map(|d| &*d.name))
        ));
    }
    idx
}

fn acme(
    cx: &mut Ctx<'_>,
    files: &[(FileId, RawFile)],
    providers: &[DnsProvider],
) -> Option<AcmeSettings> {
    let (file, raw) = single(cx, files, "acme", |f| f.acme.as_ref())?;
    let email = raw.email.get_ref();
    if !email.contains('@') || email.contains(char::is_whitespace) {
        cx.error(
            file,
            raw.email.span(),
            "acme.email",
            format!("`{email}` is not an e-mail address"),
        )
        .expected("the account's contact, e.g. `admin@example.com`");
    }
    let directory = match raw.directory.as_ref().map(|d| (d, d.get_ref().as_str())) {
        None | Some((_, "letsencrypt")) => url::Url::parse(LETSENCRYPT).ok(),
        Some((_, "letsencrypt-staging")) => url::Url::parse(LETSENCRYPT_STAGING).ok(),
        Some((d, other)) => match url::Url::parse(other) {
            Ok(u) if u.scheme() == "https" => Some(u),
            _ => {
                cx.error(
                    file,
                    d.span(),
                    "acme.directory",
                    format!("`{other}` is not an ACME directory"),
                )
                .expected("`letsencrypt`, `letsencrypt-staging` or an https:// directory URL");
                None
            }
        },
    };
    let key_type = choose(
        cx,
        file,
        raw.key_type.as_ref(),
        "acme.key_type",
        &[
            ("ecdsa-p256", KeyType::EcdsaP256),
            ("ecdsa-p384", KeyType::EcdsaP384),
        ],
    )
    .unwrap_or(KeyType::EcdsaP256);
    let eab = match (&raw.eab_kid, &raw.eab_hmac_file) {
        (Some(kid), Some(f)) => Some((
            Arc::from(kid.get_ref().as_str()),
            cx.readable(file, f, "acme.eab_hmac_file"),
        )),
        (None, None) => None,
        (Some(k), None) | (None, Some(k)) => {
            cx.error(
                file,
                k.span(),
                "acme",
                "External Account Binding needs both `eab_kid` and `eab_hmac_file`",
            )
            .hint("set both, or neither");
            None
        }
    };
    let provider = match &raw.provider {
        Some(p) => provider_ref(cx, file, p, "acme.provider", providers),
        None if providers.len() == 1 => Some(0),
        None => {
            cx.error(
                file,
                raw.email.span(),
                "acme.provider",
                "which dns_provider publishes the challenges?",
            )
            .hint(format!(
                "set `provider` to one of: {}",
                list(providers.iter().map(|d| &*d.name))
            ));
            None
        }
    };
    let directory_ca = raw
        .directory_ca_file
        .as_ref()
        .map(|f| cx.readable(file, f, "acme.directory_ca_file"));
    let propagation_servers = raw
        .propagation_servers
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, s)| {
            report(
                cx,
                file,
                s,
                &format!("acme.propagation_servers[{i}]"),
                values::socket(s.get_ref(), 53),
            )
        })
        .collect();
    Some(AcmeSettings {
        email: Arc::from(email.as_str()),
        directory: directory?,
        key_type,
        profile: raw
            .profile
            .as_ref()
            .map(|p| Arc::from(p.get_ref().as_str())),
        eab,
        provider,
        directory_ca,
        propagation_servers,
    })
}

fn providers(cx: &mut Ctx<'_>, files: &[(FileId, RawFile)]) -> Vec<DnsProvider> {
    let mut out: Vec<DnsProvider> = Vec::new();
    for (file, i, raw) in items(files, |f| &f.dns_provider) {
        let key = format!("dns_provider[{i}]");
        let name = raw.name.get_ref();
        if out.iter().any(|p| &*p.name == name) {
            cx.error(
                file,
                raw.name.span(),
                format!("{key}.name"),
                format!("dns_provider `{name}` is defined twice"),
            )
            .hint("give each provider its own name");
            continue;
        }
        let mut need =
            |v: &Option<Spanned<String>>, field: &str, example: &str| -> Option<Spanned<String>> {
                if v.is_none() {
                    cx.error(
                        file,
                        raw.kind.span(),
                        format!("{key}.{field}"),
                        format!("a `{}` provider needs `{field}`", raw.kind.get_ref()),
                    )
                    .expected(example.to_owned());
                }
                v.clone()
            };
        let kind = match raw.kind.get_ref().as_str() {
            "cloudflare" => {
                let Some(t) = need(
                    &raw.token_file,
                    "token_file",
                    "`token_file = \"/etc/labgate/cloudflare.token\"`",
                ) else {
                    continue;
                };
                let api_url = match &raw.api_url {
                    None => url::Url::parse(CLOUDFLARE_API).ok(),
                    Some(u) => match url::Url::parse(u.get_ref()) {
                        Ok(url) if matches!(url.scheme(), "https" | "http") => Some(url),
                        _ => {
                            cx.error(
                                file,
                                u.span(),
                                format!("{key}.api_url"),
                                format!("`{}` is not an API URL", u.get_ref()),
                            )
                            .expected(format!("e.g. `{CLOUDFLARE_API}`"));
                            None
                        }
                    },
                };
                let token_file = cx.readable(file, &t, &format!("{key}.token_file"));
                let Some(api_url) = api_url else { continue };
                ProviderKind::Cloudflare {
                    token_file,
                    api_url,
                }
            }
            "rfc2136" => {
                let server = need(&raw.server, "server", "`server = \"10.0.0.53:53\"`");
                let key_name = need(&raw.key_name, "key_name", "`key_name = \"labgate-acme\"`");
                let secret = need(
                    &raw.secret_file,
                    "secret_file",
                    "`secret_file = \"/etc/labgate/tsig.key\"`",
                );
                let (Some(server), Some(key_name), Some(secret)) = (server, key_name, secret)
                else {
                    continue;
                };
                let algorithm = raw
                    .algorithm
                    .as_ref()
                    .map_or("hmac-sha256", |a| a.get_ref().as_str());
                if !matches!(algorithm, "hmac-sha256" | "hmac-sha512")
                    && let Some(a) = &raw.algorithm
                {
                    cx.error(
                        file,
                        a.span(),
                        format!("{key}.algorithm"),
                        format!("unsupported TSIG algorithm `{algorithm}`"),
                    )
                    .expected("`hmac-sha256` or `hmac-sha512`");
                }
                let server_addr = report(
                    cx,
                    file,
                    &server,
                    &format!("{key}.server"),
                    values::socket(server.get_ref(), 53),
                );
                let key_n = report(
                    cx,
                    file,
                    &key_name,
                    &format!("{key}.key_name"),
                    values::name(key_name.get_ref(), false),
                );
                let secret_file = cx.readable(file, &secret, &format!("{key}.secret_file"));
                let (Some(server), Some(key_name)) = (server_addr, key_n) else {
                    continue;
                };
                ProviderKind::Rfc2136 {
                    server,
                    key_name,
                    algorithm: Arc::from(algorithm),
                    secret_file,
                }
            }
            "builtin" => ProviderKind::Builtin,
            other => {
                cx.error(
                    file,
                    raw.kind.span(),
                    format!("{key}.kind"),
                    format!("unknown dns_provider kind `{other}`"),
                )
                .expected("`cloudflare`, `rfc2136` or `builtin`");
                continue;
            }
        };
        out.push(DnsProvider {
            name: Arc::from(name.as_str()),
            kind,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::settings::{CertSource, Coverage, KeyType, ProviderKind};
    use crate::testing::{diagnostics, loaded, snapshot};

    const BASE: &str = r#"
[[network]]
name = "lab"
cidrs = ["10.0.0.0/16"]
addresses = ["10.0.0.2"]
[[zone]]
name = "lab.test"
[[service]]
host = "app.lab.test"
allow = ["lab"]
backends = ["http://10.0.0.9"]
"#;
    const BUILTIN: &str = "[[dns_provider]]\nname = \"self\"\nkind = \"builtin\"\n";
    const ACME: &str = "[acme]\nemail = \"admin@example.com\"\n";

    #[test]
    fn providers() {
        let cases: &[(&str, &[&str])] = &[
            ("name = \"self\"\nkind = \"builtin\"", &[]),
            (
                "name = \"cf\"\nkind = \"cloudflare\"\ntoken_file = \"cf.token\"",
                &[],
            ),
            (
                "name = \"cf\"\nkind = \"cloudflare\"",
                &["error `dns_provider[0].token_file`: a `cloudflare` provider needs `token_file`"],
            ),
            (
                "name = \"cf\"\nkind = \"cloudflare\"\ntoken_file = \"gone.token\"",
                &["error `dns_provider[0].token_file`: cannot read `gone.token`: no such file"],
            ),
            (
                "name = \"cf\"\nkind = \"cloudflare\"\ntoken_file = \"cf.token\"\napi_url = \"ftp://api\"",
                &["error `dns_provider[0].api_url`: `ftp://api` is not an API URL"],
            ),
            (
                "name = \"bind\"\nkind = \"rfc2136\"\nserver = \"10.0.0.53\"\nkey_name = \"acme\"\nsecret_file = \"tsig.key\"\nalgorithm = \"hmac-sha512\"",
                &[],
            ),
            (
                "name = \"bind\"\nkind = \"rfc2136\"",
                &[
                    "error `dns_provider[0].server`: a `rfc2136` provider needs `server`",
                    "error `dns_provider[0].key_name`: a `rfc2136` provider needs `key_name`",
                    "error `dns_provider[0].secret_file`: a `rfc2136` provider needs `secret_file`",
                ],
            ),
            (
                "name = \"bind\"\nkind = \"rfc2136\"\nserver = \"10.0.0.53\"\nkey_name = \"acme\"\nsecret_file = \"tsig.key\"\nalgorithm = \"hmac-md5\"",
                &["error `dns_provider[0].algorithm`: unsupported TSIG algorithm `hmac-md5`"],
            ),
            (
                "name = \"bind\"\nkind = \"rfc2136\"\nserver = \"ns.lab\"\nkey_name = \"acme\"\nsecret_file = \"tsig.key\"",
                &["error `dns_provider[0].server`: `ns.lab` is not an IP address with a port"],
            ),
            (
                "name = \"r53\"\nkind = \"route53\"",
                &["error `dns_provider[0].kind`: unknown dns_provider kind `route53`"],
            ),
        ];
        let files: &[(&str, &[u8])] = &[("cf.token", b"token"), ("tsig.key", b"secret")];
        for (provider, expected) in cases {
            let toml = format!("[[dns_provider]]\n{provider}\n{BASE}");
            assert_eq!(diagnostics(&toml, files), *expected, "{provider}");
        }
        let twice = format!("{BUILTIN}{BUILTIN}{BASE}");
        assert_eq!(
            diagnostics(&twice, &[]),
            ["error `dns_provider[1].name`: dns_provider `self` is defined twice"]
        );
        let s = snapshot(&format!("{BUILTIN}{BASE}"));
        assert_eq!(s.providers[0].kind, ProviderKind::Builtin);
    }

    #[test]
    fn acme() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            (
                "email = \"admin\"",
                &["error `acme.email`: `admin` is not an e-mail address"],
            ),
            (
                "email = \"a dmin@example.com\"",
                &["error `acme.email`: `a dmin@example.com` is not an e-mail address"],
            ),
            ("directory = \"letsencrypt-staging\"", &[]),
            ("directory = \"https://acme.lab.test/dir\"", &[]),
            (
                "directory = \"http://acme.lab.test/dir\"",
                &["error `acme.directory`: `http://acme.lab.test/dir` is not an ACME directory"],
            ),
            (
                "key_type = \"rsa\"",
                &["error `acme.key_type`: unknown value `rsa`"],
            ),
            (
                "eab_kid = \"kid\"",
                &[
                    "error `acme`: External Account Binding needs both `eab_kid` and `eab_hmac_file`",
                ],
            ),
            (
                "eab_hmac_file = \"eab.key\"",
                &[
                    "error `acme`: External Account Binding needs both `eab_kid` and `eab_hmac_file`",
                ],
            ),
            ("eab_kid = \"kid\"\neab_hmac_file = \"eab.key\"", &[]),
            (
                "directory_ca_file = \"ca.pem\"",
                &["error `acme.directory_ca_file`: cannot read `ca.pem`: no such file"],
            ),
            (
                "provider = \"nope\"",
                &[
                    "error `acme.provider`: no dns_provider named `nope`",
                    "warning `service[0].host`: only the local CA covers `app.lab.test`: browsers will warn",
                ],
            ),
            (
                "propagation_servers = [\"10.0.0.53\", \"ns\"]",
                &["error `acme.propagation_servers[1]`: `ns` is not an IP address with a port"],
            ),
        ];
        for (fields, expected) in cases {
            let email = if fields.contains("email") {
                ""
            } else {
                "email = \"admin@example.com\"\n"
            };
            let toml = format!("[acme]\n{email}{fields}\n{BUILTIN}{BASE}");
            assert_eq!(
                diagnostics(&toml, &[("eab.key", b"k")]),
                *expected,
                "{fields}"
            );
        }
        let two = format!(
            "{ACME}{BUILTIN}[[dns_provider]]\nname = \"other\"\nkind = \"builtin\"\n{BASE}"
        );
        assert_eq!(
            diagnostics(&two, &[]),
            [
                "error `acme.provider`: which dns_provider publishes the challenges?",
                "warning `service[0].host`: only the local CA covers `app.lab.test`: browsers will warn",
            ]
        );
        let s = snapshot(&format!(
            "{ACME}key_type = \"ecdsa-p384\"\ndirectory = \"letsencrypt-staging\"\n{BUILTIN}{BASE}"
        ));
        let acme = s.acme.expect("acme");
        assert_eq!(
            (acme.key_type, acme.directory.as_str(), acme.provider),
            (
                KeyType::EcdsaP384,
                crate::settings::LETSENCRYPT_STAGING,
                Some(0)
            )
        );
    }

    #[test]
    fn certificates() {
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "",
                "names = [\"app.lab.test\"]\nsource = \"files\"\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"",
                &[],
            ),
            (
                "",
                "names = [\"app.lab.test\"]\nsource = \"files\"\ncert_file = \"c.pem\"",
                &["error `certificate[0]`: `source = \"files\"` needs `cert_file` and `key_file`"],
            ),
            (
                "",
                "names = [\"app.lab.test\"]\nsource = \"files\"\ncert_file = \"c.pem\"\nkey_file = \"gone.pem\"",
                &["error `certificate[0].key_file`: cannot read `gone.pem`: no such file"],
            ),
            (
                "",
                "names = [\"app.lab.test\"]\nsource = \"vault\"",
                &["error `certificate[0].source`: unknown certificate source `vault`"],
            ),
            (
                "",
                "names = []\nsource = \"files\"\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"",
                &["error `certificate[0].names`: a certificate needs names"],
            ),
            (
                "",
                "names = [\"*.lab.test\", \"a_b.lab.test\"]\nsource = \"files\"\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"",
                &[
                    "error `certificate[0].names[1]`: `a_b.lab.test` has `_`, which browsers reject in host names",
                ],
            ),
            (
                "",
                "names = [\"app.lab.test\"]\nsource = \"acme\"",
                &["error `certificate[0].source`: `source = \"acme\"` needs an `[acme]` account"],
            ),
            (ACME, "names = [\"app.lab.test\"]\nsource = \"acme\"", &[]),
            (
                ACME,
                "names = [\"app.lab.test\"]\nsource = \"acme\"\nprovider = \"nope\"",
                // Reported twice: the name is unknown, so the certificate has no provider.
                &[
                    "error `certificate[0].provider`: no DNS provider for this certificate",
                    "error `certificate[0].provider`: no dns_provider named `nope`",
                    "warning `service[0].host`: only the local CA covers `app.lab.test`: browsers will warn",
                ],
            ),
        ];
        let files: &[(&str, &[u8])] = &[("c.pem", b"cert"), ("k.pem", b"key")];
        for (acme, cert, expected) in cases {
            let toml = format!("{acme}{BUILTIN}[[certificate]]\n{cert}\n{BASE}");
            assert_eq!(diagnostics(&toml, files), *expected, "{cert}");
        }
    }

    /// With `[acme]` and no written ACME certificate, one apex plus wildcard per zone with
    /// services; a written one replaces them.
    #[test]
    fn derived_certificates() {
        let other_zone = "[[zone]]\nname = \"home.test\"\n[[zone]]\nname = \"empty.test\"\n[[service]]\nhost = \"a.b.home.test\"\nallow = [\"lab\"]\nbackends = [\"http://10.0.0.9\"]\n";
        // Names, and whether they were derived.
        type Spec = (&'static [&'static str], bool);
        let cases: &[(&str, &[Spec])] = &[
            ("", &[]),
            (
                ACME,
                &[
                    (&["home.test", "*.home.test"], true),
                    (&["lab.test", "*.lab.test"], true),
                ],
            ),
            (
                &format!("{ACME}[[certificate]]\nnames = [\"app.lab.test\"]\nsource = \"acme\"\n"),
                &[(&["app.lab.test"], false)],
            ),
        ];
        for (acme, expected) in cases {
            let toml = format!("{acme}{BUILTIN}{BASE}{other_zone}");
            let loaded = loaded(&toml, &[]);
            let s = crate::compile(&loaded, 1).unwrap_or_else(|d| panic!("{d}"));
            let got: Vec<(Vec<&str>, bool)> = s
                .certificates
                .specs
                .iter()
                .map(|c| {
                    let CertSource::Acme { derived, .. } = c.source else {
                        panic!("{c:?}")
                    };
                    (c.names.iter().map(|n| &**n).collect(), derived)
                })
                .collect();
            let expected: Vec<(Vec<&str>, bool)> =
                expected.iter().map(|(n, d)| (n.to_vec(), *d)).collect();
            assert_eq!(got, expected, "{acme}");
        }
    }

    /// Which certificate a name gets, and the warnings for service hosts nothing covers well.
    #[test]
    fn coverage() {
        let files: &[(&str, &[u8])] = &[("c.pem", b"cert"), ("k.pem", b"key")];
        let cert = "[[certificate]]\nnames = [\"*.lab.test\", \"lab.test\"]\nsource = \"files\"\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n";
        let compiled =
            |toml: &str| crate::compile(&loaded(toml, files), 1).unwrap_or_else(|d| panic!("{d}"));
        let s = compiled(&format!(
            "[tls]\ndefault_name = \"dns.lab.test\"\n{cert}{BASE}"
        ));
        let cases: &[(&str, Coverage, Coverage)] = &[
            ("lab.test", Coverage::Spec(0), Coverage::Spec(0)),
            ("app.lab.test", Coverage::Spec(0), Coverage::Spec(0)),
            ("APP.lab.test", Coverage::Spec(0), Coverage::Spec(0)),
            ("a.b.lab.test", Coverage::LocalCa, Coverage::Uncovered),
            ("dns.lab.test", Coverage::Spec(0), Coverage::Spec(0)),
            ("other.test", Coverage::LocalCa, Coverage::Uncovered),
        ];
        for (host, cover, handshake) in cases {
            assert_eq!(s.certificates.cover(host), *cover, "{host}");
            assert_eq!(s.certificate_for(host), *handshake, "{host}");
        }
        assert_eq!(s.certificates.default_name.as_deref(), Some("dns.lab.test"));
        let deep = "[[service]]\nhost = \"a.b.lab.test\"\nallow = [\"lab\"]\nbackends = [\"http://10.0.0.9\"]\n";
        let warnings: &[(&str, &[&str])] = &[
            ("", &[]),
            (deep, &[]),
            (
                &format!("{ACME}{BUILTIN}{deep}"),
                &[
                    "warning `service[1].host`: only the local CA covers `a.b.lab.test`: browsers will warn",
                ],
            ),
            (
                &format!("[tls]\nlocal_ca = false\n{deep}"),
                &[
                    "warning `service[1].host`: no certificate covers `a.b.lab.test`: HTTPS handshakes for it will fail",
                ],
            ),
        ];
        for (extra, expected) in warnings {
            let toml = format!("{cert}{BASE}{extra}");
            assert_eq!(diagnostics(&toml, files), *expected, "{extra}");
        }
    }
    /// What serves each name the proxy answers for, given which configured certificates are
    /// at hand: the policy the binary executes (it loads those, signs the local-CA ones).
    #[test]
    fn certificate_plan() {
        let files: &[(&str, &[u8])] = &[("c.pem", b"cert"), ("k.pem", b"key")];
        let cert = "[[certificate]]\nnames = [\"files.lab.test\"]\nsource = \"files\"\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n";
        let more = "[[service]]\nhost = \"files.lab.test\"\nallow = [\"lab\"]\nbackends = [\"http://10.0.0.9\"]\n[[service]]\nhost = \"a.b.lab.test\"\nallow = [\"lab\"]\nbackends = [\"http://10.0.0.9\"]\n";
        let (files_cert, acme_cert) = (Coverage::Spec(0), Coverage::Spec(1));
        type Row<'a> = (&'a str, Coverage, bool);
        let cases: &[(&str, &str, &[usize], &[Row<'_>])] = &[
            (
                "every certificate at hand",
                "dns.lab.test",
                &[0, 1],
                &[
                    ("a.b.lab.test", Coverage::LocalCa, false),
                    ("app.lab.test", acme_cert, false),
                    ("dns.lab.test", acme_cert, false),
                    ("files.lab.test", files_cert, false),
                ],
            ),
            (
                "none at hand: the local CA stands in, waiting for ACME where it will issue",
                "dns.lab.test",
                &[],
                &[
                    ("a.b.lab.test", Coverage::LocalCa, false),
                    ("app.lab.test", Coverage::LocalCa, true),
                    ("dns.lab.test", Coverage::LocalCa, true),
                    ("files.lab.test", Coverage::LocalCa, false),
                ],
            ),
            (
                "only the files",
                "dns.lab.test",
                &[0],
                &[
                    ("a.b.lab.test", Coverage::LocalCa, false),
                    ("app.lab.test", Coverage::LocalCa, true),
                    ("dns.lab.test", Coverage::LocalCa, true),
                    ("files.lab.test", files_cert, false),
                ],
            ),
            (
                "a routed default name is listed once; the wildcard stands in for missing files",
                "app.lab.test",
                &[1],
                &[
                    ("a.b.lab.test", Coverage::LocalCa, false),
                    ("app.lab.test", acme_cert, false),
                    ("files.lab.test", acme_cert, false),
                ],
            ),
        ];
        for (what, default, ready, expected) in cases {
            let toml =
                format!("[tls]\ndefault_name = \"{default}\"\n{ACME}{BUILTIN}{cert}{BASE}{more}");
            let s = crate::compile(&loaded(&toml, files), 1).unwrap_or_else(|d| panic!("{d}"));
            assert!(matches!(
                s.certificates.specs[0].source,
                CertSource::Files { .. }
            ));
            assert!(matches!(
                s.certificates.specs[1].source,
                CertSource::Acme { .. }
            ));
            let mut got: Vec<Row<'_>> = s
                .certificate_plan(|i| ready.contains(&i))
                .iter()
                .map(|p| (p.name, p.cover, p.acme_pending))
                .collect();
            got.sort_by_key(|r| r.0);
            assert_eq!(got, *expected, "{what}");
        }
        let off = format!("[tls]\nlocal_ca = false\n{cert}{BASE}{more}");
        let s = crate::compile(&loaded(&off, files), 1).unwrap_or_else(|d| panic!("{d}"));
        let covers: Vec<(&str, Coverage)> = {
            let mut v: Vec<_> = s
                .certificate_plan(|_| false)
                .iter()
                .map(|p| (p.name, p.cover))
                .collect();
            v.sort_by_key(|r| r.0);
            v
        };
        assert_eq!(
            covers,
            [
                ("a.b.lab.test", Coverage::Uncovered),
                ("app.lab.test", Coverage::Uncovered),
                ("files.lab.test", Coverage::Uncovered),
            ],
            "without the local CA, a name whose certificate is not at hand has none"
        );
    }
}
