//! Dead-lettered events: what Event Grid gave up delivering (after its retries, or at once for a refusal)
//! and wrote to the subscription's dead-letter container. The sweep reads them to report them, and to
//! re-drive those whose object still needs it.
//!
//! Event Grid writes one blob per dead-lettering, `<SUBSCRIPTION-NAME>/<y>/<m>/<d>/<h>/<guid>.json` under the
//! container (upper-cased name, no zero padding; Microsoft's "Set dead-letter location and retry policy"),
//! which the sweep lists whole, so a topic-name prefix some records carry changes nothing; each blob holds a
//! JSON array of events, each with the fields it adds: `deadLetterReason`,
//! `deliveryAttempts`, `lastDeliveryOutcome`, `lastHttpStatusCode`, `publishTime`,
//! `lastDeliveryAttemptTime`. An event is decoded as the handlers decode it, without those fields; one that
//! does not decode, or is not a Key Vault event, is reported as such and never silently dropped.

use std::sync::{Arc, Mutex, PoisonError};

use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, Url};
use azure_storage_blob::models::{BlobContainerClientListBlobsOptions, StorageErrorCode};
use azure_storage_blob::{BlobContainerClient, BlobContainerClientOptions};
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use futures::future::BoxFuture;
use keyturn_events::Event;
use keyturn_rotation::blob_errors::describe;
use serde_json::Value;

/// What Event Grid adds to each dead-lettered event.
pub const DEAD_LETTER_FIELDS: [&str; 6] = [
    "deadLetterReason",
    "deliveryAttempts",
    "lastDeliveryOutcome",
    "lastHttpStatusCode",
    "publishTime",
    "lastDeliveryAttemptTime",
];
/// A dead-letter blob larger than this is not read: Event Grid's batches are at most 1 MB of events.
pub const MAX_BLOB_BYTES: u64 = 4 * 1024 * 1024;

/// One dead-lettered Key Vault event.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The blob it was found in.
    pub blob: String,
    pub event: Event,
    /// e.g. `MaxDeliveryAttemptsExceeded`, `UndeliverableDueToHttpBadRequest`.
    pub reason: Option<String>,
    pub delivery_attempts: Option<u64>,
    pub last_outcome: Option<String>,
    pub last_http_status: Option<u64>,
    pub published: Option<DateTime<Utc>>,
    pub last_attempt: Option<DateTime<Utc>>,
}

/// An entry of a dead-letter blob that is not a Key Vault event keyturn can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unusable {
    pub blob: String,
    /// Its position in the blob's array, from 0 (`None`: the blob as a whole).
    pub index: Option<usize>,
    /// The event's id when it has one.
    pub event_id: Option<String>,
    pub reason: String,
}

/// Everything found in a dead-letter container.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeadLetterReport {
    pub letters: Vec<DeadLetter>,
    pub unusable: Vec<Unusable>,
    /// Blobs read.
    pub blobs: usize,
}

/// The container could not be read. Retryable: the next sweep reads it again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dead-letter container {container}: {message}")]
pub struct DeadLetterError {
    container: String,
    message: String,
}

/// Parses one dead-letter blob's content into events (pure: the reader and the tests call it).
pub fn parse_blob(blob: &str, content: &[u8]) -> (Vec<DeadLetter>, Vec<Unusable>) {
    let unusable = |index: Option<usize>, event_id: Option<String>, reason: String| Unusable {
        blob: blob.to_owned(),
        index,
        event_id,
        reason,
    };
    let items = match serde_json::from_slice::<Value>(content) {
        Ok(Value::Array(items)) => items,
        // A single event is accepted too: the format is Event Grid's, but a hand-written file may be one.
        Ok(single @ Value::Object(_)) => vec![single],
        Ok(_) => return (Vec::new(), vec![unusable(None, None, "not a JSON array of events".into())]),
        Err(e) => return (Vec::new(), vec![unusable(None, None, format!("not JSON: {e}"))]),
    };
    let mut letters = Vec::new();
    let mut bad = Vec::new();
    for (index, mut item) in items.into_iter().enumerate() {
        let Some(object) = item.as_object_mut() else {
            bad.push(unusable(Some(index), None, "not a JSON object".into()));
            continue;
        };
        let id = object.get("id").and_then(Value::as_str).map(str::to_owned);
        let mut taken = serde_json::Map::new();
        for field in DEAD_LETTER_FIELDS {
            if let Some(value) = object.remove(field) {
                taken.insert(field.to_owned(), value);
            }
        }
        let text = |name: &str| taken.get(name).and_then(Value::as_str).map(str::to_owned);
        let number = |name: &str| taken.get(name).and_then(Value::as_u64);
        let time = |name: &str| {
            taken
                .get(name)
                .and_then(Value::as_str)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        match Event::from_value(item) {
            Ok(event) if event.key_vault().is_some() => letters.push(DeadLetter {
                blob: blob.to_owned(),
                reason: text("deadLetterReason"),
                delivery_attempts: number("deliveryAttempts"),
                last_outcome: text("lastDeliveryOutcome"),
                last_http_status: number("lastHttpStatusCode"),
                published: time("publishTime"),
                last_attempt: time("lastDeliveryAttemptTime"),
                event,
            }),
            Ok(event) => bad.push(unusable(Some(index), id, format!("not a Key Vault event ({})", event.event_type()))),
            Err(e) => bad.push(unusable(Some(index), id, format!("does not decode: {e}"))),
        }
    }
    (letters, bad)
}

/// What one dead-letter blob holds: its Key Vault events, and what in it cannot be used.
pub type BlobContent = (Vec<DeadLetter>, Vec<Unusable>);

/// Where the sweep finds dead letters: the container ([`DeadLetterReader`]), or a fake in unit tests
/// ([`MemoryDeadLetters`]).
pub trait DeadLetters: Send + Sync + std::fmt::Debug {
    /// The dead-letter blobs under `prefix`, at most `max_blobs`, by name. Reads no content.
    fn list<'a>(
        &'a self,
        prefix: &'a str,
        max_blobs: usize,
    ) -> BoxFuture<'a, Result<Vec<DeadLetterBlob>, DeadLetterError>>;

    /// What one blob holds: its Key Vault events, and what cannot be used.
    fn read_blob<'a>(&'a self, blob: &'a DeadLetterBlob) -> BoxFuture<'a, Result<BlobContent, DeadLetterError>>;
}

/// Dead-letter blobs in memory, for unit tests: name → content.
#[derive(Debug, Default)]
pub struct MemoryDeadLetters {
    // A std Mutex: held for a copy, never across an await.
    blobs: Mutex<Vec<(String, Vec<u8>)>>,
}

impl MemoryDeadLetters {
    /// Adds a blob as Event Grid would write it.
    pub fn put(&self, name: &str, content: Vec<u8>) {
        self.blobs.lock().unwrap_or_else(PoisonError::into_inner).push((name.to_owned(), content));
    }
}

impl DeadLetters for MemoryDeadLetters {
    fn list<'a>(
        &'a self,
        prefix: &'a str,
        max_blobs: usize,
    ) -> BoxFuture<'a, Result<Vec<DeadLetterBlob>, DeadLetterError>> {
        let mut blobs: Vec<DeadLetterBlob> = self
            .blobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(name, content)| DeadLetterBlob { name: name.clone(), size: content.len() as u64 })
            .collect();
        blobs.sort_by(|a, b| a.name.cmp(&b.name));
        blobs.truncate(max_blobs);
        Box::pin(async move { Ok(blobs) })
    }

    fn read_blob<'a>(&'a self, blob: &'a DeadLetterBlob) -> BoxFuture<'a, Result<BlobContent, DeadLetterError>> {
        let content = self
            .blobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(name, _)| *name == blob.name)
            .map(|(_, content)| content.clone());
        Box::pin(async move {
            match content {
                Some(content) => Ok(parse_blob(&blob.name, &content)),
                None => Err(DeadLetterError { container: "memory".into(), message: format!("no blob {}", blob.name) }),
            }
        })
    }
}

/// Reads a dead-letter container with the sweep's identity.
pub struct DeadLetterReader {
    container: BlobContainerClient,
}

impl std::fmt::Debug for DeadLetterReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterReader").field("container", &self.container.url().as_str()).finish()
    }
}

impl DeadLetterReader {
    /// The dead-letter `container` of the account whose blob endpoint is `account_url`.
    pub fn new(
        account_url: &Url,
        container: &str,
        credential: Arc<dyn TokenCredential>,
        options: ClientOptions,
    ) -> Result<Self, DeadLetterError> {
        let err = |message: String| DeadLetterError { container: container.to_owned(), message };
        let mut url = account_url.clone();
        url.path_segments_mut()
            .map_err(|()| err(format!("the account URL '{account_url}' cannot hold a container path")))?
            .pop_if_empty()
            .push(container);
        let client_options = BlobContainerClientOptions { client_options: options, ..Default::default() };
        let container = BlobContainerClient::new(url, Some(credential), Some(client_options))
            .map_err(|e| err(format!("building the blob client failed: {e}")))?;
        Ok(Self { container })
    }

    /// Every dead-lettered event under `prefix` (e.g. `<topic>/<subscription>/`; empty: the whole container),
    /// oldest blob name first, reading at most `max_blobs` blobs. A container that does not exist holds none.
    pub async fn read(&self, prefix: &str, max_blobs: usize) -> Result<DeadLetterReport, DeadLetterError> {
        let mut report = DeadLetterReport::default();
        for blob in self.list_blobs(prefix, max_blobs).await? {
            let (letters, unusable) = self.read_one(&blob).await?;
            report.blobs += 1;
            report.letters.extend(letters);
            report.unusable.extend(unusable);
        }
        Ok(report)
    }

    /// The dead-letter blobs under `prefix`, at most `max_blobs`, sorted by name (Event Grid's names begin
    /// with the subscription and the hour, so oldest first within a subscription). Reads no content.
    pub async fn list_blobs(&self, prefix: &str, max_blobs: usize) -> Result<Vec<DeadLetterBlob>, DeadLetterError> {
        let options = BlobContainerClientListBlobsOptions {
            prefix: (!prefix.is_empty()).then(|| prefix.to_owned()),
            ..Default::default()
        };
        let mut items = self.container.list_blobs(Some(options)).map_err(|e| self.error("listing blobs", &e))?;
        let mut blobs = Vec::new();
        while let Some(item) = items.next().await {
            let item = match item {
                Ok(item) => item,
                Err(e) if is_container_missing(&e) => return Ok(Vec::new()),
                Err(e) => return Err(self.error("listing blobs", &e)),
            };
            let size = item.properties.as_ref().and_then(|p| p.content_length).unwrap_or(0);
            if let Some(name) = item.name {
                blobs.push(DeadLetterBlob { name, size });
            }
            if blobs.len() >= max_blobs {
                break;
            }
        }
        blobs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(blobs)
    }

    /// The events of one dead-letter blob, and what in it cannot be used (a blob too large to read is one
    /// unusable entry: reported, not read).
    pub async fn read_one(&self, blob: &DeadLetterBlob) -> Result<BlobContent, DeadLetterError> {
        if blob.size > MAX_BLOB_BYTES {
            let reason = format!("{} bytes; dead-letter blobs over {MAX_BLOB_BYTES} bytes are not read", blob.size);
            return Ok((Vec::new(), vec![Unusable { blob: blob.name.clone(), index: None, event_id: None, reason }]));
        }
        let client = self.container.blob_client(&blob.name);
        let body = client.download(None).await.map_err(|e| self.error("downloading a blob", &e))?;
        let bytes = body.body.collect().await.map_err(|e| self.error("reading a blob", &e))?;
        Ok(parse_blob(&blob.name, &bytes))
    }

    fn error(&self, operation: &str, error: &azure_core::Error) -> DeadLetterError {
        DeadLetterError { container: self.container.url().to_string(), message: describe(operation, error) }
    }
}

impl DeadLetters for DeadLetterReader {
    fn list<'a>(
        &'a self,
        prefix: &'a str,
        max_blobs: usize,
    ) -> BoxFuture<'a, Result<Vec<DeadLetterBlob>, DeadLetterError>> {
        Box::pin(self.list_blobs(prefix, max_blobs))
    }

    fn read_blob<'a>(&'a self, blob: &'a DeadLetterBlob) -> BoxFuture<'a, Result<BlobContent, DeadLetterError>> {
        Box::pin(self.read_one(blob))
    }
}

/// A blob in the dead-letter container, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterBlob {
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

fn is_container_missing(error: &azure_core::Error) -> bool {
    keyturn_rotation::blob_errors::code(error) == Some(StorageErrorCode::ContainerNotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn near_expiry_record() -> Value {
        let mut event: Value =
            serde_json::from_slice(include_bytes!("../../events/fixtures/eventgrid-secret-near-expiry.json")).unwrap();
        let object = event.as_object_mut().unwrap();
        object.insert("deadLetterReason".into(), "MaxDeliveryAttemptsExceeded".into());
        object.insert("deliveryAttempts".into(), 30.into());
        object.insert("lastDeliveryOutcome".into(), "Probation".into());
        object.insert("lastHttpStatusCode".into(), 500.into());
        object.insert("publishTime".into(), "2026-11-01T10:00:00.123Z".into());
        object.insert("lastDeliveryAttemptTime".into(), "2026-11-02T10:00:00Z".into());
        event
    }

    #[test]
    fn a_dead_letter_blob_yields_its_key_vault_events_with_event_grids_account_of_the_failure() {
        let content = serde_json::to_vec(&Value::Array(vec![near_expiry_record()])).unwrap();
        let (letters, unusable) = parse_blob("topic/sub/2026/11/02/10/a.json", &content);
        assert!(unusable.is_empty(), "{unusable:?}");
        let letter = &letters[0];
        assert_eq!(letter.reason.as_deref(), Some("MaxDeliveryAttemptsExceeded"));
        assert_eq!((letter.delivery_attempts, letter.last_http_status), (Some(30), Some(500)));
        assert_eq!(letter.last_outcome.as_deref(), Some("Probation"));
        assert_eq!(letter.last_attempt.map(|t| t.to_rfc3339()), Some("2026-11-02T10:00:00+00:00".into()));
        assert!(letter.published.is_some());
        let expected = Event::from_slice(include_bytes!("../../events/fixtures/eventgrid-secret-near-expiry.json"));
        assert_eq!(letter.event, expected.unwrap(), "the same event the handler would have decoded");
    }

    #[test]
    fn what_cannot_be_acted_on_is_reported_not_dropped() {
        let mut foreign = near_expiry_record();
        foreign["eventType"] = "Microsoft.Storage.BlobCreated".into();
        foreign["id"] = "foreign-1".into();
        let content =
            serde_json::to_vec(&serde_json::json!([near_expiry_record(), 42, {"id": "broken-1"}, foreign])).unwrap();
        let (letters, unusable) = parse_blob("b.json", &content);
        assert_eq!(letters.len(), 1);
        let summary: Vec<(Option<usize>, Option<&str>)> =
            unusable.iter().map(|u| (u.index, u.event_id.as_deref())).collect();
        assert_eq!(summary, [(Some(1), None), (Some(2), Some("broken-1")), (Some(3), Some("foreign-1"))]);
        assert!(unusable[1].reason.starts_with("does not decode"), "{:?}", unusable[1]);
        assert!(unusable[2].reason.starts_with("not a Key Vault event"), "{:?}", unusable[2]);
        let (_, whole) = parse_blob("c.json", b"not json");
        assert_eq!((whole[0].index, whole[0].reason.starts_with("not JSON")), (None, true));
    }
}
