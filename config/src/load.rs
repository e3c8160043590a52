//! Reading configuration files: one file, or every `*.toml` under a directory (sorted, hidden
//! entries such as `.git` skipped), each parsed into a [`RawFile`]; then every file they
//! name, so that compiling reads nothing.

use std::path::{Path, PathBuf};

use toml::Spanned;

use crate::error::{Diagnostic, Diagnostics, Error, Severity};
use crate::loaded::{Found, Loaded, NamedFiles};
use crate::raw::RawFile;
use crate::source::{FileId, Sources};

/// Reads and parses a file or a directory, and reads the files it names (a file that cannot
/// be read is not an error here: compiling reports it where it is named).
///
/// # Errors
/// [`Error::Read`] when a path cannot be read, [`Error::Empty`] for a directory without
/// `*.toml`, and [`Error::Invalid`] with every file's syntax errors.
pub fn load(path: &Path) -> Result<Loaded, Error> {
    let read_err = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    let mut paths = Vec::new();
    if meta.is_dir() {
        collect(path, &mut paths)?;
        if paths.is_empty() {
            return Err(Error::Empty {
                path: path.to_owned(),
            });
        }
        paths.sort();
    } else {
        paths.push(path.to_owned());
    }
    let mut sources = Sources::new();
    for p in paths {
        let text = std::fs::read_to_string(&p).map_err(|source| Error::Read {
            path: p.clone(),
            source,
        })?;
        sources.add(p, text);
    }
    let mut loaded = parse(sources)?;
    loaded.named = read_named(&loaded.sources, &loaded.files);
    Ok(loaded)
}

/// Parses sources already in memory (the built-in demo, tests). Nothing is read: the files
/// the configuration names are missing unless the caller adds them to [`Loaded::named`].
///
/// # Errors
/// [`Error::Invalid`] with every file's syntax errors.
pub fn parse(sources: Sources) -> Result<Loaded, Error> {
    let mut files = Vec::new();
    let mut diags = Vec::new();
    for (id, f) in sources.iter() {
        match toml::from_str::<RawFile>(&f.text) {
            Ok(raw) => files.push((id, raw)),
            Err(e) => diags.push(Diagnostic {
                severity: Severity::Error,
                location: e.span().map(|s| sources.locate(id, s)),
                key: String::new(),
                message: e.message().trim_end().to_owned(),
                expected: None,
                hint: None,
            }),
        }
    }
    if diags.is_empty() {
        Ok(Loaded {
            sources,
            files,
            named: NamedFiles::default(),
        })
    } else {
        Err(Error::Invalid(Diagnostics(diags)))
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Read {
        path: dir.to_owned(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| Error::Read {
            path: dir.to_owned(),
            source,
        })?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
    Ok(())
}

/// What compiling needs of a named file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Its contents (blocklists, CA bundles).
    Contents,
    /// To know that it opens (key material and secrets, read later by their users).
    Open,
    /// Its contents, and whether others may read it: a secret the snapshot carries.
    Secret,
}

/// Reads, or only opens, every file the configuration names.
fn read_named(sources: &Sources, files: &[(FileId, RawFile)]) -> NamedFiles {
    let mut named = NamedFiles::default();
    for (file, written, need) in references(files) {
        let path = sources.file(file).resolve(written);
        // A file named twice is opened once, and read if any reference needs its contents.
        if need == Need::Open && named.get(&path).is_some() {
            continue;
        }
        let found = match need {
            Need::Contents => {
                std::fs::read(&path).map_or_else(|e| Found::Failed(e.kind()), Found::Read)
            }
            Need::Secret => secret(&path),
            Need::Open => std::fs::File::open(&path)
                .map_or_else(|e| Found::Failed(e.kind()), |_| Found::Opened),
        };
        named.insert(path, found);
    }
    named
}

/// A secret file's contents, [`Found::Shared`] when its mode lets group or others read it.
fn secret(path: &Path) -> Found {
    use std::os::unix::fs::PermissionsExt;
    let shared = std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0);
    match std::fs::read(path) {
        Ok(bytes) if shared => Found::Shared(bytes),
        Ok(bytes) => Found::Read(bytes),
        Err(e) => Found::Failed(e.kind()),
    }
}

/// Every key that names a file, in every file of the configuration.
fn references(files: &[(FileId, RawFile)]) -> Vec<(FileId, &str, Need)> {
    let mut out = Vec::new();
    for (id, f) in files {
        let dns = f.dns.as_ref().map(Spanned::get_ref);
        let acme = f.acme.as_ref().map(Spanned::get_ref);
        let admin = f.admin.as_ref().map(Spanned::get_ref);
        let pair = f.pair.as_ref().map(Spanned::get_ref);
        let keys = dns
            .map(|d| (&d.upstream_ca_file, Need::Contents))
            .into_iter()
            .chain(admin.map(|a| (&a.auth_file, Need::Secret)))
            .chain(
                pair.into_iter()
                    .flat_map(|p| [(&p.key_file, Need::Open), (&p.tsig_file, Need::Secret)]),
            )
            .chain(f.blocklist.iter().map(|b| (&b.file, Need::Contents)))
            .chain(
                f.service
                    .iter()
                    .map(|s| (&s.backend_ca_file, Need::Contents)),
            )
            .chain(
                f.certificate
                    .iter()
                    .flat_map(|c| [(&c.cert_file, Need::Open), (&c.key_file, Need::Open)]),
            )
            .chain(acme.into_iter().flat_map(|a| {
                [
                    (&a.eab_hmac_file, Need::Open),
                    (&a.directory_ca_file, Need::Open),
                ]
            }))
            .chain(
                f.dns_provider
                    .iter()
                    .flat_map(|p| [(&p.token_file, Need::Open), (&p.secret_file, Need::Open)]),
            );
        out.extend(keys.filter_map(|(v, need)| Some((*id, v.as_ref()?.get_ref().as_str(), need))));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A self-signed CA certificate in PEM.
    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).expect("CA").pem()
    }

    /// `references` knows every key that names a file: with each file present, compiling
    /// finds none missing and uses the contents of those it reads. A key left out of
    /// `references` would be a file compiling finds missing.
    #[test]
    fn load_reads_every_file_the_configuration_names() {
        let dir = tempfile::tempdir().expect("dir");
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).expect("write");
        };
        for name in [
            "cert.pem", "key.pem", "eab.key", "cf.token", "tsig.key", "admin",
        ] {
            write(name, "secret");
        }
        let private = std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(dir.path().join("admin"), private).expect("chmod");
        for name in ["upstream-ca.pem", "backend-ca.pem", "acme-ca.pem"] {
            write(name, &ca_pem());
        }
        write("ads.txt", "ads.example.com\n");
        let config = dir.path().join("labgate.toml");
        std::fs::write(
            &config,
            r#"
[dns]
upstream_ca_file = "upstream-ca.pem"
[admin]
auth_file = "admin"
[[blocklist]]
name = "ads"
file = "ads.txt"
[[network]]
name = "lab"
cidrs = ["10.0.0.0/16"]
addresses = ["10.0.0.2"]
blocklists = ["ads"]
[[zone]]
name = "lab.test"
[[service]]
host = "app.lab.test"
backends = ["https://10.0.0.9"]
allow = ["lab"]
backend_ca_file = "backend-ca.pem"
[[certificate]]
names = ["app.lab.test"]
source = "files"
cert_file = "cert.pem"
key_file = "key.pem"
[acme]
email = "admin@example.com"
provider = "cf"
eab_kid = "kid"
eab_hmac_file = "eab.key"
directory_ca_file = "acme-ca.pem"
[[dns_provider]]
name = "cf"
kind = "cloudflare"
token_file = "cf.token"
[[dns_provider]]
name = "bind"
kind = "rfc2136"
server = "10.0.0.53"
key_name = "acme"
secret_file = "tsig.key"
"#,
        )
        .expect("write config");
        let loaded = load(&config).expect("loads");
        let s = crate::compile(&loaded, 1).unwrap_or_else(|d| panic!("{d}"));
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        assert_eq!(s.dns.upstream_roots.len(), 1);
        assert_eq!(s.services[0].backend_roots.len(), 1);
        assert!(s.dns.blocklists[0].names.blocks("ads.example.com"));
        assert!(s.admin.auth.is_some());
        // Secrets are opened, never read into the configuration.
        assert_eq!(
            loaded.named.get(&dir.path().join("tsig.key")),
            Some(&Found::Opened)
        );
        // The admin credentials are read, the snapshot carries them; a mode beyond 0600 is
        // seen.
        let admin = dir.path().join("admin");
        assert_eq!(
            loaded.named.get(&admin),
            Some(&Found::Read(b"secret".to_vec()))
        );
        std::fs::set_permissions(&admin, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        assert_eq!(
            load(&config).expect("loads").named.get(&admin),
            Some(&Found::Shared(b"secret".to_vec()))
        );
    }

    /// A list or CA path that names a directory is reported where it is named (it was once
    /// an empty list without a word).
    #[test]
    fn a_directory_named_as_a_list_is_reported() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::create_dir(dir.path().join("lists")).expect("mkdir");
        let config = dir.path().join("labgate.toml");
        std::fs::write(&config, "[[blocklist]]\nname = \"ads\"\nfile = \"lists\"\n")
            .expect("write");
        let loaded = load(&config).expect("loads");
        let d = crate::compile(&loaded, 1).expect_err("a directory is no list");
        let lists = dir.path().join("lists");
        assert_eq!(
            d.0.iter().map(|d| d.message.as_str()).collect::<Vec<_>>(),
            [format!("cannot read `{}`: a directory", lists.display())]
        );
    }
}
