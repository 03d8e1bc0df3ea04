//! `keyturn check --html`: the survey as one self-contained HTML page people open in a browser.
//!
//! The page is three files kept readable on their own: `report.html` (the skeleton), `report.css` and
//! `report.js`, included at build time. The data is the `--json` rows plus the report's header (when, which
//! vaults, the default thresholds), injected as JSON in a `<script type="application/json">` element that the
//! script reads and renders with DOM calls that never parse markup (`textContent`, `createElementNS`).
//!
//! Names and tags are written by whoever may write an object, so the page treats them as hostile:
//! - the JSON is escaped so that no `<`, `>` or `&` appears in it literally: a tag value holding
//!   `</script><script>...` cannot end the data element;
//! - the script never builds markup from data;
//! - a Content-Security-Policy allows only the page's own inline style and script, by their SHA-256: nothing
//!   else runs, and nothing is fetched (no network, no CDN), even if the first two failed.
//!
//! No secret value is in the rows (`check` never reads one), so none can reach the page.

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use keyturn_rotation::plan::NEAR_EXPIRY_LEAD_DAYS;
use keyturn_sweep::Thresholds;
use serde_json::{Value, json};

use super::{Row, row_json};

const TEMPLATE: &str = include_str!("report.html");
const STYLE: &str = include_str!("report.css");
const SCRIPT: &str = include_str!("report.js");

/// Everything the page shows.
#[derive(Debug)]
pub struct Report<'a> {
    pub rows: &'a [Row],
    /// The vaults checked, in the order asked for.
    pub vaults: &'a [String],
    /// The deployment's default notice thresholds.
    pub thresholds: &'a Thresholds,
    pub now: DateTime<Utc>,
}

/// The report's data: its header and the `--json` rows.
pub fn data(report: &Report<'_>) -> Value {
    json!({
        "generatedAt": report.now.to_rfc3339(),
        "vaults": report.vaults,
        "defaultThresholds": report.thresholds.days(),
        "nearExpiryLeadDays": NEAR_EXPIRY_LEAD_DAYS,
        "objects": report.rows.iter().map(|row| row_json(row, report.now)).collect::<Vec<_>>(),
    })
}

/// The whole page.
pub fn render(report: &Report<'_>) -> String {
    let title = format!("keyturn coverage: {}", report.vaults.join(", "));
    let csp = format!(
        "default-src 'none'; style-src '{}'; script-src '{}'; img-src data:; base-uri 'none'; form-action 'none'",
        sha256_source(STYLE),
        sha256_source(SCRIPT)
    );
    fill(TEMPLATE, |name| match name {
        "csp" => Some(escape_html(&csp)),
        "title" => Some(escape_html(&title)),
        "style" => Some(STYLE.to_owned()),
        "script" => Some(SCRIPT.to_owned()),
        "data" => Some(script_safe_json(&data(report))),
        _ => None,
    })
}

/// A CSP source for inline content: `sha256-<base64 of its SHA-256>`.
fn sha256_source(content: &str) -> String {
    let hash = digest(&SHA256, content.as_bytes());
    format!("sha256-{}", base64::engine::general_purpose::STANDARD.encode(hash.as_ref()))
}

/// The template with each `{{name}}` replaced by `value(name)`, in one pass: an inserted value is never scanned
/// again, so data that happens to contain `{{script}}` stays text. An unknown name is left as it is.
fn fill(template: &str, value: impl Fn(&str) -> Option<String>) -> String {
    let mut page = String::with_capacity(template.len() + STYLE.len() + SCRIPT.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let Some(length) = rest[start + 2..].find("}}") else { break };
        let name = &rest[start + 2..start + 2 + length];
        page.push_str(&rest[..start]);
        match value(name) {
            Some(text) => page.push_str(&text),
            None => page.push_str(&rest[start..start + 2 + length + 2]),
        }
        rest = &rest[start + 2 + length + 2..];
    }
    page.push_str(rest);
    page
}

/// JSON that can sit inside a `<script>` element: `<`, `>`, `&` and the two JavaScript line separators are
/// written as `\u` escapes, which JSON.parse reads back as the same characters.
fn script_safe_json(value: &Value) -> String {
    replace_chars(&value.to_string(), |c| match c {
        '<' => Some("\\u003c"),
        '>' => Some("\\u003e"),
        '&' => Some("\\u0026"),
        '\u{2028}' => Some("\\u2028"),
        '\u{2029}' => Some("\\u2029"),
        _ => None,
    })
}

/// Text for an HTML element or a double-quoted attribute (the template quotes every attribute with `"`).
fn escape_html(text: &str) -> String {
    replace_chars(text, |c| match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        '"' => Some("&quot;"),
        _ => None,
    })
}

/// `text` with each character `replacement` names replaced.
fn replace_chars(text: &str, replacement: impl Fn(char) -> Option<&'static str>) -> String {
    let mut replaced = String::with_capacity(text.len());
    for c in text.chars() {
        match replacement(c) {
            Some(with) => replaced.push_str(with),
            None => replaced.push(c),
        }
    }
    replaced
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::check::{Facts, row};
    use keyturn_events::ObjectKind;
    use keyturn_rotation::plan::Native;
    use keyturn_vault::Listed;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600, 0).unwrap()
    }

    fn hostile_row() -> Row {
        let facts = Facts {
            kind: ObjectKind::Secret,
            listed: Listed {
                name: "db".into(),
                version: Some("0123456789abcdef".into()),
                enabled: true,
                created: None,
                not_before: None,
                expires: Some(now() + chrono::Duration::days(12)),
                tags: [(
                    "<script>alert(1)</script>".to_owned(),
                    "</script><script>alert(2)</script>&{{script}}".to_owned(),
                )]
                .into_iter()
                .collect(),
                managed: false,
            },
            native: Native::Unread,
        };
        row("kv-one", &facts, &["generated"], &Thresholds::default(), now())
    }

    fn page(rows: &[Row]) -> String {
        render(&Report { rows, vaults: &["kv-one".to_owned()], thresholds: &Thresholds::default(), now: now() })
    }

    #[test]
    fn data_from_tags_cannot_end_the_data_element_or_reach_the_template() {
        let mut row = hostile_row();
        row.policy = "</script><script>alert(3)</script>\u{2028}".into();
        let page = page(&[row]);
        // The page's only `</script>` are its own two elements' ends.
        assert_eq!(page.matches("</script>").count(), 2, "{page}");
        assert!(page.contains("\\u003c/script\\u003e\\u003cscript\\u003ealert(3)"));
        assert!(page.contains("\\u2028"));
        // The placeholders were filled once: the script appears once, not again where a value named it.
        assert_eq!(page.matches(SCRIPT.trim()).count(), 1);
        // What the escapes stand for is the same JSON.
        let start = page.find(r#"<script type="application/json" id="report-data">"#).unwrap();
        let json = &page[start..];
        let json = &json[json.find('>').unwrap() + 1..json.find("</script>").unwrap()];
        let parsed: Value = serde_json::from_str(json).unwrap();
        assert_eq!(parsed["objects"][0]["policy"], "</script><script>alert(3)</script>\u{2028}");
    }

    #[test]
    fn the_policy_allows_only_the_pages_own_style_and_script_and_no_network() {
        let page = page(&[hostile_row()]);
        let csp = sha256_source(SCRIPT);
        assert!(page.contains(&format!("script-src '{csp}'")), "{page}");
        assert!(page.contains("default-src 'none'"));
        assert!(!page.contains("{{"), "every placeholder is filled");
        // (The SVG namespace, `http://www.w3.org/2000/svg`, is a name, not a request.)
        for remote in ["https://", "src=", "href=", "fetch(", "XMLHttpRequest", "@import", "url("] {
            assert!(!STYLE.contains(remote) && !SCRIPT.contains(remote) && !TEMPLATE.contains(remote), "{remote}");
        }
        // The hash is of exactly what the page holds between the script tags.
        let body = &page[page.find("<script>").unwrap() + "<script>".len()..];
        assert_eq!(&body[..body.find("</script>").unwrap()], SCRIPT);
    }

    #[test]
    fn the_data_holds_every_row_and_the_header() {
        let rows = [hostile_row(), hostile_row()];
        let data = data(&Report {
            rows: &rows,
            vaults: &["kv-one".to_owned()],
            thresholds: &Thresholds::default(),
            now: now(),
        });
        assert_eq!(data["objects"].as_array().map(Vec::len), Some(2));
        assert_eq!(data["defaultThresholds"], json!([60, 30, 14, 7, 3, 1, 0]));
        assert_eq!(data["nearExpiryLeadDays"], 30);
        assert_eq!(data["generatedAt"], "2026-01-01T00:00:00+00:00");
        assert_eq!(data["objects"][0]["outcome"], "notify");
    }

    #[test]
    fn fill_replaces_known_names_once_and_leaves_the_rest() {
        let filled = fill("a {{x}} b {{y}} c {{x", |name| (name == "x").then(|| "{{y}}".to_owned()));
        assert_eq!(filled, "a {{y}} b {{y}} c {{x");
        assert_eq!(escape_html(r#"<a href="x">&'"#), "&lt;a href=&quot;x&quot;&gt;&amp;'");
    }
}
