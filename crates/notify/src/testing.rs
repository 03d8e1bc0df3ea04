//! [`FakeNotifier`]: an in-memory [`Notify`] for handler unit tests (feature `testing`). It records every
//! notification and answers as configured: every channel accepts, or every channel refuses.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use crate::channel::{ChannelId, parse_channels};
use crate::digest::Digest;
use crate::message::Notification;
use crate::notifier::{ChannelFailure, Delivery, Notify, NotifyError};
use crate::transport::FailureKind;

/// Records notifications; its channels are real channel ids (parsed from a channel list), nothing is sent.
#[derive(Debug, Clone, Default)]
pub struct FakeNotifier {
    channels: Vec<ChannelId>,
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    sent: Vec<Notification>,
    /// What [`Notify::send_to`] and [`Notify::send_digest_to`] delivered, by channel index.
    sent_to: Vec<(usize, Sent)>,
    refusing: bool,
}

/// One single-channel delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    Notification(Notification),
    Digest(Digest),
}

impl FakeNotifier {
    /// A notifier with the channels of `list` (docs/notifications.md); an empty list has none.
    ///
    /// # Panics
    /// When `list` is not a valid channel list (a test's own mistake).
    pub fn with_channels(list: &str) -> Self {
        #[allow(clippy::expect_used)]
        let configs = parse_channels(list).expect("a valid channel list");
        Self { channels: configs.into_iter().map(|c| c.id).collect(), state: Arc::default() }
    }

    /// From now on every channel refuses (`true`) or accepts (`false`).
    pub fn refuse(&self, refusing: bool) {
        self.locked().refusing = refusing;
    }

    /// Every notification accepted so far, oldest first.
    pub fn sent(&self) -> Vec<Notification> {
        self.locked().sent.clone()
    }

    /// Every single-channel delivery accepted so far (the sweep's), with the channel's index, oldest first.
    pub fn sent_to(&self) -> Vec<(usize, Sent)> {
        self.locked().sent_to.clone()
    }

    fn accept_one(&self, channel: &ChannelId, sent: Sent) -> Result<(), ChannelFailure> {
        let mut state = self.locked();
        if state.refusing || !self.channels.contains(channel) {
            return Err(ChannelFailure {
                channel: channel.clone(),
                kind: FailureKind::Refused,
                detail: "the fake notifier refuses".into(),
            });
        }
        state.sent_to.push((channel.index(), sent));
        Ok(())
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, State> {
        // Poisoned only by a panicking test thread; the records are still whole.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Notify for FakeNotifier {
    fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    fn send<'a>(&'a self, notification: &'a Notification) -> BoxFuture<'a, Result<Delivery, NotifyError>> {
        Box::pin(async move {
            let mut state = self.locked();
            if state.refusing && !self.channels.is_empty() {
                return Err(NotifyError {
                    event_id: notification.event_id.clone(),
                    failures: Vec::new(),
                    sent: Vec::new(),
                    already_accepted: Vec::new(),
                });
            }
            state.sent.push(notification.clone());
            Ok(Delivery { sent: self.channels.clone(), already_accepted: Vec::new() })
        })
    }

    fn channels(&self) -> Vec<ChannelId> {
        self.channels.clone()
    }

    fn send_to<'a>(
        &'a self,
        channel: &'a ChannelId,
        notification: &'a Notification,
    ) -> BoxFuture<'a, Result<(), ChannelFailure>> {
        Box::pin(async move { self.accept_one(channel, Sent::Notification(notification.clone())) })
    }

    fn send_digest_to<'a>(
        &'a self,
        channel: &'a ChannelId,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<(), ChannelFailure>> {
        Box::pin(async move { self.accept_one(channel, Sent::Digest(digest.clone())) })
    }
}
