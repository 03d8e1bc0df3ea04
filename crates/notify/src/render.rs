//! One [`Notification`] or one sweep [`Digest`] message in each channel's format: Slack Block Kit, a Teams
//! Adaptive Card in the workflow webhook envelope, and an email's subject with text and HTML bodies. (The
//! generic webhook sends [`Notification::to_json`] or [`Digest::to_json`].) Every renderer shows the same
//! facts, so channels never disagree.

use serde_json::{Value, json};

use crate::digest::Digest;
use crate::message::{Notification, Severity};

/// Slack's limits: header text 150 characters, section text 3000, a field 2000, ten fields per section.
const SLACK_HEADER_MAX: usize = 150;
const SLACK_TEXT_MAX: usize = 3000;
const SLACK_FIELD_MAX: usize = 2000;

const PORTAL_LINK_TITLE: &str = "Open in the Azure portal";
const FOOTER: &str = "Sent by keyturn. Notifications carry metadata only, never a secret value.";

fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Slack mrkdwn treats `&`, `<` and `>` as control characters; everything else is literal enough.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn slack_emoji(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => ":rotating_light:",
        Severity::Warning => ":warning:",
        Severity::Info => ":information_source:",
    }
}

/// A Slack incoming-webhook message: a header, the summary, the facts as fields, and a context line with the
/// portal link. `text` is the fallback shown in notifications.
pub(crate) fn slack(n: &Notification) -> Value {
    let fields: Vec<Value> = n
        .facts()
        .into_iter()
        .take(10)
        .map(|(label, value)| {
            json!({"type": "mrkdwn", "text": truncate(&format!("*{label}*\n{}", slack_escape(&value)), SLACK_FIELD_MAX)})
        })
        .collect();
    let mut context = vec![format!("keyturn · {} · event {}", n.severity, slack_escape(&n.event_id))];
    if let Some(link) = &n.portal_link {
        context.insert(0, format!("<{}|{PORTAL_LINK_TITLE}>", slack_escape(link.as_str())));
    }
    json!({
        "text": n.title(),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "emoji": true,
                "text": truncate(&format!("{} {}", slack_emoji(n.severity), n.headline()), SLACK_HEADER_MAX)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": truncate(&slack_escape(&n.action.summary()), SLACK_TEXT_MAX)}},
            {"type": "section", "fields": fields},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context.join(" · ")}]},
        ],
    })
}

/// A Teams workflow webhook message: the envelope the "When a Teams webhook request is received" trigger
/// expects, carrying one Adaptive Card of version 1.4 (which every Teams client renders; nothing here needs more).
pub(crate) fn teams(n: &Notification) -> Value {
    let color = teams_color(n.severity);
    let facts: Vec<Value> =
        n.facts().into_iter().map(|(title, value)| json!({"title": title, "value": value})).collect();
    let actions: Vec<Value> = n
        .portal_link
        .iter()
        .map(|link| json!({"type": "Action.OpenUrl", "title": PORTAL_LINK_TITLE, "url": link.as_str()}))
        .collect();
    let body = vec![
        json!({"type": "TextBlock", "text": n.title(), "weight": "Bolder", "size": "Medium", "color": color,
               "wrap": true, "style": "heading"}),
        json!({"type": "TextBlock", "text": n.action.summary(), "wrap": true}),
        json!({"type": "FactSet", "facts": facts}),
        json!({"type": "TextBlock", "text": FOOTER, "wrap": true, "isSubtle": true, "size": "Small"}),
    ];
    teams_envelope(body, actions)
}

fn teams_color(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "Attention",
        Severity::Warning => "Warning",
        Severity::Info => "Accent",
    }
}

/// The workflow webhook's envelope around one Adaptive Card with `body` and `actions`.
fn teams_envelope(body: Vec<Value>, actions: Vec<Value>) -> Value {
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "msteams": {"width": "Full"},
                "body": body,
                "actions": actions,
            },
        }],
    })
}

/// An email's parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Email {
    pub(crate) subject: String,
    pub(crate) text: String,
    pub(crate) html: String,
}

pub(crate) fn email(n: &Notification) -> Email {
    let facts = n.facts();
    let width = facts.iter().map(|(label, _)| label.len()).max().unwrap_or(0) + 1;
    let mut text = format!("{}\n\n{}\n\n", n.headline(), n.action.summary());
    for (label, value) in &facts {
        text.push_str(&format!("{:<width$} {value}\n", format!("{label}:")));
    }
    if let Some(link) = &n.portal_link {
        text.push_str(&format!("\n{PORTAL_LINK_TITLE}: {link}\n"));
    }
    text.push_str(&format!("\n-- \n{FOOTER}\n"));

    let rows: String = facts
        .iter()
        .map(|(label, value)| {
            format!(
                "<tr><th align=\"left\" style=\"padding:2px 12px 2px 0\">{}</th><td>{}</td></tr>",
                html_escape(label),
                html_escape(value)
            )
        })
        .collect();
    let link = n
        .portal_link
        .as_ref()
        .map(|l| format!("<p><a href=\"{}\">{PORTAL_LINK_TITLE}</a></p>", html_escape(l.as_str())))
        .unwrap_or_default();
    let html = format!(
        "<!DOCTYPE html><html><body><h2>{}</h2><p>{}</p><table>{rows}</table>{link}<p style=\"color:#666\">{}</p></body></html>",
        html_escape(&n.headline()),
        html_escape(&n.action.summary()),
        html_escape(FOOTER)
    );
    Email { subject: n.title(), text, html }
}

/// A digest's groups as lines of text: each group's heading, then one line per object.
fn digest_lines(d: &Digest, heading: impl Fn(&str) -> String, item: impl Fn(&str) -> String) -> Vec<String> {
    let mut lines = Vec::new();
    for group in &d.groups {
        lines.push(heading(&group.heading()));
        lines.extend(group.notices.iter().map(|n| item(&n.line())));
    }
    lines
}

/// Lines joined into chunks of at most `max_chars` each, cut only between lines (a line longer than that is
/// cut itself): Slack's section text limit.
fn chunks(lines: &[String], max_chars: usize) -> Vec<String> {
    let mut chunks: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in lines {
        let line = truncate(line, max_chars);
        if !current.is_empty() && current.chars().count() + 1 + line.chars().count() > max_chars {
            chunks.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(&line);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// A digest message for Slack: a header, then the groups as sections (each under Slack's 3,000 characters;
/// 100 objects fit in a handful of blocks, far below Slack's 50), then a context line.
pub(crate) fn slack_digest(d: &Digest) -> Value {
    let lines = digest_lines(d, |h| format!("*{}*", slack_escape(h)), |l| format!("• {}", slack_escape(l)));
    let mut blocks = vec![json!({"type": "header", "text": {"type": "plain_text", "emoji": true,
        "text": truncate(&format!("{} {}", slack_emoji(d.severity()), d.title()), SLACK_HEADER_MAX)}})];
    blocks.extend(
        chunks(&lines, SLACK_TEXT_MAX)
            .into_iter()
            .map(|text| json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})),
    );
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn",
        "text": format!("keyturn sweep · {} · digest {}", d.severity(), slack_escape(&d.id))}]}));
    json!({"text": d.title(), "blocks": blocks})
}

/// A digest message for Teams: one Adaptive Card, a heading and a list per group.
pub(crate) fn teams_digest(d: &Digest) -> Value {
    let mut body = vec![json!({"type": "TextBlock", "text": d.title(), "weight": "Bolder", "size": "Medium",
        "color": teams_color(d.severity()), "wrap": true, "style": "heading"})];
    for group in &d.groups {
        body.push(json!({"type": "TextBlock", "text": group.heading(), "weight": "Bolder", "wrap": true,
            "spacing": "Medium"}));
        let list: Vec<String> = group.notices.iter().map(|n| format!("- {}", n.line())).collect();
        body.push(json!({"type": "TextBlock", "text": list.join("\r"), "wrap": true, "spacing": "Small"}));
    }
    body.push(json!({"type": "TextBlock", "text": FOOTER, "wrap": true, "isSubtle": true, "size": "Small"}));
    teams_envelope(body, Vec::new())
}

/// A digest message as an email: a subject, a text body and an HTML body with one table per group.
pub(crate) fn email_digest(d: &Digest) -> Email {
    let mut text = format!("{}\n\n", d.title());
    text.push_str(&digest_lines(d, |h| format!("\n{h}"), |l| format!("  - {l}")).join("\n"));
    text.push_str(&format!("\n\n-- \n{FOOTER}\n"));
    let mut html = format!("<!DOCTYPE html><html><body><h2>{}</h2>", html_escape(&d.title()));
    for group in &d.groups {
        html.push_str(&format!("<h3>{}</h3><ul>", html_escape(&group.heading())));
        for notice in &group.notices {
            html.push_str(&format!("<li>{}</li>", html_escape(&notice.line())));
        }
        html.push_str("</ul>");
    }
    html.push_str(&format!("<p style=\"color:#666\">{}</p></body></html>", html_escape(FOOTER)));
    Email { subject: d.title(), text, html }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Action;
    use keyturn_events::{KeyVaultEventType, ObjectKind, VaultObject};

    fn notification(name: &str, summary: &str) -> Notification {
        let object = VaultObject::new("kv1", ObjectKind::Secret, name, Some("v1"), None, None).unwrap();
        let mut n = Notification::for_object(
            "evt-<1>",
            KeyVaultEventType::SecretExpired,
            &object,
            Action::NotRotated { reason: summary.into() },
        );
        n.portal_link = Some("https://portal.azure.com/#@/resource/subscriptions/s/x/secrets".parse().unwrap());
        n
    }

    #[test]
    fn slack_gets_a_block_kit_message_with_escaped_text_and_a_fallback() {
        let v = slack(&notification("db", "a <b> & c"));
        assert_eq!(v["text"], "[keyturn CRITICAL] Secret db has expired (vault kv1)");
        let blocks = v["blocks"].as_array().unwrap();
        let types: Vec<_> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["header", "section", "section", "context"]);
        assert_eq!(blocks[0]["text"]["text"], ":rotating_light: Secret db has expired");
        assert_eq!(blocks[1]["text"]["text"], "keyturn did not rotate it: a &lt;b&gt; &amp; c");
        assert_eq!(blocks[2]["fields"][0]["text"], "*Vault*\nkv1");
        let context = blocks[3]["elements"][0]["text"].as_str().unwrap();
        assert!(
            context.starts_with("<https://portal.azure.com/#@/resource/subscriptions/s/x/secrets|Open"),
            "{context}"
        );
        assert!(context.ends_with("event evt-&lt;1&gt;"), "{context}");
    }

    #[test]
    fn slack_text_is_cut_to_its_limits() {
        let long = "x".repeat(200);
        let v = slack(&notification(&long[..127], &"y".repeat(5000)));
        assert_eq!(v["blocks"][0]["text"]["text"].as_str().unwrap().chars().count(), SLACK_HEADER_MAX);
        assert_eq!(v["blocks"][1]["text"]["text"].as_str().unwrap().chars().count(), SLACK_TEXT_MAX);
    }

    #[test]
    fn teams_gets_an_adaptive_card_in_the_workflow_envelope() {
        let v = teams(&notification("db", "no policy"));
        assert_eq!(v["type"], "message");
        let attachment = &v["attachments"][0];
        assert_eq!(attachment["contentType"], "application/vnd.microsoft.card.adaptive");
        let card = &attachment["content"];
        assert_eq!((card["type"].as_str(), card["version"].as_str()), (Some("AdaptiveCard"), Some("1.4")));
        assert_eq!(card["body"][0]["color"], "Attention");
        assert_eq!(card["body"][2]["facts"][1], json!({"title": "Object", "value": "Secret db"}));
        assert_eq!(card["actions"][0]["type"], "Action.OpenUrl");
    }

    #[test]
    fn email_has_a_subject_a_text_body_and_an_escaped_html_body() {
        let e = email(&notification("db", "x < y"));
        assert_eq!(e.subject, "[keyturn CRITICAL] Secret db has expired (vault kv1)");
        assert!(e.text.starts_with("Secret db has expired\n\nkeyturn did not rotate it: x < y\n\n"), "{}", e.text);
        assert!(e.text.contains("Vault:    kv1\n"), "{}", e.text);
        assert!(e.text.contains("Open in the Azure portal: https://portal.azure.com/"), "{}", e.text);
        assert!(e.html.contains("<p>keyturn did not rotate it: x &lt; y</p>"), "{}", e.html);
        assert!(e.html.contains("<td>evt-&lt;1&gt;</td>"), "{}", e.html);
    }
    fn digest_of(count: usize) -> Vec<Digest> {
        use crate::digest::{Notice, digest};
        let expires = chrono::DateTime::parse_from_rfc3339("2027-03-01T12:00:00Z").unwrap().with_timezone(&chrono::Utc);
        let notices = (0..count)
            .map(|i| Notice {
                object: keyturn_events::ObjectRef::new("kv1", ObjectKind::Secret, &format!("app-{i:03}"), "0f264706aa")
                    .unwrap(),
                expires,
                threshold: 14,
                severity: Severity::Warning,
                plan: "manual action due: <no policy> & more".into(),
                section: crate::digest::Section::Threshold,
            })
            .collect();
        digest(notices, crate::digest::MAX_OBJECTS_PER_MESSAGE, "sweep-1-c1")
    }

    #[test]
    fn a_digest_renders_every_object_on_every_channel_within_their_limits() {
        let messages = digest_of(250);
        assert_eq!(messages.len(), 3);
        let first = &messages[0];
        let slack = slack_digest(first);
        let blocks = slack["blocks"].as_array().unwrap();
        assert!(blocks.len() <= 50, "{} blocks", blocks.len());
        assert!(blocks.iter().all(|b| b["text"]["text"].as_str().is_none_or(|t| t.chars().count() <= SLACK_TEXT_MAX)));
        let text: String = blocks.iter().filter_map(|b| b["text"]["text"].as_str()).collect::<Vec<_>>().join("\n");
        assert_eq!(text.matches("• app-").count(), 100);
        assert!(text.contains("*kv1 · Secrets · 14 days before expiry (100 of 250)*"), "{text}");
        assert!(text.contains("&lt;no policy&gt; &amp; more"), "escaped: {text}");
        assert_eq!(slack["text"], "[keyturn WARNING] 250 objects reached an expiry threshold (part 1 of 3)");

        let card = &teams_digest(&messages[2])["attachments"][0]["content"];
        let card_text = card["body"].to_string();
        assert_eq!(card_text.matches("- app-").count(), 50);
        assert!(card_text.contains("(50 of 250, continued)"), "{card_text}");

        let email = email_digest(&messages[1]);
        assert_eq!(email.subject, "[keyturn WARNING] 250 objects reached an expiry threshold (part 2 of 3)");
        assert_eq!(email.text.matches("  - app-").count(), 100);
        assert_eq!(email.html.matches("<li>app-").count(), 100);
        assert!(email.html.contains("&lt;no policy&gt;"), "escaped");
    }
}
