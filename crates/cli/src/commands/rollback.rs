//! `keyturn rollback <vault>/<secret>`: a rotation's new credential broke its consumers; put the previous one back.
//!
//! The previous value is written back as a NEW version (Key Vault has no "make an older version current"): the
//! previous version's value, content type and tags, plus provenance (`KeyturnRolledBackFrom` = the version that
//! was live, `KeyturnRollbackOf` = the version restored). Carrying the previous version's tags carries its
//! provider state, so the next rotation does the right thing: for a storage account key, `CredentialId` names
//! the key the secret now holds again, and the next rotation regenerates the other one (the one that broke
//! things); for an alternating database login, the value names the login restored, and the next rotation
//! changes the other one.
//!
//! Only where the previous credential still works ([`Provider::previous_credential`]): `storage-account-key` and
//! the alternating database providers, `generated` (nothing outside Key Vault changed), and `entra-app-secret`
//! within its overlap. Single-credential providers (`postgres`, `mysql`, `webhook`) are refused with the reason:
//! their previous credential stopped working when the rotation set the new one.
//!
//! The new version's `nbf` is now (so a storage rotation's crash-replay check sees its keys as older) and its
//! expiry the one the rolled-back version had, or earlier when the restored credential ends sooner (an Entra
//! password's end date): the next rotation comes when it was due. The value is never printed.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use keyturn_config::Settings;
use keyturn_rotation::policy::{EVENT_ID, ROLLBACK_OF, ROLLED_BACK_FROM, ROTATED_FROM, ROTATION, tag};
use keyturn_rotation::{PreviousCredential, Provider, Providers};
use keyturn_vault::inventory::current;
use keyturn_vault::model::{MAX_TAGS, NewSecretVersion, SecretProperties, SecretVersion};
use keyturn_vault::{AzureKeyVault, Collection, Inventory, KeyVault, Listed, Versions};

use crate::commands::check::deployment_settings;
use crate::exit::{CommandFailure, ExitStatus};
use crate::output::Output;

const AFTER_HELP: &str = "\
Examples:
  keyturn rollback kv-prod/storage-key
  keyturn rollback kv-prod/orders-db --dry-run
  keyturn rollback kv-one=https://127.0.0.1:8443/app-db --ca-file ca.pem
Settings are read as the handlers read them (KEYTURN_VAULTS, KEYTURN_CREDENTIAL, the provider
bindings such as KEYTURN_STORAGE_ACCOUNTS: docs/configuration.md); KEYTURN_CREDENTIAL defaults to
developer-tools (`az login`). The identity needs Key Vault Secrets Officer on the vault.";

#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// The secret: <vault>/<name>, where the vault is a name (looked up in KEYTURN_VAULTS, else
    /// <name>.vault.azure.net) or name=url.
    #[arg(value_name = "VAULT/SECRET")]
    pub secret: String,

    /// Say what would be written, and write nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// A CA bundle (PEM) to trust, e.g. the local stack's [default: $KEYTURN_CA_FILE].
    #[arg(long, value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
}

/// What a rollback writes: the new version, and which versions it comes from.
#[derive(Debug)]
pub struct Rollback {
    pub from: String,
    pub restores: String,
    pub version: NewSecretVersion,
}

/// Splits `<vault>/<name>` (the vault part may be `name=url`, whose URL holds slashes: the name is the last part).
fn split(target: &str) -> Result<(&str, &str), CommandFailure> {
    match target.trim().trim_end_matches('/').rsplit_once('/') {
        Some((vault, name)) if !vault.is_empty() && !name.is_empty() => Ok((vault, name)),
        _ => Err(CommandFailure {
            status: ExitStatus::Usage,
            message: format!("'{target}' is not <vault>/<secret>"),
            hint: None,
        }),
    }
}

pub async fn run(args: Args, output: &Output) -> Result<ExitStatus, CommandFailure> {
    let (vault_arg, name) = split(&args.secret)?;
    let (settings, selected) = deployment_settings(&[vault_arg.to_owned()], args.ca_file.as_deref())?;
    let vault_name = selected.first().cloned().unwrap_or_default();
    let target = format!("{vault_name}/{name}");
    let (vault, providers) = clients(&settings)?;

    let listed = vault.versions(&vault_name, Collection::Secrets, name).await.map_err(|e| {
        let failure = CommandFailure::failed(format!("listing the versions of {target}: {e}"));
        if matches!(e.status(), Some(401 | 403)) {
            failure.hint("the identity needs Key Vault Secrets Officer on the vault")
        } else {
            failure
        }
    })?;
    let (latest_listed, previous_listed) = latest_and_previous(&listed)
        .ok_or_else(|| CommandFailure::failed(format!("{target} has no earlier enabled version to roll back to")))?;
    let read = |version: String| {
        let (vault, vault_name, target) = (&vault, &vault_name, &target);
        async move {
            vault
                .secret_version(vault_name, name, &version)
                .await
                .map_err(|e| CommandFailure::failed(format!("reading {target} version {version}: {e}")))
        }
    };
    let latest = read(latest_listed).await?;
    let previous = read(previous_listed).await?;
    let provider = provider_of(&providers, &latest.properties, &target)?;
    wait_past_the_second_of(current(&listed).and_then(|l| l.created)).await;
    let rollback = plan(provider.as_ref(), &latest, &previous, Utc::now())
        .map_err(|reason| CommandFailure::failed(format!("refusing to roll back {target}: {reason}")))?;
    let summary = format!(
        "{target}: a new version with the value of {} (replacing {}), via {}",
        rollback.restores,
        rollback.from,
        provider.name()
    );
    if args.dry_run {
        output.line(&format!("would roll back {summary}"));
        return Ok(ExitStatus::Ok);
    }
    // Fenced: a rotation that promoted meanwhile wins; roll that back (or not) knowingly.
    let live = vault
        .latest_secret(&vault_name, name)
        .await
        .map_err(|e| CommandFailure::failed(format!("reading {target} again before writing: {e}")))?;
    if !live.properties.version.eq_ignore_ascii_case(&rollback.from) {
        return Err(CommandFailure::failed(format!(
            "{target} changed meanwhile (its latest version is now {}): nothing was written",
            live.properties.version
        ))
        .hint("run the command again to roll back the new latest version"));
    }
    let written = vault
        .set_secret(&vault_name, name, rollback.version)
        .await
        .map_err(|e| CommandFailure::failed(format!("writing the rolled-back version of {target}: {e}")))?;
    output.line(&format!("rolled back {summary}: version {}", written.version));
    Ok(ExitStatus::Ok)
}

/// The vault client and the deployment's providers (built as the handlers build them: only bound providers).
fn clients(settings: &Settings) -> Result<(Arc<AzureKeyVault>, Providers), CommandFailure> {
    let setup = |e: &dyn std::fmt::Display| CommandFailure::setup(format!("cannot reach the vault: {e}"));
    let options =
        keyturn_vault::http::client_options(&settings.retry, settings.ca_file.as_deref()).map_err(|e| setup(&e))?;
    let credential =
        keyturn_vault::credential::build_credential(&settings.credential, options.clone()).map_err(|e| setup(&e))?;
    let vault =
        Arc::new(AzureKeyVault::new(&settings.vaults, credential.clone(), options.clone()).map_err(|e| setup(&e))?);
    let providers = Providers::from_settings(settings, vault.clone(), credential, options)
        .map_err(|e| CommandFailure::setup(format!("the rotation providers: {e}")))?;
    Ok((vault, providers))
}

/// Waits, at most a second, until the current second is past `created` (the latest version's creation).
///
/// Key Vault keeps `nbf` in whole seconds, and a storage-account-key rotation treats the other key as its own
/// crashed attempt's when that key was created after the live version's `nbf`. A rollback written in the same
/// second as the rotation it undoes would carry an `nbf` before the key that broke things was regenerated, and
/// the next rotation would keep that key instead of regenerating it.
async fn wait_past_the_second_of(created: Option<DateTime<Utc>>) {
    let Some(created) = created else { return };
    let next_second = DateTime::<Utc>::from_timestamp(created.timestamp() + 1, 0).unwrap_or(created);
    if let Ok(wait) = (next_second - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
}

/// The latest version and the newest enabled one before it.
fn latest_and_previous(listed: &[Listed]) -> Option<(String, String)> {
    let latest = current(listed)?.version.clone()?;
    let previous = listed
        .iter()
        .filter(|v| v.enabled && v.version.as_deref().is_some_and(|id| !id.eq_ignore_ascii_case(&latest)))
        .filter(|v| v.created <= current(listed).and_then(|l| l.created))
        .max_by_key(|v| v.created)?
        .version
        .clone()?;
    Some((latest, previous))
}

/// The provider the secret's `KeyturnRotation` tag names, if this deployment has it.
fn provider_of(
    providers: &Providers,
    latest: &SecretProperties,
    target: &str,
) -> Result<Arc<dyn Provider>, CommandFailure> {
    let Some(name) = tag(&latest.tags, ROTATION) else {
        return Err(CommandFailure::failed(format!(
            "refusing to roll back {target}: it has no {ROTATION} tag, so keyturn did not rotate it and cannot tell \
             whether its previous value still works"
        )));
    };
    providers.get(name).cloned().ok_or_else(|| {
        CommandFailure::setup(format!(
            "{target} is rotated by '{name}', which these settings do not configure (providers here: {})",
            providers.names().join(", ")
        ))
        .hint("run with the deployment's provider bindings set (docs/configuration.md), as the handlers have them")
    })
}

/// The pure part: whether `previous` may be restored over `latest`, and the version that does it.
pub fn plan(
    provider: &dyn Provider,
    latest: &SecretVersion,
    previous: &SecretVersion,
    now: DateTime<Utc>,
) -> Result<Rollback, String> {
    let until = match provider.previous_credential(&latest.properties, &previous.properties, now) {
        PreviousCredential::Revoked(reason) => return Err(reason),
        PreviousCredential::Survives { until } => until,
    };
    let expires = match (latest.properties.expires, until) {
        (Some(due), Some(ends)) => Some(due.min(ends)),
        (due, ends) => due.or(ends),
    };
    if expires.is_some_and(|at| at <= now) {
        return Err(format!(
            "the restored credential would already be expired (at {}); rotate again instead",
            expires.map(|at| at.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default()
        ));
    }
    let mut tags = previous.properties.tags.clone();
    // The restored version's own provenance described how IT was made; this one is made by the rollback.
    tags.retain(|key, _| {
        ![ROTATED_FROM, EVENT_ID, ROLLED_BACK_FROM, ROLLBACK_OF].iter().any(|t| key.eq_ignore_ascii_case(t))
    });
    tags.insert(ROLLED_BACK_FROM.to_owned(), latest.properties.version.clone());
    tags.insert(ROLLBACK_OF.to_owned(), previous.properties.version.clone());
    if tags.len() > MAX_TAGS {
        return Err(format!("the new version would carry {} tags, over Key Vault's {MAX_TAGS}", tags.len()));
    }
    Ok(Rollback {
        from: latest.properties.version.clone(),
        restores: previous.properties.version.clone(),
        version: NewSecretVersion {
            value: previous.value.clone(),
            content_type: previous.properties.content_type.clone(),
            tags,
            not_before: Some(now),
            expires,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyturn_config::SecretString;
    use keyturn_rotation::provider::generated::Generated;
    use keyturn_vault::model::Tags;

    fn version(id: &str, value: &str, tags: &[(&str, &str)], expires: Option<DateTime<Utc>>) -> SecretVersion {
        SecretVersion {
            properties: SecretProperties {
                version: id.to_owned(),
                content_type: Some("text/plain".into()),
                tags: tags.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<Tags>(),
                enabled: true,
                not_before: None,
                expires,
            },
            value: SecretString::new(value.to_owned()),
        }
    }

    #[test]
    fn the_previous_value_and_provider_tags_come_back_with_provenance_and_the_latest_expiry() {
        let now = Utc::now();
        let due = now + chrono::Duration::days(60);
        let latest = version("v2", "new", &[("KeyturnRotation", "generated"), ("KeyturnRotatedFrom", "v1")], Some(due));
        let previous = version("v1", "old", &[("KeyturnRotation", "generated"), ("KeyturnEventId", "e0")], None);
        let rollback = plan(&Generated, &latest, &previous, now).unwrap();
        assert_eq!((rollback.from.as_str(), rollback.restores.as_str()), ("v2", "v1"));
        assert_eq!(rollback.version.value.expose(), "old");
        assert_eq!((rollback.version.not_before, rollback.version.expires), (Some(now), Some(due)));
        let tags: Vec<(&str, &str)> = rollback.version.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            tags,
            [("KeyturnRollbackOf", "v1"), ("KeyturnRolledBackFrom", "v2"), ("KeyturnRotation", "generated")]
        );
    }

    #[test]
    fn a_credential_already_expired_is_not_restored_and_targets_need_a_slash() {
        let now = Utc::now();
        let latest = version("v2", "new", &[], Some(now - chrono::Duration::minutes(1)));
        let previous = version("v1", "old", &[], None);
        assert!(plan(&Generated, &latest, &previous, now).unwrap_err().contains("already be expired"));
        assert_eq!(split("kv-one/db").unwrap(), ("kv-one", "db"));
        assert_eq!(split("kv-one=https://127.0.0.1:8443/db").unwrap(), ("kv-one=https://127.0.0.1:8443", "db"));
        assert_eq!(split("db").unwrap_err().status, ExitStatus::Usage);
    }

    #[test]
    fn the_previous_version_is_the_newest_enabled_one_before_the_latest() {
        let at = |minutes: i64| Some(Utc::now() - chrono::Duration::minutes(100 - minutes));
        let listed = |id: &str, enabled: bool, minutes: i64| Listed {
            name: "db".into(),
            version: Some(id.into()),
            enabled,
            created: at(minutes),
            not_before: None,
            expires: None,
            tags: Tags::new(),
            managed: false,
        };
        let versions = [listed("v1", true, 1), listed("v2", true, 2), listed("v3", false, 3), listed("v4", true, 4)];
        assert_eq!(latest_and_previous(&versions), Some(("v4".into(), "v2".into())));
        assert_eq!(latest_and_previous(&versions[..1]), None);
    }
}
