//! One event as Event Grid delivers it, in Event Grid schema or CloudEvents 1.0, decoded to a typed [`Event`]
//! and encoded back to the schema it came in.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value, json};

use crate::{DecodeError, KeyVaultEvent, KeyVaultEventType, VaultObject, tolerant};

/// The event type Event Grid uses for its subscription validation handshake.
pub const SUBSCRIPTION_VALIDATION_EVENT: &str = "Microsoft.EventGrid.SubscriptionValidationEvent";

/// The event type of a keyturn test event: posted by hand (`keyturn send test-event`) to the `test-event`
/// handler to prove the whole path works. Its `data` has the Key Vault shape (`Id`, `VaultName`, `ObjectType`,
/// `ObjectName`, `Version`, `NBF`, `EXP`) and names the object the handler should read; Key Vault itself never
/// sends it, so it decodes as [`Payload::Unknown`] and [`Event::test_object`] reads the object.
pub const TEST_EVENT_TYPE: &str = "Keyturn.TestEvent";

/// Which of Event Grid's two delivery schemas an event arrived in (and is written back in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Schema {
    /// Event Grid's own schema: `eventType`, `eventTime`, `topic`.
    EventGrid,
    /// CloudEvents 1.0: `type`, `time`, `source`, `specversion`.
    CloudEvents,
}

/// One delivered event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Unique per event; a redelivery of the same event carries the same id.
    pub id: String,
    /// For Key Vault, the object name.
    pub subject: String,
    /// Event Grid `topic` / CloudEvents `source`: the ARM id of the vault.
    pub source: String,
    /// `eventTime` / `time`, when present.
    pub time: Option<DateTime<Utc>>,
    pub schema: Schema,
    pub payload: Payload,
}

/// What an event carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    KeyVault(KeyVaultEvent),
    SubscriptionValidation(SubscriptionValidation),
    /// Any other event type, kept whole so a handler can log it and move on.
    Unknown(UnknownEvent),
}

/// Event Grid's handshake when a webhook subscription is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionValidation {
    pub validation_code: String,
    pub validation_url: Option<String>,
}

/// An event of a type keyturn does not know.
#[derive(Debug, Clone, PartialEq)]
pub struct UnknownEvent {
    pub event_type: String,
    pub data: Value,
}

const EVENT_GRID_KEYS: [&str; 8] =
    ["id", "topic", "subject", "eventType", "eventTime", "data", "dataVersion", "metadataVersion"];
const CLOUD_EVENTS_KEYS: [&str; 8] =
    ["id", "source", "subject", "type", "time", "data", "specversion", "datacontenttype"];

/// The envelope, once its keys are canonical: the fields both schemas share, under Event Grid's names.
#[derive(Deserialize)]
struct RawEnvelope {
    #[serde(deserialize_with = "tolerant::trimmed")]
    id: String,
    #[serde(default, deserialize_with = "tolerant::trimmed_opt")]
    subject: Option<String>,
    #[serde(default, deserialize_with = "tolerant::trimmed_opt")]
    source: Option<String>,
    #[serde(rename = "type", deserialize_with = "tolerant::trimmed")]
    event_type: String,
    #[serde(default, deserialize_with = "tolerant::time_opt")]
    time: Option<DateTime<Utc>>,
    #[serde(default)]
    data: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawValidation {
    #[serde(deserialize_with = "tolerant::trimmed")]
    validation_code: String,
    #[serde(default, deserialize_with = "tolerant::trimmed_opt")]
    validation_url: Option<String>,
}

impl Event {
    /// Decodes one event (a JSON object) of either schema.
    pub fn from_slice(json: &[u8]) -> Result<Self, DecodeError> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let value: Value = serde_path_to_error::deserialize(&mut de).map_err(|e| DecodeError::from_serde("", e))?;
        de.end().map_err(|e| DecodeError::new("(event)", e.to_string()))?;
        Self::from_value(value)
    }

    /// Decodes one event (a JSON object) of either schema.
    pub fn from_value(json: Value) -> Result<Self, DecodeError> {
        let Value::Object(object) = json else {
            return Err(DecodeError::new(
                "(event)",
                format!("expected an event object, found {}", tolerant::kind_of(&json)),
            ));
        };
        let schema = detect_schema(&object)?;
        let object = match schema {
            Schema::EventGrid => {
                let mut object = tolerant::canonical_keys(object, &EVENT_GRID_KEYS, "")?;
                // One raw shape serves both schemas: move Event Grid's names onto the CloudEvents ones.
                for (from, to) in [("topic", "source"), ("eventType", "type"), ("eventTime", "time")] {
                    if let Some(v) = object.remove(from) {
                        object.insert(to.to_owned(), v);
                    }
                }
                object
            }
            Schema::CloudEvents => tolerant::canonical_keys(object, &CLOUD_EVENTS_KEYS, "")?,
        };
        let raw: RawEnvelope = serde_path_to_error::deserialize(Value::Object(object)).map_err(|e| {
            // Report the field under the name the sender used, not our internal one.
            let e = DecodeError::from_serde("", e);
            match (schema, e.path()) {
                (Schema::EventGrid, "type") => DecodeError::new("eventType", e.message()),
                (Schema::EventGrid, "source") => DecodeError::new("topic", e.message()),
                (Schema::EventGrid, "time") => DecodeError::new("eventTime", e.message()),
                _ => e,
            }
        })?;
        if raw.id.is_empty() {
            return Err(DecodeError::new("id", "must not be empty"));
        }
        let payload = decode_payload(&raw.event_type, raw.data)?;
        Ok(Self {
            id: raw.id,
            subject: raw.subject.unwrap_or_default(),
            source: raw.source.unwrap_or_default(),
            time: raw.time,
            schema,
            payload,
        })
    }

    /// The event in its own schema, as Event Grid would deliver it.
    pub fn to_value(&self) -> Value {
        let time = self.time.map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true));
        let data = match &self.payload {
            Payload::KeyVault(kv) => kv.object.to_data(),
            Payload::SubscriptionValidation(v) => {
                json!({"validationCode": v.validation_code, "validationUrl": v.validation_url})
            }
            Payload::Unknown(u) => u.data.clone(),
        };
        let mut out = Map::new();
        match self.schema {
            Schema::EventGrid => {
                out.insert("id".into(), json!(self.id));
                out.insert("topic".into(), json!(self.source));
                out.insert("subject".into(), json!(self.subject));
                out.insert("eventType".into(), json!(self.event_type()));
                out.insert("eventTime".into(), json!(time));
                out.insert("data".into(), data);
                out.insert("dataVersion".into(), json!("1"));
                out.insert("metadataVersion".into(), json!("1"));
            }
            Schema::CloudEvents => {
                out.insert("specversion".into(), json!("1.0"));
                out.insert("id".into(), json!(self.id));
                out.insert("source".into(), json!(self.source));
                out.insert("subject".into(), json!(self.subject));
                out.insert("type".into(), json!(self.event_type()));
                if let Some(time) = time {
                    out.insert("time".into(), json!(time));
                }
                out.insert("data".into(), data);
            }
        }
        Value::Object(out)
    }

    /// The full event type string.
    pub fn event_type(&self) -> &str {
        match &self.payload {
            Payload::KeyVault(kv) => kv.event_type.as_str(),
            Payload::SubscriptionValidation(_) => SUBSCRIPTION_VALIDATION_EVENT,
            Payload::Unknown(u) => &u.event_type,
        }
    }

    /// A keyturn test event ([`TEST_EVENT_TYPE`]) about `object`, from `source` (the vault's ARM id, as a
    /// Key Vault event would carry it).
    pub fn test_event(
        id: &str,
        source: &str,
        object: VaultObject,
        time: Option<DateTime<Utc>>,
        schema: Schema,
    ) -> Self {
        Self {
            id: id.to_owned(),
            subject: object.name().to_owned(),
            source: source.to_owned(),
            time,
            schema,
            payload: Payload::Unknown(UnknownEvent { event_type: TEST_EVENT_TYPE.to_owned(), data: object.to_data() }),
        }
    }

    /// The object a keyturn test event names: `None` for any other event type, an error when its `data` is
    /// not of Key Vault's shape.
    pub fn test_object(&self) -> Option<Result<VaultObject, DecodeError>> {
        match &self.payload {
            Payload::Unknown(u) if u.event_type.eq_ignore_ascii_case(TEST_EVENT_TYPE) => {
                Some(VaultObject::from_data(u.data.clone()))
            }
            _ => None,
        }
    }

    /// The Key Vault payload, if this is a Key Vault event.
    pub fn key_vault(&self) -> Option<&KeyVaultEvent> {
        match &self.payload {
            Payload::KeyVault(kv) => Some(kv),
            _ => None,
        }
    }
}

/// `specversion` marks CloudEvents; `eventType` marks Event Grid's schema. Keys are matched as tolerantly
/// as everywhere else.
fn detect_schema(object: &Map<String, Value>) -> Result<Schema, DecodeError> {
    let has = |name: &str| object.keys().any(|k| k.trim().eq_ignore_ascii_case(name));
    match (has("specversion"), has("eventType")) {
        (true, false) => Ok(Schema::CloudEvents),
        (false, true) => Ok(Schema::EventGrid),
        (true, true) => {
            Err(DecodeError::new("(event)", "has both 'specversion' (CloudEvents) and 'eventType' (Event Grid schema)"))
        }
        (false, false) => Err(DecodeError::new(
            "(event)",
            "is neither an Event Grid event (no 'eventType') nor a CloudEvent (no 'specversion')",
        )),
    }
}

fn decode_payload(event_type: &str, data: Value) -> Result<Payload, DecodeError> {
    if let Some(kv_type) = KeyVaultEventType::parse(event_type) {
        return KeyVaultEvent::decode(kv_type, data).map(Payload::KeyVault);
    }
    if event_type.eq_ignore_ascii_case(SUBSCRIPTION_VALIDATION_EVENT) {
        let raw: RawValidation =
            serde_path_to_error::deserialize(data).map_err(|e| DecodeError::from_serde("data", e))?;
        return Ok(Payload::SubscriptionValidation(SubscriptionValidation {
            validation_code: raw.validation_code,
            validation_url: raw.validation_url,
        }));
    }
    Ok(Payload::Unknown(UnknownEvent { event_type: event_type.to_owned(), data }))
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::from_value(value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ObjectKind;

    #[test]
    fn a_test_event_round_trips_in_both_schemas_and_names_its_object() {
        let object = VaultObject::new("kv-one", ObjectKind::Secret, "keyturn-canary", Some("v1"), None, None).unwrap();
        let source = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-one";
        for schema in [Schema::EventGrid, Schema::CloudEvents] {
            let event = Event::test_event("e-1", source, object.clone(), None, schema);
            let decoded = Event::from_value(event.to_value()).unwrap();
            assert_eq!(decoded, event);
            assert_eq!(decoded.event_type(), TEST_EVENT_TYPE);
            assert_eq!(decoded.subject, "keyturn-canary");
            assert_eq!(decoded.test_object().unwrap().unwrap(), object);
        }
        let key_vault = Event::from_value(serde_json::json!({
            "id": "e-2", "topic": source, "subject": "db", "eventType": "Microsoft.KeyVault.SecretNearExpiry",
            "eventTime": "2026-01-01T00:00:00Z", "dataVersion": "1", "metadataVersion": "1",
            "data": object.to_data(),
        }))
        .unwrap();
        assert!(key_vault.test_object().is_none(), "only test events answer test_object");
        let mut broken = Event::test_event("e-3", source, object, None, Schema::EventGrid).to_value();
        broken["data"]["Id"] = "https://kv-two.vault.azure.net/secrets/keyturn-canary/v1".into();
        let error = Event::from_value(broken).unwrap().test_object().unwrap().unwrap_err();
        assert_eq!(error.path(), "data.VaultName", "{error}");
    }
}
