//! B3/K6: every key of the raw configuration types is documented in `deploy/CONFIG.md`
//! (written by `scripts/gen-config-doc.py` from the same doc comments).

#[test]
fn every_raw_key_is_in_the_config_reference() {
    let raw = std::fs::read_to_string("src/raw.rs").expect("raw.rs");
    let reference = std::fs::read_to_string("../deploy/CONFIG.md").expect("deploy/CONFIG.md");
    let mut keys = Vec::new();
    let mut rename = None;
    for line in raw.lines().map(str::trim) {
        if let Some(r) = line.strip_prefix("#[serde(rename = \"") {
            rename = r.split('"').next().map(str::to_owned);
        }
        if let Some(field) = line.strip_prefix("pub ").and_then(|l| l.split_once(": ")) {
            keys.push(rename.take().unwrap_or_else(|| field.0.to_owned()));
        }
    }
    assert!(keys.len() > 60, "found only {} keys", keys.len());
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| !reference.contains(&format!("| `{k}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "not in deploy/CONFIG.md (run scripts/gen-config-doc.py): {missing:?}"
    );
}
