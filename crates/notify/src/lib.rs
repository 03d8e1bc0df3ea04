//! Notifications about Key Vault objects: a generic signed webhook, Slack, Microsoft Teams, email, and the
//! PagerDuty and Opsgenie pagers, all configured as URLs in one setting (docs/notifications.md).
//!
//! A handler builds one [`Notifier`] per process from the channel list, turns an event and what it did into a
//! [`Notification`] (metadata only: there is no field a secret value could go in) and calls
//! [`Notifier::send`]. A [`NotifyError`] is always retryable; the redelivery goes only to the channels that
//! did not accept the event yet.
//!
//! # Layout
//! - [`channel`]: the channel URL grammar, parsed into checked channel configurations; [`ChannelId`].
//! - [`message`]: [`Notification`], [`Severity`] and [`Action`]: what every channel says.
//! - [`digest`](mod@digest): the sweep's [`Digest`]: notices grouped by vault, kind and threshold, at most
//!   100 objects per message; rendered by every channel but the pagers.
//! - `render` (private): a notification as Slack Block Kit, a Teams Adaptive Card, an email.
//! - [`signature`]: the webhook's `X-Keyturn-Signature` header, and [`verify_signature`] for receivers.
//! - `transport` (private): one delivery over HTTPS or SMTP, with replies scrubbed of channel secrets.
//! - `dedupe` (private): the bounded in-process record of which channel accepted which event.
//! - [`notifier`]: [`Notify`], the trait handlers hold; [`Notifier`], concurrency, timeouts, [`Delivery`] and
//!   [`NotifyError`]; sends to one chosen channel for callers that route (the sweep).
//! - [`secret`]: [`Secret`], which prints as `****`.
//! - [`paging`]: what the two pagers share: [`alert_key`] (one alert per object version), their URL grammar
//!   and their bounded retries on 429 and 5xx.
//! - `pagerduty` (private): PagerDuty Events API v2, trigger and resolve by `dedup_key`.
//! - `opsgenie` (private): Opsgenie Alert API, create and close by alias.
//! - `testing` (feature `testing`): `FakeNotifier`, an in-memory [`Notify`] that records what it was given.

pub mod channel;
mod dedupe;
pub mod digest;
pub mod message;
pub mod notifier;
mod opsgenie;
mod pagerduty;
pub mod paging;
mod render;
pub mod secret;
pub mod signature;
#[cfg(feature = "testing")]
pub mod testing;
mod transport;

pub use channel::{ChannelError, ChannelId, ChannelKind};
pub use digest::{Digest, DigestGroup, MAX_OBJECTS_PER_MESSAGE, Notice, Section, digest};
pub use message::{Action, Notification, Severity, portal_link};
pub use notifier::{BuildError, ChannelFailure, Delivery, Notifier, NotifierOptions, Notify, NotifyError};
pub use paging::alert_key;
pub use secret::Secret;
pub use signature::{EVENT_ID_HEADER, SIGNATURE_HEADER, SIGNATURE_TOLERANCE, SignatureError, sign, verify_signature};
pub use transport::FailureKind;
