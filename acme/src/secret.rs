//! Secret files: read from paths, never logged, never put in an error message. A file that
//! others may read is used, with a warning naming the file and the fix.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::Error;

/// A TSIG secret: base64 alone, or a BIND `key` statement (as `tsig-keygen` writes it).
///
/// # Errors
/// [`Error::Secret`] when unreadable or not base64.
pub fn tsig(path: &Path) -> Result<Vec<u8>, Error> {
    let text = read(path)?;
    labgate_config::pair::TsigKey::parse(&text)
        .map(|k| k.secret)
        .map_err(|what| Error::Secret {
            path: path.to_owned(),
            what: what.into(),
        })
}

/// An API token: the file's content, surrounding whitespace removed.
///
/// # Errors
/// [`Error::Secret`] when unreadable or empty.
pub fn token(path: &Path) -> Result<String, Error> {
    let text = read(path)?;
    let token = text.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(Error::Secret {
            path: path.to_owned(),
            what: "expected the API token alone on one line".into(),
        });
    }
    Ok(token.to_owned())
}

/// An External Account Binding HMAC key, base64url as CAs hand them out.
///
/// # Errors
/// [`Error::Secret`] when unreadable or not base64url.
pub fn eab_hmac(path: &Path) -> Result<Vec<u8>, Error> {
    let text = read(path)?;
    URL_SAFE_NO_PAD
        .decode(text.trim().trim_end_matches('='))
        .map_err(|_| Error::Secret {
            path: path.to_owned(),
            what: "expected the CA's base64url HMAC key alone".into(),
        })
}

fn read(path: &Path) -> Result<String, Error> {
    let meta = std::fs::metadata(path).map_err(|e| Error::Secret {
        path: path.to_owned(),
        what: format!("cannot read it ({e})"),
    })?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            "secret file {} can be read by other users: chmod 600 it",
            path.display()
        );
    }
    std::fs::read_to_string(path).map_err(|e| Error::Secret {
        path: path.to_owned(),
        what: format!("cannot read it ({e})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsig_secrets_come_alone_or_in_a_bind_key_statement() {
        let dir = tempfile::tempdir().expect("dir");
        let bare = dir.path().join("bare");
        std::fs::write(&bare, "c2VjcmV0\n").expect("write");
        assert_eq!(tsig(&bare).expect("bare"), b"secret");
        let bind = dir.path().join("bind");
        std::fs::write(
            &bind,
            "key \"acme.\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0\";\n};\n",
        )
        .expect("write");
        assert_eq!(tsig(&bind).expect("statement"), b"secret");
        std::fs::write(
            &bind,
            "key \"acme-secret.\" { algorithm hmac-sha256; secret \"c2VjcmV0\"; };\n",
        )
        .expect("write");
        assert_eq!(tsig(&bind).expect("a key named secret"), b"secret");
        let junk = dir.path().join("junk");
        std::fs::write(&junk, "not base64 !!").expect("write");
        let e = tsig(&junk).expect_err("junk").to_string();
        assert!(e.contains("junk") && !e.contains("not base64"), "{e}");
        let e = token(&dir.path().join("missing"))
            .expect_err("missing")
            .to_string();
        assert!(e.contains("missing") && e.contains("cannot read"), "{e}");
    }
}
