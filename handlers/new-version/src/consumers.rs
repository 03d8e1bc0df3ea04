//! Consumer refresh: the apps `KEYTURN_CONSUMERS` binds to an object are made to read its new version now,
//! instead of when their cache expires (App Service keeps Key Vault references for up to 24 hours).
//!
//! - App Service and Functions apps (and slots): `POST {id}/config/configreferences/appsettings/refresh`
//!   (API version [`WEB_API_VERSION`]), the call Microsoft documents for forcing Key Vault references to
//!   resolve again (learn.microsoft.com, "Use Key Vault references as app settings", rotation section).
//! - Container Apps: their active revisions, listed with `GET {id}/revisions`, each restarted with
//!   `POST {id}/revisions/{revision}/restart` (API version [`CONTAINER_APPS_API_VERSION`]; azure-rest-api-specs
//!   `specification/app/resource-manager/Microsoft.App/ContainerApps/stable/2025-07-01/ContainerAppsRevisions.json`,
//!   operations `ContainerAppsRevisions_ListRevisions` and `ContainerAppsRevisions_RestartRevision`).
//!
//! Exactly once per consumer and version, across Event Grid's redeliveries: a consumer refreshed for a version
//! is recorded ([`RefreshRecord`]) right after its call succeeds, and a redelivery skips it; a consumer whose
//! call failed retryably makes the whole invocation fail retryably, so Event Grid delivers the event again
//! and only the consumers still due are called.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use azure_core::http::Method;
use futures::future::BoxFuture;
use keyturn_config::Consumer;
use keyturn_events::ObjectRef;
use keyturn_host::TargetOutcome;
use keyturn_rotation::arm::{ArmCallError, ArmClient};
use serde::Deserialize;

/// The Microsoft.Web API version of the Key Vault reference refresh (the version Microsoft's documentation
/// of the call uses).
pub const WEB_API_VERSION: &str = "2022-03-01";
/// The Microsoft.App API version of the revision list and restart.
pub const CONTAINER_APPS_API_VERSION: &str = "2025-07-01";

/// Makes one consumer read its secrets again.
pub trait Refresher: Send + Sync + std::fmt::Debug {
    /// Refreshes `consumer`; `Ok` says what was done ("Key Vault references refreshed").
    fn refresh<'a>(&'a self, consumer: &'a Consumer) -> BoxFuture<'a, Result<String, ArmCallError>>;
}

/// Which consumers were refreshed for which object version, kept where redeliveries of the event can see it.
pub trait RefreshRecord: Send + Sync + std::fmt::Debug {
    /// Whether `key` (see [`record_key`]) was recorded.
    fn is_recorded<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, String>>;
    /// Records `key`.
    fn record<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), String>>;
}

/// The record key of `consumer` refreshed for `object`'s version: lowercase, one path per pair.
pub fn record_key(object: &ObjectRef, consumer: &Consumer) -> String {
    format!(
        "consumers/{}/{}/{}/{}{}",
        object.vault(),
        object.kind().as_str(),
        object.name(),
        object.version(),
        consumer.id()
    )
    .to_ascii_lowercase()
}

/// The record inside this process, for a single process (local runs): a restart forgets it, so a consumer
/// may then be refreshed once more, which is harmless (both calls are idempotent).
#[derive(Debug, Default)]
pub struct InProcessRecord {
    keys: Mutex<HashSet<String>>,
}

impl RefreshRecord for InProcessRecord {
    fn is_recorded<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, String>> {
        // A poisoned set only means a panic between two set operations; the set itself is valid.
        let found = self.keys.lock().unwrap_or_else(PoisonError::into_inner).contains(key);
        Box::pin(async move { Ok(found) })
    }

    fn record<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), String>> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner).insert(key.to_owned());
        Box::pin(async { Ok(()) })
    }
}

/// Refreshes consumers through Resource Manager with the handler's identity.
#[derive(Debug, Clone)]
pub struct ArmRefresher {
    arm: ArmClient,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RevisionPage {
    #[serde(default)]
    value: Vec<Revision>,
    next_link: Option<String>,
}

#[derive(Deserialize)]
struct Revision {
    name: String,
    #[serde(default)]
    properties: RevisionProperties,
}

#[derive(Deserialize, Default)]
struct RevisionProperties {
    #[serde(default)]
    active: bool,
}

/// The most revision pages followed: Container Apps keep at most 100 inactive revisions, far fewer pages.
const MAX_REVISION_PAGES: usize = 20;

impl ArmRefresher {
    pub fn new(arm: ArmClient) -> Self {
        Self { arm }
    }

    async fn refresh_web_app(&self, id: &str) -> Result<String, ArmCallError> {
        let path = format!("{id}/config/configreferences/appsettings/refresh");
        self.arm.send(Method::Post, &path, WEB_API_VERSION, None, &[], &format!("refreshing {id}")).await?;
        Ok("Key Vault references refreshed".to_owned())
    }

    async fn restart_container_app(&self, id: &str) -> Result<String, ArmCallError> {
        let doing = format!("listing the revisions of {id}");
        let mut page: RevisionPage = parse(
            &self
                .arm
                .send(Method::Get, &format!("{id}/revisions"), CONTAINER_APPS_API_VERSION, None, &[200], &doing)
                .await?,
            &doing,
        )?;
        let mut active = Vec::new();
        for _ in 0..MAX_REVISION_PAGES {
            active.extend(page.value.into_iter().filter(|r| r.properties.active).map(|r| r.name));
            let Some(link) = page.next_link.filter(|l| !l.is_empty()) else { break };
            page = parse(&self.arm.follow(&link, &doing).await?, &doing)?;
        }
        if active.is_empty() {
            return Ok("no active revision to restart".to_owned());
        }
        for revision in &active {
            if !revision.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(ArmCallError {
                    message: format!("{doing}: '{revision}' is not a revision name"),
                    status: None,
                    code: None,
                    retryable: false,
                });
            }
            let path = format!("{id}/revisions/{revision}/restart");
            let doing = format!("restarting revision {revision} of {id}");
            self.arm.send(Method::Post, &path, CONTAINER_APPS_API_VERSION, None, &[200], &doing).await?;
        }
        Ok(format!("restarted revision(s) {}", active.join(", ")))
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], doing: &str) -> Result<T, ArmCallError> {
    serde_json::from_slice(body).map_err(|e| ArmCallError {
        message: format!("{doing}: the response is not a revision list ({e})"),
        status: None,
        code: None,
        retryable: false,
    })
}

impl Refresher for ArmRefresher {
    fn refresh<'a>(&'a self, consumer: &'a Consumer) -> BoxFuture<'a, Result<String, ArmCallError>> {
        Box::pin(async move {
            match consumer {
                Consumer::WebApp { id } => self.refresh_web_app(id).await,
                Consumer::ContainerApp { id } => self.restart_container_app(id).await,
            }
        })
    }
}

/// What refreshing an object's consumers came to.
#[derive(Debug, Default)]
pub struct RefreshReport {
    /// One result per consumer.
    pub results: Vec<TargetOutcome>,
    /// Some consumer failed in a way a redelivery may fix: the invocation must fail retryably.
    pub retry: bool,
}

impl RefreshReport {
    /// One sentence for the notification and the outcome line; empty without consumers.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for (result, says) in [
            ("refreshed", "Consumers refreshed"),
            ("already-refreshed", "Consumers already refreshed"),
            ("failed", "Consumers that failed"),
        ] {
            let named: Vec<String> = self
                .results
                .iter()
                .filter(|r| r.result == result)
                .map(|r| if r.detail.is_empty() { r.target.clone() } else { format!("{} ({})", r.target, r.detail) })
                .collect();
            if !named.is_empty() {
                parts.push(format!("{says}: {}.", named.join("; ")));
            }
        }
        parts.join(" ")
    }

    /// Whether a consumer failed for good (a missing role, an app that does not exist).
    pub fn failed(&self) -> bool {
        self.results.iter().any(|r| r.result == "failed")
    }
}

/// Refreshes each of `consumers` not yet recorded for `object`'s version, recording each success at once.
/// Every consumer is tried even when one fails, so one broken app does not hold the others back.
pub async fn refresh(
    refresher: &dyn Refresher,
    record: &dyn RefreshRecord,
    object: &ObjectRef,
    consumers: &[Consumer],
) -> RefreshReport {
    let mut report = RefreshReport::default();
    for consumer in consumers {
        let key = record_key(object, consumer);
        let target = consumer.id().to_owned();
        let outcome =
            |result: &str, detail: String| TargetOutcome { target: target.clone(), result: result.into(), detail };
        match record.is_recorded(&key).await {
            Ok(true) => {
                report.results.push(outcome("already-refreshed", String::new()));
                continue;
            }
            Ok(false) => {}
            Err(error) => {
                // Without the record, a call could be repeated after success: wait for the store instead.
                tracing::warn!(consumer = %consumer, %error, "reading the refresh record failed");
                report.results.push(outcome("pending", format!("the refresh record could not be read: {error}")));
                report.retry = true;
                continue;
            }
        }
        match refresher.refresh(consumer).await {
            Ok(done) => {
                tracing::info!(object = %object.described(), consumer = %consumer, done, "consumer refreshed");
                if let Err(error) = record.record(&key).await {
                    // The call succeeded; a redelivery would repeat it. Say so, and do not fail the event for it.
                    tracing::warn!(consumer = %consumer, %error, "recording the refresh failed");
                }
                report.results.push(outcome("refreshed", done));
            }
            Err(error) if error.retryable => {
                tracing::warn!(consumer = %consumer, %error, "consumer refresh failed; the event will be redelivered");
                report.results.push(outcome("pending", error.message));
                report.retry = true;
            }
            Err(error) => {
                tracing::warn!(consumer = %consumer, %error, "consumer refresh refused");
                report.results.push(outcome("failed", error.message));
            }
        }
    }
    report
}

/// The handler's consumer refresh: the refresher and the record, or nothing when no consumer is configured.
#[derive(Debug, Clone)]
pub struct ConsumerRefresh {
    pub refresher: Arc<dyn Refresher>,
    pub record: Arc<dyn RefreshRecord>,
}
