//! `keyturn send`: one Key Vault-shaped event (or a keyturn test event) posted to a Functions host's Event
//! Grid webhook, as Event Grid would post it: a JSON array, `aeg-event-type: Notification`.
//!
//! The event is built with `events` (the same types the handlers decode), so what is sent is what Key
//! Vault would send.
//!
//! Modules: [`event`] builds the event or reads it from a file; [`delivery`] names the webhook URL and posts.

mod delivery;
mod event;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::ValueEnum;
use serde_json::{Value, json};

pub use delivery::{Answer, WEBHOOK_PATH, endpoint, post, redact, webhook_url};
pub use event::{build_event, parse_when, read_event_file};

use crate::exit::{CommandFailure, ExitStatus};
use crate::output::{Output, Tone};

const AFTER_HELP: &str = "\
Examples:
  # to a local `func start` (port 7071), the function named after the event
  keyturn send near-expiry --vault kv-one --secret db-password --to http://localhost:7071
  # to the stack `keyturn dev` is running
  keyturn send expired --vault kv-one --key signing --to dev
  # to a deployed function app, with the Event Grid extension's system key
  keyturn send test-event --vault kv-prod --secret keyturn-canary \\
      --to https://kt-test-event.azurewebsites.net --code \"$EVENTGRID_KEY\"
  # CloudEvents 1.0 instead of the Event Grid schema, a chosen version and expiry
  keyturn send near-expiry --vault kv-one --certificate api-tls --version 3f2a \\
      --expires 2026-02-01T00:00:00Z --schema cloudevents --to dev
  # replay a dead-lettered blob (its events, without Event Grid's dead-letter fields) as they were
  keyturn send --event-file dead.json --function near-expiry \\
      --to https://kt-near-expiry.azurewebsites.net --code \"$EVENTGRID_KEY\"";

/// Which event to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EventKind {
    /// Microsoft.KeyVault.*NearExpiry (the current version expires within 30 days).
    NearExpiry,
    /// Microsoft.KeyVault.*Expired.
    Expired,
    /// Microsoft.KeyVault.*NewVersionCreated.
    NewVersion,
    /// A keyturn test event (Keyturn.TestEvent), for the test-event handler.
    TestEvent,
}

impl EventKind {
    /// The handler whose function receives it unless --function says otherwise.
    pub fn function(self) -> &'static str {
        match self {
            Self::NearExpiry => "near-expiry",
            Self::Expired => "expired",
            Self::NewVersion => "new-version",
            Self::TestEvent => "test-event",
        }
    }

    /// The expiry an event of this kind plausibly carries when none is given.
    fn default_expiry(self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::NearExpiry => Some(now + chrono::Duration::days(30)),
            Self::Expired => Some(now),
            Self::NewVersion | Self::TestEvent => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaArg {
    /// Event Grid's own schema (eventType, eventTime, topic).
    Eventgrid,
    /// CloudEvents 1.0 (type, time, source, specversion).
    Cloudevents,
}

#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
// Either an event built from flags or the events of a file: exactly one of the two, so the usage line reads
// `<EVENT|--event-file <PATH>>`. The flags that build an event belong to "build", which a file excludes.
#[command(group = clap::ArgGroup::new("input").required(true).args(["event", "event_file"]))]
#[command(group = clap::ArgGroup::new("object").args(["secret", "key", "certificate"]))]
#[command(group = clap::ArgGroup::new("build").multiple(true)
    .args(["vault", "secret", "key", "certificate", "version", "expires", "schema"]))]
pub struct Args {
    /// The event to send.
    #[arg(value_enum, requires = "vault", requires = "object")]
    pub event: Option<EventKind>,

    /// Send the events of this JSON file instead (one event or an array, e.g. a dead-letter blob), as they
    /// are, less Event Grid's dead-letter fields. Excludes the event and the flags that build one; needs
    /// --function.
    #[arg(long, value_name = "PATH", conflicts_with = "build", requires = "function")]
    pub event_file: Option<PathBuf>,

    /// The vault the event comes from (its name, as in kv-one.vault.azure.net).
    #[arg(long, value_name = "NAME")]
    pub vault: Option<String>,

    /// The object is this secret.
    #[arg(long, value_name = "NAME")]
    pub secret: Option<String>,

    /// The object is this key.
    #[arg(long, value_name = "NAME")]
    pub key: Option<String>,

    /// The object is this certificate.
    #[arg(long, value_name = "NAME")]
    pub certificate: Option<String>,

    /// The version the event names [default: a random one, as a new version would have].
    #[arg(long, value_name = "VERSION")]
    pub version: Option<String>,

    /// The object's expiry in the event (RFC 3339, or relative: 30d, -2h, 15m)
    /// [default: in 30 days for near-expiry, now for expired, none otherwise].
    #[arg(long, value_name = "WHEN", allow_hyphen_values = true)]
    pub expires: Option<String>,

    /// Where to post: a Functions host's base URL (http://localhost:7071, https://<app>.azurewebsites.net), its
    /// full webhook URL, or `dev` for the stack `keyturn dev` is running.
    #[arg(long, value_name = "URL|dev", default_value = "http://localhost:7071")]
    pub to: String,

    /// The function to invoke [default: the handler for the event; required with --event-file].
    #[arg(long, value_name = "NAME")]
    pub function: Option<String>,

    /// The Event Grid extension's system key (`eventgrid_extension`), needed by a deployed function app.
    #[arg(long, value_name = "KEY")]
    pub code: Option<String>,

    /// The delivery schema.
    #[arg(long, value_enum, default_value_t = SchemaArg::Eventgrid)]
    pub schema: SchemaArg,

    /// The dev state file to read with `--to dev`.
    #[arg(long, value_name = "PATH")]
    pub state_file: Option<PathBuf>,

    /// Seconds to wait for the answer (a handler may take a while).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub timeout: u64,

    /// Print the event, the URL and the answer as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: Args, output: &Output) -> Result<ExitStatus, CommandFailure> {
    let (batch, function, what) = match (&args.event_file, args.event) {
        (Some(path), _) => {
            let batch = read_event_file(path)?;
            // clap's `requires` makes --function present with --event-file.
            let function = args.function.clone().ok_or_else(|| usage("--event-file needs --function <NAME>"))?;
            let what = format!("{} event(s) from {}", batch.len(), path.display());
            (batch, function, what)
        }
        (None, Some(kind)) => {
            let event = build_event(&args, Utc::now())?;
            let function = args.function.clone().unwrap_or_else(|| kind.function().to_owned());
            let what = format!("{} about {}", event.event_type(), event.subject);
            (vec![event.to_value()], function, what)
        }
        // clap's "input" group makes exactly one of them present.
        (None, None) => return Err(usage("name an event to build, or --event-file <PATH>")),
    };
    let url = endpoint(&args, &function)?;
    if !args.json {
        output.status(&format!("posting {what} to {}", redact(&url)));
    }
    let answer = post(&url, &batch, Duration::from_secs(args.timeout)).await?;
    let ok = (200..300).contains(&answer.status);
    if args.json {
        let mut shown = json!({
            "url": redact(&url).to_string(),
            "status": answer.status,
            "body": answer.body,
        });
        // A built event is one; a file's are the batch as posted.
        shown[if args.event_file.is_some() { "events" } else { "event" }] = match batch.as_slice() {
            [one] if args.event_file.is_none() => one.clone(),
            all => Value::Array(all.to_vec()),
        };
        output.json(&shown);
    } else {
        let status = format!("{} {}", answer.status, answer.reason);
        let ids: Vec<&str> = batch.iter().filter_map(|e| e.get("id").and_then(Value::as_str)).collect();
        // A handler's typed outcomes, when the endpoint answers with them (an AWS Lambda function URL), read
        // field by field; anything else is shown as it came.
        let shown = match outcome_lines(&answer.body) {
            Some(lines) => lines.iter().map(|line| format!("\n{line}")).collect::<String>(),
            None if answer.body.trim().is_empty() => String::new(),
            None => format!("\n{}", answer.body.trim_end()),
        };
        output.line(&format!(
            "{} {}{shown}",
            output.paint(if ok { Tone::Good } else { Tone::Bad }, &status),
            output.paint(Tone::Dim, &format!("event {}", ids.join(", "))),
        ));
    }
    if ok {
        Ok(ExitStatus::Ok)
    } else {
        Err(CommandFailure::failed(format!("{} answered {} {}", redact(&url), answer.status, answer.reason)).hint(
            match answer.status {
                404 => format!("no function named '{function}' there: check --function and the app's functions"),
                401 | 403 => "a deployed app needs --code <eventgrid_extension system key>".to_owned(),
                500 => "the handler failed the invocation: its log says why (Event Grid would retry)".to_owned(),
                _ => "see the answer above".to_owned(),
            },
        ))
    }
}

/// One line per typed outcome of an answer that carries them (`{"outcomes": [...]}`, docs/handlers.md), from
/// the outcome's fields: `done rotated secret kv-one/db v1 → v2: <message>`; `None` for any other answer. An
/// event to be retried has no outcome; its line is the answer's `results` entry.
pub fn outcome_lines(body: &str) -> Option<Vec<String>> {
    let answer: Value = serde_json::from_str(body).ok()?;
    let outcomes = answer.get("outcomes")?.as_array()?;
    let text = |value: &Value, field: &str| value.get(field).and_then(Value::as_str).map(str::to_owned);
    let lines = outcomes
        .iter()
        .enumerate()
        .map(|(index, outcome)| {
            if outcome.is_null() {
                let result = answer["results"].get(index).and_then(Value::as_str).unwrap_or("retry");
                return result.to_owned();
            }
            let mut line = text(outcome, "status").unwrap_or_default();
            if let Some(action) = text(outcome, "action") {
                line.push_str(&format!(" {action}"));
            }
            if let Some(object) = outcome.get("object") {
                let [kind, vault, name] =
                    ["kind", "vault", "name"].map(|field| text(object, field).unwrap_or_default());
                line.push_str(&format!(" {kind} {vault}/{name}"));
            }
            match (text(outcome, "versionBefore"), text(outcome, "versionAfter")) {
                (Some(before), Some(after)) => line.push_str(&format!(" {before} → {after}")),
                (Some(before), None) => line.push_str(&format!(" {before}")),
                _ => {}
            }
            format!("{line}: {}", text(outcome, "message").unwrap_or_default())
        })
        .collect();
    Some(lines)
}

fn usage(message: impl Into<String>) -> CommandFailure {
    CommandFailure { status: ExitStatus::Usage, message: message.into(), hint: None }
}
