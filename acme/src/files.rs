//! Atomic, permission-aware writes of key material.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::Error;

/// Writes `data` to `path` through a temporary file in the same directory and a rename, so a
/// reader sees the old file or the new one, never half of one. `mode` is the new file's Unix
/// mode (0o600 for keys).
///
/// # Errors
/// [`Error::Io`] naming the path.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), Error> {
    let io = |action, source| Error::Io {
        action,
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io("create the directory of", e))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        std::process::id()
    ));
    // A leftover of a crash is removed; then the file must be new (`O_EXCL`): a link planted
    // under this name is not followed, and the mode is ours from the first byte.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io("remove the leftover", e));
        }
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| io("write", e))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| io("write", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("rename into place", e))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_link_planted_at_the_temporary_name_is_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "untouched").expect("victim");
        let key = dir.path().join("account.key");
        let tmp = dir
            .path()
            .join(format!(".account.key.tmp{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &tmp).expect("plant");
        write_atomic(&key, b"secret", 0o600).expect("written");
        assert_eq!(
            std::fs::read_to_string(&victim).expect("victim"),
            "untouched"
        );
        assert_eq!(std::fs::read(&key).expect("key"), b"secret");
        let mode = std::fs::metadata(&key).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
