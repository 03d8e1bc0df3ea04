//! The event `keyturn send` posts: built from its flags as Key Vault would send it, or read from a file (a
//! dead-lettered blob's events, less what Event Grid added).

use std::path::Path;

use chrono::{DateTime, Utc};
use keyturn_events::{Event, KeyVaultEventType, Lifecycle, ObjectKind, Payload, Schema, VaultObject};
use keyturn_sweep::dead_letters::DEAD_LETTER_FIELDS;
use serde_json::Value;

use super::{Args, EventKind, SchemaArg, usage};
use crate::exit::{CommandFailure, ExitStatus};

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
            status: ExitStatus::Usage,
            message: format!("--expires {text:?}: {message}"),
            hint: None,
        })?),
        None => event.default_expiry(now),
    };
    let object =
        VaultObject::new(vault, kind, name, Some(&version), None, expires).map_err(|error| CommandFailure {
            status: ExitStatus::Usage,
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
