//! How logs and errors show a URL.

/// A URL as logs and errors show it: without user and password, and its query as `?…`
/// (private lists carry tokens there).
pub struct Redacted<'a>(pub &'a url::Url);

impl std::fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = self.0;
        // SECURITY: from the host on, so the user and password are never written.
        let host = &url[url::Position::BeforeHost..url::Position::AfterPath];
        write!(f, "{}://{host}", url.scheme())?;
        if url.query().is_some() {
            f.write_str("?…")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_show_urls_without_credentials_or_query() {
        let url =
            url::Url::parse("https://user:pw@lists.example:8443/a/b.txt?token=t#f").expect("a URL");
        assert_eq!(
            Redacted(&url).to_string(),
            "https://lists.example:8443/a/b.txt?…"
        );
        let plain = url::Url::parse("http://[::1]/list").expect("a URL");
        assert_eq!(Redacted(&plain).to_string(), "http://[::1]/list");
    }
}
