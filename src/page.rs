//! The status page: read-only HTML served by the admin endpoint (under its access policy):
//! overview, networks, services, certificates, DNS statistics, the query log with its search
//! and live tail, and `explain` for any query. Server-rendered from the serving snapshot, the
//! control plane's state and the query log's database (read-only, on a blocking thread);
//! nothing is fetched from elsewhere, so it works offline.

mod html;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use labgate_config::Snapshot;
use labgate_config::network::LogLevel;
use labgate_config::settings::{CertSource, Coverage};
use labgate_proxy::metrics::ServiceCounts;
use labgate_querylog::{Filter, Found, Position, Reader, unix_us};

use crate::status::Shared;
use html::{bars, esc, page, table, url, validity};

/// Rows a query log page shows.
const PAGE_ROWS: usize = 100;
const HOUR_US: i64 = 3_600_000_000;

/// What the pages read.
#[derive(Clone)]
pub struct Ui {
    /// The running state.
    pub shared: Arc<Shared>,
    /// The configuration file or directory (`None`: the built-in demo).
    pub config: Option<PathBuf>,
    /// When labgate started.
    pub started: SystemTime,
}

/// An answer: status and HTML.
pub(crate) type Html = (u16, String);

/// The page at `path` with the URL's `query`, or `None` when the path is not one.
pub(crate) async fn render(ui: &Ui, path: &str, query: &str) -> Option<Html> {
    let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .filter(|(_, v)| !v.trim().is_empty())
        .collect();
    let ui = ui.clone();
    let path = path.to_owned();
    // Reads the database and the configuration's Git checkout: a blocking thread.
    tokio::task::spawn_blocking(move || match path.as_str() {
        "/" => Some(overview(&ui)),
        "/ui/networks" => Some(networks(&ui)),
        "/ui/services" => Some(services(&ui)),
        "/ui/certificates" => Some(certificates(&ui)),
        "/ui/dns" => Some(dns(&ui)),
        "/ui/queries" => Some(queries(&ui, &params)),
        "/ui/queries/rows" => Some(rows_fragment(&ui, &params)),
        "/ui/explain" => Some(explain(&ui, &params)),
        _ => None,
    })
    .await
    .ok()
    .flatten()
}

fn now_us() -> i64 {
    unix_us(SystemTime::now())
}

/// `YYYY-MM-DD hh:mm:ss` UTC of a time in microseconds since the Unix epoch.
fn utc(us: i64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(us.div_euclid(1_000_000)) else {
        return "?".to_owned();
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A number of seconds as `3d 4h`, `5h 12m`, `42s`.
fn span(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m {}s", secs % 60),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// The query log's database, when it exists.
fn reader(ui: &Ui) -> Result<Reader, String> {
    Reader::open(ui.shared.querylog.path()).map_err(|e| e.to_string())
}

/// Rows of an SQL statement over the statistics, as text cells.
fn stat_rows(r: &Reader, sql: &str, since_us: i64) -> Vec<Vec<String>> {
    r.rows(sql, since_us).unwrap_or_default()
}

fn overview(ui: &Ui) -> Html {
    let s = ui.shared.snapshot.load();
    let up = SystemTime::now()
        .duration_since(ui.started)
        .map_or(0, |d| d.as_secs());
    let config = ui.config.as_ref().map_or_else(
        || "the built-in demo".to_owned(),
        |p| p.display().to_string(),
    );
    let commit = s
        .revision
        .as_deref()
        .unwrap_or("not a Git checkout")
        .to_owned();
    let mut rows = vec![
        vec!["Version".into(), esc(env!("CARGO_PKG_VERSION"))],
        vec!["Up for".into(), span(up)],
        vec!["Configuration".into(), esc(&config)],
        vec!["Git commit".into(), esc(&commit)],
        vec![
            "Pair".into(),
            ui.shared.pair_role().map_or_else(
                || "no `[pair]`".to_owned(),
                |r| {
                    let orders = if r.first {
                        "the first: orders the certificates"
                    } else {
                        "the second: takes the first's certificates"
                    };
                    esc(&format!("this node {} ({orders}), peer {}", r.me, r.peer))
                },
            ),
        ],
        vec![
            "Generation".into(),
            format!("{} (hash {})", s.generation, esc(&s.hash.to_string())),
        ],
    ];
    if let Some(last) = ui.shared.last() {
        let at = i64::try_from(last.at_unix).unwrap_or(0) * 1_000_000;
        let errors = if last.errors.is_empty() {
            String::new()
        } else {
            format!(
                "<ul class=\"bad\">{}</ul>",
                last.errors
                    .iter()
                    .map(|e| format!("<li><pre>{}</pre></li>", esc(e)))
                    .collect::<String>()
            )
        };
        rows.push(vec![
            "Last reload".into(),
            format!(
                "{} UTC: {}{}",
                utc(at),
                esc(&format!("{:?}", last.result).to_lowercase()),
                errors
            ),
        ]);
    }
    let mut body = table("labgate", &["", ""], &rows);
    if !s.warnings.is_empty() {
        body.push_str("<h2>Warnings</h2><ul>");
        for w in &s.warnings {
            body.push_str(&format!("<li><pre>{}</pre></li>", esc(&w.to_string())));
        }
        body.push_str("</ul>");
    }
    if let Ok(r) = reader(ui) {
        let day = now_us() - 24 * HOUR_US;
        let totals = stat_rows(
            &r,
            "SELECT sum(queries), sum(blocked), sum(cached) FROM minutes WHERE minute_us >= ?1",
            day,
        );
        if let Some(t) = totals.first() {
            body.push_str(&table(
                "DNS, last 24 hours",
                &["queries", "blocked", "cache or internal"],
                &[t.iter()
                    .map(|v| if v.is_empty() { "0".into() } else { v.clone() })
                    .collect()],
            ));
        }
    }
    (200, page("/", "Overview", &body))
}

fn networks(ui: &Ui) -> Html {
    let s = ui.shared.snapshot.load();
    let day = now_us() - 24 * HOUR_US;
    let mut seen: HashMap<String, (String, String, String)> = HashMap::new();
    if let Ok(r) = reader(ui) {
        for row in stat_rows(
            &r,
            "SELECT network, sum(queries), sum(blocked) FROM minutes WHERE minute_us >= ?1 \
             GROUP BY network",
            day,
        ) {
            if let [n, q, b] = &row[..] {
                seen.entry(n.clone()).or_default().1 = q.clone();
                seen.entry(n.clone()).or_default().2 = b.clone();
            }
        }
        for row in stat_rows(
            &r,
            "SELECT network, count(DISTINCT client) FROM clients WHERE hour_us >= ?1 \
             GROUP BY network",
            day - HOUR_US,
        ) {
            if let [n, c] = &row[..] {
                seen.entry(n.clone()).or_default().0 = c.clone();
            }
        }
    }
    let rows: Vec<Vec<String>> = s
        .networks
        .iter()
        .map(|n| {
            let (clients, queries, blocked) = seen.get(&*n.name).cloned().unwrap_or_default();
            let cidrs: Vec<String> = n.cidrs.iter().map(ToString::to_string).collect();
            let level = match n.query_log {
                LogLevel::Full => "full",
                LogLevel::Anonymous => "anonymous",
                LogLevel::Off => "off",
            };
            vec![
                format!(
                    "<a href=\"/ui/queries?network={}\">{}</a>",
                    url(&n.name),
                    esc(&n.name)
                ),
                esc(&cidrs.join(", ")),
                or_zero(clients),
                or_zero(queries),
                or_zero(blocked),
                level.into(),
                yes(n.internal).into(),
                yes(n.recursion).into(),
            ]
        })
        .collect();
    let mut body = table(
        "Networks: clients seen, queries and blocked queries over the last 24 hours",
        &[
            "network",
            "ranges",
            "clients",
            "queries",
            "blocked",
            "query log",
            "internal names",
            "recursion",
        ],
        &rows,
    );
    body.push_str(&network_denials(ui, &s));
    (200, page("/ui/networks", "Networks", &body))
}

/// Each network's HTTP requests that a service's policy denied over the last 24 hours (from
/// the history's samples and the minute under way): a table with the services (and their
/// rule, the networks they allow), and a plot per network that had any.
fn network_denials(ui: &Ui, s: &Snapshot) -> String {
    let samples = ui.shared.http_history.samples();
    let now = crate::history::now(&ui.shared.proxy);
    let pending = ui.shared.http_history.since_last(&now);
    let end = SystemTime::now();
    let minutes = samples
        .iter()
        .filter_map(|sample| {
            let age = end.duration_since(sample.at).ok()?;
            (age < crate::history::DAY).then_some((age, &sample.services))
        })
        .flat_map(|(age, services)| services.iter().map(move |m| (age, m)))
        .chain(pending.values().map(|m| (Duration::ZERO, m)));
    let by_network = denials(minutes);
    let rule = |service: &str| {
        s.services
            .iter()
            .find(|svc| &*svc.name == service)
            .map_or_else(
                || "no longer served".to_owned(),
                |svc| format!("allow = [{}]", s.networks.names(svc.allow)),
            )
    };
    let rows: Vec<Vec<String>> = by_network
        .iter()
        .map(|(network, d)| {
            let services: Vec<String> = d
                .services
                .iter()
                .map(|(svc, n)| format!("{}: {n} (rule: {})", esc(svc), esc(&rule(svc))))
                .collect();
            vec![esc(network), d.total.to_string(), services.join("<br>")]
        })
        .collect();
    let mut out = table(
        "HTTP requests denied by a service's policy over the last 24 hours, by the client's network",
        &["network", "denied", "by service (its rule)"],
        &rows,
    );
    for (network, d) in &by_network {
        out.push_str(&bars(
            &format!("{network}: requests denied per ten minutes over the last 24 hours"),
            &d.series,
        ));
    }
    out
}

/// One network's denials: per ten minutes (144 bins, oldest first), in all, by service.
#[derive(Debug, Default, PartialEq, Eq)]
struct Denials {
    series: Vec<(u64, u64)>,
    total: u64,
    services: std::collections::BTreeMap<String, u64>,
}

/// The denials of `minutes` (each service's minute with its age) by network, in bins of ten
/// minutes over a day.
fn denials<'a>(
    minutes: impl Iterator<Item = (Duration, &'a crate::history::sample::ServiceMinute)>,
) -> std::collections::BTreeMap<String, Denials> {
    let mut out: std::collections::BTreeMap<String, Denials> = std::collections::BTreeMap::new();
    for (age, m) in minutes {
        let bin = 143usize.saturating_sub(usize::try_from(age.as_secs() / 600).unwrap_or(143));
        for (network, n) in &m.denied {
            let d = out.entry(network.to_string()).or_insert_with(|| Denials {
                series: vec![(0, 0); 144],
                ..Denials::default()
            });
            d.series[bin].0 += n;
            d.series[bin].1 += n;
            d.total += n;
            *d.services.entry(m.name.to_string()).or_default() += n;
        }
    }
    out
}

fn or_zero(s: String) -> String {
    if s.is_empty() { "0".into() } else { s }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn services(ui: &Ui) -> Html {
    let s = ui.shared.snapshot.load();
    let health = ui.shared.proxy.backends();
    let rows: Vec<Vec<String>> = s
        .services
        .iter()
        .map(|svc| {
            let hosts: Vec<String> = svc
                .hosts
                .iter()
                .map(|h| format!("<a href=\"https://{0}/\">{0}</a>", esc(h)))
                .collect();
            let backends: Vec<String> = health
                .iter()
                .filter(|b| b.service == svc.name)
                .map(|b| {
                    let (class, state) = if b.up { ("ok", "up") } else { ("bad", "down") };
                    format!("{} <span class=\"{class}\">{state}</span>", esc(&b.url))
                })
                .collect();
            vec![
                esc(&svc.name),
                hosts.join("<br>"),
                esc(&s.networks.names(svc.allow)),
                backends.join("<br>"),
            ]
        })
        .collect();
    let mut body = table(
        "Services",
        &["service", "hosts", "allowed networks", "backends"],
        &rows,
    );
    body.push_str(&service_history(ui, &s));
    // Refused requests, each with the policy's word on it now (the rule that refused it, or
    // "allowed": then the status came from the backend).
    let refused: Vec<Vec<String>> = ui
        .shared
        .refused
        .newest_first()
        .iter()
        .map(|(at, e)| {
            let us = unix_us(*at);
            let target = format!("{}{}", e.host, e.path);
            let rule =
                crate::explain::explain(&s, e.client, labgate_proxy::decide::Via::Direct, &target)
                    .map_or_else(
                        |err| esc(&err.to_string()),
                        |x| format!("{}: {}", esc(x.policy.outcome), esc(&x.policy.reason)),
                    );
            vec![
                utc(us),
                esc(&e.client.to_string()),
                esc(if e.service.is_empty() {
                    "-"
                } else {
                    &e.service
                }),
                format!(
                    "<a href=\"/ui/explain?client={}&amp;name={}\">{} {}</a>",
                    url(&e.client.to_string()),
                    url(&target),
                    esc(&e.method),
                    esc(&target)
                ),
                e.status.map_or_else(|| "-".to_owned(), |s| s.to_string()),
                rule,
            ]
        })
        .collect();
    body.push_str(&table(
        "Refused requests, newest first (from the access log; the rule is today's policy)",
        &[
            "time (UTC)",
            "client",
            "service",
            "request",
            "status",
            "policy",
        ],
        &refused,
    ));
    (200, page("/ui/services", "Services", &body))
}

/// Each service's last 24 hours: requests per ten minutes (the second colour: 5xx, no
/// response, denied), totals by status class, denials with the rule, and when its backends
/// were not all up.
fn service_history(ui: &Ui, s: &Snapshot) -> String {
    let samples = ui.shared.http_history.samples();
    let now = crate::history::now(&ui.shared.proxy);
    let pending = ui.shared.http_history.since_last(&now);
    let end = SystemTime::now();
    let day = Duration::from_secs(24 * 3600);
    let bin = Duration::from_secs(600);
    let mut out = String::from("<h2>The last 24 hours</h2>");
    for svc in &s.services {
        let mut series = vec![(0u64, 0u64); 144];
        let mut total = ServiceCounts::default();
        let mut down: Vec<String> = Vec::new();
        let mut add = |series: &mut Vec<(u64, u64)>, age: Duration, c: ServiceCounts| {
            let i = 143usize.saturating_sub((age.as_secs() / bin.as_secs()) as usize);
            series[i].0 += c.requests();
            series[i].1 += c.outcomes[4] + c.outcomes[5] + c.denied;
            for (t, n) in total.outcomes.iter_mut().zip(c.outcomes) {
                *t += n;
            }
            total.denied += c.denied;
        };
        for sample in &samples {
            let Ok(age) = end.duration_since(sample.at) else {
                continue;
            };
            if age >= day {
                continue;
            }
            if let Some(m) = sample.services.iter().find(|m| m.name == svc.name) {
                add(&mut series, age, m.counts);
                if m.up < m.backends {
                    let us = unix_us(sample.at);
                    down.push(format!(
                        "{} ({} of {} up)",
                        &utc(us)[11..16],
                        m.up,
                        m.backends
                    ));
                }
            }
        }
        if let Some(m) = pending.get(&svc.name) {
            add(&mut series, Duration::ZERO, m.counts);
        }
        let o = total.outcomes;
        out.push_str(&format!("<h3>{}</h3>", esc(&svc.name)));
        out.push_str(&bars(
            &format!(
                "{}: requests per ten minutes, 5xx, unanswered and denied in the second colour",
                svc.name
            ),
            &series,
        ));
        out.push_str(&table(
            &format!("{}: requests by what the client got", svc.name),
            &["1xx", "2xx", "3xx", "4xx", "5xx", "no response", "denied"],
            &[vec![
                o[0].to_string(),
                o[1].to_string(),
                o[2].to_string(),
                o[3].to_string(),
                o[4].to_string(),
                o[5].to_string(),
                format!(
                    "{} (rule: allow = [{}])",
                    total.denied,
                    esc(&s.networks.names(svc.allow))
                ),
            ]],
        ));
        if !down.is_empty() {
            out.push_str(&format!(
                "<p class=\"bad\">Backends not all up at (UTC): {}</p>",
                esc(&down.join(", "))
            ));
        }
    }
    out
}

fn certificates(ui: &Ui) -> Html {
    let s: Arc<Snapshot> = ui.shared.snapshot.load_full();
    let served = ui.shared.proxy.certs.current();
    let mut hosts: Vec<&str> = s
        .services
        .iter()
        .flat_map(|svc| svc.hosts.iter().map(|h| &**h))
        .collect();
    hosts.sort_unstable();
    hosts.dedup();
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|host| {
            let source = match s.certificate_for(host) {
                Coverage::Spec(i) => {
                    let spec = &s.certificates.specs[i];
                    let kind = match spec.source {
                        CertSource::Acme { .. } => "ACME",
                        CertSource::Files { .. } => "files",
                    };
                    format!("{kind} ({})", esc(&spec.names.join(", ")))
                }
                Coverage::LocalCa => "labgate's local CA".to_owned(),
                Coverage::Uncovered => "<span class=\"bad\">none</span>".to_owned(),
            };
            let leaf = served
                .get(host)
                .and_then(|k| k.cert.first())
                .and_then(|der| labgate_acme::verify::info(der).ok());
            let (issuer, expiry) = leaf.map_or_else(
                || ("-".to_owned(), "-".to_owned()),
                |i| {
                    let expiry = format!("{} UTC", utc(unix_us(i.not_after)));
                    (esc(&i.issuer), expiry)
                },
            );
            vec![esc(host), source, issuer, expiry]
        })
        .collect();
    let mut body = table(
        "Certificates served, by service host",
        &["host", "source", "issuer", "expires"],
        &rows,
    );
    let acme: Vec<Vec<String>> = ui
        .shared
        .certificates()
        .iter()
        .map(|c| {
            let at = |t: Option<SystemTime>| {
                t.map_or_else(|| "-".to_owned(), |t| format!("{} UTC", utc(unix_us(t))))
            };
            vec![
                esc(&c.names.join(", ")),
                esc(&c.provider),
                at(c.not_after),
                at(c.next_renewal),
                c.last_error.as_deref().map_or_else(
                    || "-".to_owned(),
                    |e| format!("<span class=\"bad\">{}</span>", esc(e)),
                ),
            ]
        })
        .collect();
    body.push_str(&table(
        "ACME certificates",
        &["names", "provider", "expires", "next renewal", "last error"],
        &acme,
    ));
    body.push_str(&certificate_timeline(ui, &hosts, &served));
    (200, page("/ui/certificates", "Certificates", &body))
}

/// Events a host's timeline shows.
const TIMELINE_EVENTS: usize = 10;

/// Each host's certificate timeline: the validity of the one served now (now marked), and its
/// last events (issued, renewed, replaced, failed orders), newest first.
fn certificate_timeline(ui: &Ui, hosts: &[&str], served: &labgate_proxy::certs::CertMap) -> String {
    let now = SystemTime::now();
    let mut out = String::from("<h2>Timeline</h2>");
    for host in hosts {
        out.push_str(&format!("<h3>{}</h3>", esc(host)));
        let leaf = served
            .get(host)
            .and_then(|k| k.cert.first())
            .and_then(|der| labgate_acme::verify::info(der).ok());
        if let Some(i) = leaf {
            out.push_str(&validity(
                &format!(
                    "{host}: valid from {} to {} UTC",
                    utc(unix_us(i.not_before)),
                    utc(unix_us(i.not_after))
                ),
                i.not_before,
                i.not_after,
                now,
            ));
        }
        let rows: Vec<Vec<String>> = ui
            .shared
            .http_history
            .certificate_events(host, TIMELINE_EVENTS)
            .iter()
            .map(|e| {
                let cert = e.cert.as_ref().map_or_else(
                    || "-".to_owned(),
                    |c| {
                        format!(
                            "{}, valid {} to {} UTC, SHA-256 {}",
                            esc(&c.issuer),
                            utc(unix_us(c.not_before)),
                            utc(unix_us(c.not_after)),
                            esc(c.fingerprint.get(..16).unwrap_or(&c.fingerprint))
                        )
                    },
                );
                let kind = match e.kind {
                    crate::history::sample::CertEventKind::Failed => {
                        format!("<span class=\"bad\">{}</span>", e.kind.label())
                    }
                    _ => e.kind.label().to_owned(),
                };
                vec![
                    utc(unix_us(e.at)),
                    kind,
                    cert,
                    e.error.as_deref().map_or_else(|| "-".to_owned(), esc),
                ]
            })
            .collect();
        out.push_str(&table(
            &format!("{host}: certificate events, newest first"),
            &["seen (UTC)", "event", "certificate", "error"],
            &rows,
        ));
    }
    out
}

fn dns(ui: &Ui) -> Html {
    let r = match reader(ui) {
        Ok(r) => r,
        Err(e) => return (200, page("/ui/dns", "DNS", &no_log(&e))),
    };
    let now = now_us();
    let day = now - 24 * HOUR_US;
    // 144 bins of ten minutes.
    let bin = 10 * 60_000_000;
    let mut series = vec![(0u64, 0u64); 144];
    for row in stat_rows(
        &r,
        "SELECT minute_us, sum(queries), sum(blocked) FROM minutes WHERE minute_us >= ?1 \
         GROUP BY minute_us",
        day,
    ) {
        if let [m, q, b] = &row[..] {
            let at = m.parse::<i64>().unwrap_or(0);
            let i = usize::try_from((at - day) / bin).unwrap_or(0).min(143);
            series[i].0 += q.parse().unwrap_or(0);
            series[i].1 += b.parse().unwrap_or(0);
        }
    }
    let mut body = bars(
        "Queries per ten minutes over the last 24 hours, blocked ones in the second colour",
        &series,
    );
    let totals = stat_rows(
        &r,
        "SELECT sum(queries), sum(blocked), sum(cached), sum(forwarded), sum(nxdomain), \
         sum(servfail), sum(refused), sum(upstream_us) FROM minutes WHERE minute_us >= ?1",
        day,
    );
    if let Some([q, b, c, f, nx, sf, rf, up]) = totals.first().map(|t| {
        let n: Vec<u64> = t.iter().map(|v| v.parse().unwrap_or(0)).collect();
        [n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7]]
    }) {
        let pct = |a: u64| format!("{:.1} %", a as f64 * 100.0 / q.max(1) as f64);
        let avg = if f > 0 {
            format!("{:.1} ms", up as f64 / f as f64 / 1000.0)
        } else {
            "-".into()
        };
        body.push_str(&table(
            "The last 24 hours",
            &["", ""],
            &[
                vec!["queries".into(), q.to_string()],
                vec!["blocked".into(), pct(b)],
                vec![
                    "answered from the cache or the internal data".into(),
                    pct(c),
                ],
                vec!["forwarded".into(), pct(f)],
                vec!["NXDOMAIN".into(), pct(nx)],
                vec!["SERVFAIL".into(), pct(sf)],
                vec!["REFUSED".into(), pct(rf)],
                vec!["upstream answer time, average".into(), avg],
            ],
        ));
    }
    let linked = |rows: Vec<Vec<String>>, key: &str| -> Vec<Vec<String>> {
        rows.into_iter()
            .map(|mut row| {
                if let Some(first) = row.first_mut() {
                    *first = format!(
                        "<a href=\"/ui/queries?{key}={}\">{}</a>",
                        url(first),
                        esc(first)
                    );
                }
                row
            })
            .collect()
    };
    let top_names = stat_rows(
        &r,
        "SELECT name, sum(queries) AS q, sum(blocked) FROM names WHERE hour_us >= ?1 \
         GROUP BY name ORDER BY q DESC LIMIT 20",
        day - HOUR_US,
    );
    body.push_str(&table(
        "Most asked names, last 24 hours",
        &["name", "queries", "blocked"],
        &linked(top_names, "domain"),
    ));
    let top_blocked = stat_rows(
        &r,
        "SELECT name, sum(blocked) AS b FROM names WHERE hour_us >= ?1 AND blocked > 0 \
         GROUP BY name ORDER BY b DESC LIMIT 20",
        day - HOUR_US,
    );
    body.push_str(&table(
        "Most blocked names, last 24 hours",
        &["name", "blocked"],
        &linked(top_blocked, "domain"),
    ));
    let top_clients = stat_rows(
        &r,
        "SELECT client, network, sum(queries) AS q, sum(blocked) FROM clients \
         WHERE hour_us >= ?1 GROUP BY client ORDER BY q DESC LIMIT 20",
        day - HOUR_US,
    );
    body.push_str(&table(
        "Busiest clients, last 24 hours",
        &["client", "network", "queries", "blocked"],
        &linked(top_clients, "client"),
    ));
    (200, page("/ui/dns", "DNS", &body))
}

fn no_log(e: &str) -> String {
    format!(
        "<p>The query log cannot be read: {}. It is on unless <code>[query_log] enabled = \
         false</code>; the database appears with the first query.</p>",
        esc(e)
    )
}

/// The search filter of a request's parameters (unknown values match nothing).
fn filter(params: &HashMap<String, String>) -> Filter {
    let text = |k: &str| params.get(k).map(|v| v.trim().to_owned());
    let position = |k: &str| {
        let (block, row) = params.get(k)?.split_once(':')?;
        Some(Position {
            block: block.parse().ok()?,
            row: row.parse().ok()?,
        })
    };
    let hours = params
        .get("hours")
        .and_then(|h| h.parse::<i64>().ok())
        .filter(|h| *h > 0);
    Filter {
        client: text("client"),
        network: text("network"),
        domain: text("domain"),
        rcode: text("rcode").map(|r| r.to_ascii_uppercase()),
        source: text("source"),
        since_us: hours.map(|h| now_us() - h * HOUR_US),
        until_us: None,
        before: position("before"),
        after: position("after"),
    }
}

/// The rows of a search as table rows (HTML).
fn found_rows(found: &[Found]) -> String {
    let mut out = String::new();
    for f in found {
        let r = &f.row;
        let client = r.client.as_deref().map_or_else(
            || "<span class=\"mut\">hidden</span>".to_owned(),
            |c| format!("<a href=\"/ui/queries?client={}\">{}</a>", url(c), esc(c)),
        );
        let explain = match &r.client {
            Some(c) => format!(
                "<a href=\"/ui/explain?client={}&amp;name={}\">{}</a>",
                url(c),
                url(&r.name),
                esc(&r.name)
            ),
            None => esc(&r.name),
        };
        let source = match &r.detail {
            Some(d) => format!("{} ({})", esc(r.source), esc(d)),
            None => esc(r.source),
        };
        let rcode_class = if r.rcode == "NOERROR" {
            ""
        } else {
            " class=\"bad\""
        };
        out.push_str(&format!(
            "<tr data-at=\"{}:{}\"><td>{}</td><td>{client}</td><td>{}</td><td>{explain}</td>\
             <td>{}</td><td>{}</td><td{rcode_class}>{}</td><td>{source}</td><td>{}</td>\
             <td class=\"num\">{:.1}</td></tr>",
            f.at.block,
            f.at.row,
            utc(r.time_us),
            esc(r.network.as_deref().unwrap_or("-")),
            esc(&r.qtype),
            esc(r.transport),
            esc(&r.rcode),
            esc(&r.answer),
            r.latency_us as f64 / 1000.0,
        ));
    }
    out
}

fn queries(ui: &Ui, params: &HashMap<String, String>) -> Html {
    let f = filter(params);
    let field = |k: &str, label: &str, hint: &str| {
        format!(
            "<label for=\"{k}\">{label}<input id=\"{k}\" name=\"{k}\" value=\"{}\" \
             placeholder=\"{hint}\"></label>",
            esc(params.get(k).map_or("", String::as_str))
        )
    };
    let mut body = format!(
        "<form method=\"get\" action=\"/ui/queries\" role=\"search\">{}{}{}{}{}{}\
         <button type=\"submit\">Search</button></form>",
        field("client", "Client", "10.0.30.7"),
        field("network", "Network", "guest"),
        field("domain", "Name or domain", "example.com"),
        field("rcode", "Response code", "NXDOMAIN"),
        field("source", "Source", "blocklist"),
        field("hours", "Last hours", "24"),
    );
    let found = match reader(ui).and_then(|r| r.search(&f, PAGE_ROWS).map_err(|e| e.to_string())) {
        Ok(found) => found,
        Err(e) => return (200, page("/ui/queries", "Query log", &(body + &no_log(&e)))),
    };
    body.push_str(
        "<p><label><input type=\"checkbox\" id=\"live\"> Live: add new queries as they \
         come</label></p>",
    );
    body.push_str(
        "<table><caption>Queries, newest first (a name opens its explanation)</caption><thead><tr>\
         <th scope=\"col\">time (UTC)</th><th scope=\"col\">client</th><th scope=\"col\">network</th>\
         <th scope=\"col\">name</th><th scope=\"col\">type</th><th scope=\"col\">transport</th>\
         <th scope=\"col\">rcode</th><th scope=\"col\">source</th><th scope=\"col\">answer</th>\
         <th scope=\"col\">ms</th></tr></thead><tbody id=\"rows\">",
    );
    body.push_str(&found_rows(&found));
    body.push_str("</tbody></table>");
    if found.len() == PAGE_ROWS
        && let Some(last) = found.last()
    {
        let mut next: Vec<String> = params
            .iter()
            .filter(|(k, _)| *k != "before" && *k != "after")
            .map(|(k, v)| format!("{}={}", url(k), url(v)))
            .collect();
        next.sort();
        next.push(format!("before={}:{}", last.at.block, last.at.row));
        body.push_str(&format!(
            "<p><a href=\"/ui/queries?{}\">Older queries</a></p>",
            esc(&next.join("&"))
        ));
    }
    // The live tail: new rows of the same search, fetched every two seconds while checked.
    let mut same: Vec<String> = params
        .iter()
        .filter(|(k, _)| *k != "before" && *k != "after")
        .map(|(k, v)| format!("{}={}", url(k), url(v)))
        .collect();
    same.sort();
    body.push_str(&format!(
        "<script>(function(){{var q={};var box=document.getElementById('live');\
         var rows=document.getElementById('rows');\
         function newest(){{var r=rows.querySelector('tr[data-at]');return r?r.getAttribute('data-at'):'0:0';}}\
         function poll(){{if(!box.checked)return;fetch('/ui/queries/rows?'+q+(q?'&':'')+'after='+newest())\
         .then(function(r){{return r.ok?r.text():'';}}).then(function(t){{if(t)rows.insertAdjacentHTML('afterbegin',t);}})\
         .catch(function(){{}});}}setInterval(poll,2000);}})();</script>",
        serde_json::to_string(&same.join("&")).unwrap_or_else(|_| "\"\"".into())
    ));
    (200, page("/ui/queries", "Query log", &body))
}

/// The rows after `after`, as table rows: what the live tail adds.
fn rows_fragment(ui: &Ui, params: &HashMap<String, String>) -> Html {
    let f = filter(params);
    match reader(ui).and_then(|r| r.search(&f, PAGE_ROWS).map_err(|e| e.to_string())) {
        Ok(found) => (200, found_rows(&found)),
        Err(e) => (503, esc(&e)),
    }
}

fn explain(ui: &Ui, params: &HashMap<String, String>) -> Html {
    let s = ui.shared.snapshot.load();
    let client = params.get("client").and_then(|c| c.parse::<IpAddr>().ok());
    let name = params.get("name").cloned().unwrap_or_default();
    let form = format!(
        "<form method=\"get\" action=\"/ui/explain\"><label for=\"client\">Client address\
         <input id=\"client\" name=\"client\" value=\"{}\" placeholder=\"10.0.30.7\"></label>\
         <label for=\"name\">Name or URL<input id=\"name\" name=\"name\" value=\"{}\" \
         placeholder=\"app.lab.example.com\"></label><button type=\"submit\">Explain</button></form>",
        esc(params.get("client").map_or("", String::as_str)),
        esc(&name)
    );
    let Some(client) = client.filter(|_| !name.is_empty()) else {
        return (200, page("/ui/explain", "Explain", &form));
    };
    let body = match crate::explain::explain(&s, client, labgate_proxy::decide::Via::Direct, &name)
    {
        Ok(e) => {
            let step = |what: &str, d: &crate::explain::Decision| {
                vec![
                    esc(what),
                    esc(d.outcome),
                    format!(
                        "{}{}",
                        esc(&d.reason),
                        if d.details.is_empty() {
                            String::new()
                        } else {
                            format!(
                                "<br><span class=\"mut\">{}</span>",
                                esc(&d.details.join("; "))
                            )
                        }
                    ),
                ]
            };
            let network = e.network.as_ref().map_or_else(
                || "in no network: refused".to_owned(),
                |n| format!("{} (by {})", n.name, n.prefix),
            );
            let rows = vec![
                vec!["network".into(), String::new(), esc(&network)],
                step("DNS", &e.dns),
                step("route", &e.route),
                step("policy", &e.policy),
                step("Cloudflare Access", &e.access),
                step("certificate", &e.certificate),
            ];
            table(
                &format!("How labgate treats {} for {client}", e.host),
                &["step", "outcome", "why"],
                &rows,
            )
        }
        Err(e) => format!("<p class=\"bad\">{}</p>", esc(&e.to_string())),
    };
    (200, page("/ui/explain", "Explain", &(form + &body)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::sample::ServiceMinute;

    fn minute(service: &str, denied: &[(&str, u64)]) -> ServiceMinute {
        ServiceMinute {
            name: Arc::from(service),
            counts: ServiceCounts::default(),
            denied: denied.iter().map(|(n, c)| (Arc::from(*n), *c)).collect(),
            up: 1,
            backends: 1,
        }
    }

    #[test]
    fn denials_add_up_by_network_service_and_ten_minutes() {
        let app = minute("app", &[("guest", 2), ("iot", 1)]);
        let nas = minute("nas", &[("guest", 3)]);
        let quiet = minute("quiet", &[]);
        let m = |mins: u64| Duration::from_secs(mins * 60);
        let d = denials(
            [
                (m(0), &app),
                (m(5), &nas),
                (m(25), &app),
                (m(0), &quiet),
                // Older than a day: the oldest bin.
                (m(2000), &nas),
            ]
            .into_iter(),
        );
        assert_eq!(d.keys().collect::<Vec<_>>(), ["guest", "iot"]);
        let guest = &d["guest"];
        assert_eq!(guest.total, 10);
        assert_eq!(guest.services["app"], 4);
        assert_eq!(guest.services["nas"], 6);
        assert_eq!(guest.series[143], (5, 5), "the last ten minutes");
        assert_eq!(guest.series[141], (2, 2), "25 minutes ago");
        assert_eq!(guest.series[0], (3, 3));
        assert_eq!(d["iot"].total, 2);
    }
}
