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

mod forecast;
pub mod report;
mod table;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use chrono::Utc;
use futures::StreamExt;
use keyturn_events::ObjectKind;
use keyturn_rotation::plan::{Native, Plan, issuer_to_look_up, plan};
use keyturn_sweep::{ThresholdError, Thresholds};
use keyturn_vault::{AzureKeyVault, Collection, Inventory, KeyVault, Listed};
use serde_json::Value;

use crate::exit::{CommandFailure, ExitStatus};
use crate::output::Output;

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

use forecast::object_facts;
pub use forecast::{Facts, Forecast, Row, row};
pub use table::relative;
use table::{print_table, row_json};

fn parse_thresholds(text: &str) -> Result<Thresholds, ThresholdError> {
    Thresholds::parse(text, "--thresholds")
}

pub async fn run(args: Args, output: &Output) -> Result<ExitStatus, CommandFailure> {
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
                            status: ExitStatus::Unreachable,
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
        Ok(ExitStatus::Ok)
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
