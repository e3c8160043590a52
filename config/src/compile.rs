//! `compile`: raw files → validated, indexed [`Snapshot`], reporting every error at once.

mod admin;
mod dns;
mod dnstap;
mod networks;
mod pair;
mod query_log;
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
    let admin = admin::compile(&mut cx, files, &networks);
    let state_dir = state_dir(&mut cx, files);
    let trusted_proxies = trusted_proxies(&mut cx, files);
    let connections = connection_limits(&mut cx, files);
    let access_log = single(&mut cx, files, "server", |f| f.server.as_ref())
        .and_then(|(_, s)| s.access_log)
        .unwrap_or(true);
    let query_log = query_log::compile(&mut cx, files);
    let dnstap = dnstap::compile(&mut cx, files);
    let pair = pair::compile(&mut cx, files);
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
        admin,
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
        query_log,
        dnstap,
        pair,
        revision: None,
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

    /// A secret the snapshot carries and its contents, `None` when it could not be read
    /// (reported here); a secret others may read is used, with a warning.
    pub(crate) fn secret(
        &mut self,
        file: FileId,
        v: &Spanned<String>,
        key: &str,
    ) -> (PathBuf, Option<&'s [u8]>) {
        let (path, bytes) = self.named(file, v, key);
        if let Some(Found::Shared(_)) = self.named.get(&path) {
            self.warn(
                file,
                v.span(),
                key,
                format!(
                    "secret file `{}` can be read by other users",
                    path.display()
                ),
            )
            .hint(format!("chmod 600 {}", path.display()));
        }
        (path, bytes)
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
            Some(Found::Read(bytes) | Found::Shared(bytes)) => return (path, Some(bytes)),
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

// The tables compile TOML through the `testing` module, which is above this one: in a file of
// their own they are a module on top of the graph, not part of this one.
#[cfg(test)]
mod tests;
