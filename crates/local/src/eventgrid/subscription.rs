//! An event subscription: where events go, which ones, in which schema, and how hard to try.

use std::path::PathBuf;
use std::time::Duration;

use keyturn_events::{Event, Schema};
use url::Url;

use super::BlobDestination;

/// How Event Grid reaches the endpoint (its `endpointType`). It changes which failures are final and whether a validation
/// handshake happens when the subscription is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointType {
    /// A plain HTTPS webhook: handshake on creation; 400, 401, 403 and 413 are final.
    Webhook,
    /// `endpointType: AzureFunction`: no handshake; 400, 403 and 413 are final.
    AzureFunction,
}

/// An advanced filter on the event's `subject`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectFilter {
    /// `operatorType: StringIn`: the subject is one of these.
    In(Vec<String>),
    /// `operatorType: StringNotIn`: the subject is none of these.
    NotIn(Vec<String>),
}

impl SubjectFilter {
    fn admits(&self, subject: &str) -> bool {
        match self {
            Self::In(values) => values.iter().any(|v| v.eq_ignore_ascii_case(subject)),
            Self::NotIn(values) => !values.iter().any(|v| v.eq_ignore_ascii_case(subject)),
        }
    }
}

/// One event subscription, with Event Grid's defaults (see [`Subscription::new`]).
#[derive(Debug, Clone)]
pub struct Subscription {
    pub name: String,
    pub endpoint: Url,
    pub endpoint_kind: EndpointType,
    pub schema: Schema,
    /// Event types delivered; empty means all (`includedEventTypes` absent).
    pub included_event_types: Vec<String>,
    /// `subjectBeginsWith` / `subjectEndsWith`, compared without regard to case as the service does.
    pub subject_begins_with: Option<String>,
    pub subject_ends_with: Option<String>,
    /// Advanced filters on `subject` (`StringIn` / `StringNotIn`), as keyturn's subscriptions use them to send the
    /// canary to test-event only; compared without regard to case as the service does.
    pub subject_filters: Vec<SubjectFilter>,
    /// `maxDeliveryAttempts`, 1-30.
    pub max_delivery_attempts: u32,
    /// `eventTimeToLiveInMinutes`, 1-1440, in event time (see `EventGridOptions::time_scale`).
    pub event_ttl: Duration,
    /// `maxEventsPerBatch`, 1-5000.
    pub max_events_per_batch: usize,
    /// Where dead-lettered events are written, as blobs would be in the dead-letter container.
    pub dead_letter_dir: Option<PathBuf>,
    /// The dead-letter container itself (`deadLetterDestination`, Azurite locally): where a deployment's
    /// sweep reads them back.
    pub dead_letter_blob: Option<BlobDestination>,
    /// Static delivery headers (up to 10), e.g. a shared secret for a webhook.
    pub delivery_headers: Vec<(String, String)>,
}

impl Subscription {
    /// A subscription with the service's defaults: Event Grid schema, all event types, 30 attempts,
    /// 1440 minutes to live, one event per batch, no dead-lettering.
    pub fn new(name: &str, endpoint: Url, endpoint_kind: EndpointType) -> Self {
        Self {
            name: name.to_owned(),
            endpoint,
            endpoint_kind,
            schema: Schema::EventGrid,
            included_event_types: Vec::new(),
            subject_begins_with: None,
            subject_ends_with: None,
            subject_filters: Vec::new(),
            max_delivery_attempts: 30,
            event_ttl: Duration::from_secs(1440 * 60),
            max_events_per_batch: 1,
            dead_letter_dir: None,
            dead_letter_blob: None,
            delivery_headers: Vec::new(),
        }
    }

    pub fn schema(mut self, schema: Schema) -> Self {
        self.schema = schema;
        self
    }

    pub fn event_types<I: IntoIterator<Item = S>, S: Into<String>>(mut self, types: I) -> Self {
        self.included_event_types = types.into_iter().map(Into::into).collect();
        self
    }

    pub fn subject_begins_with(mut self, prefix: &str) -> Self {
        self.subject_begins_with = Some(prefix.to_owned());
        self
    }

    pub fn subject_ends_with(mut self, suffix: &str) -> Self {
        self.subject_ends_with = Some(suffix.to_owned());
        self
    }

    /// Adds an advanced filter on the subject; every filter must admit an event (the service ANDs them).
    pub fn subject_filter(mut self, filter: SubjectFilter) -> Self {
        self.subject_filters.push(filter);
        self
    }

    pub fn max_delivery_attempts(mut self, attempts: u32) -> Self {
        self.max_delivery_attempts = attempts;
        self
    }

    pub fn event_ttl(mut self, ttl: Duration) -> Self {
        self.event_ttl = ttl;
        self
    }

    pub fn max_events_per_batch(mut self, size: usize) -> Self {
        self.max_events_per_batch = size;
        self
    }

    pub fn dead_letter_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dead_letter_dir = Some(dir.into());
        self
    }

    /// Dead-letters into a blob container, as the service does with a `StorageBlob` destination.
    pub fn dead_letter_blob(mut self, destination: BlobDestination) -> Self {
        self.dead_letter_blob = Some(destination);
        self
    }

    pub fn delivery_header(mut self, name: &str, value: &str) -> Self {
        self.delivery_headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The limits the service enforces when a subscription is created.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(1..=30).contains(&self.max_delivery_attempts) {
            return Err(format!("maxDeliveryAttempts must be 1-30, not {}", self.max_delivery_attempts));
        }
        if !(60..=1440 * 60).contains(&self.event_ttl.as_secs()) {
            return Err(format!("eventTimeToLiveInMinutes must be 1-1440, not {:?}", self.event_ttl));
        }
        if !(1..=5000).contains(&self.max_events_per_batch) {
            return Err(format!("maxEventsPerBatch must be 1-5000, not {}", self.max_events_per_batch));
        }
        if self.delivery_headers.len() > 10 {
            return Err(format!("at most 10 delivery headers, not {}", self.delivery_headers.len()));
        }
        Ok(())
    }

    /// Whether this subscription receives `event`.
    pub fn matches(&self, event: &Event) -> bool {
        let type_ok = self.included_event_types.is_empty()
            || self.included_event_types.iter().any(|t| t.eq_ignore_ascii_case(event.event_type()));
        let subject = event.subject.to_ascii_lowercase();
        let begins_ok = self.subject_begins_with.as_ref().is_none_or(|p| subject.starts_with(&p.to_ascii_lowercase()));
        let ends_ok = self.subject_ends_with.as_ref().is_none_or(|s| subject.ends_with(&s.to_ascii_lowercase()));
        let advanced_ok = self.subject_filters.iter().all(|f| f.admits(&event.subject));
        type_ok && begins_ok && ends_ok && advanced_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyturn_events::{KeyVaultEvent, KeyVaultEventType, ObjectKind, Payload, VaultObject};

    fn event(event_type: KeyVaultEventType, name: &str) -> Event {
        let object = VaultObject::new("kv", event_type.object_kind(), name, Some("v1"), None, None).unwrap();
        Event {
            id: "1".into(),
            subject: name.into(),
            source: "/vaults/kv".into(),
            time: None,
            schema: Schema::EventGrid,
            payload: Payload::KeyVault(KeyVaultEvent { event_type, object }),
        }
    }

    fn sub() -> Subscription {
        Subscription::new("s", Url::parse("http://127.0.0.1:1/").unwrap(), EndpointType::Webhook)
    }

    #[test]
    fn filters_select_by_type_and_subject_without_case() {
        let s = sub().event_types([KeyVaultEventType::SecretNearExpiry.as_str()]).subject_begins_with("DB-");
        assert!(s.matches(&event(KeyVaultEventType::SecretNearExpiry, "db-password")));
        assert!(!s.matches(&event(KeyVaultEventType::SecretExpired, "db-password")));
        assert!(!s.matches(&event(KeyVaultEventType::SecretNearExpiry, "api-key")));
        let canary = sub().subject_ends_with("-canary");
        assert!(canary.matches(&event(KeyVaultEventType::SecretNewVersionCreated, "keyturn-canary")));
        assert!(!canary.matches(&event(KeyVaultEventType::SecretNewVersionCreated, "canary-db")));
        assert_eq!(ObjectKind::Secret, KeyVaultEventType::SecretExpired.object_kind());
    }

    #[test]
    fn string_in_and_not_in_route_the_canary() {
        let only = sub().subject_filter(SubjectFilter::In(vec!["keyturn-canary".into()]));
        let never = sub().subject_filter(SubjectFilter::NotIn(vec!["keyturn-canary".into()]));
        let canary = event(KeyVaultEventType::SecretNewVersionCreated, "KEYTURN-CANARY");
        let other = event(KeyVaultEventType::SecretNewVersionCreated, "keyturn-canary-old");
        assert!(only.matches(&canary) && !only.matches(&other));
        assert!(!never.matches(&canary) && never.matches(&other));
    }

    #[test]
    fn service_limits_are_enforced() {
        assert!(sub().validate().is_ok());
        assert!(sub().max_delivery_attempts(31).validate().is_err());
        assert!(sub().event_ttl(Duration::from_secs(30)).validate().is_err());
        assert!(sub().max_events_per_batch(0).validate().is_err());
    }
}
