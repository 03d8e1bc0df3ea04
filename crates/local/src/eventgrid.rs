//! An Event Grid emulator for Key Vault's system topic.
//!
//! It turns the vault emulator's changes and the shared [`Clock`] into Key Vault events
//! (`*NewVersionCreated` on each new version; `*NearExpiry` and `*Expired` for the current version as the clock
//! reaches exp − 30 days and exp) and delivers them to subscriptions with the service's semantics
//! (../shared/reference/event-grid.md): arrays with `aeg-*` headers, success only on 200-204, the retry
//! schedule (scaled by [`EventGridOptions::time_scale`] so a day of retries fits in a test), no retry on final
//! failures, dead-letter records (in a blob container, as the service writes them, and/or a directory), and, on
//! request, the duplicates and reordering the real service may produce.

mod blob_destination;
mod dispatch;
mod expiry;
mod subscription;

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::TimeDelta;
use keyturn_events::delivery::{self, DeliveryKind};
use keyturn_events::{Event, KeyVaultEvent, Payload, Schema, VaultObject};
use tokio::sync::{Notify, mpsc, watch};
use tracing::{info, warn};

pub use blob_destination::BlobDestination;
pub use dispatch::{Attempt, DeadLetter};
pub use expiry::ObjectChange;
pub use subscription::{EndpointType, SubjectFilter, Subscription};

use crate::clock::Clock;
use expiry::{DueEvent, ExpiryTracker};

/// How the emulator behaves beyond what a subscription says.
#[derive(Debug, Clone)]
pub struct EventGridOptions {
    /// Real seconds per second of event time for retries and time to live: 1.0 is the real service;
    /// 0.001 turns the 10 s first retry into 10 ms and a day of retries into 86 s.
    pub time_scale: f64,
    /// How long one delivery waits for an answer before it counts as `TimedOut` (the service waits 30 s,
    /// not scaled: a handler's work takes real time).
    pub delivery_timeout: Duration,
    /// Share (0-1) of deliveries sent a second time, as at-least-once delivery allows.
    pub duplicate_share: f64,
    /// Each delivery's first attempt is held back by a random time up to this, which reorders events.
    pub reorder_window: Duration,
    /// Seed for the duplicate and reordering choices, so a failing run can be replayed.
    pub seed: u64,
    /// How long before exp `*NearExpiry` fires.
    pub near_expiry_lead: TimeDelta,
    /// The ARM ids in `topic`: `/subscriptions/<this>/resourceGroups/<that>/providers/Microsoft.KeyVault/vaults/<vault>`.
    pub azure_subscription_id: String,
    pub resource_group: String,
}

impl Default for EventGridOptions {
    fn default() -> Self {
        Self {
            time_scale: 1.0,
            delivery_timeout: Duration::from_secs(30),
            duplicate_share: 0.0,
            reorder_window: Duration::ZERO,
            seed: 0x6b65_7974_7572_6e00,
            near_expiry_lead: TimeDelta::days(30),
            azure_subscription_id: "00000000-0000-0000-0000-000000000000".to_owned(),
            resource_group: "keyturn-local".to_owned(),
        }
    }
}

/// Why a subscription could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    #[error("subscription '{name}' is invalid: {reason}")]
    Invalid { name: String, reason: String },
    #[error("subscription '{name}': the endpoint did not complete the validation handshake: {reason}")]
    Handshake { name: String, reason: String },
}

/// A running Event Grid emulator. Cheap to clone; stops when [`EventGrid::shutdown`] is called or the last
/// clone is dropped.
#[derive(Debug, Clone)]
pub struct EventGrid {
    shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    options: EventGridOptions,
    clock: Clock,
    http: reqwest::Client,
    // std Mutexes: each is held for a push or a scan, never across an await.
    subscriptions: Mutex<Vec<(Subscription, mpsc::UnboundedSender<Event>)>>,
    tracker: Mutex<ExpiryTracker>,
    tracker_changed: Arc<Notify>,
    attempts: Mutex<Vec<Attempt>>,
    dead_letters: Mutex<Vec<DeadLetter>>,
    rng: Mutex<fastrand::Rng>,
    /// Batches accepted and not yet delivered, dead-lettered or dropped.
    in_flight: watch::Sender<usize>,
    stop: watch::Sender<bool>,
}

impl EventGrid {
    /// Starts the emulator: the expiry watcher runs from now on.
    pub fn start(clock: Clock, options: EventGridOptions) -> Self {
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            // Building a plain client fails only when the TLS backend cannot initialise: not recoverable here.
            .unwrap_or_else(|_| reqwest::Client::new());
        let shared = Arc::new(Shared {
            tracker: Mutex::new(ExpiryTracker::new(options.near_expiry_lead)),
            rng: Mutex::new(fastrand::Rng::with_seed(options.seed)),
            options,
            clock,
            http,
            subscriptions: Mutex::new(Vec::new()),
            tracker_changed: Arc::new(Notify::new()),
            attempts: Mutex::new(Vec::new()),
            dead_letters: Mutex::new(Vec::new()),
            in_flight: watch::channel(0).0,
            stop: watch::channel(false).0,
        });
        tokio::spawn(watch_expiry(Arc::downgrade(&shared)));
        Self { shared }
    }

    /// Creates a subscription. A webhook endpoint must complete the validation handshake first, as with the
    /// real service (Event Grid schema: answer the validation event with its code; CloudEvents: answer the
    /// OPTIONS request with `WebHook-Allowed-Origin`).
    pub async fn subscribe(&self, subscription: Subscription) -> Result<(), SubscriptionError> {
        subscription
            .validate()
            .map_err(|reason| SubscriptionError::Invalid { name: subscription.name.clone(), reason })?;
        if subscription.endpoint_kind == EndpointType::Webhook {
            self.handshake(&subscription)
                .await
                .map_err(|reason| SubscriptionError::Handshake { name: subscription.name.clone(), reason })?;
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(dispatch_subscription(Arc::downgrade(&self.shared), subscription.clone(), receiver));
        info!(subscription = %subscription.name, endpoint = %subscription.endpoint, "event subscription created");
        lock(&self.shared.subscriptions).push((subscription, sender));
        Ok(())
    }

    /// Publishes an event to every subscription that matches it (its schema is each subscription's own).
    pub fn publish(&self, event: Event) {
        self.shared.publish(event);
    }

    /// Tells Event Grid about a change in a vault: a new version is published at once; expiry events follow
    /// as the clock reaches them.
    pub fn observe(&self, change: ObjectChange) {
        let created = lock(&self.shared.tracker).observe(change);
        if let Some(due) = created {
            self.shared.publish_due(due);
        }
        self.shared.tracker_changed.notify_one();
    }

    /// Aligns the expiry watch with the vault's current versions without publishing anything (see
    /// `ExpiryTracker::sync`): for a stack started over persisted state, and for attribute changes.
    pub fn sync(&self, current: impl IntoIterator<Item = ObjectChange>) {
        let now = self.shared.clock.now();
        {
            let mut tracker = lock(&self.shared.tracker);
            for change in current {
                tracker.sync(change, now);
            }
        }
        self.shared.tracker_changed.notify_one();
    }

    /// Every delivery attempt so far, in order.
    pub fn attempts(&self) -> Vec<Attempt> {
        lock(&self.shared.attempts).clone()
    }

    /// Every batch given up on so far.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        lock(&self.shared.dead_letters).clone()
    }

    /// Waits until every accepted batch is delivered or given up on, or `timeout` passes (→ false).
    pub async fn settled(&self, timeout: Duration) -> bool {
        let mut in_flight = self.shared.in_flight.subscribe();
        tokio::time::timeout(timeout, in_flight.wait_for(|n| *n == 0)).await.is_ok_and(|r| r.is_ok())
    }

    /// Stops retries and the expiry watcher.
    pub fn shutdown(&self) {
        self.shared.stop.send_replace(true);
    }

    async fn handshake(&self, subscription: &Subscription) -> Result<(), String> {
        let http = &self.shared.http;
        match subscription.schema {
            Schema::EventGrid => {
                let code = uuid::Uuid::new_v4().to_string();
                let event = serde_json::json!([{
                    "id": uuid::Uuid::new_v4().to_string(),
                    "topic": "/subscriptions/local/resourceGroups/local/providers/Microsoft.KeyVault/vaults/local",
                    "subject": "",
                    "eventType": keyturn_events::event::SUBSCRIPTION_VALIDATION_EVENT,
                    "eventTime": self.shared.clock.now().to_rfc3339(),
                    "data": { "validationCode": code, "validationUrl": null },
                    "dataVersion": "1",
                    "metadataVersion": "1"
                }]);
                let mut request = http
                    .post(subscription.endpoint.clone())
                    .header(delivery::EVENT_TYPE_HEADER, DeliveryKind::SubscriptionValidation.as_str())
                    .json(&event)
                    .timeout(Duration::from_secs(30));
                for (name, value) in &subscription.delivery_headers {
                    request = request.header(name.as_str(), value.as_str());
                }
                let response = request.send().await.map_err(|e| e.to_string())?;
                // 202 does not count: the service wants the code back synchronously.
                if response.status().as_u16() != 200 {
                    return Err(format!("answered {} (expected 200)", response.status()));
                }
                let body: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
                if body["validationResponse"] != code.as_str() {
                    return Err(format!("answered {body} instead of the validation code"));
                }
                Ok(())
            }
            Schema::CloudEvents => {
                let mut request = http
                    .request(reqwest::Method::OPTIONS, subscription.endpoint.clone())
                    .header(delivery::WEBHOOK_REQUEST_ORIGIN, "eventgrid.azure.net")
                    .timeout(Duration::from_secs(30));
                for (name, value) in &subscription.delivery_headers {
                    request = request.header(name.as_str(), value.as_str());
                }
                let response = request.send().await.map_err(|e| e.to_string())?;
                let allowed = response
                    .headers()
                    .get(delivery::WEBHOOK_ALLOWED_ORIGIN)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                if response.status().is_success()
                    && (allowed == "*" || allowed.eq_ignore_ascii_case("eventgrid.azure.net"))
                {
                    Ok(())
                } else {
                    Err(format!("OPTIONS answered {} with WebHook-Allowed-Origin '{allowed}'", response.status()))
                }
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

impl Shared {
    fn publish(&self, event: Event) {
        let subscriptions = lock(&self.subscriptions);
        for (subscription, sender) in subscriptions.iter().filter(|(s, _)| s.matches(&event)) {
            // The dispatcher lives as long as the emulator; a closed channel means it is stopping.
            if sender.send(event.clone()).is_ok() {
                self.in_flight.send_modify(|n| *n += 1);
            } else {
                warn!(subscription = %subscription.name, "event dropped: the emulator is stopping");
            }
        }
    }

    fn publish_due(&self, due: DueEvent) {
        let change = due.change;
        let object = VaultObject::new(
            &change.vault,
            change.kind,
            &change.name,
            Some(&change.version),
            change.not_before,
            change.expires,
        );
        match object {
            Ok(object) => self.publish(Event {
                id: uuid::Uuid::new_v4().to_string(),
                subject: change.name.clone(),
                source: format!(
                    "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.KeyVault/vaults/{}",
                    self.options.azure_subscription_id, self.options.resource_group, change.vault
                ),
                time: Some(self.clock.now()),
                schema: Schema::EventGrid,
                payload: Payload::KeyVault(KeyVaultEvent { event_type: due.event_type, object }),
            }),
            // Only a vault or object name Key Vault itself would refuse gets here.
            Err(e) => {
                warn!(vault = %change.vault, name = %change.name, error = %e, "cannot describe change as an event")
            }
        }
    }

    fn record(&self, attempt: Attempt) {
        info!(
            subscription = %attempt.subscription, attempt = attempt.attempt, status = ?attempt.status,
            outcome = %attempt.outcome, duplicate = attempt.duplicate, events = ?attempt.event_ids,
            "event delivery attempt"
        );
        lock(&self.attempts).push(attempt);
    }

    async fn dead_letter(&self, subscription: &Subscription, letter: DeadLetter) {
        warn!(subscription = %subscription.name, reason = %letter.dead_letter_reason, attempts = letter.delivery_attempts, "events dead-lettered");
        let id = uuid::Uuid::new_v4().to_string();
        let name = dispatch::dead_letter_path(&subscription.name, letter.last_delivery_attempt_time, &id);
        if let Some(dir) = &subscription.dead_letter_dir {
            let path = dir.join(&name);
            if let Err(e) = write_json(&path, &dispatch::dead_letter_blob(&letter)).await {
                warn!(path = %path.display(), error = %e, "could not write the dead-letter record");
            }
        }
        if let Some(destination) = &subscription.dead_letter_blob {
            // Blob names take '/' whatever the platform's path separator.
            let blob: Vec<String> = name.iter().map(|part| part.to_string_lossy().into_owned()).collect();
            let body = serde_json::to_vec(&dispatch::dead_letter_blob(&letter)).unwrap_or_default();
            match destination.write(&blob.join("/"), body).await {
                Ok(()) => info!(container = %destination.container(), blob = %blob.join("/"), "dead letter written"),
                // The service counts such an event as dropped (`DroppedEventCount`).
                Err(e) => {
                    warn!(container = %destination.container(), error = %e, "dead letter dropped: the container refused it")
                }
            }
        }
        lock(&self.dead_letters).push(letter);
    }

    fn scale(&self, event_time: Duration) -> Duration {
        event_time.mul_f64(self.options.time_scale)
    }

    fn unscale(&self, real: Duration) -> Duration {
        real.div_f64(self.options.time_scale)
    }

    async fn stopped(&self) {
        let mut stop = self.stop.subscribe();
        // An error means the sender is gone, i.e. stopping as well.
        let _ = stop.wait_for(|s| *s).await;
    }

    fn done(&self, batches: usize) {
        self.in_flight.send_modify(|n| *n = n.saturating_sub(batches));
    }
}

async fn write_json(path: &Path, value: &serde_json::Value) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    tokio::fs::write(path, serde_json::to_vec_pretty(value)?).await
}

/// Drains one subscription's queue into batches of up to `maxEventsPerBatch` and delivers each in its own
/// task, so one slow endpoint call never holds up the next batch (the service does the same).
async fn dispatch_subscription(
    shared: std::sync::Weak<Shared>,
    subscription: Subscription,
    mut queue: mpsc::UnboundedReceiver<Event>,
) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < subscription.max_events_per_batch {
            match queue.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        let Some(shared) = shared.upgrade() else { return };
        let (hold_back, duplicate) = {
            let mut rng = lock(&shared.rng);
            let window = shared.options.reorder_window;
            (window.mul_f64(rng.f64()), rng.f64() < shared.options.duplicate_share)
        };
        let subscription = subscription.clone();
        tokio::spawn(async move {
            let events = batch.len();
            if !hold_back.is_zero() {
                tokio::time::sleep(hold_back).await;
            }
            if duplicate {
                let (shared, subscription, batch) = (shared.clone(), subscription.clone(), batch.clone());
                tokio::spawn(async move { dispatch::deliver(&shared, &subscription, batch, true).await });
            }
            dispatch::deliver(&shared, &subscription, batch, false).await;
            shared.done(events);
        });
    }
}

/// Fires expiry events as the clock reaches them: sleeps until the next one falls due, and wakes early when
/// the clock jumps or changes speed or a vault change moves a deadline.
async fn watch_expiry(shared: std::sync::Weak<Shared>) {
    let (clock, mut clock_changed, mut stop, tracker_changed) = match shared.upgrade() {
        Some(s) => (s.clock.clone(), s.clock.subscribe(), s.stop.subscribe(), s.tracker_changed.clone()),
        None => return,
    };
    loop {
        let Some(s) = shared.upgrade() else { return };
        let (due, next) = lock(&s.tracker).due(clock.now());
        for event in due {
            s.publish_due(event);
        }
        // Re-check at least once a minute: a clock running at N× speed reaches deadlines between jumps.
        let wait = next
            .and_then(|at| clock.real_time_until(at))
            .unwrap_or(Duration::from_secs(60))
            .min(Duration::from_secs(60));
        // Not holding `s` while asleep: dropping the last handle must stop this task.
        drop(s);
        let changed = tracker_changed.notified();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            r = clock_changed.changed() => if r.is_err() { return },
            () = changed => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind, still consistent enough to read.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
