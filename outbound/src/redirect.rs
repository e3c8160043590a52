//! What a redirect may lead to, and how a URL's credentials travel.

use crate::Redacted;
use crate::error::Error;

/// Whether a redirect from `from` to `next` (its `Location`, resolved against `from`) is
/// followed, and with which credentials: never from HTTPS to HTTP nor to another scheme;
/// `from`'s user and password go along to the same host and port only (as curl does).
pub(crate) fn follow(from: &url::Url, mut next: url::Url) -> Result<url::Url, Error> {
    match next.scheme() {
        "https" => {}
        "http" if from.scheme() == "http" => {}
        // SECURITY: a downgrade would send the credentials, and the body, in clear.
        _ => {
            return Err(Error::RedirectRefused {
                url: Redacted(from).to_string(),
                to: Redacted(&next).to_string(),
            });
        }
    }
    let same_origin = next.host_str() == from.host_str()
        && next.port_or_known_default() == from.port_or_known_default();
    // SECURITY: another host never sees them, whatever the redirect says.
    if same_origin && next.username().is_empty() && next.password().is_none() {
        // A relative Location keeps them already; an absolute one to the same place does not.
        let _ = next.set_username(from.username());
        let _ = next.set_password(from.password());
    }
    Ok(next)
}

/// The `Authorization` value for the URL's user and password (RFC 7617), if it has any.
pub(crate) fn basic_credentials(url: &url::Url) -> Option<String> {
    use base64::Engine;
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let pair = format!(
        "{}:{}",
        decode(url.username()),
        decode(url.password().unwrap_or_default())
    );
    Some(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_keep_credentials_on_the_same_host_and_port_only() {
        let from = url::Url::parse("https://u:p@nas.lab/lists/a.txt?t=1").expect("a URL");
        let to = |location: &str| {
            let next = from.join(location).expect("a relative reference");
            follow(&from, next).map(|u| u.to_string())
        };
        assert_eq!(
            to("b.txt").as_deref().ok(),
            Some("https://u:p@nas.lab/lists/b.txt")
        );
        assert_eq!(
            to("https://nas.lab:443/c").as_deref().ok(),
            Some("https://u:p@nas.lab/c")
        );
        assert_eq!(
            to("//cdn.example/c").as_deref().ok(),
            Some("https://cdn.example/c")
        );
        assert_eq!(
            to("https://nas.lab:8443/c").as_deref().ok(),
            Some("https://nas.lab:8443/c")
        );
        let downgrade = to("http://nas.lab/c")
            .expect_err("HTTPS to HTTP is refused")
            .to_string();
        assert!(!downgrade.contains("u:p"), "{downgrade}");
        assert!(!downgrade.contains("t=1"), "{downgrade}");
        assert!(to("ftp://nas.lab/c").is_err());
        let plain = url::Url::parse("http://nas.lab/a").expect("a URL");
        let url = |s: &str| url::Url::parse(s).expect("a URL");
        assert!(
            follow(&plain, url("https://nas.lab/a")).is_ok(),
            "an upgrade is followed"
        );
        assert!(
            follow(&plain, url("http://nas.lab/b")).is_ok(),
            "http to http is followed"
        );
    }

    #[test]
    fn url_credentials_become_basic_authorization() {
        // RFC 7617's example, with the space percent-encoded as a URL carries it.
        let url = url::Url::parse("https://Aladdin:open%20sesame@lists.example/").expect("a URL");
        assert_eq!(
            basic_credentials(&url).as_deref(),
            Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
        );
        let bare = url::Url::parse("https://lists.example/").expect("a URL");
        assert_eq!(basic_credentials(&bare), None);
    }
}
