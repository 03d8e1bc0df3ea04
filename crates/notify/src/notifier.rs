//! The [`Notifier`]: built once per process from the channel list, it sends a notification to every channel
//! concurrently, each bounded by its timeout, and remembers which channels accepted which event so that a
//! redelivery goes only to those that have not.

use std::fmt;
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, join_all};
use tracing::{debug, info, warn};

use crate::channel::{ChannelConfig, ChannelError, ChannelId, Target, parse_channels};
use crate::dedupe::AcceptedRecord;
use crate::digest::Digest;
use crate::message::{Notification, Severity};
use crate::transport::{self, FailureKind, Sender};

/// How a [`Notifier`] behaves beyond its channel list.
#[derive(Debug, Clone)]
pub struct NotifierOptions {
    /// The timeout of a channel that does not set its own (`timeout=` in its URL).
    pub timeout: Duration,
    /// Extra trusted root certificates (PEM) beside the platform's: a local test server or a private CA.
    pub extra_roots_pem: Option<Vec<u8>>,
    /// The process's shared trust roots (`keyturn_tls::TrustRoots::for_ca_file`); when set, HTTP channels use
    /// them (no second read of the system store) and `extra_roots_pem` only serves the email channels.
    pub trust_roots: Option<keyturn_tls::TrustRoots>,
    /// How many events the accepted-channel record remembers (the oldest are forgotten first).
    pub remember_events: usize,
    /// How long the record remembers an event: longer than Event Grid's 24 hours of retries.
    pub remember_for: Duration,
}

impl Default for NotifierOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            extra_roots_pem: None,
            trust_roots: None,
            remember_events: 10_000,
            remember_for: Duration::from_secs(25 * 3600),
        }
    }
}

/// A notifier that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error("the extra root certificates are not usable PEM: {0}")]
    Roots(String),
    #[error("the HTTP client for notifications could not be built: {0}")]
    HttpClient(String),
    #[error("{channel}: the SMTP transport could not be built: {reason}")]
    Smtp { channel: ChannelId, reason: String },
}

/// What a successful [`Notifier::send`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Delivery {
    /// Channels that accepted the notification now.
    pub sent: Vec<ChannelId>,
    /// Channels that had already accepted this event in this process and were not sent it again.
    pub already_accepted: Vec<ChannelId>,
}

/// One channel's failure. Its message names the channel by `scheme://host` only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{channel}: {detail}")]
pub struct ChannelFailure {
    pub channel: ChannelId,
    pub kind: FailureKind,
    /// What went wrong, with any channel secret replaced by `****`.
    pub detail: String,
}

/// Some channels did not accept a notification. Always retryable: the invocation should fail so Event Grid
/// redelivers the event, and the redelivery goes only to the channels listed here (within this process).
/// Even a refusal (an HTTP 4xx from a mistyped URL) is worth retrying: it is fixed by an operator, and Event
/// Grid keeps the event for 24 hours meanwhile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} of {} notification channels did not accept event {event_id} (retryable): {}",
    failures.len(),
    failures.len() + sent.len() + already_accepted.len(),
    failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
)]
pub struct NotifyError {
    pub event_id: String,
    pub failures: Vec<ChannelFailure>,
    /// Channels that accepted it on this attempt.
    pub sent: Vec<ChannelId>,
    /// Channels that had accepted it on an earlier attempt.
    pub already_accepted: Vec<ChannelId>,
}

struct Channel {
    config: ChannelConfig,
    sender: Sender,
    timeout: Duration,
}

/// Where a handler's notifications go: [`Notifier`] in production, an in-memory fake in unit tests
/// (`testing::FakeNotifier`, with the `testing` feature). Object-safe: handlers hold `Arc<dyn Notify>`.
pub trait Notify: Send + Sync + fmt::Debug {
    /// Whether no channel is configured (then nothing is sent and sends succeed).
    fn is_empty(&self) -> bool;

    /// Sends `notification` to every channel that has not yet accepted its event (see [`Notifier::send`]).
    fn send<'a>(&'a self, notification: &'a Notification) -> BoxFuture<'a, Result<Delivery, NotifyError>>;

    /// The configured channels, in list order: what a caller that routes (the sweep) chooses among.
    fn channels(&self) -> Vec<ChannelId>;

    /// Sends `notification` to the one channel `channel` (see [`Notifier::send_to`]).
    fn send_to<'a>(
        &'a self,
        channel: &'a ChannelId,
        notification: &'a Notification,
    ) -> BoxFuture<'a, Result<(), ChannelFailure>>;

    /// Sends one digest message to the one channel `channel` (see [`Notifier::send_digest_to`]).
    fn send_digest_to<'a>(
        &'a self,
        channel: &'a ChannelId,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<(), ChannelFailure>>;
}

impl Notify for Notifier {
    fn is_empty(&self) -> bool {
        Notifier::is_empty(self)
    }

    fn send<'a>(&'a self, notification: &'a Notification) -> BoxFuture<'a, Result<Delivery, NotifyError>> {
        Box::pin(Notifier::send(self, notification))
    }

    fn channels(&self) -> Vec<ChannelId> {
        Notifier::channels(self).cloned().collect()
    }

    fn send_to<'a>(
        &'a self,
        channel: &'a ChannelId,
        notification: &'a Notification,
    ) -> BoxFuture<'a, Result<(), ChannelFailure>> {
        Box::pin(Notifier::send_to(self, channel, notification))
    }

    fn send_digest_to<'a>(
        &'a self,
        channel: &'a ChannelId,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<(), ChannelFailure>> {
        Box::pin(Notifier::send_digest_to(self, channel, digest))
    }
}

impl Delivery {
    /// Every channel that has the message, this attempt's and earlier ones', as `scheme://host` each.
    pub fn channels(&self) -> Vec<String> {
        self.sent.iter().chain(&self.already_accepted).map(|id| id.endpoint().to_owned()).collect()
    }
}

/// Sends notifications to the configured channels. Build one per process and share it.
pub struct Notifier {
    channels: Vec<Channel>,
    record: AcceptedRecord,
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifier").field("channels", &self.channels().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

impl Notifier {
    /// A notifier for a channel list (docs/notifications.md) with default options.
    pub fn from_urls(list: &str) -> Result<Self, BuildError> {
        Self::new(list, NotifierOptions::default())
    }

    /// A notifier for a channel list; an empty list gives a notifier with no channel, whose sends succeed.
    pub fn new(list: &str, options: NotifierOptions) -> Result<Self, BuildError> {
        let configs = parse_channels(list)?;
        let roots_pem = options.extra_roots_pem.as_deref();
        // Checked once here for every channel kind: a bundle with no certificate in it would surface much later as
        // an unexplained certificate error.
        let checked = match roots_pem {
            Some(pem) => Some(
                keyturn_tls::TrustRoots::from_pem(pem, "notification roots", "extra_roots_pem")
                    .map_err(|e| BuildError::Roots(e.to_string()))?,
            ),
            None => None,
        };
        let trust_roots = match options.trust_roots.clone().or(checked) {
            Some(roots) => roots,
            None => keyturn_tls::TrustRoots::for_ca_file(None).map_err(|e| BuildError::Roots(e.to_string()))?,
        };
        // One HTTP client (one connection pool) for every HTTP channel, made only if there is one.
        let mut http: Option<reqwest::Client> = None;
        let mut channels = Vec::with_capacity(configs.len());
        for config in configs {
            let timeout = config.timeout.unwrap_or(options.timeout);
            let sender = match &config.target {
                Target::Email(target) => transport::smtp_sender(target, timeout, roots_pem).map_err(|e| {
                    BuildError::Smtp { channel: config.id.clone(), reason: config.scrubber.clean(&e.to_string(), 200) }
                })?,
                Target::Webhook { .. }
                | Target::Slack { .. }
                | Target::Teams { .. }
                | Target::PagerDuty(_)
                | Target::Opsgenie(_) => match &http {
                    Some(client) => Sender::Http(client.clone()),
                    None => {
                        let client = http_client(&trust_roots)?;
                        http = Some(client.clone());
                        Sender::Http(client)
                    }
                },
            };
            channels.push(Channel { config, sender, timeout });
        }
        let list = channels.iter().map(|c| c.config.id.to_string()).collect::<Vec<_>>().join(", ");
        info!(channels = channels.len(), list, "notification channels configured");
        Ok(Self { channels, record: AcceptedRecord::new(options.remember_events, options.remember_for) })
    }

    /// The configured channels, in list order.
    pub fn channels(&self) -> impl Iterator<Item = &ChannelId> {
        self.channels.iter().map(|c| &c.config.id)
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// Sends `notification` to every channel that has not yet accepted its event, concurrently, each within
    /// its timeout. Ok when every channel has now accepted it; otherwise a [`NotifyError`] naming the others.
    pub async fn send(&self, notification: &Notification) -> Result<Delivery, NotifyError> {
        let event_id = notification.event_id.as_str();
        let accepted = self.record.accepted(event_id, Instant::now());
        let (done, pending): (Vec<&Channel>, Vec<&Channel>) =
            self.channels.iter().partition(|c| accepted.contains(&c.config.id.index()));
        for channel in &done {
            info!(event_id, channel = %channel.config.id.endpoint(), channel_index = channel.config.id.index(),
                "notification already accepted by this channel; not sent again");
        }
        if self.channels.is_empty() {
            debug!(event_id, "no notification channel configured");
        }

        let results = join_all(pending.iter().map(|channel| async move {
            let id = &channel.config.id;
            let outcome = match tokio::time::timeout(
                channel.timeout,
                transport::deliver(&channel.config, &channel.sender, notification),
            )
            .await
            {
                Ok(Ok(())) => Ok(()),
                Ok(Err(failure)) => {
                    Err(ChannelFailure { channel: id.clone(), kind: failure.kind, detail: failure.detail })
                }
                Err(_) => Err(ChannelFailure {
                    channel: id.clone(),
                    kind: FailureKind::TimedOut,
                    detail: format!("no answer within {:?}", channel.timeout),
                }),
            };
            match &outcome {
                Ok(()) => {
                    // Recorded as soon as it is true: if the invocation is cut short after this point, the
                    // redelivery still skips this channel.
                    self.record.record(event_id, id.index(), Instant::now());
                    info!(event_id, channel = %id.endpoint(), channel_index = id.index(), kind = %id.kind(),
                        severity = %notification.severity, "notification accepted");
                }
                Err(failure) => {
                    warn!(event_id, channel = %id.endpoint(), channel_index = id.index(), kind = %id.kind(),
                        failure = ?failure.kind, detail = %failure.detail, "notification not accepted");
                }
            }
            (id.clone(), outcome)
        }))
        .await;

        let already_accepted: Vec<ChannelId> = done.iter().map(|c| c.config.id.clone()).collect();
        let mut sent = Vec::new();
        let mut failures = Vec::new();
        for (id, outcome) in results {
            match outcome {
                Ok(()) => sent.push(id),
                Err(failure) => failures.push(failure),
            }
        }
        if failures.is_empty() {
            Ok(Delivery { sent, already_accepted })
        } else {
            Err(NotifyError { event_id: event_id.to_owned(), failures, sent, already_accepted })
        }
    }
}

impl Notifier {
    /// Sends `notification` to `channel` only, within its timeout, whatever this process sent before: the
    /// caller keeps its own record of what was delivered (the sweep's durable state).
    pub async fn send_to(&self, channel: &ChannelId, notification: &Notification) -> Result<(), ChannelFailure> {
        let target = self.channel(channel)?;
        let result = self.bounded(target, transport::deliver(&target.config, &target.sender, notification)).await;
        log_single(channel, &notification.event_id, notification.severity, &result);
        result
    }

    /// Sends one digest message to `channel` only (webhook, Slack, Teams or email; a pager refuses it).
    pub async fn send_digest_to(&self, channel: &ChannelId, digest: &Digest) -> Result<(), ChannelFailure> {
        let target = self.channel(channel)?;
        let result = self.bounded(target, transport::deliver_digest(&target.config, &target.sender, digest)).await;
        log_single(channel, &digest.id, digest.severity(), &result);
        result
    }

    fn channel(&self, id: &ChannelId) -> Result<&Channel, ChannelFailure> {
        self.channels.iter().find(|c| &c.config.id == id).ok_or_else(|| ChannelFailure {
            channel: id.clone(),
            kind: FailureKind::Refused,
            detail: "no such channel is configured".into(),
        })
    }

    async fn bounded(
        &self,
        channel: &Channel,
        delivery: impl std::future::Future<Output = Result<(), transport::Failure>>,
    ) -> Result<(), ChannelFailure> {
        let id = &channel.config.id;
        match tokio::time::timeout(channel.timeout, delivery).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(failure)) => Err(ChannelFailure { channel: id.clone(), kind: failure.kind, detail: failure.detail }),
            Err(_) => Err(ChannelFailure {
                channel: id.clone(),
                kind: FailureKind::TimedOut,
                detail: format!("no answer within {:?}", channel.timeout),
            }),
        }
    }
}

/// The one log line of a single-channel send.
fn log_single(id: &ChannelId, message_id: &str, severity: Severity, result: &Result<(), ChannelFailure>) {
    match result {
        Ok(()) => info!(message_id, channel = %id.endpoint(), channel_index = id.index(), kind = %id.kind(),
            %severity, "notification accepted"),
        Err(failure) => warn!(message_id, channel = %id.endpoint(), channel_index = id.index(), kind = %id.kind(),
            failure = ?failure.kind, detail = %failure.detail, "notification not accepted"),
    }
}

fn http_client(roots: &keyturn_tls::TrustRoots) -> Result<reqwest::Client, BuildError> {
    let tls = roots.client_config(keyturn_tls::Alpn::Http).map_err(|e| BuildError::HttpClient(e.to_string()))?;
    reqwest::Client::builder()
        .user_agent(concat!("keyturn-notify/", env!("CARGO_PKG_VERSION")))
        // A webhook URL that redirects elsewhere is a misconfiguration to report, not to follow with the body.
        .redirect(reqwest::redirect::Policy::none())
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| BuildError::HttpClient(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Action;
    use keyturn_events::{KeyVaultEventType, ObjectKind, VaultObject};

    #[tokio::test]
    async fn with_no_channel_configured_a_send_succeeds_and_sends_nothing() {
        let notifier = Notifier::from_urls(" \n ").unwrap();
        assert!(notifier.is_empty());
        let object = VaultObject::new("kv1", ObjectKind::Secret, "s", Some("v1"), None, None).unwrap();
        let n = Notification::for_object(
            "e1",
            KeyVaultEventType::SecretNewVersionCreated,
            &object,
            Action::Informed { summary: "A new version exists.".into() },
        );
        assert_eq!(notifier.send(&n).await, Ok(Delivery::default()));
    }

    #[test]
    fn a_bad_channel_list_or_bad_roots_fail_the_build_with_the_reason() {
        let err = Notifier::from_urls("slack://hooks.slack.com/services/T/B/X ftp://x").unwrap_err();
        assert!(matches!(err, BuildError::Channel(ref e) if e.index() == 2), "{err}");
        let options = NotifierOptions { extra_roots_pem: Some(b"not pem".to_vec()), ..NotifierOptions::default() };
        let err = Notifier::new("slack://hooks.slack.com/services/T/B/X", options).unwrap_err();
        assert!(matches!(err, BuildError::Roots(_)), "{err}");
    }
}
