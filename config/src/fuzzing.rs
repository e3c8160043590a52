//! Entry points for the fuzz targets in `fuzz/` (H2: targets are shims). Compiled in every
//! build so CI checks them; the seed corpus runs through them in the unit tests.

use crate::blocklist::{BlockSet, BlocklistFormat};
use crate::route::{MAX_HOST_LEN, needs_normalizing, normalize_host, normalize_path};
use crate::{Sources, compile, parse};

/// Any bytes as a configuration file: parsing and compiling never panic, and a compiled
/// snapshot answers the lookups every request makes. Nothing is read from disk: the files
/// the configuration names are missing.
pub fn compile_bytes(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut s = Sources::new();
    s.add("fuzz.toml", text);
    let Ok(loaded) = parse(s) else { return };
    match compile(&loaded, 1) {
        Ok(snap) => {
            for n in snap.networks.iter() {
                for c in &n.cidrs {
                    let m = snap.networks.lookup(c.network());
                    assert!(m.is_some(), "a network's own CIDR must match a network");
                }
            }
            for host in snap.routes.hosts() {
                let _ = snap.certificate_for(host);
            }
        }
        Err(d) => assert!(d.has_errors(), "a failed compile reports an error"),
    }
}

/// Any bytes as a Host header or SNI: normalization never panics, and its output is
/// lower-case, port-free and stable (normalizing it again changes nothing).
pub fn normalize_host_bytes(data: &[u8]) {
    let mut buf = [0u8; MAX_HOST_LEN];
    let Some(host) = normalize_host(data, &mut buf) else {
        return;
    };
    let host = host.to_owned();
    assert!(
        !host.bytes().any(|c| c.is_ascii_uppercase()),
        "{host:?} is not lower-case"
    );
    assert!(!host.ends_with('.'), "{host:?} keeps a trailing dot");
    let mut again = [0u8; MAX_HOST_LEN];
    assert_eq!(
        normalize_host(host.as_bytes(), &mut again),
        Some(host.as_str())
    );
}

/// Any bytes as a request path: normalization for routing never panics, and leaves a path
/// with no empty, `.` or `..` segment, which is stable when no `%` is left in it.
pub fn normalize_path_bytes(data: &[u8]) {
    let path = String::from_utf8_lossy(data);
    let out = normalize_path(&path);
    assert!(out.starts_with('/'), "{out:?}");
    let segments: Vec<&str> = out[1..].split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        assert!(
            !matches!(*segment, "." | "..") && (last || !segment.is_empty()),
            "{path:?} became {out:?}"
        );
    }
    if !out.contains('%') {
        assert_eq!(normalize_path(&out), out, "{path:?} is not stable");
    }
    // A path the router takes as it is must be one normalizing leaves alone.
    if !needs_normalizing(&path) {
        assert_eq!(out, path, "{path:?} changed");
    }
}

/// Any bytes as a blocklist in every format: parsing never panics, and every listed name
/// blocks itself and its subdomains.
pub fn blocklist_bytes(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for format in [
        BlocklistFormat::Domains,
        BlocklistFormat::Hosts,
        BlocklistFormat::Adblock,
    ] {
        let set = BlockSet::parse(&text, format);
        for line in text.lines() {
            let name = line.trim().trim_end_matches('.').to_ascii_lowercase();
            if format == BlocklistFormat::Domains && set.blocks(&name) {
                assert!(
                    set.blocks(&format!("sub.{name}")),
                    "{name:?} blocks, its subdomain not"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs every committed seed through the targets, so normal CI covers them.
    #[test]
    fn seed_corpus_passes_the_properties() {
        let mut n = 0;
        for (dir, target) in [
            ("../fuzz/corpus/config_compile", compile_bytes as fn(&[u8])),
            ("../fuzz/corpus/host_normalize", normalize_host_bytes),
            ("../fuzz/corpus/path_normalize", normalize_path_bytes),
            ("../fuzz/corpus/blocklist_parse", blocklist_bytes),
        ] {
            for e in std::fs::read_dir(dir).expect("seed corpus") {
                target(&std::fs::read(e.expect("entry").path()).expect("seed"));
                n += 1;
            }
        }
        assert!(n >= 4, "seed corpus went missing");
    }
}
