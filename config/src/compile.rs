//! `compile`: raw files → validated, indexed [`Snapshot`], reporting every error at once.

mod dns;
mod networks;
mod services;
mod tls;
mod values;
mod views;

use std::ops::Range;
use std::path::PathBuf;

use toml::Spanned;

use crate::error::{Diagnostic, Diagnostics, Severity};
use crate::loaded::{Found, Loaded, NamedFiles};
use crate::raw::RawFile;
use crate::snapshot::Snapshot;
use crate::source::{FileId, Sources};

/// Compiles loaded files into a snapshot with the given generation number. Pure: it reads
/// no file (the ones the configuration names were read by `load`) and no clock.
///
/// # Errors
/// Every error found, with the warnings, when the configuration is invalid.
pub fn compile(loaded: &Loaded, generation: u64) -> Result<Snapshot, Diagnostics> {
    let mut cx = Ctx {
        sources: &loaded.sources,
        named: &loaded.named,
        diags: Vec::new(),
    };
    let files = &loaded.files;
    let defaults = dns::settings_defaults(&mut cx, files);
    let mut list_texts = Vec::new();
    let blocklists = dns::blocklists(&mut cx, files, &mut list_texts);
    let networks = networks::compile(&mut cx, files, &blocklists);
    let upstreams = dns::upstreams(&mut cx, files);
    let mut zones = dns::zones(&mut cx, files, &loaded.sources, defaults.default_ttl);
    let mut views = views::ViewsBuilder::new(&networks, &zones);
    dns::records(
        &mut cx,
        files,
        &networks,
        &zones,
        &mut views,
        defaults.default_ttl,
    );
    let (services, routes) = services::compile(&mut cx, files, &networks, &zones, &mut views);
    let certs = tls::compile(&mut cx, files, &zones, &services);
    let listen = networks::listen(&mut cx, files, certs.certificates.default_name.is_some());
    let state_dir = state_dir(&mut cx, files);
    let trusted_proxies = trusted_proxies(&mut cx, files);
    let connections = connection_limits(&mut cx, files);
    let access_log = single(&mut cx, files, "server", |f| f.server.as_ref())
        .and_then(|(_, s)| s.access_log)
        .unwrap_or(true);
    let views = views.finish(&zones);
    dns::delegate(&mut cx, files, &mut zones, &views);

    // Everything read from files besides the configuration counts in its hash: a changed
    // CA file or blocklist is a change to reload, though no TOML file changed.
    let read: Vec<&[u8]> = list_texts
        .iter()
        .map(|t| t.as_bytes())
        .chain(upstreams.roots.iter().map(|r| &r[..]))
        .chain(
            services
                .iter()
                .flat_map(|s| &s.backend_roots)
                .map(|r| &r[..]),
        )
        .collect();
    let hash = loaded.sources.content_hash().with(&read);
    let diags = Diagnostics(ordered(cx.diags));
    if diags.has_errors() {
        return Err(diags);
    }
    Ok(Snapshot {
        generation,
        hash,
        state_dir,
        access_log,
        trusted_proxies,
        connections,
        listen,
        networks,
        zones,
        views,
        services,
        routes,
        dns: crate::settings::DnsSettings {
            upstreams: upstreams.upstreams,
            forwarders: upstreams.forwarders,
            cache_size: defaults.cache_size,
            default_ttl: defaults.default_ttl,
            blocklists,
            rebind_allow: upstreams.rebind_allow,
            serve_stale: defaults.serve_stale,
            upstream_roots: upstreams.roots,
            max_in_flight: defaults.max_in_flight,
            max_in_flight_per_client: defaults.max_in_flight_per_client,
        },
        certificates: certs.certificates,
        acme: certs.acme,
        providers: certs.providers,
        warnings: diags.0,
    })
}

/// Diagnostics in file order, each once (a table read by two phases reports once).
fn ordered(mut diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut seen = std::collections::HashSet::new();
    diags.retain(|d| seen.insert(d.to_string()));
    diags.sort_by(|a, b| {
        let key = |d: &Diagnostic| {
            d.location
                .as_ref()
                .map(|l| (l.path.clone(), l.line, l.column))
        };
        key(a).cmp(&key(b))
    });
    diags
}

fn state_dir(cx: &mut Ctx<'_>, files: &[(FileId, RawFile)]) -> PathBuf {
    let default = PathBuf::from("/var/lib/labgate");
    let Some((file, server)) = single(cx, files, "server", |f| f.server.as_ref()) else {
        return default;
    };
    server
        .state_dir
        .as_ref()
        .map_or(default, |d| cx.path(file, d.get_ref()))
}

fn connection_limits(
    cx: &mut Ctx<'_>,
    files: &[(FileId, RawFile)],
) -> crate::settings::ConnectionLimits {
    let mut limits = crate::settings::ConnectionLimits::default();
    let Some((file, server)) = single(cx, files, "server", |f| f.server.as_ref()) else {
        return limits;
    };
    for (raw, key, slot) in [
        (
            &server.max_connections,
            "server.max_connections",
            &mut limits.per_listener,
        ),
        (
            &server.max_connections_per_address,
            "server.max_connections_per_address",
            &mut limits.per_address,
        ),
    ] {
        if let Some(v) = raw
            && let Some(n) = dns::report(cx, file, v, key, values::int(*v.get_ref(), 1, 1_000_000))
        {
            *slot = std::num::NonZeroU32::new(n).unwrap_or(std::num::NonZeroU32::MIN);
        }
    }
    limits
}

fn trusted_proxies(cx: &mut Ctx<'_>, files: &[(FileId, RawFile)]) -> Vec<ipnet::IpNet> {
    let Some((file, server)) = single(cx, files, "server", |f| f.server.as_ref()) else {
        return Vec::new();
    };
    let mut nets = Vec::new();
    for (i, raw) in server.trusted_proxies.iter().enumerate() {
        let text = raw.get_ref();
        let parsed = text
            .parse::<ipnet::IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(n) => nets.push(n),
            Err(_) => {
                cx.error(
                    file,
                    raw.span(),
                    format!("server.trusted_proxies[{i}]"),
                    format!("`{text}` is not an address or range"),
                )
                .expected("an address or range like `10.0.0.5` or `10.0.0.0/24`");
            }
        }
    }
    nets
}

/// Collects diagnostics while compiling.
pub(crate) struct Ctx<'s> {
    sources: &'s Sources,
    named: &'s NamedFiles,
    diags: Vec<Diagnostic>,
}

impl<'s> Ctx<'s> {
    /// Reports an error at a span of a file.
    pub(crate) fn error(
        &mut self,
        file: FileId,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.report(Severity::Error, file, span, key.into(), message.into())
    }

    /// Reports a warning at a span of a file.
    pub(crate) fn warn(
        &mut self,
        file: FileId,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.report(Severity::Warning, file, span, key.into(), message.into())
    }

    fn report(
        &mut self,
        severity: Severity,
        file: FileId,
        span: Range<usize>,
        key: String,
        message: String,
    ) -> &mut Diagnostic {
        let location = Some(self.sources.locate(file, span));
        self.diags.push(Diagnostic {
            severity,
            location,
            key,
            message,
            expected: None,
            hint: None,
        });
        let last = self.diags.len() - 1;
        &mut self.diags[last]
    }

    /// `file:line:col` of a span, for "first defined at" hints.
    pub(crate) fn place(&self, file: FileId, span: Range<usize>) -> String {
        self.sources.locate(file, span).to_string()
    }

    /// A path written in a file, relative to that file's directory.
    pub(crate) fn path(&self, file: FileId, p: &str) -> PathBuf {
        self.sources.file(file).resolve(p)
    }

    /// A named file (often a secret) that must open; the error names the path only.
    pub(crate) fn readable(&mut self, file: FileId, v: &Spanned<String>, key: &str) -> PathBuf {
        self.named(file, v, key).0
    }

    /// A named file and its contents, `None` when it could not be read (reported here).
    pub(crate) fn read(
        &mut self,
        file: FileId,
        v: &Spanned<String>,
        key: &str,
    ) -> (PathBuf, Option<&'s [u8]>) {
        self.named(file, v, key)
    }

    fn named(
        &mut self,
        file: FileId,
        v: &Spanned<String>,
        key: &str,
    ) -> (PathBuf, Option<&'s [u8]>) {
        let path = self.path(file, v.get_ref());
        // A file `load` did not look at (a configuration held in memory) is missing.
        let found = self.named.get(&path);
        let failed = match found {
            Some(Found::Read(bytes)) => return (path, Some(bytes)),
            Some(Found::Opened) => return (path, None),
            Some(Found::Failed(kind)) => *kind,
            None => std::io::ErrorKind::NotFound,
        };
        self.error(
            file,
            v.span(),
            key,
            format!("cannot read `{}`: {}", path.display(), io_reason(failed)),
        )
        .hint("create the file, or fix the path (relative paths start at this file's directory)");
        (path, None)
    }
}

fn io_reason(kind: std::io::ErrorKind) -> &'static str {
    match kind {
        std::io::ErrorKind::NotFound => "no such file",
        std::io::ErrorKind::PermissionDenied => "permission denied",
        std::io::ErrorKind::IsADirectory => "a directory",
        _ => "unreadable",
    }
}

/// Builder-style additions to a reported diagnostic.
pub(crate) trait Explain {
    /// Says what was expected.
    fn expected(&mut self, s: impl Into<String>) -> &mut Self;
    /// Says what to do.
    fn hint(&mut self, s: impl Into<String>) -> &mut Self;
}

impl Explain for Diagnostic {
    fn expected(&mut self, s: impl Into<String>) -> &mut Self {
        self.expected = Some(s.into());
        self
    }
    fn hint(&mut self, s: impl Into<String>) -> &mut Self {
        self.hint = Some(s.into());
        self
    }
}

/// Every element of one array-of-tables key across files: (file, index in file, element).
pub(crate) fn items<'a, T: 'a>(
    files: &'a [(FileId, RawFile)],
    get: impl Fn(&'a RawFile) -> &'a Vec<T> + 'a,
) -> impl Iterator<Item = (FileId, usize, &'a T)> + 'a {
    files
        .iter()
        .flat_map(move |(id, f)| get(f).iter().enumerate().map(move |(i, t)| (*id, i, t)))
}

/// A table that may appear in one file only; a second definition is an error.
pub(crate) fn single<'a, T>(
    cx: &mut Ctx<'_>,
    files: &'a [(FileId, RawFile)],
    key: &str,
    get: impl Fn(&'a RawFile) -> Option<&'a Spanned<T>>,
) -> Option<(FileId, &'a T)> {
    let mut found: Option<(FileId, &'a Spanned<T>)> = None;
    for (id, f) in files {
        let Some(t) = get(f) else { continue };
        if let Some((first_file, first)) = found {
            let first_at = cx.place(first_file, first.span());
            cx.error(
                *id,
                t.span(),
                key,
                format!("`[{key}]` is also defined at {first_at}"),
            )
            .hint(format!("keep `[{key}]` in one file"));
        } else {
            found = Some((*id, t));
        }
    }
    found.map(|(f, t)| (f, t.get_ref()))
}

/// One of a fixed set of keywords; `None` gives the first option (the default). An unknown
/// keyword is reported with the options and gives `None`.
pub(crate) fn choose<T: Copy>(
    cx: &mut Ctx<'_>,
    file: FileId,
    value: Option<&Spanned<String>>,
    key: &str,
    options: &[(&str, T)],
) -> Option<T> {
    let Some(v) = value else {
        return options.first().map(|(_, t)| *t);
    };
    if let Some((_, t)) = options.iter().find(|(name, _)| *name == v.get_ref()) {
        return Some(*t);
    }
    let names: Vec<String> = options.iter().map(|(n, _)| format!("`{n}`")).collect();
    cx.error(
        file,
        v.span(),
        key,
        format!("unknown value `{}`", v.get_ref()),
    )
    .expected(format!("one of {}", names.join(", ")));
    None
}

/// "a, b, c" or "(none)" for hint lists.
pub(crate) fn list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = names.collect();
    if v.is_empty() {
        "(none)".to_owned()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;

    use super::*;
    use crate::testing::{diagnostics, diagnostics_of, loaded, snapshot};

    const LAB: &str =
        "[[network]]\nname = \"lab\"\ncidrs = [\"10.0.0.0/16\"]\naddresses = [\"10.0.0.2\"]\n";

    /// A file the configuration names, as `load` found it, and what compiling says.
    #[test]
    fn named_files_are_looked_up_not_read() {
        let list = "[[blocklist]]\nname = \"ads\"\nfile = \"lists/ads.txt\"\n";
        let token = "[acme]\nemail = \"a@example.com\"\n[[dns_provider]]\nname = \"cf\"\nkind = \"cloudflare\"\ntoken_file = \"/etc/labgate/cf.token\"\n";
        let ca = "[dns]\nupstream_ca_file = \"ca.pem\"\n";
        let cases: &[(&str, &str, Option<Found>, &[&str])] = &[
            (
                "a list that was read",
                list,
                Some(Found::Read(b"ads.example.com\n".to_vec())),
                &[],
            ),
            (
                "a list load never saw: missing",
                list,
                None,
                &["error `blocklist[0].file`: cannot read `lists/ads.txt`: no such file"],
            ),
            (
                "a list that failed",
                list,
                Some(Found::Failed(ErrorKind::PermissionDenied)),
                &["error `blocklist[0].file`: cannot read `lists/ads.txt`: permission denied"],
            ),
            (
                "a list that is a directory",
                list,
                Some(Found::Failed(ErrorKind::IsADirectory)),
                &["error `blocklist[0].file`: cannot read `lists/ads.txt`: a directory"],
            ),
            (
                "any other failure",
                list,
                Some(Found::Failed(ErrorKind::InvalidData)),
                &["error `blocklist[0].file`: cannot read `lists/ads.txt`: unreadable"],
            ),
            ("a secret that opened", token, Some(Found::Opened), &[]),
            (
                "a secret that did not",
                token,
                Some(Found::Failed(ErrorKind::NotFound)),
                &[
                    "error `dns_provider[0].token_file`: cannot read `/etc/labgate/cf.token`: no such file",
                ],
            ),
            (
                "a CA bundle without a certificate",
                ca,
                Some(Found::Read(b"not PEM".to_vec())),
                &["error `dns.upstream_ca_file`: `ca.pem` holds no PEM certificate"],
            ),
        ];
        for (what, toml, found, expected) in cases {
            let mut l = loaded(&format!("{toml}{LAB}"), &[]);
            let written = ["lists/ads.txt", "/etc/labgate/cf.token", "ca.pem"]
                .into_iter()
                .find(|w| toml.contains(w))
                .expect("a named file");
            if let Some(found) = found {
                l.named.insert(written, found.clone());
            }
            assert_eq!(diagnostics_of(&l), *expected, "{what}");
        }
    }

    /// A read list is parsed into the snapshot, and its text counts in the content hash.
    #[test]
    fn named_contents_reach_the_snapshot_and_the_hash() {
        let toml = format!("[[blocklist]]\nname = \"ads\"\nfile = \"ads.txt\"\n{LAB}");
        let with =
            |text: &[u8]| compile(&loaded(&toml, &[("ads.txt", text)]), 1).expect("compiles");
        let a = with(b"ads.example.com\n");
        assert!(a.dns.blocklists[0].names.blocks("x.ads.example.com"));
        assert_eq!(a.hash, with(b"ads.example.com\n").hash);
        assert_ne!(a.hash, with(b"ads.example.net\n").hash);
    }

    #[test]
    fn server_keys() {
        let cases: &[(&str, &[&str])] = &[
            (
                "trusted_proxies = [\"10.0.0.5\", \"10.1.0.0/24\", \"fd00::/64\"]",
                &[],
            ),
            (
                "trusted_proxies = [\"10.0.0.5/33\"]",
                &["error `server.trusted_proxies[0]`: `10.0.0.5/33` is not an address or range"],
            ),
            (
                "trusted_proxies = [\"proxy.lab\"]",
                &["error `server.trusted_proxies[0]`: `proxy.lab` is not an address or range"],
            ),
            (
                "max_connections = 1\nmax_connections_per_address = 1000000",
                &[],
            ),
            (
                "max_connections = 0",
                &["error `server.max_connections`: 0 is out of range: between 1 and 1000000"],
            ),
            (
                "max_connections_per_address = 1000001",
                &[
                    "error `server.max_connections_per_address`: 1000001 is out of range: between 1 and 1000000",
                ],
            ),
        ];
        for (server, expected) in cases {
            assert_eq!(
                diagnostics(&format!("[server]\n{server}\n{LAB}"), &[]),
                *expected,
                "{server}"
            );
        }
        let s = snapshot(&format!(
            "[server]\ntrusted_proxies = [\"10.0.0.5\", \"10.1.0.0/24\"]\n{LAB}"
        ));
        let trusts: Vec<bool> = ["10.0.0.5", "10.0.0.6", "10.1.0.77", "::ffff:10.0.0.5"]
            .iter()
            .map(|a| s.trusts(a.parse().expect("address")))
            .collect();
        assert_eq!(trusts, [true, false, true, true]);
    }

    /// Paths written in a file start at its directory; absolute ones stay.
    #[test]
    fn state_dir_is_resolved_against_the_file() {
        let cases = [
            (None, "/var/lib/labgate"),
            (Some("state"), "state"),
            (Some("/srv/labgate"), "/srv/labgate"),
        ];
        for (written, expected) in cases {
            let server =
                written.map_or_else(String::new, |d| format!("[server]\nstate_dir = \"{d}\"\n"));
            let s = snapshot(&format!("{server}{LAB}"));
            assert_eq!(s.state_dir, PathBuf::from(expected), "{written:?}");
        }
    }

    /// A keyword from a fixed set: the first option when unset, the error lists them all.
    #[test]
    fn keywords() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("balance = \"least_connections\"\n", &[]),
            (
                "balance = \"random\"\n",
                &["error `service[0].balance`: unknown value `random`"],
            ),
        ];
        for (balance, expected) in cases {
            let toml = format!(
                "{LAB}[[zone]]\nname = \"lab.test\"\n[[service]]\nhost = \"app.lab.test\"\nbackends = [\"http://10.0.0.9\"]\nallow = [\"lab\"]\n{balance}"
            );
            assert_eq!(diagnostics(&toml, &[]), *expected, "{balance}");
        }
    }
}
