//! A real browser for the tests: Debian's Chromium, headless, driven through Debian's
//! chromedriver over the W3C WebDriver protocol (JSON over HTTP, sent with curl), with the
//! flags a closed network needs (no background connections, no first-run work).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long chromedriver and Chromium may take to start.
const START: Duration = Duration::from_secs(60);

/// A Chromium session, ended (and its driver stopped) on drop.
pub(crate) struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session with the browser's console log on.
    pub(crate) fn start() -> Self {
        let port = super::free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "chromedriver is needed: apt-get install chromium-driver (scripts/test.sh does)",
            );
        let profile = tempfile::tempdir().expect("profile dir");
        let deadline = Instant::now() + START;
        while !request(port, "GET", "/status", None)["value"]["ready"]
            .as_bool()
            .unwrap_or(false)
        {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=420,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let reply = request(port, "POST", "/session", Some(&caps));
        let session = reply["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {reply}"))
            .to_owned();
        Self {
            driver,
            port,
            session,
            _profile: profile,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let reply = request(
            self.port,
            method,
            &format!("/session/{}{path}", self.session),
            body,
        );
        assert!(
            reply["value"].get("error").is_none(),
            "{method} {path}: {reply}"
        );
        reply["value"].clone()
    }

    /// Loads `url` and waits for it.
    pub(crate) fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(&json!({ "url": url })));
    }

    /// The page's title.
    pub(crate) fn title(&self) -> String {
        self.call("GET", "/title", None)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// The page's text as a reader sees it (`document.body.innerText`).
    pub(crate) fn text(&self) -> String {
        self.run("return document.body.innerText;")
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Runs `script` in the page: what it returns.
    pub(crate) fn run(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": [] })),
        )
    }

    /// The first element `css` selects.
    fn element(&self, css: &str) -> String {
        let found = self.call(
            "POST",
            "/element",
            Some(&json!({ "using": "css selector", "value": css })),
        );
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_owned()
    }

    /// Clicks the first element `css` selects (a link or a button: what a keyboard's Enter
    /// does to it too).
    pub(crate) fn click(&self, css: &str) {
        let id = self.element(css);
        self.call("POST", &format!("/element/{id}/click"), Some(&json!({})));
    }

    /// Types `text` into the first element `css` selects.
    pub(crate) fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.call("POST", &format!("/element/{id}/clear"), Some(&json!({})));
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            Some(&json!({ "text": text })),
        );
    }

    /// The console's errors since the last call (chromedriver's `browser` log, level SEVERE:
    /// script errors, refused resources, Content-Security-Policy violations).
    pub(crate) fn console_errors(&self) -> Vec<String> {
        let log = self.call("POST", "/se/log", Some(&json!({ "type": "browser" })));
        log.as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or("").to_owned())
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = request(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// One WebDriver request with curl: the JSON reply (`null` when there was none).
fn request(port: u16, method: &str, path: &str, body: Option<&Value>) -> Value {
    let mut c = Command::new("curl");
    c.args(["-s", "--max-time", "60", "-X", method])
        .arg(format!("http://127.0.0.1:{port}{path}"));
    if let Some(b) = body {
        c.args(["-H", "content-type: application/json", "--data-binary"])
            .arg(b.to_string());
    }
    let out = c.output().expect("curl is needed");
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}
