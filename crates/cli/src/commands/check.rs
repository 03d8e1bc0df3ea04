//! `keyturn check`: a read-only survey of one or more vaults. For every secret, key and certificate: its
//! current version, its expiry, its policy read by the same parser the handlers use (`keyturn_rotation::policy`),
//! and what near-expiry, expired and new-version would do with it.
//!
//! Only list and get-metadata calls are made (never a secret's value, never a write): Key Vault Reader is
//! enough. Listings follow every page (`keyturn_vault::Inventory`).
//!
//! The same rows come out as a table, as JSON (`--json`), or as one self-contained HTML page (`--html`,
//! [`report`]): a timeline of each vault's expiries with their notice thresholds, a sortable, filterable table
//! and summary counts.

pub mod report;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use keyturn_events::ObjectKind;
use keyturn_rotation::plan::{
    NEAR_EXPIRY_LEAD_DAYS, Native, ObjectFacts, Plan, Trigger, issuer_to_look_up, near_expiry_at, plan, window,
};
use keyturn_rotation::policy::{self, ExpiredAction, Policy, ReplicaOf, Rotation, ValueFormat};
use keyturn_rotation::window::WindowDecision;
use keyturn_sweep::{THRESHOLDS_TAG, ThresholdError, Thresholds};
use keyturn_vault::model::Tags;
use keyturn_vault::{AzureKeyVault, Collection, Inventory, KeyVault, Listed};
use serde_json::{Value, json};

use crate::exit::{CommandFailure, Status};
use crate::output::{self, Output, Tone};

const AFTER_HELP: &str = "\
Examples:
  # a vault of the public cloud, signed in with `az login`
  keyturn check --vault kv-prod
  # any endpoint (--ca-file or KEYTURN_CA_FILE for a local CA)
  keyturn check --vault kv-one=https://127.0.0.1:8443 --ca-file ca.pem
  keyturn check --json | jq '.[] | select(.nearExpiry.action == \"reject\")'
  # one page to open in a browser: timelines, thresholds, a sortable table
  keyturn check --html coverage.html --thresholds 60,30,14,7,3,1,0
  # against `keyturn dev`: paste its `export` lines first, then
  keyturn check --vault kv-one
Settings are read as the handlers read them (KEYTURN_VAULTS, KEYTURN_CREDENTIAL,
KEYTURN_CA_FILE, ...: docs/configuration.md); here KEYTURN_CREDENTIAL defaults to
developer-tools (`az login`).";

#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// A vault to check: a name (looked up in KEYTURN_VAULTS, else <name>.vault.azure.net), or name=url
    /// (repeatable) [default: every vault in KEYTURN_VAULTS].
    #[arg(long = "vault", value_name = "NAME|NAME=URL")]
    pub vaults: Vec<String>,

    /// Vault calls in flight at once (Key Vault throttles per vault).
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,

    /// Print one JSON object per object, in an array.
    #[arg(long)]
    pub json: bool,

    /// Also write the report as one self-contained HTML page (no network access, no secret value) to PATH.
    #[arg(long, value_name = "PATH")]
    pub html: Option<PathBuf>,

    /// The default notice thresholds, days before expiry (an object's KeyturnThresholds tag overrides them)
    /// [default: the deployment's $KEYTURN_SWEEP_THRESHOLDS, else 60,30,14,7,3,1,0].
    #[arg(long, value_name = "DAYS", value_parser = parse_thresholds)]
    pub thresholds: Option<Thresholds>,

    /// A CA bundle (PEM) to trust, e.g. the local stack's [default: $KEYTURN_CA_FILE].
    #[arg(long, value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
}

/// What one handler would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forecast {
    /// rotate, renew, notify, skip, reject, disable, none.
    pub action: &'static str,
    pub detail: String,
}

impl Forecast {
    fn new(action: &'static str, detail: impl Into<String>) -> Self {
        Self { action, detail: detail.into() }
    }

    fn tone(&self) -> Option<Tone> {
        match self.action {
            "rotate" | "renew" | "disable" => Some(Tone::Good),
            "notify" => Some(Tone::Warn),
            "reject" | "error" => Some(Tone::Bad),
            _ => Some(Tone::Dim),
        }
    }

    fn text(&self) -> String {
        if self.detail.is_empty() { self.action.to_owned() } else { format!("{}: {}", self.action, self.detail) }
    }

    fn to_json(&self) -> Value {
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

fn parse_thresholds(text: &str) -> Result<Thresholds, ThresholdError> {
    Thresholds::parse(text, "--thresholds")
}

pub async fn run(args: Args, output: &Output) -> Result<Status, CommandFailure> {
    let (settings, selected) = settings(&args)?;
    // What the sweep would use: the flag, else the deployment's setting (a bad one is named, as the sweep would).
    let thresholds = match &args.thresholds {
        Some(thresholds) => thresholds.clone(),
        None => Thresholds::for_deployment(&settings.sweep)
            .map_err(|error| CommandFailure::setup(error.to_string()).hint("docs/configuration.md, the sweep"))?,
    };
    let vault = AzureKeyVault::from_settings(&settings)
        .map_err(|error| CommandFailure::setup(format!("cannot reach the vaults: {error}")))?;
    let providers = keyturn_rotation::Providers::standard();
    let provider_names = providers.names();
    let now = Utc::now();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for name in &selected {
        let mut listed = Vec::new();
        for collection in Collection::ALL {
            if !args.json {
                output.status(&format!("listing {} in {name}", collection.as_str()));
            }
            match vault.list(name, collection).await {
                // Certificates' backing keys and secrets raise no events of their own: their certificate does.
                Ok(items) => listed.extend(items.into_iter().filter(|i| !i.managed).map(|i| (collection, i))),
                Err(error) => {
                    let failure = CommandFailure::failed(format!("listing {} in {name}: {error}", collection.as_str()));
                    return Err(match error.status() {
                        Some(401 | 403) => failure.hint("the identity needs Key Vault Reader (list) on the vault"),
                        None if error.is_retryable() => CommandFailure {
                            status: Status::Unreachable,
                            hint: Some("is the vault URL right, and is the vault reachable from here?".to_owned()),
                            ..failure
                        },
                        _ => failure,
                    });
                }
            }
        }
        if !args.json {
            output.status(&format!("reading {} objects in {name}", listed.len()));
        }
        let reads = futures::stream::iter(listed.into_iter().map(|(collection, item)| {
            let vault = &vault;
            async move { read_facts(vault, name, collection, item).await }
        }))
        .buffer_unordered(usize::from(args.concurrency));
        let read: Vec<Result<Facts, (String, String)>> = reads.collect().await;
        for result in read {
            match result {
                Ok(facts) => rows.push(row(name, &facts, &provider_names, &thresholds, now)),
                Err((object, error)) => failures.push(format!("{name}/{object}: {error}")),
            }
        }
    }
    rows.sort_by(|a, b| (&a.vault, kind_order(a.kind), &a.name).cmp(&(&b.vault, kind_order(b.kind), &b.name)));

    if let Some(path) = &args.html {
        let page = report::render(&report::Report { rows: &rows, vaults: &selected, thresholds: &thresholds, now });
        std::fs::write(path, page)
            .map_err(|error| CommandFailure::failed(format!("writing the report to {}: {error}", path.display())))?;
        output.status(&format!("wrote {} ({} objects)", path.display(), rows.len()));
    }
    if args.json {
        output.json(&Value::Array(rows.iter().map(|r| row_json(r, now)).collect()));
    } else {
        print_table(output, &rows, now);
    }
    if failures.is_empty() {
        Ok(Status::Ok)
    } else {
        Err(CommandFailure::failed(format!(
            "{} object(s) could not be read:\n  {}",
            failures.len(),
            failures.join("\n  ")
        )))
    }
}

/// The settings, as the handlers read them, with the vaults this run asks for; and the names to check.
fn settings(args: &Args) -> Result<(keyturn_config::Settings, Vec<String>), CommandFailure> {
    deployment_settings(&args.vaults, args.ca_file.as_deref())
}

/// The settings as the handlers read them from the environment (a command run by a person: the credential
/// defaults to `az login`'s), with `vaults` (`--vault` values, see [`select_vaults`]) and `ca_file` (`--ca-file`)
/// in place of the environment's; and the names of the vaults selected.
pub fn deployment_settings(
    vaults: &[String],
    ca_file: Option<&std::path::Path>,
) -> Result<(keyturn_config::Settings, Vec<String>), CommandFailure> {
    let configured = std::env::var("KEYTURN_VAULTS").unwrap_or_default();
    let (vaults, selected) = select_vaults(&configured, vaults)?;
    let ca_file = ca_file.map(|p| p.display().to_string());
    let settings = keyturn_config::Settings::from_lookup(|name| match name {
        "KEYTURN_VAULTS" => Some(vaults.clone()),
        "KEYTURN_CA_FILE" if ca_file.is_some() => ca_file.clone(),
        // A person at a terminal is usually signed in with `az login`; a handler never gets this default.
        "KEYTURN_CREDENTIAL" => {
            Some(std::env::var(name).ok().filter(|v| !v.trim().is_empty()).unwrap_or_else(|| "developer-tools".into()))
        }
        _ => std::env::var(name).ok(),
    })
    .map_err(|errors| {
        CommandFailure::setup(format!("the settings are not valid:\n{errors}")).hint("docs/configuration.md lists them")
    })?;
    Ok((settings, selected))
}

/// The KEYTURN_VAULTS value to use and the vault names to check: each `--vault` name keeps its configured
/// entry (its URL), a `name=url` replaces it, an unknown bare name is a public-cloud vault.
pub fn select_vaults(configured: &str, requested: &[String]) -> Result<(String, Vec<String>), CommandFailure> {
    let entries: Vec<&str> = configured.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
    let name_of = |entry: &str| -> String {
        match entry.split_once('=') {
            Some((name, _)) => name.trim().to_ascii_lowercase(),
            None => entry.to_ascii_lowercase(),
        }
    };
    if requested.is_empty() {
        if entries.is_empty() {
            return Err(CommandFailure::setup("no vault to check").hint("pass --vault <name> (or set KEYTURN_VAULTS)"));
        }
        return Ok((entries.join(","), entries.iter().map(|e| name_of(e)).collect()));
    }
    let mut chosen: Vec<String> = Vec::new();
    let mut names = Vec::new();
    for request in requested {
        let name = name_of(request);
        let entry = if request.contains('=') {
            request.clone()
        } else {
            entries.iter().find(|e| name_of(e) == name).map_or_else(|| request.clone(), |e| (*e).to_owned())
        };
        chosen.retain(|e| name_of(e) != name);
        chosen.push(entry);
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok((chosen.join(","), names))
}

fn kind_order(kind: ObjectKind) -> u8 {
    match kind {
        ObjectKind::Secret => 0,
        ObjectKind::Key => 1,
        ObjectKind::Certificate => 2,
        ObjectKind::Vault => 3,
    }
}

/// Reads what the handlers would read about one listed object (metadata only), mirroring the engine's
/// order: the native policies are read only for objects that opt in.
async fn read_facts(
    vault: &AzureKeyVault,
    name: &str,
    collection: Collection,
    item: Listed,
) -> Result<Facts, (String, String)> {
    let fail = |error: keyturn_vault::VaultError| (item.name.clone(), error.to_string());
    let kind = match collection {
        Collection::Secrets => ObjectKind::Secret,
        Collection::Keys => ObjectKind::Key,
        Collection::Certificates => ObjectKind::Certificate,
    };
    let versions = vault.versions(name, collection, &item.name).await.map_err(fail)?;
    let mut listed = item.clone();
    if let Some(current) = keyturn_vault::inventory::current(&versions) {
        listed = Listed { name: item.name.clone(), ..current.clone() };
    }
    let mut facts = Facts { kind, listed, native: Native::Unread };
    // The engine's own question: does the plan need the native policy? (Only for keys and certificates that
    // opt in.) A wrong tag needs nothing more: the plan is an error whatever the native policy says.
    if let Ok(Plan::ReadNativePolicy) = plan(&object_facts(&facts), &Native::Unread, &[]) {
        facts.native = match kind {
            ObjectKind::Key => Native::Key(vault.key_rotation_policy(name, &item.name).await.map_err(fail)?),
            _ => {
                let policy = vault.certificate_policy(name, &item.name).await.map_err(fail)?;
                let issuer_provider = match issuer_to_look_up(&policy) {
                    Some(issuer) => vault.issuer_provider(name, issuer).await.map_err(fail)?,
                    None => None,
                };
                Native::Certificate { policy, issuer_provider }
            }
        };
    }
    Ok(facts)
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
fn object_facts(facts: &Facts) -> ObjectFacts<'_> {
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
    match window(&planned, &facts.listed.tags, Some(expires), Trigger::NearExpiry, at) {
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

/// "in 29 days", "expired 3 days ago", "never".
pub fn relative(expires: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let Some(expires) = expires else { return "never".to_owned() };
    let delta = expires - now;
    let span = |d: chrono::Duration| {
        let (n, unit) = if d.num_days().abs() >= 1 {
            (d.num_days().abs(), "day")
        } else if d.num_hours().abs() >= 1 {
            (d.num_hours().abs(), "hour")
        } else {
            (d.num_minutes().abs(), "minute")
        };
        format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
    };
    if delta >= chrono::Duration::zero() {
        format!("in {}", span(delta))
    } else {
        format!("expired {} ago", span(delta))
    }
}

/// `2026-12-05 02:00 UTC`.
fn format_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn short(version: Option<&str>) -> String {
    version.map_or_else(|| "-".to_owned(), |v| v.chars().take(8).collect())
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

/// The thresholds as JSON: the days and where they came from, or the tag's error.
fn thresholds_json(row: &Row, now: DateTime<Utc>) -> Value {
    match &row.thresholds {
        Err(error) => json!({ "error": error.to_string() }),
        Ok(thresholds) => {
            let next = row.expires.and_then(|expires| thresholds.next(expires, now));
            json!({
                "days": thresholds.days(),
                "source": if row.own_thresholds { "tag" } else { "default" },
                "next": next.map(|(days, at)| json!({ "days": days, "at": at.to_rfc3339() })),
            })
        }
    }
}

fn row_json(row: &Row, now: DateTime<Utc>) -> Value {
    json!({
        "outcome": row.outcome(),
        "vault": row.vault,
        "kind": row.kind.as_str(),
        "name": row.name,
        "version": row.version,
        "enabled": row.enabled,
        "expires": row.expires.map(|e| e.to_rfc3339()),
        "expiresIn": relative(row.expires, now),
        "policy": row.policy,
        "nearExpiry": row.near_expiry.to_json(),
        "expired": row.expired.to_json(),
        "newVersion": row.new_version.to_json(),
        "thresholds": thresholds_json(row, now),
    })
}

fn print_table(output: &Output, rows: &[Row], now: DateTime<Utc>) {
    let cells: Vec<Vec<(String, Option<Tone>)>> = rows
        .iter()
        .map(|r| {
            let expiry_tone = match r.expires {
                Some(e) if e <= now => Some(Tone::Bad),
                Some(e) if near_expiry_at(e) <= now => Some(Tone::Warn),
                _ => None,
            };
            vec![
                (r.vault.clone(), None),
                (r.kind.as_str().to_ascii_lowercase(), None),
                (r.name.clone(), Some(Tone::Strong)),
                (short(r.version.as_deref()), Some(Tone::Dim)),
                (
                    if r.enabled {
                        relative(r.expires, now)
                    } else {
                        format!("{} (disabled)", relative(r.expires, now))
                    },
                    expiry_tone,
                ),
                (r.policy.clone(), None),
                (r.near_expiry.text(), r.near_expiry.tone()),
                (r.expired.text(), r.expired.tone()),
                (r.new_version.text(), r.new_version.tone()),
            ]
        })
        .collect();
    output.line(&output::table(
        output,
        &["VAULT", "KIND", "NAME", "VERSION", "EXPIRES", "POLICY", "NEAR-EXPIRY", "EXPIRED", "NEW-VERSION"],
        &cells,
    ));
    let soon = rows.iter().filter(|r| r.expires.is_some_and(|e| e > now && near_expiry_at(e) <= now)).count();
    let gone = rows.iter().filter(|r| r.expires.is_some_and(|e| e <= now)).count();
    let rejected = rows.iter().filter(|r| r.near_expiry.action == "reject" || r.expired.action == "reject").count();
    output.line(&format!(
        "\n{} objects: {soon} expire within {NEAR_EXPIRY_LEAD_DAYS} days, {gone} expired, {rejected} with a policy problem",
        rows.len()
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600, 0).unwrap()
    }

    fn facts(kind: ObjectKind, tags: &[(&str, &str)], expires_in_days: Option<i64>) -> Facts {
        Facts {
            kind,
            listed: Listed {
                name: "obj".into(),
                version: Some("0123456789abcdef".into()),
                enabled: true,
                created: None,
                not_before: None,
                expires: expires_in_days.map(|d| now() + chrono::Duration::days(d)),
                tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                managed: false,
            },
            native: Native::Unread,
        }
    }

    fn decide(f: &Facts) -> Row {
        row("kv-one", f, &["generated"], &Thresholds::default(), now())
    }

    #[test]
    fn secrets_are_judged_as_the_engine_judges_them() {
        let rotating = decide(&facts(
            ObjectKind::Secret,
            &[("KeyturnRotation", "generated"), ("ValidityPeriodDays", "60"), ("KeyturnFormat", "hex")],
            Some(10),
        ));
        assert_eq!(rotating.policy, "generated, hex(32 bytes), 60 days");
        assert_eq!(rotating.near_expiry.action, "rotate");
        assert!(rotating.near_expiry.detail.contains("60 days later (due now)"), "{:?}", rotating.near_expiry);

        let no_validity = decide(&facts(ObjectKind::Secret, &[("KeyturnRotation", "generated")], Some(40)));
        assert_eq!(no_validity.near_expiry.action, "reject");
        assert!(no_validity.near_expiry.detail.contains("ValidityPeriodDays"));

        let unknown = decide(&facts(
            ObjectKind::Secret,
            &[("KeyturnRotation", "vaultwarden"), ("ValidityPeriodDays", "5")],
            Some(5),
        ));
        assert_eq!(unknown.near_expiry.action, "reject");
        // The engine's own words: one decision, one message.
        assert!(unknown.near_expiry.detail.contains("'vaultwarden' is not a provider this deployment has"));

        let plain = decide(&facts(ObjectKind::Secret, &[], Some(5)));
        assert_eq!((plain.policy.as_str(), plain.near_expiry.action), ("none", "notify"));
        assert_eq!(plain.expired.action, "notify");

        let never = decide(&facts(ObjectKind::Secret, &[("KeyturnRotation", "generated")], None));
        assert_eq!((never.near_expiry.action, never.expired.action), ("none", "none"));

        let broken = decide(&facts(ObjectKind::Secret, &[("ValidityPeriodDays", "soon")], Some(5)));
        assert!(broken.policy.starts_with("invalid (tag ValidityPeriodDays"), "{}", broken.policy);
        assert_eq!(broken.near_expiry.action, "reject");
    }

    #[test]
    fn keys_and_certificates_defer_to_key_vaults_own_policies() {
        use keyturn_vault::model::{CertificatePolicy, KeyRotationPolicy};
        let mut key = facts(ObjectKind::Key, &[("KeyturnRotation", "enabled")], Some(20));
        key.native = Native::Key(KeyRotationPolicy { rotates: false, trigger: None });
        assert_eq!(decide(&key).near_expiry.action, "rotate");
        key.native = Native::Key(KeyRotationPolicy { rotates: true, trigger: Some("timeBeforeExpiry P30D".into()) });
        let native = decide(&key);
        assert_eq!(native.near_expiry.action, "skip");
        assert!(native.near_expiry.detail.contains("P30D"));

        let certificate = |issuer: &str, auto_renew, provider: Option<&str>| Native::Certificate {
            policy: CertificatePolicy { issuer: Some(issuer.into()), auto_renew },
            issuer_provider: provider.map(str::to_owned),
        };
        let mut cert = facts(ObjectKind::Certificate, &[("KeyturnRotation", "enabled")], Some(20));
        cert.native = certificate("Self", false, None);
        assert_eq!(decide(&cert).near_expiry.action, "renew");
        cert.native = certificate("Unknown", false, None);
        let manual = decide(&cert);
        assert_eq!(manual.near_expiry.action, "notify");
        assert!(manual.near_expiry.detail.contains("issued by 'Unknown'"), "{:?}", manual.near_expiry);
        cert.native = certificate("corp-ca", false, Some("DigiCert"));
        assert_eq!(decide(&cert).near_expiry.action, "renew");
        cert.native = certificate("Self", true, None);
        assert_eq!(decide(&cert).near_expiry.action, "skip");
        // An object that opts in whose native policy could not be read is not guessed at.
        cert.native = Native::Unread;
        assert_eq!(decide(&cert).near_expiry.action, "error");
    }

    #[test]
    fn expired_and_new_version_follow_their_tags() {
        let disable = decide(&facts(ObjectKind::Secret, &[("KeyturnExpiredAction", "disable")], Some(-1)));
        assert_eq!(disable.expired.action, "disable");
        let rotate_without_policy = decide(&facts(ObjectKind::Secret, &[("KeyturnExpiredAction", "rotate")], Some(-1)));
        assert_eq!(rotate_without_policy.expired.action, "reject");
        let mirrored = decide(&facts(ObjectKind::Secret, &[("KeyturnMirror", "kv-dr, kv-eu")], None));
        assert_eq!(mirrored.new_version.text(), "notify: and replicate to kv-dr, kv-eu");
        let replica = decide(&facts(
            ObjectKind::Secret,
            &[("KeyturnReplicaOf", "kv-one/db/v1"), ("KeyturnMirror", "kv-dr")],
            None,
        ));
        assert!(replica.new_version.detail.contains("not replicated onward"));
    }

    /// `now()` is Thursday 2026-01-01 00:00 UTC; `Sat 02:00-04:00 UTC` next opens on 2026-01-03.
    #[test]
    fn a_rotation_window_is_judged_when_the_near_expiry_event_comes() {
        let windowed = |window: &str, days| {
            decide(&facts(
                ObjectKind::Secret,
                &[("KeyturnRotation", "generated"), ("ValidityPeriodDays", "60"), ("KeyturnRotationWindow", window)],
                Some(days),
            ))
        };
        // Due now (10 days to expiry), closed now: it waits for Saturday.
        let waits = windowed("Sat 02:00-04:00 UTC", 10);
        assert_eq!((waits.near_expiry.action, waits.outcome()), ("rotate", "rotate"));
        assert!(
            waits
                .near_expiry
                .detail
                .ends_with("(due now); waits for its rotation window, open from 2026-01-03 02:00 UTC"),
            "{:?}",
            waits.near_expiry
        );
        // Expiring tomorrow, before the window: rotated at once.
        let at_once = windowed("Sat 02:00-04:00 UTC", 1);
        assert!(
            at_once.near_expiry.detail.contains("outside its rotation window, at once"),
            "{:?}",
            at_once.near_expiry
        );
        // A window tag that does not parse is a policy problem, as the handler would reject it.
        let mistyped = windowed("Caturday 02:00-04:00", 10);
        assert_eq!((mistyped.near_expiry.action, mistyped.outcome()), ("reject", "problem"));
        assert!(mistyped.near_expiry.detail.contains("'Caturday' is not a day"), "{:?}", mistyped.near_expiry);
    }

    #[test]
    fn thresholds_come_from_the_tag_or_the_default_and_a_bad_tag_is_a_problem() {
        let plain = decide(&facts(ObjectKind::Secret, &[], Some(20)));
        assert_eq!(plain.thresholds.as_ref().map(Thresholds::days), Ok(&[60, 30, 14, 7, 3, 1, 0][..]));
        assert!(!plain.own_thresholds);
        let json = thresholds_json(&plain, now());
        assert_eq!(json["source"], "default");
        assert_eq!(json["next"]["days"], 14, "20 days before expiry, the 14-day notice comes next");
        let own = decide(&facts(ObjectKind::Secret, &[("KeyturnThresholds", "45, 5")], Some(20)));
        assert_eq!(own.thresholds.as_ref().map(Thresholds::days), Ok(&[45, 5][..]));
        assert_eq!(thresholds_json(&own, now())["source"], "tag");
        let bad = decide(&facts(ObjectKind::Secret, &[("KeyturnThresholds", "soon")], Some(20)));
        assert_eq!(bad.outcome(), "problem");
        assert!(thresholds_json(&bad, now())["error"].as_str().unwrap().contains("'soon' is not a whole number"));
    }

    #[test]
    fn the_outcome_word_follows_the_near_expiry_plan_unless_a_tag_is_refused() {
        let outcome = |tags: &[(&str, &str)], days| decide(&facts(ObjectKind::Secret, tags, days)).outcome();
        assert_eq!(outcome(&[("KeyturnRotation", "generated"), ("ValidityPeriodDays", "60")], Some(5)), "rotate");
        assert_eq!(outcome(&[], Some(5)), "notify");
        assert_eq!(outcome(&[], None), "nothing");
        assert_eq!(outcome(&[("KeyturnReplicaOf", "kv-one/db/v1")], Some(5)), "nothing");
        assert_eq!(outcome(&[("KeyturnExpiredAction", "explode")], Some(5)), "problem");
        assert_eq!(outcome(&[("KeyturnMirror", "not a vault!")], Some(5)), "problem");
    }

    #[test]
    fn vaults_keep_their_configured_urls_unless_given_one() {
        let configured = "kv-one=https://127.0.0.1:1,kv-two=https://127.0.0.1:2";
        let (vaults, names) = select_vaults(configured, &[]).unwrap();
        assert_eq!((vaults.as_str(), names), (configured, vec!["kv-one".to_owned(), "kv-two".to_owned()]));
        let (vaults, names) = select_vaults(configured, &["kv-two".into(), "kv-prod".into()]).unwrap();
        assert_eq!(vaults, "kv-two=https://127.0.0.1:2,kv-prod");
        assert_eq!(names, ["kv-two", "kv-prod"]);
        let (vaults, _) = select_vaults(configured, &["kv-one=https://10.0.0.1".into()]).unwrap();
        assert_eq!(vaults, "kv-one=https://10.0.0.1");
        assert_eq!(select_vaults("", &[]).unwrap_err().status, Status::Setup);
    }

    #[test]
    fn expiry_reads_as_a_person_would_say_it() {
        assert_eq!(relative(Some(now() + chrono::Duration::days(29)), now()), "in 29 days");
        assert_eq!(relative(Some(now() - chrono::Duration::days(3)), now()), "expired 3 days ago");
        assert_eq!(relative(Some(now() + chrono::Duration::hours(1)), now()), "in 1 hour");
        assert_eq!(relative(None, now()), "never");
        assert_eq!(short(Some("0123456789abcdef")), "01234567");
    }
}
