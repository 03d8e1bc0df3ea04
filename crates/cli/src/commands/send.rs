//! `keyturn send`: one Key Vault-shaped event (or a keyturn test event) posted to a Functions host's Event
//! Grid webhook, as Event Grid would post it: a JSON array, `aeg-event-type: Notification`.
//!
//! The event is built with `events` (the same types the handlers decode), so what is sent is what Key
//! Vault would send.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::ValueEnum;
use keyturn_events::{Event, KeyVaultEventType, Lifecycle, ObjectKind, Payload, Schema, VaultObject};
use serde_json::{Value, json};

use crate::dev_state::{self, DevState};
use crate::exit::{CommandFailure, Status};
use crate::output::{Output, Tone};

/// The Functions host's Event Grid extension endpoint.
pub const WEBHOOK_PATH: &str = "/runtime/webhooks/eventgrid";

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

pub async fn run(args: Args, output: &Output) -> Result<Status, CommandFailure> {
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
        Ok(Status::Ok)
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
    CommandFailure { status: Status::Usage, message: message.into(), hint: None }
}

/// What Event Grid adds to each event it dead-letters: the story of the failed deliveries, not part of the
/// event, so a replay leaves them out. The sweep's dead-letter reader owns the list.
pub use keyturn_sweep::dead_letters::DEAD_LETTER_FIELDS;

/// The events of `path` (one event or an array), each less the dead-letter fields and checked to decode as
/// the handlers decode it. Any problem is a usage error (exit 2) naming the file, the event and the JSON path,
/// and then nothing is sent.
pub fn read_event_file(path: &Path) -> Result<Vec<Value>, CommandFailure> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|error| usage(format!("--event-file {shown}: {error}")))?;
    let value: Value =
        serde_json::from_str(&text).map_err(|error| usage(format!("--event-file {shown}: not JSON ({error})")))?;
    let events = match value {
        Value::Array(events) => events,
        one @ Value::Object(_) => vec![one],
        _ => return Err(usage(format!("--event-file {shown}: expected an event object or an array of events"))),
    };
    if events.is_empty() {
        return Err(usage(format!("--event-file {shown}: the array holds no events")));
    }
    events
        .into_iter()
        .enumerate()
        .map(|(index, mut event)| {
            if let Value::Object(object) = &mut event {
                // Key casing varies in the wild; the decoder is tolerant of it, so this is too.
                object.retain(|key, _| !DEAD_LETTER_FIELDS.iter().any(|f| f.eq_ignore_ascii_case(key.trim())));
            }
            match Event::from_value(event.clone()) {
                Ok(_) => Ok(event),
                Err(error) => Err(usage(format!(
                    "--event-file {shown}: event [{index}] is not valid at {}: {}",
                    error.path(),
                    error.message()
                ))
                .hint("nothing was sent; fix or remove that event and run again")),
            }
        })
        .collect()
}

/// The event `args` describe.
pub fn build_event(args: &Args, now: DateTime<Utc>) -> Result<Event, CommandFailure> {
    // clap's "input" group and `requires` on the event make both present when an event is built.
    let (Some(event), Some(vault)) = (args.event, &args.vault) else {
        return Err(usage("name an event and its --vault"));
    };
    let (kind, name) = match (&args.secret, &args.key, &args.certificate) {
        (Some(name), None, None) => (ObjectKind::Secret, name),
        (None, Some(name), None) => (ObjectKind::Key, name),
        (None, None, Some(name)) => (ObjectKind::Certificate, name),
        // clap's "object" group makes exactly one of them present.
        _ => return Err(CommandFailure::failed("name exactly one of --secret, --key, --certificate")),
    };
    let version = args.version.clone().unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let expires = match &args.expires {
        Some(text) => Some(parse_when(text, now).map_err(|message| CommandFailure {
            status: Status::Usage,
            message: format!("--expires {text:?}: {message}"),
            hint: None,
        })?),
        None => event.default_expiry(now),
    };
    let object =
        VaultObject::new(vault, kind, name, Some(&version), None, expires).map_err(|error| CommandFailure {
            status: Status::Usage,
            message: format!("the event would not be valid: {error}"),
            hint: Some("vault and object names are those Key Vault allows (letters, digits, -)".to_owned()),
        })?;
    let schema = match args.schema {
        SchemaArg::Eventgrid => Schema::EventGrid,
        SchemaArg::Cloudevents => Schema::CloudEvents,
    };
    let id = uuid::Uuid::new_v4().to_string();
    let source = format!(
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/keyturn/providers/Microsoft.KeyVault/vaults/{}",
        vault
    );
    let lifecycle = match event {
        EventKind::NearExpiry => Lifecycle::NearExpiry,
        EventKind::Expired => Lifecycle::Expired,
        EventKind::NewVersion => Lifecycle::NewVersionCreated,
        EventKind::TestEvent => return Ok(Event::test_event(&id, &source, object, Some(now), schema)),
    };
    let event_type = KeyVaultEventType::for_object(kind, lifecycle)
        .ok_or_else(|| CommandFailure::failed(format!("Key Vault has no {lifecycle:?} event for a {kind}")))?;
    Ok(Event {
        id,
        subject: name.clone(),
        source,
        time: Some(now),
        schema,
        payload: Payload::KeyVault(keyturn_events::KeyVaultEvent { event_type, object }),
    })
}

/// An absolute time (RFC 3339) or one relative to `now` (`30d`, `-2h`, `15m`, `90s`).
pub fn parse_when(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let (sign, rest) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text.strip_prefix('+').unwrap_or(text)),
    };
    let split = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    let (number, unit) = rest.split_at(split);
    let number: i64 = number.parse().map_err(|_| "expected RFC 3339 (2026-02-01T00:00:00Z) or 30d, -2h, 15m, 90s")?;
    let delta = match unit {
        "d" => chrono::Duration::try_days(number),
        "h" => chrono::Duration::try_hours(number),
        "m" => chrono::Duration::try_minutes(number),
        "s" => chrono::Duration::try_seconds(number),
        _ => None,
    }
    .ok_or_else(|| format!("unit '{unit}' is not one of d, h, m, s (or the number is too large)"))?;
    now.checked_add_signed(delta * sign).ok_or_else(|| "that time is out of range".to_owned())
}

/// The webhook URL for `function` at `--to`.
pub fn endpoint(args: &Args, function: &str) -> Result<url::Url, CommandFailure> {
    let base = if args.to == "dev" {
        let path = args.state_file.clone().unwrap_or_else(dev_state::default_path);
        let state = DevState::read(&path)?;
        state.functions.get(function).cloned().ok_or_else(|| {
            let running: Vec<&str> = state.functions.keys().map(String::as_str).collect();
            CommandFailure::setup(format!(
                "the running `keyturn dev` serves no function '{function}' (it serves: {})",
                if running.is_empty() { "none".to_owned() } else { running.join(", ") }
            ))
            .hint(format!("build it (`cargo build -p {function}`) and restart `keyturn dev`, or pass --function"))
        })?
    } else {
        args.to.clone()
    };
    webhook_url(&base, function, args.code.as_deref())
}

/// `<base>/runtime/webhooks/eventgrid?functionName=<function>[&code=<key>]`; a URL already holding the
/// webhook path keeps its query and gets what it lacks.
pub fn webhook_url(base: &str, function: &str, code: Option<&str>) -> Result<url::Url, CommandFailure> {
    let mut url = url::Url::parse(base).map_err(|error| CommandFailure {
        status: Status::Usage,
        message: format!("--to {:?} is not a URL ({error})", redact_text(base)),
        hint: Some("e.g. --to http://localhost:7071, --to https://<app>.azurewebsites.net, or --to dev".to_owned()),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(CommandFailure {
            status: Status::Usage,
            message: format!("--to {}: only http and https URLs are supported", redact(&url)),
            hint: None,
        });
    }
    if !url.path().trim_end_matches('/').ends_with(WEBHOOK_PATH) {
        let path = format!("{}{WEBHOOK_PATH}", url.path().trim_end_matches('/'));
        url.set_path(&path);
    }
    let present: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
    {
        let mut query = url.query_pairs_mut();
        if !present.iter().any(|k| k == "functionName") {
            query.append_pair("functionName", function);
        }
        if let Some(code) = code
            && !present.iter().any(|k| k == "code")
        {
            query.append_pair("code", code);
        }
    }
    Ok(url)
}

/// Query parameters that carry credentials: a function key (`code`), a SAS signature (`sig`).
const CREDENTIAL_PARAMETERS: [&str; 2] = ["code", "sig"];

/// The URL without its `code` or `sig` (a system key must not end up in terminals' scrollback or CI logs).
pub fn redact(url: &url::Url) -> url::Url {
    let mut shown = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            (
                k.to_string(),
                if CREDENTIAL_PARAMETERS.contains(&k.as_ref()) { "****".to_owned() } else { v.into_owned() },
            )
        })
        .collect();
    if !pairs.is_empty() {
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown
}

/// [`redact`] for text that did not parse as a URL: every `code=`/`sig=` value up to the next `&`, `#` or
/// whitespace is replaced.
fn redact_text(text: &str) -> String {
    let mut shown = text.to_owned();
    for parameter in CREDENTIAL_PARAMETERS {
        let needle = format!("{parameter}=");
        let mut from = 0;
        while let Some(found) = shown[from..].find(&needle) {
            let start = from + found + needle.len();
            let end = shown[start..].find(['&', '#', ' ', '"']).map_or(shown.len(), |n| start + n);
            shown.replace_range(start..end, "****");
            from = start + 4;
        }
    }
    shown
}

/// What the endpoint answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub reason: String,
    pub body: String,
}

/// Posts `batch` as Event Grid delivers: a JSON array of events with `aeg-event-type: Notification`.
pub async fn post(url: &url::Url, batch: &[Value], timeout: Duration) -> Result<Answer, CommandFailure> {
    let loopback = url.host_str().is_some_and(|h| h == "localhost" || h == "127.0.0.1" || h == "[::1]");
    let mut client = reqwest::Client::builder().timeout(timeout).connect_timeout(Duration::from_secs(10));
    if loopback {
        // A proxy configured for the internet has no business seeing calls to this machine.
        client = client.no_proxy();
    }
    let client =
        client.build().map_err(|error| CommandFailure::failed(format!("cannot build the HTTP client: {error}")))?;
    let response = client
        .post(url.clone())
        .header("Content-Type", "application/json")
        .header("aeg-event-type", "Notification")
        .header("aeg-delivery-count", "0")
        .header("aeg-data-version", "1")
        .header("aeg-metadata-version", "1")
        .json(batch)
        .send()
        .await
        .map_err(|error| unreachable_or_failed(url, error))?;
    let status = response.status();
    let body = response.text().await.map_err(|error| unreachable_or_failed(url, error))?;
    Ok(Answer { status: status.as_u16(), reason: status.canonical_reason().unwrap_or("").to_owned(), body })
}

fn unreachable_or_failed(url: &url::Url, error: reqwest::Error) -> CommandFailure {
    // reqwest's message names the URL, `code` included: the origin (and the redacted URL) say where.
    let error = error.without_url();
    let shown = redact(url);
    let origin = shown.origin().ascii_serialization();
    if error.is_connect() {
        CommandFailure::unreachable(format!(
            "nothing is listening at {origin}: is `func start` / `keyturn dev` running?"
        ))
        .hint(format!("check the URL given to --to ({error})"))
    } else if error.is_timeout() {
        CommandFailure::unreachable(format!("{origin} did not answer in time"))
            .hint("raise --timeout if the handler is slow, or check that the host is up")
    } else {
        CommandFailure::failed(format!("posting to {shown} failed: {error}"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn typed_outcomes_are_shown_from_their_fields() {
        let body = serde_json::json!({
            "results": ["done: rotated kv-one/db from v1 to v2", "retry: vault answered 503"],
            "outcomes": [
                {"status": "done", "action": "rotated", "versionBefore": "v1", "versionAfter": "v2",
                 "object": {"vault": "kv-one", "kind": "secret", "name": "db", "version": "v1"},
                 "message": "rotated kv-one/db from v1 to v2"},
                null
            ]
        });
        assert_eq!(
            super::outcome_lines(&body.to_string()).unwrap(),
            ["done rotated secret kv-one/db v1 → v2: rotated kv-one/db from v1 to v2", "retry: vault answered 503"]
        );
        assert_eq!(super::outcome_lines("accepted"), None);
        assert_eq!(super::outcome_lines(r#"{"results": []}"#), None);
    }

    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: Args,
    }

    fn args(line: &[&str]) -> Args {
        Wrapper::try_parse_from(std::iter::once("send").chain(line.iter().copied())).unwrap().args
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600, 0).unwrap()
    }

    #[test]
    fn the_event_is_what_key_vault_would_send_and_decodes_as_such() {
        let a = args(&["near-expiry", "--vault", "kv-one", "--secret", "db-password", "--version", "v1"]);
        let event = build_event(&a, now()).unwrap();
        let decoded = Event::from_value(event.to_value()).unwrap();
        let kv = decoded.key_vault().unwrap();
        assert_eq!(kv.event_type, KeyVaultEventType::SecretNearExpiry);
        assert_eq!(kv.object.id().as_str(), "https://kv-one.vault.azure.net/secrets/db-password/v1");
        assert_eq!(kv.object.expires(), Some(now() + chrono::Duration::days(30)));
        assert_eq!(decoded.subject, "db-password");

        let a = args(&[
            "expired",
            "--vault",
            "kv-one",
            "--certificate",
            "tls",
            "--schema",
            "cloudevents",
            "--expires",
            "-2d",
        ]);
        let event = build_event(&a, now()).unwrap();
        assert_eq!(event.to_value()["specversion"], "1.0");
        assert_eq!(event.event_type(), "Microsoft.KeyVault.CertificateExpired");
        assert_eq!(event.key_vault().unwrap().object.expires(), Some(now() - chrono::Duration::days(2)));

        let a = args(&["test-event", "--vault", "kv-one", "--secret", "keyturn-canary"]);
        let event = build_event(&a, now()).unwrap();
        assert_eq!(event.event_type(), keyturn_events::TEST_EVENT_TYPE);
        assert_eq!(event.test_object().unwrap().unwrap().name(), "keyturn-canary");
    }

    #[test]
    fn exactly_one_object_is_required() {
        let parse = |line: &[&str]| Wrapper::try_parse_from(std::iter::once("send").chain(line.iter().copied()));
        assert!(parse(&["expired", "--vault", "kv"]).is_err());
        assert!(parse(&["expired", "--vault", "kv", "--secret", "a", "--key", "b"]).is_err());
        let bad = build_event(&args(&["expired", "--vault", "kv", "--secret", "a/b"]), now()).unwrap_err();
        assert_eq!(bad.status, Status::Usage, "{bad}");
    }

    #[test]
    fn an_event_file_excludes_the_flags_that_build_an_event_and_needs_a_function() {
        let parse = |line: &[&str]| Wrapper::try_parse_from(std::iter::once("send").chain(line.iter().copied()));
        let a = parse(&["--event-file", "dead.json", "--function", "near-expiry", "--code", "k"]).unwrap().args;
        assert_eq!(a.event_file.as_deref(), Some(Path::new("dead.json")));
        assert!(parse(&["--event-file", "dead.json"]).is_err(), "--function is required");
        for extra in [&["expired"][..], &["--vault", "kv"], &["--secret", "s"], &["--schema", "cloudevents"]] {
            let mut line = vec!["--event-file", "dead.json", "--function", "f"];
            line.extend_from_slice(extra);
            let error = parse(&line).unwrap_err();
            assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict, "{extra:?}: {error}");
        }
        assert!(parse(&["--function", "f"]).is_err(), "an event or a file is required");
        assert!(parse(&["expired", "--secret", "s"]).is_err(), "a built event needs --vault");
    }

    const DEAD_LETTER: &str = r#"[{
        "id": "e-1", "subject": "db-password", "eventType": "Microsoft.KeyVault.SecretNearExpiry",
        "topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-one",
        "eventTime": "2026-01-01T00:00:00Z", "dataVersion": "1", "metadataVersion": "1",
        "data": {"Id": "https://kv-one.vault.azure.net/secrets/db-password/v1", "VaultName": "kv-one",
                 "ObjectType": "Secret", "ObjectName": "db-password", "Version": "v1", "NBF": null, "EXP": 1767225600},
        "deadLetterReason": "MaxDeliveryAttemptsExceeded", "deliveryAttempts": 30,
        "lastDeliveryOutcome": "Probation", "lastHttpStatusCode": 500,
        "publishTime": "2026-01-01T00:00:01Z", "LastDeliveryAttemptTime": "2026-01-02T00:00:00Z"
    }]"#;

    #[test]
    fn a_dead_letter_file_loses_its_dead_letter_fields_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.json");
        std::fs::write(&path, DEAD_LETTER).unwrap();
        let batch = read_event_file(&path).unwrap();
        assert_eq!(batch.len(), 1);
        let mut expected: Value = serde_json::from_str(DEAD_LETTER).unwrap();
        let object = expected[0].as_object_mut().unwrap();
        for field in DEAD_LETTER_FIELDS.iter().copied().chain(["LastDeliveryAttemptTime"]) {
            object.remove(field);
        }
        assert_eq!(batch[0], expected[0], "every dead-letter field gone, nothing else touched");

        // One event rather than an array is a batch of one.
        std::fs::write(&path, serde_json::to_string(&expected[0]).unwrap()).unwrap();
        assert_eq!(read_event_file(&path).unwrap(), vec![expected[0].clone()]);
    }

    #[test]
    fn a_file_with_a_bad_event_is_a_usage_error_naming_the_event_and_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.json");
        let mut batch: Value = serde_json::from_str(DEAD_LETTER).unwrap();
        let mut bad = batch[0].clone();
        bad["data"]["EXP"] = json!("next tuesday");
        batch.as_array_mut().unwrap().push(bad);
        std::fs::write(&path, batch.to_string()).unwrap();
        let error = read_event_file(&path).unwrap_err();
        assert_eq!(error.status, Status::Usage);
        assert!(error.message.contains("dead.json") && error.message.contains("event [1]"), "{error}");
        assert!(error.message.contains("data.EXP"), "{error}");

        for (text, says) in [("{", "not JSON"), ("[]", "no events"), ("42", "expected an event object")] {
            std::fs::write(&path, text).unwrap();
            let error = read_event_file(&path).unwrap_err();
            assert!(error.status == Status::Usage && error.message.contains(says), "{text}: {error}");
        }
        let error = read_event_file(&dir.path().join("absent.json")).unwrap_err();
        assert!(error.status == Status::Usage && error.message.contains("absent.json"), "{error}");
    }

    #[test]
    fn webhook_urls_get_the_path_the_function_and_the_code() {
        let url = webhook_url("http://localhost:7071", "near-expiry", None).unwrap();
        assert_eq!(url.as_str(), "http://localhost:7071/runtime/webhooks/eventgrid?functionName=near-expiry");
        let url = webhook_url("https://app.azurewebsites.net/", "expired", Some("s3cr3t")).unwrap();
        assert_eq!(
            url.as_str(),
            "https://app.azurewebsites.net/runtime/webhooks/eventgrid?functionName=expired&code=s3cr3t"
        );
        assert_eq!(
            redact(&url).as_str(),
            "https://app.azurewebsites.net/runtime/webhooks/eventgrid?functionName=expired&code=****"
        );
        let full = "http://127.0.0.1:9/runtime/webhooks/eventgrid?functionName=test-event";
        assert_eq!(webhook_url(full, "near-expiry", None).unwrap().as_str(), full, "an explicit function wins");
        assert_eq!(webhook_url("localhost:7071", "x", None).unwrap_err().status, Status::Usage);
        assert!(webhook_url("not a url", "x", None).is_err());
    }

    #[tokio::test]
    async fn no_failure_prints_the_code_or_a_signature() {
        let shown =
            |failure: &CommandFailure| format!("{} {}", failure.message, failure.hint.clone().unwrap_or_default());
        // Unreachable: reqwest's own message would carry the full URL.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url =
            webhook_url(&format!("http://127.0.0.1:{closed}/?sig=sas-sig-42"), "expired", Some("fn-key-42")).unwrap();
        let failure = post(&url, &[], Duration::from_secs(5)).await.unwrap_err();
        // Malformed and wrong-scheme --to values that hold a code.
        let malformed =
            webhook_url("http://[::1/runtime/webhooks/eventgrid?code=fn-key-42&x=1", "x", None).unwrap_err();
        let ftp = webhook_url("ftp://host/?code=fn-key-42&sig=sas-sig-42", "x", None).unwrap_err();
        for failure in [failure, malformed, ftp] {
            let text = shown(&failure);
            assert!(!text.contains("fn-key-42") && !text.contains("sas-sig-42"), "{text}");
        }
        assert_eq!(redact_text("a?code=k1&sig=s2 b code=k3"), "a?code=****&sig=**** b code=****");
    }

    #[test]
    fn times_are_absolute_or_relative() {
        assert_eq!(parse_when("2026-02-01T00:00:00Z", now()).unwrap().timestamp(), 1_769_904_000);
        assert_eq!(parse_when("30d", now()).unwrap(), now() + chrono::Duration::days(30));
        assert_eq!(parse_when("-2h", now()).unwrap(), now() - chrono::Duration::hours(2));
        assert_eq!(parse_when("+15m", now()).unwrap(), now() + chrono::Duration::minutes(15));
        assert!(parse_when("soon", now()).is_err());
        assert!(parse_when("3w", now()).unwrap_err().contains("unit 'w'"));
    }
}
