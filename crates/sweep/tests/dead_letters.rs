//! Reading a dead-letter container on a real Azurite (started by `./scripts/test`, announced in
//! KEYTURN_TEST_AZURITE_BLOB_URL and KEYTURN_TEST_AZURITE_CA_FILE; without them these tests fail, never
//! skip), with blobs laid out as Event Grid writes them: `<topic>/<subscription>/<y>/<m>/<d>/<h>/<guid>.json`,
//! each a JSON array of events with the dead-letter fields.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::http::{ClientOptions, RequestContent, Transport, Url};
use azure_storage_blob::{BlobContainerClient, BlobContainerClientOptions};
use keyturn_local::identity::TokenRegistry;
use keyturn_sweep::DeadLetterReader;
use serde_json::{Value, json};

const MISSING: &str = "run ./scripts/test, which starts Azurite \
    (or wrap the command: scripts/lib/azurite.sh cargo nextest run -p keyturn-sweep)";

#[derive(Debug)]
struct LocalIdentity(TokenRegistry);

impl TokenCredential for LocalIdentity {
    fn get_token<'a, 'b, 'c, 'd, 'async_trait>(
        &'a self,
        scopes: &'b [&'c str],
        _options: Option<TokenRequestOptions<'d>>,
    ) -> std::pin::Pin<Box<dyn Future<Output = azure_core::Result<AccessToken>> + Send + 'async_trait>>
    where
        'a: 'async_trait,
        'b: 'async_trait,
        'c: 'async_trait,
        'd: 'async_trait,
        Self: 'async_trait,
    {
        let resource = scopes.first().map(|s| s.trim_end_matches("/.default").to_owned()).unwrap_or_default();
        let (token, _) = self.0.issue(&resource, "sweep-test-identity");
        let expires = azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1);
        Box::pin(async move { Ok(AccessToken::new(token, expires)) })
    }
}

fn azurite() -> (Url, ClientOptions, Arc<dyn TokenCredential>) {
    let url = std::env::var("KEYTURN_TEST_AZURITE_BLOB_URL")
        .unwrap_or_else(|_| panic!("KEYTURN_TEST_AZURITE_BLOB_URL is not set: {MISSING}"));
    let ca = std::env::var("KEYTURN_TEST_AZURITE_CA_FILE")
        .unwrap_or_else(|_| panic!("KEYTURN_TEST_AZURITE_CA_FILE is not set: {MISSING}"));
    let certs = reqwest::Certificate::from_pem_bundle(&std::fs::read(ca).unwrap()).unwrap();
    let http = reqwest::Client::builder().tls_certs_merge(certs).build().unwrap();
    let options = ClientOptions { transport: Some(Transport::new(Arc::new(http))), ..ClientOptions::default() };
    (Url::parse(&url).unwrap(), options, Arc::new(LocalIdentity(TokenRegistry::default())))
}

fn fresh_container() -> String {
    format!("deadletters-{}", &azure_core::Uuid::new_v4().simple().to_string()[..12])
}

fn dead_lettered(fixture: &[u8], id: &str, reason: &str) -> Value {
    let mut event: Value = serde_json::from_slice(fixture).unwrap();
    event["id"] = id.into();
    event["deadLetterReason"] = reason.into();
    event["deliveryAttempts"] = 30.into();
    event["lastDeliveryOutcome"] = "Probation".into();
    event["lastHttpStatusCode"] = 500.into();
    event["publishTime"] = "2026-11-01T10:00:00.1234567Z".into();
    event["lastDeliveryAttemptTime"] = "2026-11-02T10:00:00.7654321Z".into();
    event
}

#[tokio::test]
async fn dead_lettered_key_vault_events_are_read_back_with_why_they_failed() {
    let (url, options, credential) = azurite();
    let name = fresh_container();
    let mut container_url = url.clone();
    container_url.path_segments_mut().unwrap().pop_if_empty().push(&name);
    let writer = BlobContainerClient::new(
        container_url,
        Some(credential.clone()),
        Some(BlobContainerClientOptions { client_options: options.clone(), ..Default::default() }),
    )
    .unwrap();
    writer.create(None).await.unwrap();
    let near_expiry = include_bytes!("../../events/fixtures/eventgrid-secret-near-expiry.json");
    let expired = include_bytes!("../../events/fixtures/eventgrid-key-expired.json");
    let blobs = [
        (
            "kv-topic/near-expiry/2026/11/02/10/0b5c.json",
            json!([
                dead_lettered(near_expiry, "e-1", "MaxDeliveryAttemptsExceeded"),
                dead_lettered(expired, "e-2", "MaxDeliveryAttemptsExceeded")
            ]),
        ),
        (
            "kv-topic/near-expiry/2026/11/03/07/91aa.json",
            json!([dead_lettered(near_expiry, "e-3", "UndeliverableDueToHttpBadRequest"), {"id": "junk"}]),
        ),
        (
            "other-topic/other-sub/2026/11/03/07/ffff.json",
            json!([dead_lettered(expired, "e-4", "MaxDeliveryAttemptsExceeded")]),
        ),
    ];
    for (blob, content) in &blobs {
        let bytes = serde_json::to_vec(content).unwrap();
        writer.blob_client(blob).upload(RequestContent::from(bytes), None).await.unwrap();
    }

    let reader = DeadLetterReader::new(&url, &name, credential.clone(), options.clone()).unwrap();
    let report = reader.read("kv-topic/near-expiry/", 100).await.unwrap();
    assert_eq!(report.blobs, 2);
    let ids: Vec<&str> = report.letters.iter().map(|l| l.event.id.as_str()).collect();
    assert_eq!(ids, ["e-1", "e-2", "e-3"], "oldest blob first, events in order");
    assert_eq!(report.letters[2].reason.as_deref(), Some("UndeliverableDueToHttpBadRequest"));
    assert_eq!(report.letters[0].delivery_attempts, Some(30));
    assert!(report.letters.iter().all(|l| l.event.key_vault().is_some()));
    assert_eq!(report.unusable.len(), 1);
    assert_eq!(report.unusable[0].event_id.as_deref(), Some("junk"));

    let everything = reader.read("", 100).await.unwrap();
    assert_eq!((everything.blobs, everything.letters.len()), (3, 4));
    let bounded = reader.read("", 1).await.unwrap();
    assert_eq!(bounded.blobs, 1);

    // A container that does not exist (dead-lettering not set up yet) holds nothing, and says so quietly.
    let missing = DeadLetterReader::new(&url, &fresh_container(), credential, options).unwrap();
    assert_eq!(missing.read("", 100).await.unwrap().blobs, 0);
}
