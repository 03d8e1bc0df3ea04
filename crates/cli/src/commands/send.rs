//! `keyturn send`: one Key Vault-shaped event (or a keyturn test event) posted to a Functions host's Event
//! Grid webhook, as Event Grid would post it: a JSON array, `aeg-event-type: Notification`.
//!
//! The event is built with `events` (the same types the handlers decode), so what is sent is what Key
//! Vault would send.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::ValueEnum;
use events::{Event, KeyVaultEventType, Lifecycle, ObjectKind, Payload, Schema, VaultObject};
use serde_json::{Value, json};

use crate::dev_state::{self, DevState};
use crate::exit::{Failure, Status};
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
      --expires 2026-02-01T00:00:00Z --schema cloudevents --to dev";

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
#[command(group = clap::ArgGroup::new("object").required(true).args(["secret", "key", "certificate"]))]
pub struct Args {
    /// The event to send.
    #[arg(value_enum)]
    pub event: EventKind,

    /// The vault the event comes from (its name, as in kv-one.vault.azure.net).
    #[arg(long, value_name = "NAME")]
    pub vault: String,

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

    /// The function to invoke [default: the handler for the event].
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

pub async fn run(args: Args, output: &Output) -> Result<Status, Failure> {
    let now = Utc::now();
    let event = build_event(&args, now)?;
    let function = args.function.clone().unwrap_or_else(|| args.event.function().to_owned());
    let url = endpoint(&args, &function)?;
    if !args.json {
        output.status(&format!("posting {} about {} to {}", event.event_type(), event.subject, redact(&url)));
    }
    let answer = post(&url, &event, Duration::from_secs(args.timeout)).await?;
    let ok = (200..300).contains(&answer.status);
    if args.json {
        output.json(&json!({
            "url": redact(&url).to_string(),
            "event": event.to_value(),
            "status": answer.status,
            "body": answer.body,
        }));
    } else {
        let status = format!("{} {}", answer.status, answer.reason);
        output.line(&format!(
            "{} {}{}",
            output.paint(if ok { Tone::Good } else { Tone::Bad }, &status),
            output.paint(Tone::Dim, &format!("event {}", event.id)),
            if answer.body.trim().is_empty() { String::new() } else { format!("\n{}", answer.body.trim_end()) }
        ));
    }
    if ok {
        Ok(Status::Ok)
    } else {
        Err(Failure::failed(format!("{} answered {} {}", redact(&url), answer.status, answer.reason)).hint(
            match answer.status {
                404 => format!("no function named '{function}' there: check --function and the app's functions"),
                401 | 403 => "a deployed app needs --code <eventgrid_extension system key>".to_owned(),
                500 => "the handler failed the invocation: its log says why (Event Grid would retry)".to_owned(),
                _ => "see the answer above".to_owned(),
            },
        ))
    }
}

/// The event `args` describe.
pub fn build_event(args: &Args, now: DateTime<Utc>) -> Result<Event, Failure> {
    let (kind, name) = match (&args.secret, &args.key, &args.certificate) {
        (Some(name), None, None) => (ObjectKind::Secret, name),
        (None, Some(name), None) => (ObjectKind::Key, name),
        (None, None, Some(name)) => (ObjectKind::Certificate, name),
        // clap's "object" group makes exactly one of them present.
        _ => return Err(Failure::failed("name exactly one of --secret, --key, --certificate")),
    };
    let version = args.version.clone().unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let expires = match &args.expires {
        Some(text) => Some(parse_when(text, now).map_err(|message| Failure {
            status: Status::Usage,
            message: format!("--expires {text:?}: {message}"),
            hint: None,
        })?),
        None => args.event.default_expiry(now),
    };
    let object = VaultObject::new(&args.vault, kind, name, Some(&version), None, expires).map_err(|error| Failure {
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
        args.vault
    );
    let lifecycle = match args.event {
        EventKind::NearExpiry => Lifecycle::NearExpiry,
        EventKind::Expired => Lifecycle::Expired,
        EventKind::NewVersion => Lifecycle::NewVersionCreated,
        EventKind::TestEvent => return Ok(Event::test_event(&id, &source, object, Some(now), schema)),
    };
    let event_type = KeyVaultEventType::for_object(kind, lifecycle)
        .ok_or_else(|| Failure::failed(format!("Key Vault has no {lifecycle:?} event for a {kind}")))?;
    Ok(Event {
        id,
        subject: name.clone(),
        source,
        time: Some(now),
        schema,
        payload: Payload::KeyVault(events::KeyVaultEvent { event_type, object }),
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
pub fn endpoint(args: &Args, function: &str) -> Result<url::Url, Failure> {
    let base = if args.to == "dev" {
        let path = args.state_file.clone().unwrap_or_else(dev_state::default_path);
        let state = DevState::read(&path)?;
        state.functions.get(function).cloned().ok_or_else(|| {
            let running: Vec<&str> = state.functions.keys().map(String::as_str).collect();
            Failure::setup(format!(
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
pub fn webhook_url(base: &str, function: &str, code: Option<&str>) -> Result<url::Url, Failure> {
    let mut url = url::Url::parse(base).map_err(|error| Failure {
        status: Status::Usage,
        message: format!("--to {base:?} is not a URL ({error})"),
        hint: Some("e.g. --to http://localhost:7071, --to https://<app>.azurewebsites.net, or --to dev".to_owned()),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Failure {
            status: Status::Usage,
            message: format!("--to {base:?}: only http and https URLs are supported"),
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

/// The URL without its `code` (a system key must not end up in terminals' scrollback or CI logs).
pub fn redact(url: &url::Url) -> url::Url {
    let mut shown = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.to_string(), if k == "code" { "****".to_owned() } else { v.into_owned() }))
        .collect();
    shown.query_pairs_mut().clear().extend_pairs(pairs);
    shown
}

/// What the endpoint answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub reason: String,
    pub body: String,
}

/// Posts `event` as Event Grid delivers: a one-event array with `aeg-event-type: Notification`.
pub async fn post(url: &url::Url, event: &Event, timeout: Duration) -> Result<Answer, Failure> {
    let loopback = url.host_str().is_some_and(|h| h == "localhost" || h == "127.0.0.1" || h == "[::1]");
    let mut client = reqwest::Client::builder().timeout(timeout).connect_timeout(Duration::from_secs(10));
    if loopback {
        // A proxy configured for the internet has no business seeing calls to this machine.
        client = client.no_proxy();
    }
    let client = client.build().map_err(|error| Failure::failed(format!("cannot build the HTTP client: {error}")))?;
    let body = Value::Array(vec![event.to_value()]);
    let response = client
        .post(url.clone())
        .header("Content-Type", "application/json")
        .header("aeg-event-type", "Notification")
        .header("aeg-delivery-count", "0")
        .header("aeg-data-version", "1")
        .header("aeg-metadata-version", "1")
        .json(&body)
        .send()
        .await
        .map_err(|error| unreachable_or_failed(url, &error))?;
    let status = response.status();
    let body = response.text().await.map_err(|error| unreachable_or_failed(url, &error))?;
    Ok(Answer { status: status.as_u16(), reason: status.canonical_reason().unwrap_or("").to_owned(), body })
}

fn unreachable_or_failed(url: &url::Url, error: &reqwest::Error) -> Failure {
    let shown = redact(url);
    let origin = shown.origin().ascii_serialization();
    if error.is_connect() {
        Failure::unreachable(format!("nothing is listening at {origin}: is `func start` / `keyturn dev` running?"))
            .hint(format!("check the URL given to --to ({error})"))
    } else if error.is_timeout() {
        Failure::unreachable(format!("{origin} did not answer in time"))
            .hint("raise --timeout if the handler is slow, or check that the host is up")
    } else {
        Failure::failed(format!("posting to {shown} failed: {error}"))
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(event.event_type(), events::TEST_EVENT_TYPE);
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
