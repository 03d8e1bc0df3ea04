//! What near-expiry, expired and new-version would do with one object: the pure part of `keyturn check`, decided by
//! the same plan and policy parser the handlers use, so every decision is unit-tested.

use chrono::{DateTime, Utc};
use keyturn_events::ObjectKind;
use keyturn_rotation::plan::{ExpiryStage, Native, ObjectFacts, Plan, near_expiry_at, plan, window};
use keyturn_rotation::policy::{self, ExpiredAction, Policy, ReplicaOf, Rotation, ValueFormat};
use keyturn_rotation::window::WindowDecision;
use keyturn_sweep::{THRESHOLDS_TAG, ThresholdError, Thresholds};
use keyturn_vault::Listed;
use keyturn_vault::model::Tags;
use serde_json::{Value, json};

use super::table::format_time;
use crate::output::Tone;

/// What one handler would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forecast {
    /// rotate, renew, notify, skip, reject, disable, none.
    pub action: &'static str,
    pub detail: String,
}

impl Forecast {
    pub(super) fn new(action: &'static str, detail: impl Into<String>) -> Self {
        Self { action, detail: detail.into() }
    }

    pub(super) fn tone(&self) -> Option<Tone> {
        match self.action {
            "rotate" | "renew" | "disable" => Some(Tone::Good),
            "notify" => Some(Tone::Warn),
            "reject" | "error" => Some(Tone::Bad),
            _ => Some(Tone::Dim),
        }
    }

    pub(super) fn text(&self) -> String {
        if self.detail.is_empty() { self.action.to_owned() } else { format!("{}: {}", self.action, self.detail) }
    }

    pub(super) fn to_json(&self) -> Value {
        json!({ "action": self.action, "detail": self.detail })
    }
}

/// What is known about one object once read.
#[derive(Debug, Clone)]
pub struct Facts {
    pub kind: ObjectKind,
    pub listed: Listed,
    /// Key Vault's own policy for a key or certificate, read only when the plan asks for it (an object that
    /// opts in), as the engine reads it.
    pub native: Native,
}

/// One row of the report.
#[derive(Debug, Clone)]
pub struct Row {
    /// The days before expiry at which the scheduled sweep notifies: the object's `KeyturnThresholds` tag, or
    /// the deployment's default; an error for a tag that does not parse.
    pub thresholds: Result<Thresholds, ThresholdError>,
    /// Whether `thresholds` came from the object's own tag.
    pub own_thresholds: bool,
    pub vault: String,
    pub kind: ObjectKind,
    pub name: String,
    pub version: Option<String>,
    pub enabled: bool,
    pub expires: Option<DateTime<Utc>>,
    pub policy: String,
    pub near_expiry: Forecast,
    pub expired: Forecast,
    pub new_version: Forecast,
}

/// The report row for `facts`: pure, so every decision is unit-tested.
pub fn row(vault: &str, facts: &Facts, providers: &[&str], thresholds: &Thresholds, now: DateTime<Utc>) -> Row {
    let tags = &facts.listed.tags;
    let parsed = Policy::from_tags(facts.kind, tags);
    let own_thresholds = policy::tag(tags, THRESHOLDS_TAG).is_some_and(|value| !value.is_empty());
    Row {
        thresholds: Thresholds::for_object(policy::tag(tags, THRESHOLDS_TAG), thresholds),
        own_thresholds,
        vault: vault.to_owned(),
        kind: facts.kind,
        name: facts.listed.name.clone(),
        version: facts.listed.version.clone(),
        enabled: facts.listed.enabled,
        expires: facts.listed.expires,
        policy: describe_policy(&parsed),
        near_expiry: near_expiry(facts, providers, now),
        expired: expired(facts, &parsed),
        new_version: new_version(facts.kind, tags),
    }
}

fn describe_policy(parsed: &Result<Policy, policy::PolicyError>) -> String {
    match parsed {
        Err(error) => format!("invalid ({error})"),
        Ok(policy) => match &policy.rotation {
            Rotation::NotOptedIn => "none".to_owned(),
            Rotation::Enabled => "rotation enabled".to_owned(),
            Rotation::Provider(provider) => {
                let mut text = format!("{provider}, {}", describe_format(policy.format));
                if let Some(validity) = policy.validity {
                    text.push_str(&format!(", {} days", validity.num_days()));
                }
                text
            }
        },
    }
}

fn describe_format(format: ValueFormat) -> String {
    match format {
        ValueFormat::Password { length, .. } => format!("password({length})"),
        ValueFormat::Alphanumeric { length } => format!("alphanumeric({length})"),
        ValueFormat::Base64 { bytes } => format!("base64({bytes} bytes)"),
        ValueFormat::Base64Url { bytes } => format!("base64url({bytes} bytes)"),
        ValueFormat::Hex { bytes } => format!("hex({bytes} bytes)"),
    }
}

/// The engine's view of a listed object: planning ahead, the event to come is about its current version.
pub(super) fn object_facts(facts: &Facts) -> ObjectFacts<'_> {
    ObjectFacts {
        kind: facts.kind,
        event_version: None,
        latest_version: facts.listed.version.as_deref().unwrap_or_default(),
        tags: &facts.listed.tags,
    }
}

/// What near-expiry would do: the rotation engine's own plan ([`keyturn_rotation::plan()`]), printed.
fn near_expiry(facts: &Facts, providers: &[&str], now: DateTime<Utc>) -> Forecast {
    let Some(expires) = facts.listed.expires else {
        // A key's NearExpiry follows its rotation policy's Notify action, so an expiry is enough to list it.
        return Forecast::new("none", "no expiry, so no NearExpiry event");
    };
    let due = near_expiry_at(expires) <= now;
    let when = if due { " (due now)" } else { "" };
    let planned = plan(&object_facts(facts), &facts.native, providers);
    let forecast = planned_forecast(planned.clone(), when);
    let Ok(planned) = planned else { return forecast };
    // The window is judged when the plan is carried out: at the near-expiry event, or now if it is due.
    let at = near_expiry_at(expires).max(now);
    match window(&planned, &facts.listed.tags, Some(expires), ExpiryStage::NearExpiry, at) {
        Err(error) => Forecast::new("reject", error.to_string()),
        Ok(WindowDecision::Open) => forecast,
        Ok(WindowDecision::Deferred { until }) => Forecast {
            detail: format!("{}; waits for its rotation window, open from {}", forecast.detail, format_time(until)),
            ..forecast
        },
        Ok(WindowDecision::Overridden { reason }) => Forecast {
            detail: format!("{}; outside its rotation window, at once: {reason}", forecast.detail),
            ..forecast
        },
    }
}

/// The forecast for the plan, before its window is considered.
fn planned_forecast(planned: Result<Plan, policy::PolicyError>, when: &str) -> Forecast {
    match planned {
        Err(error) => Forecast::new("reject", format!("{error}{when}")),
        Ok(Plan::Replica { source }) => Forecast::new("skip", format!("a replica of {source}: its source is rotated")),
        Ok(Plan::NotOptedIn) => {
            Forecast::new("notify", format!("manual rotation due, no {} tag{when}", policy::ROTATION))
        }
        Ok(Plan::RotateSecret { provider, validity }) => {
            Forecast::new("rotate", format!("new {provider} value, expires {} days later{when}", validity.num_days()))
        }
        Ok(Plan::RotateKey) => Forecast::new("rotate", format!("Key Vault rotate operation{when}")),
        Ok(Plan::RenewCertificate { issuer }) => {
            Forecast::new("renew", format!("new version through its policy (issuer {issuer}){when}"))
        }
        Ok(Plan::NativeRotation { detail }) => Forecast::new("skip", format!("left to Key Vault: {detail}")),
        Ok(Plan::ManualActionDue { reason }) => Forecast::new("notify", format!("{reason}{when}")),
        // Read for every object that opts in; a row without it could not be read.
        Ok(Plan::ReadNativePolicy) => Forecast::new("error", "its native policy was not read"),
        // Planning ahead names no event version, so no later version can exist.
        Ok(Plan::AlreadyRotated { .. }) => Forecast::new("none", "already rotated"),
    }
}

/// What expired would do: notify, or the opt-in action of `KeyturnExpiredAction` (when the deployment
/// enables expired actions).
fn expired(facts: &Facts, parsed: &Result<Policy, policy::PolicyError>) -> Forecast {
    if facts.listed.expires.is_none() {
        return Forecast::new("none", "no expiry, so no Expired event");
    }
    match ExpiredAction::from_tags(&facts.listed.tags) {
        Err(error) => Forecast::new("reject", error.to_string()),
        Ok(ExpiredAction::Notify) => Forecast::new("notify", "high severity"),
        Ok(ExpiredAction::Disable) => Forecast::new("disable", "the expired version, if actions are enabled"),
        Ok(ExpiredAction::Rotate) => match parsed {
            Ok(policy) if policy.rotation != Rotation::NotOptedIn => {
                Forecast::new("rotate", "emergency rotation, if actions are enabled")
            }
            _ => Forecast::new("reject", format!("{} rotate needs a {} tag", policy::EXPIRED_ACTION, policy::ROTATION)),
        },
    }
}

/// What new-version would do: notify, and replicate secrets to the vaults `KeyturnMirror` names.
fn new_version(kind: ObjectKind, tags: &Tags) -> Forecast {
    if let Some(source) = ReplicaOf::from_tags(tags) {
        return Forecast::new("notify", format!("a replica of {source}: not replicated onward"));
    }
    match policy::mirrors(tags) {
        Err(error) => Forecast::new("reject", error.to_string()),
        Ok(mirrors) if mirrors.is_empty() || kind != ObjectKind::Secret => Forecast::new("notify", ""),
        Ok(mirrors) => Forecast::new("notify", format!("and replicate to {}", mirrors.join(", "))),
    }
}

impl Row {
    /// What keyturn will do with the object, in one word the report colours by: `problem` (a tag keyturn
    /// refuses, or a native policy it could not read), else the near-expiry plan: `rotate`, `renew`, `notify`
    /// (a person must act), or `nothing` (no expiry, Key Vault's own policy, a replica).
    pub fn outcome(&self) -> &'static str {
        let forecasts = [&self.near_expiry, &self.expired, &self.new_version];
        if self.thresholds.is_err() || forecasts.iter().any(|f| matches!(f.action, "reject" | "error")) {
            return "problem";
        }
        match self.near_expiry.action {
            "rotate" => "rotate",
            "renew" => "renew",
            "notify" => "notify",
            _ => "nothing",
        }
    }
}
