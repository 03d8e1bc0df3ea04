//! One [`Notification`] in each channel's format: Slack Block Kit, a Teams Adaptive Card in the workflow
//! webhook envelope, and an email's subject with text and HTML bodies. (The generic webhook sends
//! [`Notification::to_json`].) Every renderer shows the same facts, so channels never disagree.

use serde_json::{Value, json};

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
    let color = match n.severity {
        Severity::Critical => "Attention",
        Severity::Warning => "Warning",
        Severity::Info => "Accent",
    };
    let facts: Vec<Value> =
        n.facts().into_iter().map(|(title, value)| json!({"title": title, "value": value})).collect();
    let actions: Vec<Value> = n
        .portal_link
        .iter()
        .map(|link| json!({"type": "Action.OpenUrl", "title": PORTAL_LINK_TITLE, "url": link.as_str()}))
        .collect();
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
                "body": [
                    {"type": "TextBlock", "text": n.title(), "weight": "Bolder", "size": "Medium", "color": color,
                     "wrap": true, "style": "heading"},
                    {"type": "TextBlock", "text": n.action.summary(), "wrap": true},
                    {"type": "FactSet", "facts": facts},
                    {"type": "TextBlock", "text": FOOTER, "wrap": true, "isSubtle": true, "size": "Small"},
                ],
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
}
