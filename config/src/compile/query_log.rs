//! `[query_log]`: on or off, retention, clients never logged.

use super::dns::report;
use super::{Ctx, Explain, single, values};
use crate::raw::RawFile;
use crate::settings::QueryLogSettings;
use crate::source::FileId;

/// The smallest `max_size`: a few blocks of rows, so retention by size has room to work.
const MIN_SIZE: u64 = 16 << 20;

pub(super) fn compile(cx: &mut Ctx<'_>, files: &[(FileId, RawFile)]) -> QueryLogSettings {
    let mut settings = QueryLogSettings::default();
    let Some((file, raw)) = single(cx, files, "query_log", |f| f.query_log.as_ref()) else {
        return settings;
    };
    settings.enabled = raw.enabled.unwrap_or(true);
    if let Some(v) = &raw.max_age
        && let Some(d) = report(
            cx,
            file,
            v,
            "query_log.max_age",
            values::duration(v.get_ref()),
        )
    {
        settings.max_age = d;
    }
    if let Some(v) = &raw.max_size
        && let Some(n) = report(cx, file, v, "query_log.max_size", values::size(v.get_ref()))
    {
        if n < MIN_SIZE {
            cx.error(
                file,
                v.span(),
                "query_log.max_size",
                format!("`{}` is too small for the query log", v.get_ref()),
            )
            .expected("at least `16M`");
        } else {
            settings.max_size = n;
        }
    }
    for (i, c) in raw.exclude_clients.iter().enumerate() {
        let text = c.get_ref();
        let parsed = text
            .parse::<ipnet::IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(n) => settings.exclude_clients.push(n.trunc()),
            Err(_) => {
                cx.error(
                    file,
                    c.span(),
                    format!("query_log.exclude_clients[{i}]"),
                    format!("`{text}` is not an address or range"),
                )
                .expected("an address or range like `10.0.20.7` or `fd00:20::/64`");
            }
        }
    }
    settings
}
