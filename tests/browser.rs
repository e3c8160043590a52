//! The status page in a real browser: Debian's Chromium, headless, driven by chromedriver.
//! A lab and a guest VLAN stand on `lo` (root, as on CI); the admin endpoint listens on every
//! address, so the browser reaches it from the lab's address (`http://LAB:PORT/`) or the
//! guest's. labgate gets a certificate from Pebble (its own DNS answering the challenge), dig
//! asks from the lab, curl is refused from the guest; then every page loads without a console
//! error, the query log shows the dig, its search by client works, the refused request shows
//! the rule, the certificate page shows Pebble's certificate, and the guest gets 403.
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    reason = "drives a real labgate from outside: deadlines on the wall clock, polls until they pass"
)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::acme::{Pebble, wait_certificate};
use support::backend::Backend;
use support::webdriver::Browser;
use support::{ConfigDir, Labgate, LoopbackAddrs, dig, free_port};

const LAB: &str = "10.27.10.7";
const GUEST: &str = "10.27.50.7";

fn config(pebble: &Pebble, dns: u16, backend: u16) -> String {
    format!(
        r#"
[listen]
dns = ["0.0.0.0:{dns}"]
https = ["0.0.0.0:0"]
http = ["127.0.0.1:0"]
admin = "0.0.0.0:0"

[[network]]
name = "lab"
cidrs = ["10.27.10.0/24", "127.0.0.0/8"]
addresses = ["10.27.10.2"]

[[network]]
name = "guest"
cidrs = ["10.27.50.0/24"]
addresses = ["10.27.50.2"]
query_log = "anonymous"

[[zone]]
name = "lab.example.test"

[[service]]
host = "app.lab.example.test"
backends = ["http://127.0.0.1:{backend}"]
allow = ["lab"]

[admin]
allow = ["lab"]

[acme]
email = "admin@example.test"
directory = "{directory}"
directory_ca_file = "{ca}"
provider = "dns"

[[dns_provider]]
name = "dns"
kind = "builtin"
"#,
        directory = pebble.directory,
        ca = pebble.tls_ca.display(),
    )
}

#[test]
fn the_status_page_works_in_a_real_browser_and_refuses_the_guest_network() {
    let _addrs = LoopbackAddrs::add(&[LAB, GUEST]);
    let backend = Backend::start("app");
    let dns = free_port();
    let pebble = Pebble::start(&format!("127.0.0.1:{dns}"));
    let cfg = ConfigDir::new();
    cfg.write("labgate.toml", &config(&pebble, dns, backend.port));
    let lg = Labgate::start_as_configured(
        &[],
        &[
            "--config",
            cfg.path("labgate.toml").to_str().expect("utf-8"),
        ],
        &cfg.path("state"),
    );
    wait_certificate(&lg);
    let port = lg.admin.port();

    // The lab asks for the service's name; the guest is refused by the service's policy.
    let d = dig(dns, LAB, &["app.lab.example.test"]);
    assert_eq!(d.status, "NOERROR", "{}", d.raw);
    let refused = Command::new("curl")
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--interface",
            GUEST,
        ])
        .arg("--resolve")
        .arg(format!("app.lab.example.test:{}:{GUEST}", lg.https))
        .arg(format!("https://app.lab.example.test:{}/private", lg.https))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&refused.stdout), "403");
    lg.wait_metric("labgate_querylog_written_total", 1, "the dig logged");

    let browser = Browser::start();
    let base = format!("http://{LAB}:{port}");
    browser.goto(&format!("{base}/"));
    assert_eq!(browser.title(), "Overview · labgate");
    assert_eq!(browser.console_errors(), Vec::<String>::new(), "/");
    // Every page through the navigation's links, as a keyboard's Enter would follow them.
    for (href, heading) in [
        ("/ui/networks", "Networks"),
        ("/ui/services", "Services"),
        ("/ui/certificates", "Certificates"),
        ("/ui/dns", "DNS"),
        ("/ui/queries", "Query log"),
        ("/", "Overview"),
    ] {
        browser.click(&format!("nav a[href='{href}']"));
        assert_eq!(browser.title(), format!("{heading} · labgate"));
        let current = browser
            .run("return document.querySelector('nav a[aria-current=page]').getAttribute('href');");
        assert_eq!(current, href);
        assert_eq!(browser.console_errors(), Vec::<String>::new(), "{href}");
    }

    // The query log shows the dig from the lab's address; the search by client finds it.
    browser.goto(&format!("{base}/ui/queries"));
    let text = browser.text();
    assert!(
        text.contains("app.lab.example.test") && text.contains(LAB),
        "{text}"
    );
    browser.type_into("#client", LAB);
    browser.click("form[role=search] button[type=submit]");
    let clients = browser.run(
        "return Array.from(document.querySelectorAll('#rows tr td:nth-child(2)')).map(td => td.innerText);",
    );
    let clients: Vec<&str> = clients
        .as_array()
        .expect("cells")
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    assert!(
        !clients.is_empty() && clients.iter().all(|c| *c == LAB),
        "{clients:?}"
    );
    assert_eq!(browser.console_errors(), Vec::<String>::new(), "search");
    // The live tail runs its script with no error either.
    browser.click("#live");
    let d = dig(dns, LAB, &["tail.lab.example.test"]);
    assert!(!d.status.is_empty());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !browser.text().contains("tail.lab.example.test") {
        assert!(
            Instant::now() < deadline,
            "the live tail did not add the query"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(browser.console_errors(), Vec::<String>::new(), "live tail");

    // The refused request, with the rule that refused it.
    browser.goto(&format!("{base}/ui/services"));
    let text = browser.text();
    assert!(
        text.contains(GUEST) && text.contains("/private") && text.contains("403"),
        "{text}"
    );
    assert!(text.contains("deny"), "{text}");
    // Pebble's certificate on the certificate page.
    browser.goto(&format!("{base}/ui/certificates"));
    let text = browser.text();
    assert!(
        text.contains("app.lab.example.test") && text.contains("Pebble"),
        "{text}"
    );
    assert_eq!(
        browser.console_errors(),
        Vec::<String>::new(),
        "certificates"
    );

    // The guest network: 403, and no client address on the page.
    browser.goto(&format!("http://{GUEST}:{port}/ui/queries"));
    let text = browser.text();
    assert!(text.contains("guest"), "{text}");
    assert!(!text.contains(LAB), "{text}");
    let status = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--interface",
            GUEST,
        ])
        .arg(format!("http://{GUEST}:{port}/ui/queries"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&status.stdout), "403");
}
