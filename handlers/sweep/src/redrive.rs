//! Dead-lettered events (`KEYTURN_SWEEP_DEAD_LETTER_*`): each reported once, and re-driven where the object
//! still needs it.
//!
//! Event Grid writes what it gave up on into the subscriptions' dead-letter container, one blob per
//! dead-lettering. Each pass lists the container and, for each blob no sweep has handled yet:
//! 1. claims it in the sweep's state ([`ThresholdKey::dead_letter`]): of concurrent sweeps exactly one gets
//!    it, and a blob handled once is skipped by every later pass, after restarts too;
//! 2. reads it, and decides each event (`redrive`): a `*NearExpiry` event whose object is allow-listed, not
//!    expired and still on the event's version is re-driven through `Engine::rotate`, near-expiry's locked,
//!    fenced, idempotent path (its rotation window included); every other event is reported with why it is
//!    not re-driven; an entry that is not a Key Vault event, or does not decode, is reported as unusable;
//! 3. completes the claim, so the blob is reported once; a retryable failure (the vault busy, a lock held)
//!    releases it instead, and the next pass tries again.
//!
//! The dead-letter blob itself is left as Event Grid wrote it (the sweep only reads the container: Storage
//! Blob Data Reader); the deployment's lifecycle rule deletes it after its retention. The record of its
//! handling lives in the sweep's own state container, beside the thresholds.
//!
//! Re-driving needs near-expiry's write roles, as missed-event repair does, so it happens only with
//! `KEYTURN_SWEEP_REPAIR=on`; without it, dead letters are reported and not re-driven.

use chrono::{DateTime, Utc};
use keyturn_events::{Lifecycle, ObjectRef};
use keyturn_notify::Severity;
use keyturn_rotation::RotationOutcome;
use keyturn_sweep::{Claim, DeadLetter, DeadLetters, Notice, Section, ThresholdKey, Unusable};

use crate::SweepDeps;

/// At most this many dead-letter blobs are looked at per pass (each handled one costs a claim attempt);
/// the rest wait for the next pass.
pub const MAX_BLOBS_PER_PASS: usize = 1000;

/// The function whose events the sweep re-drives: near-expiry's rotation is the one a lost event leaves
/// undone and the sweep can do in its place.
const REDRIVEN_FUNCTION: &str = "near-expiry";

/// What the sweep did with one dead-lettered event, or with an entry it could not use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The blob it was found in.
    pub blob: String,
    pub event_id: Option<String>,
    /// The object version the event named, when it decoded.
    pub object: Option<ObjectRef>,
    /// The object's expiry, as the event stated it.
    pub expires: Option<DateTime<Utc>>,
    /// The Key Vault event type, e.g. `Microsoft.KeyVault.SecretNearExpiry`.
    pub event_type: Option<String>,
    /// Event Grid's reason, e.g. `MaxDeliveryAttemptsExceeded`.
    pub dead_letter_reason: Option<String>,
    pub result: Redrive,
}

/// What became of one dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redrive {
    /// Re-driven: keyturn rotated the object (or started its renewal); the engine's words.
    Rotated(String),
    /// Re-driven and held to the object's rotation window, which opens at `until`, before its expiry: the
    /// sweep's repair rotates it then.
    Deferred { until: DateTime<Utc> },
    /// Not re-driven, and nothing is lost: the object no longer needs it (already rotated, expired, not
    /// opted in, ...).
    NoLongerNeeded(String),
    /// Not re-driven, and someone should look: what the event would have done did not happen.
    NotRedriven(String),
    /// Not a Key Vault event keyturn can act on, or unreadable.
    Unusable(String),
}

impl Redrive {
    /// Whether the sweep changed the vault for it.
    pub fn acted(&self) -> bool {
        matches!(self, Self::Rotated(_))
    }

    fn describe(&self) -> String {
        match self {
            Self::Rotated(outcome) => format!("re-driven: {outcome}"),
            Self::Deferred { until } => format!(
                "re-driven, deferred until {} (its rotation window); the sweep rotates it then",
                until.format("%Y-%m-%d %H:%M UTC")
            ),
            Self::NoLongerNeeded(why) => format!("not re-driven, no longer needed: {why}"),
            Self::NotRedriven(why) => format!("not re-driven: {why}"),
            Self::Unusable(why) => format!("unusable: {why}"),
        }
    }
}

impl Finding {
    /// One line for the outcome and the logs: `dead letter <blob> (event <id>, secret kv1/db, dead-lettered
    /// MaxDeliveryAttemptsExceeded): re-driven: rotated from a to b`.
    pub fn line(&self) -> String {
        let mut about = Vec::new();
        if let Some(id) = &self.event_id {
            about.push(format!("event {id}"));
        }
        if let Some(object) = &self.object {
            about.push(format!("{} version {}", object.described(), object.version()));
        }
        if let Some(reason) = &self.dead_letter_reason {
            about.push(format!("dead-lettered {reason}"));
        }
        let about = if about.is_empty() { String::new() } else { format!(" ({})", about.join(", ")) };
        format!("dead letter {}{about}: {}", self.blob, self.result.describe())
    }

    /// The digest entry for it: a repair (re-driven) or a dead letter not re-driven; `None` for an entry
    /// that names no object (it is in the outcome and the logs).
    pub fn notice(&self) -> Option<Notice> {
        let object = self.object.clone()?;
        let (section, severity) = match &self.result {
            Redrive::Rotated(_) => (Section::Repaired, Severity::Info),
            Redrive::Deferred { .. } | Redrive::NoLongerNeeded(_) => (Section::DeadLettered, Severity::Info),
            Redrive::NotRedriven(_) => (Section::DeadLettered, Severity::Warning),
            Redrive::Unusable(_) => return None,
        };
        let reason = self.dead_letter_reason.as_deref().unwrap_or("no reason given");
        let plan = format!(
            "its event {} was dead-lettered ({reason}); {}",
            self.event_id.as_deref().unwrap_or("?"),
            self.result.describe()
        );
        Some(Notice {
            object,
            // Only a Key Vault event without an expiry gets here without one: it is shown as due now.
            expires: self.expires.unwrap_or_else(Utc::now),
            threshold: 0,
            severity,
            plan,
            section,
        })
    }
}

/// What one pass found in the dead-letter container.
#[derive(Debug, Default)]
pub struct DeadLetterPass {
    /// Every dead letter this pass handled (others were handled by earlier or concurrent passes).
    pub findings: Vec<Finding>,
    /// What went wrong: the container or the state could not be read, a re-drive failed for now.
    pub failures: Vec<String>,
}

/// Handles the dead letters no sweep has handled yet (see the module documentation).
pub async fn run(deps: &SweepDeps, source: &dyn DeadLetters, sweep_id: &str, now: DateTime<Utc>) -> DeadLetterPass {
    let mut pass = DeadLetterPass::default();
    let blobs = match source.list("", MAX_BLOBS_PER_PASS).await {
        Ok(blobs) => blobs,
        Err(error) => {
            pass.failures.push(error.to_string());
            return pass;
        }
    };
    for blob in blobs {
        let key = ThresholdKey::dead_letter(&blob.name);
        let token = match deps.store.claim(&key, sweep_id, now).await {
            Ok(Claim::Claimed(token)) => token,
            Ok(Claim::AlreadyFired { .. } | Claim::InProgress { .. }) => continue,
            Err(error) => {
                pass.failures.push(error.to_string());
                continue;
            }
        };
        let (letters, unusable) = match source.read_blob(&blob).await {
            Ok(found) => found,
            Err(error) => {
                pass.failures.push(error.to_string());
                release(deps, &token, &mut pass).await;
                continue;
            }
        };
        let mut findings: Vec<Finding> = unusable.into_iter().map(unusable_finding).collect();
        let mut retry = false;
        for letter in letters {
            match redrive(deps, &letter, now).await {
                Ok(result) => findings.push(finding(&letter, result)),
                Err(failure) => {
                    pass.failures.push(failure);
                    retry = true;
                }
            }
        }
        if retry {
            // The next pass handles the blob again and reports what it finds then; a rotation made now is
            // reported now (the next pass finds it done: "already rotated").
            findings.retain(|f| f.result.acted());
            release(deps, &token, &mut pass).await;
        } else if let Err(error) = deps.store.complete(&token, now).await {
            pass.failures.push(error.to_string());
        }
        for finding in &findings {
            match &finding.result {
                Redrive::Unusable(_) | Redrive::NotRedriven(_) => {
                    tracing::warn!(dead_letter = %finding.line(), "dead letter")
                }
                _ => tracing::info!(dead_letter = %finding.line(), "dead letter"),
            }
        }
        pass.findings.extend(findings);
    }
    pass
}

async fn release(deps: &SweepDeps, token: &keyturn_sweep::ClaimToken, pass: &mut DeadLetterPass) {
    if let Err(error) = deps.store.release(token).await {
        pass.failures.push(error.to_string());
    }
}

fn unusable_finding(unusable: Unusable) -> Finding {
    let place = unusable.index.map_or_else(String::new, |i| format!("entry {i}: "));
    Finding {
        blob: unusable.blob,
        event_id: unusable.event_id,
        object: None,
        expires: None,
        event_type: None,
        dead_letter_reason: None,
        result: Redrive::Unusable(format!("{place}{}", unusable.reason)),
    }
}

fn finding(letter: &DeadLetter, result: Redrive) -> Finding {
    let key_vault = letter.event.key_vault();
    Finding {
        blob: letter.blob.clone(),
        event_id: Some(letter.event.id.clone()),
        object: key_vault.and_then(|kv| ObjectRef::from_object(&kv.object).ok()),
        expires: key_vault.and_then(|kv| kv.object.expires()),
        event_type: Some(letter.event.event_type().to_owned()),
        dead_letter_reason: letter.reason.clone(),
        result,
    }
}

/// Decides one dead letter and re-drives it when its object still needs it. `Err`: a retryable failure (the
/// blob is handled again by the next pass).
async fn redrive(deps: &SweepDeps, letter: &DeadLetter, now: DateTime<Utc>) -> Result<Redrive, String> {
    // The reader yields Key Vault events only; anything else is `Unusable` already.
    let Some(key_vault) = letter.event.key_vault() else {
        return Ok(Redrive::Unusable("not a Key Vault event".into()));
    };
    let lifecycle = key_vault.event_type.lifecycle();
    if lifecycle != Lifecycle::NearExpiry {
        return Ok(Redrive::NotRedriven(not_redriven(lifecycle).to_owned()));
    }
    // The same one parse as near-expiry's: the allow-list, an object version.
    let accepted = match deps.core.accept(&letter.event, lifecycle, REDRIVEN_FUNCTION) {
        Ok(accepted) => accepted,
        Err(outcome) => return Ok(Redrive::NotRedriven(outcome.message().to_owned())),
    };
    if let Some(expires) = accepted.expires()
        && expires <= now
    {
        return Ok(Redrive::NoLongerNeeded(format!(
            "it expired at {}: the expired handler and the sweep's expiry threshold take it from there",
            expires.format("%Y-%m-%d %H:%M UTC")
        )));
    }
    if !deps.policy.repair {
        return Ok(Redrive::NotRedriven(
            "re-driving needs KEYTURN_SWEEP_REPAIR=on (and its roles); rotate it by hand, or turn repair on".into(),
        ));
    }
    match deps.core.engine().rotate(&accepted.rotation_request()).await {
        Ok(outcome) if outcome.acted() => {
            tracing::info!(object = %accepted.object.described(), %outcome, "dead-lettered near-expiry event re-driven");
            Ok(Redrive::Rotated(outcome.to_string()))
        }
        Ok(RotationOutcome::Deferred { until, .. }) => Ok(Redrive::Deferred { until }),
        Ok(RotationOutcome::ManualActionDue { reason }) => {
            Ok(Redrive::NotRedriven(format!("manual action due: {reason}")))
        }
        Ok(outcome) => Ok(Redrive::NoLongerNeeded(outcome.to_string())),
        Err(error) if error.is_retryable() => Err(format!(
            "re-driving the dead-lettered event {} ({}): {error}",
            letter.event.id,
            accepted.object.described()
        )),
        Err(error) => Ok(Redrive::NotRedriven(format!("re-driving failed for good: {error}"))),
    }
}

/// Why a dead-lettered event of another kind is not re-driven, and what was lost.
fn not_redriven(lifecycle: Lifecycle) -> &'static str {
    match lifecycle {
        Lifecycle::Expired => {
            "an expiry event: its notification was lost (the sweep's expiry threshold notifies); an expired \
             action configured for it did not run: act by hand"
        }
        Lifecycle::NewVersionCreated => {
            "a new-version event: its consumers were not told and its mirrors not replicated; re-send it \
             (docs/operations.md, \"Replaying a dead-lettered event\")"
        }
        Lifecycle::NearExpiry | Lifecycle::AccessPolicyChanged => "keyturn does not act on it",
    }
}
