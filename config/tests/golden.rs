//! Golden tests of the error text: every file under `tests/golden/` (and every directory
//! under `tests/golden_dirs/`) is loaded and compiled, and the rendered diagnostics must equal
//! the `.golden` file beside it. `UPDATE_GOLDEN=1 cargo test -p labgate-config --test golden`
//! rewrites them; review the diff before committing.

use std::path::{Path, PathBuf};

use labgate_config::{Error, compile, load};

fn render(path: &Path) -> String {
    let loaded = match load(path) {
        Ok(l) => l,
        Err(e) => return format!("{e}\n"),
    };
    match compile(&loaded, 1) {
        Ok(s) => {
            let mut out: String = s.warnings.iter().map(|w| format!("{w}\n")).collect();
            out.push_str("ok\n");
            out
        }
        Err(d) => format!("{}\n", Error::Invalid(d)),
    }
}

fn cases() -> Vec<PathBuf> {
    let mut v = Vec::new();
    for dir in ["tests/golden", "tests/golden_dirs"] {
        for e in std::fs::read_dir(dir).expect("golden directory") {
            let p = e.expect("entry").path();
            if p.extension().is_some_and(|x| x == "toml") || p.is_dir() {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

#[test]
fn error_text_matches_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    let cases = cases();
    assert!(cases.len() >= 12, "golden cases went missing: {cases:?}");
    for case in cases {
        let actual = render(&case);
        let golden = case.with_extension("golden");
        if update {
            std::fs::write(&golden, &actual).expect("write golden");
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        if actual != expected {
            failures.push(format!(
                "--- {} (expected)\n{expected}+++ actual\n{actual}",
                golden.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
