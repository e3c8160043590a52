//! The pages' HTML: escaping, the layout every page shares (inline CSS, no asset from
//! anywhere: a homelab must work offline), tables and the small inline SVG plots.

use std::fmt::Write as _;

/// `s` with `&`, `<`, `>`, `"` and `'` escaped, for text and attribute values alike.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` for a URL's query string.
pub(crate) fn url(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The pages of the navigation: path and title.
pub(crate) const PAGES: [(&str, &str); 6] = [
    ("/", "Overview"),
    ("/ui/networks", "Networks"),
    ("/ui/services", "Services"),
    ("/ui/certificates", "Certificates"),
    ("/ui/dns", "DNS"),
    ("/ui/queries", "Query log"),
];

const CSS: &str = "
:root{color-scheme:light dark;--fg:#1a1a1a;--bg:#fff;--mut:#555;--line:#ccc;--acc:#0b5cad;--bad:#a4000f;--ok:#0a6b2a;--bar:#0b5cad;--bar2:#a4000f}
@media (prefers-color-scheme:dark){:root{--fg:#eee;--bg:#151515;--mut:#bbb;--line:#444;--acc:#7db7ff;--bad:#ff8a8a;--ok:#7fdc9b;--bar:#7db7ff;--bar2:#ff8a8a}}
body{font:16px/1.45 system-ui,sans-serif;color:var(--fg);background:var(--bg);margin:0}
header{border-bottom:1px solid var(--line);padding:.5rem 1rem}
nav ul{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:.25rem 1rem}
a{color:var(--acc)}a:focus,button:focus,input:focus,select:focus{outline:3px solid var(--acc);outline-offset:2px}
nav a[aria-current=page]{font-weight:700;text-decoration:none}
main{padding:0 1rem 2rem;max-width:72rem}
table{border-collapse:collapse;margin:.5rem 0 1.5rem;display:block;overflow-x:auto;max-width:100%}
th,td{border-bottom:1px solid var(--line);padding:.3rem .6rem;text-align:left;vertical-align:top}
caption{text-align:left;font-weight:700;padding:.3rem 0}
.num{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:var(--bad)}.ok{color:var(--ok)}.mut{color:var(--mut)}
form{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:end;margin:1rem 0}
label{display:flex;flex-direction:column;font-size:.9rem}
input,select,button{font:inherit;padding:.25rem .4rem}
svg{max-width:100%;height:auto}
";

/// A whole page: `title`, the navigation with `path` marked, and `body`.
pub(crate) fn page(path: &str, title: &str, body: &str) -> String {
    let mut nav = String::new();
    for (href, name) in PAGES {
        let current = if href == path {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(nav, "<li><a href=\"{href}\"{current}>{name}</a></li>");
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} · labgate</title><style>{CSS}</style></head><body>\
         <header><nav aria-label=\"labgate\"><ul>{nav}</ul></nav></header>\
         <main><h1>{}</h1>{body}</main></body></html>",
        esc(title),
        esc(title)
    )
}

/// A table: a caption, header cells and rows of cells (already HTML). Cells starting with a
/// digit are right-aligned.
pub(crate) fn table(caption: &str, head: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("<table><caption>{}</caption><thead><tr>", esc(caption));
    for h in head {
        let _ = write!(out, "<th scope=\"col\">{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    if rows.is_empty() {
        let _ = write!(
            out,
            "<tr><td colspan=\"{}\" class=\"mut\">nothing yet</td></tr>",
            head.len()
        );
    }
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let class = if cell.starts_with(|c: char| c.is_ascii_digit()) {
                " class=\"num\""
            } else {
                ""
            };
            let _ = write!(out, "<td{class}>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// A bar plot of `series` (two values per bin: total, and the part of it drawn in the second
/// colour), with a title read by screen readers and the largest value as its scale.
pub(crate) fn bars(title: &str, series: &[(u64, u64)]) -> String {
    let (w, h) = (600.0_f64, 120.0_f64);
    let max = series.iter().map(|s| s.0).max().unwrap_or(0).max(1) as f64;
    let n = series.len().max(1) as f64;
    let bw = w / n;
    let mut out = format!(
        "<figure><svg role=\"img\" aria-labelledby=\"t{id}\" viewBox=\"0 0 {w} {h}\" \
         width=\"{w}\" height=\"{h}\"><title id=\"t{id}\">{}</title>",
        esc(title),
        id = title.len()
    );
    for (i, &(total, part)) in series.iter().enumerate() {
        let x = i as f64 * bw;
        let th = total as f64 / max * h;
        let ph = part as f64 / max * h;
        let _ = write!(
            out,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{th:.1}\" fill=\"var(--bar)\"/>\
             <rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{ph:.1}\" fill=\"var(--bar2)\"/>",
            h - th,
            (bw - 1.0).max(0.5),
            h - ph,
            (bw - 1.0).max(0.5),
        );
    }
    let _ = write!(
        out,
        "</svg><figcaption>{} (highest bar: {})</figcaption></figure>",
        esc(title),
        max as u64
    );
    out
}

/// A certificate's validity as a bar from `from` to `to`, the part gone by in the second
/// colour and `now` marked by a line (at an end when it is outside).
pub(crate) fn validity(
    title: &str,
    from: std::time::SystemTime,
    to: std::time::SystemTime,
    now: std::time::SystemTime,
) -> String {
    let (w, h) = (600.0_f64, 20.0_f64);
    let span = to.duration_since(from).map_or(0.0, |d| d.as_secs_f64());
    let gone = now.duration_since(from).map_or(0.0, |d| d.as_secs_f64());
    let x = if span > 0.0 {
        (gone / span).clamp(0.0, 1.0) * w
    } else {
        w
    };
    let mut out = format!(
        "<figure><svg role=\"img\" aria-labelledby=\"v{id}\" viewBox=\"0 0 {w} {h}\" \
         width=\"{w}\" height=\"{h}\"><title id=\"v{id}\">{}</title>",
        esc(title),
        id = title.len()
    );
    let _ = write!(
        out,
        "<rect x=\"0\" y=\"4\" width=\"{w}\" height=\"12\" fill=\"var(--bar)\"/>\
         <rect x=\"0\" y=\"4\" width=\"{x:.1}\" height=\"12\" fill=\"var(--bar2)\"/>\
         <rect x=\"{:.1}\" y=\"0\" width=\"2\" height=\"{h}\" fill=\"var(--fg)\"/>\
         </svg><figcaption>{} (now at {:.0} %)</figcaption></figure>",
        (x - 1.0).clamp(0.0, w - 2.0),
        esc(title),
        x / w * 100.0
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_everywhere_it_goes() {
        assert_eq!(
            esc("<script>\"a\"&'b'</script>"),
            "&lt;script&gt;&quot;a&quot;&amp;&#39;b&#39;&lt;/script&gt;"
        );
        let page = page("/", "<x>", "");
        assert!(page.contains("<h1>&lt;x&gt;</h1>") && !page.contains("<x>"));
        let t = table("c<", &["h&"], &[vec!["1".into()]]);
        assert!(t.contains("c&lt;") && t.contains("h&amp;") && t.contains("class=\"num\""));
        assert_eq!(url("a b&c=d"), "a+b%26c%3Dd");
    }

    #[test]
    fn bars_scale_to_the_highest_and_say_what_they_show() {
        let svg = bars("queries", &[(10, 5), (0, 0), (20, 0)]);
        assert!(svg.contains("<title id="));
        assert!(svg.contains("height=\"120.0\""), "{svg}");
        assert!(svg.contains("highest bar: 20"));
        // Empty series: no division by zero.
        assert!(bars("none", &[]).contains("highest bar: 1"));
    }

    #[test]
    fn validity_marks_now_inside_the_span_and_at_its_ends_outside() {
        use std::time::{Duration, UNIX_EPOCH};
        let from = UNIX_EPOCH + Duration::from_secs(1000);
        let to = from + Duration::from_secs(100);
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        let cases = [
            (at(1025), "now at 25 %"),
            (at(500), "now at 0 %"),
            (at(5000), "now at 100 %"),
        ];
        for (now, want) in cases {
            let svg = validity("app <x>", from, to, now);
            assert!(svg.contains(want), "{want}: {svg}");
            assert!(
                svg.contains("app &lt;x&gt;") && !svg.contains("<x>"),
                "{svg}"
            );
        }
        assert!(validity("t", from, from, at(0)).contains("now at 100 %"));
    }
}
