//! Entra ID application client secrets, through Microsoft Graph (`KeyturnRotation=entra-app-secret`), with the
//! tags of Microsoft's AADApp rotation sample: `ProviderAddress` = the application's object id, `CredentialId`
//! = the keyId of the password the secret holds, `ValidityPeriodDays` = the new password's lifetime.
//!
//! A rotation adds a password (`addPassword`, ending when the new version expires), keeps its `secretText` as
//! the new version (`CredentialId` = its keyId, `KeyturnPreviousCredential` = the keyId it replaces), and leaves
//! the previous password working for the overlap `KeyturnOverlap` sets (an ISO 8601 duration, default
//! [`DEFAULT_OVERLAP`]): consumers that still hold the previous value keep signing in. Passwords whose overlap
//! ended are removed (`removePassword`) after each promotion and at the next rotation; the password the secret
//! holds is never removed, nor any password keyturn did not make for this secret or replace in it.
//!
//! Bindings (issue 13): `ProviderAddress` may only pick among the applications `KEYTURN_ENTRA_APPLICATIONS`
//! binds to the secret's vault (and name); anything else is refused permanently before Graph is called. Without
//! a binding the provider is not registered.
//!
//! Crash safety ([`pending`](crate::provider::pending)'s protocol): Graph shows a secret once, in addPassword's
//! answer, so the answer goes into the pending home at once, and a replay resumes from it. Every password keyturn
//! adds is named `keyturn:<vault>/<name>:<the version it replaces>`; a replay that finds one without a pending value
//! (the process died between the two) removes it, since its secret is lost for good, and adds another: a
//! rotation ends with exactly one new password, whatever was killed when.
//!
//! The password (and anything derived from it, such as Graph's `hint`) is never logged or put in an error.

pub mod graph;

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use keyturn_config::RetrySettings;
use keyturn_config::entra::{ENTRA_APPLICATIONS, EntraSettings, is_guid};
use keyturn_vault::KeyVault;
use keyturn_vault::model::{SecretProperties, Tags};

use self::graph::{GraphClient, PasswordCredential};
use crate::policy::{CREDENTIAL_ID, PROVIDER_ADDRESS, tag};
use crate::provider::pending::PendingHome;
use crate::provider::{Pending, PreviousCredential, Provider, ProviderError, ProviderFuture, RotationContext};

pub(crate) const NAME: &str = "entra-app-secret";
/// Tag: how long the previous password keeps working after a rotation (ISO 8601: `P7D`, `PT12H`, `P1DT6H`).
pub const OVERLAP: &str = "KeyturnOverlap";
/// Tag written on each new version: the keyId of the password it replaced (removed once the overlap ends).
pub const PREVIOUS_CREDENTIAL: &str = "KeyturnPreviousCredential";
/// The overlap when the secret sets none.
pub const DEFAULT_OVERLAP: &str = "P7D";

/// `KeyturnRotation=entra-app-secret`.
#[derive(Debug, Clone)]
pub struct EntraAppSecret {
    graph: GraphClient,
    settings: EntraSettings,
    home: PendingHome,
}

/// What decides which passwords may go: the one the secret holds, and the one it replaced with when.
#[derive(Debug, Clone, Copy)]
struct InUse<'a> {
    /// The keyId the live (or just promoted) version holds.
    current: &'a str,
    /// The keyId it replaced, and since when it is no longer the live one.
    previous: Option<(&'a str, DateTime<Utc>)>,
}

impl EntraAppSecret {
    /// Calls Graph at `settings.graph_endpoint` with `credential` (the handler's identity), for the applications
    /// `settings` binds; pending values are kept in `vault`.
    pub fn new(
        settings: &EntraSettings,
        vault: Arc<dyn KeyVault>,
        credential: Arc<dyn azure_core::credentials::TokenCredential>,
        retry: &RetrySettings,
        ca_file: Option<&Path>,
    ) -> Result<Self, ProviderError> {
        let graph = GraphClient::new(settings.graph_endpoint.clone(), credential, retry, ca_file)?;
        Ok(Self { graph, settings: settings.clone(), home: PendingHome::new(vault, NAME) })
    }

    fn error(message: impl Into<String>, retryable: bool) -> ProviderError {
        ProviderError { provider: NAME, message: message.into(), retryable }
    }

    /// The application the secret's `ProviderAddress` names, if the deployment binds it to this secret.
    fn application<'c>(&self, ctx: &'c RotationContext<'_>) -> Result<&'c str, ProviderError> {
        let address = ctx.policy.provider_address.as_deref().map(str::trim).filter(|a| is_guid(a)).ok_or_else(|| {
            Self::error(
                format!(
                    "tag {PROVIDER_ADDRESS} must be the application's object id (a GUID: the app registration's Object \
                     ID), not {:?}",
                    ctx.policy.provider_address
                ),
                false,
            )
        })?;
        if !self.settings.allows(ctx.vault, ctx.name, address) {
            return Err(Self::error(
                format!(
                    "application {address} is not bound to secret '{}' in vault '{}' ({ENTRA_APPLICATIONS} has no entry \
                     for it); nothing was asked of Microsoft Graph",
                    ctx.name, ctx.vault
                ),
                false,
            ));
        }
        Ok(address)
    }

    /// Removes the passwords of this secret that may go: the one it replaced once the overlap ended, and any
    /// other password keyturn made for it (older generations, and those a killed attempt left without a value).
    /// Never the one in use, and never a password keyturn neither made nor replaced here. Call under the object's
    /// lock: a rotation in flight holds a password that is neither in use nor replaced yet.
    async fn retire(
        &self,
        ctx: &RotationContext<'_>,
        app: &str,
        listed: &[PasswordCredential],
        in_use: InUse<'_>,
        overlap: Duration,
    ) -> Result<(), ProviderError> {
        let ours = marker_prefix(ctx.vault, ctx.name);
        for password in listed {
            let key_id = password.key_id.as_str();
            if key_id.eq_ignore_ascii_case(in_use.current) {
                continue;
            }
            let reason = match in_use.previous {
                Some((previous, since)) if key_id.eq_ignore_ascii_case(previous) => {
                    if since + overlap > ctx.now {
                        continue;
                    }
                    "its overlap ended"
                }
                _ if password.display_name.as_deref().is_some_and(|n| n.to_ascii_lowercase().starts_with(&ours)) => {
                    "an earlier keyturn password of this secret"
                }
                _ => continue,
            };
            self.graph.remove_password(app, key_id).await?;
            tracing::info!(secret = ctx.name, application = app, key_id, reason, "password removed");
        }
        Ok(())
    }
}

/// Whether the password `previous` holds is still there: within the overlap `latest`'s tags set, counted from its
/// promotion (`nbf`).
fn previous_within_overlap(
    latest: &SecretProperties,
    previous: &SecretProperties,
    now: DateTime<Utc>,
) -> PreviousCredential {
    let raw = tag(&latest.tags, OVERLAP).unwrap_or(DEFAULT_OVERLAP);
    let (Some(promoted), Some(overlap)) = (latest.not_before, iso_duration(raw)) else {
        return PreviousCredential::Revoked(format!(
            "{NAME}: cannot tell when the previous password's overlap ends (the latest version has no nbf, or \
             {OVERLAP}='{raw}' is not a duration), so it may already be removed"
        ));
    };
    let ends = promoted + overlap;
    if now < ends {
        PreviousCredential::Survives { until: previous.expires }
    } else {
        PreviousCredential::Revoked(format!(
            "{NAME}: the previous password's overlap ({raw}) ended at {}; keyturn removes it then, so it no longer \
             works; rotate again instead",
            ends.format("%Y-%m-%d %H:%M UTC")
        ))
    }
}

/// The display name prefix of every password keyturn adds for `vault/name`.
fn marker_prefix(vault: &str, name: &str) -> String {
    format!("keyturn:{}/{}:", vault.to_ascii_lowercase(), name.to_ascii_lowercase())
}

/// The display name of the password a rotation of `ctx.current` adds.
fn marker(ctx: &RotationContext<'_>) -> String {
    format!("{}{}", marker_prefix(ctx.vault, ctx.name), ctx.current.properties.version)
}

/// The overlap the secret's tags set (at most its validity: a longer one would outlive the password anyway).
fn overlap(tags: &Tags, validity: Duration) -> Result<Duration, ProviderError> {
    let raw = tag(tags, OVERLAP).unwrap_or(DEFAULT_OVERLAP);
    match iso_duration(raw) {
        Some(overlap) if overlap <= validity => Ok(overlap),
        _ => Err(EntraAppSecret::error(
            format!(
                "tag {OVERLAP}: '{raw}' is not valid; expected an ISO 8601 duration of weeks, days, hours, minutes or \
                 seconds (e.g. P7D, PT12H, P1DT6H, PT0S) no longer than ValidityPeriodDays"
            ),
            false,
        )),
    }
}

/// `P[nW][nD][T[nH][nM][nS]]` (whole numbers); years and months are refused: their length varies.
fn iso_duration(raw: &str) -> Option<Duration> {
    let rest = raw.trim().to_ascii_uppercase();
    let rest = rest.strip_prefix('P')?;
    let (date, time) = rest.split_once('T').map_or((rest, None), |(d, t)| (d, Some(t)));
    if rest.is_empty() || time == Some("") {
        return None;
    }
    let mut total = Duration::zero();
    for (part, units) in [
        (date, &[('W', 7 * 86_400), ('D', 86_400)][..]),
        (time.unwrap_or(""), &[('H', 3_600), ('M', 60), ('S', 1)][..]),
    ] {
        let mut number = String::new();
        let mut next_unit = 0;
        for c in part.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            // Units in their order, each once, each after a number.
            let position = units.iter().skip(next_unit).position(|(u, _)| *u == c)? + next_unit;
            let n: i64 = number.parse().ok()?;
            total = total.checked_add(&Duration::seconds(n.checked_mul(units[position].1)?))?;
            number.clear();
            next_unit = position + 1;
        }
        if !number.is_empty() {
            return None;
        }
    }
    Some(total)
}

impl Provider for EntraAppSecret {
    fn name(&self) -> &'static str {
        NAME
    }

    fn create_pending<'a>(&'a self, ctx: &'a RotationContext<'a>) -> ProviderFuture<'a, Pending> {
        Box::pin(async move {
            let app = self.application(ctx)?;
            let validity = ctx.policy.required_validity().map_err(|e| Self::error(e.to_string(), false))?;
            let overlap = overlap(&ctx.current.properties.tags, validity)?;
            let current = tag(&ctx.current.properties.tags, CREDENTIAL_ID);

            // A previous attempt of this rotation kept its password's secret: resume with it, if it still exists.
            let resumed = self.home.resume(ctx).await?;
            let listed = self.graph.passwords(app).await?;
            if let Some(pending) = resumed {
                let key_id = tag(&pending.tags, CREDENTIAL_ID).unwrap_or_default();
                if listed.iter().any(|p| p.key_id.eq_ignore_ascii_case(key_id)) {
                    tracing::info!(
                        secret = ctx.name,
                        application = app,
                        key_id,
                        "resuming with the password a previous attempt added"
                    );
                    return Ok(pending);
                }
                tracing::warn!(
                    secret = ctx.name,
                    application = app,
                    key_id,
                    "the pending password is no longer on the application; adding another"
                );
            }

            // Clear what may go before adding: older generations, a killed attempt's valueless password, and the
            // password the live version replaced if its overlap ended. Without CredentialId keyturn cannot tell
            // which password is in use, so it removes nothing.
            match current {
                Some(current) => {
                    let previous =
                        tag(&ctx.current.properties.tags, PREVIOUS_CREDENTIAL).zip(ctx.current.properties.not_before);
                    self.retire(ctx, app, &listed, InUse { current, previous }, overlap).await?;
                }
                None => tracing::warn!(
                    secret = ctx.name,
                    "tag {CREDENTIAL_ID} is missing: no password is removed, since the one in use is unknown"
                ),
            }

            let added = self.graph.add_password(app, &marker(ctx), ctx.now + validity).await?;
            tracing::info!(secret = ctx.name, application = app, key_id = %added.key_id, "password added");
            let mut tags = Tags::from([(CREDENTIAL_ID.to_owned(), added.key_id.clone())]);
            if let Some(current) = current {
                tags.insert(PREVIOUS_CREDENTIAL.to_owned(), current.to_owned());
            }
            let pending = Pending { value: added.secret, tags };
            // Until this lands, a crash loses the secret; the replay then removes the password by its name.
            self.home.store(ctx, &pending).await?;
            Ok(pending)
        })
    }

    fn test_pending<'a>(&'a self, ctx: &'a RotationContext<'a>, pending: &'a Pending) -> ProviderFuture<'a, ()> {
        Box::pin(async move {
            // The password must still be the application's: one removed meanwhile would be dead on arrival.
            let app = self.application(ctx)?;
            let key_id = tag(&pending.tags, CREDENTIAL_ID).unwrap_or_default();
            let listed = self.graph.passwords(app).await?;
            match listed.iter().find(|p| p.key_id.eq_ignore_ascii_case(key_id)) {
                Some(p) if p.end_date_time.is_none_or(|end| end > ctx.now) => Ok(()),
                Some(_) => Err(Self::error(format!("password {key_id} of application {app} has already ended"), false)),
                None => Err(Self::error(
                    format!("password {key_id} was removed from application {app} during the rotation; retrying"),
                    true,
                )),
            }
        })
    }

    fn finish<'a>(&'a self, ctx: &'a RotationContext<'a>, promoted: &'a SecretProperties) -> ProviderFuture<'a, ()> {
        Box::pin(async move {
            self.home.mark_promoted(ctx, promoted).await;
            // The rotation is done: a failed clean-up is logged, and the next rotation tries again.
            let cleanup = async {
                let app = self.application(ctx)?;
                let Some(current) = tag(&promoted.tags, CREDENTIAL_ID) else { return Ok(()) };
                let validity = ctx.policy.required_validity().map_err(|e| Self::error(e.to_string(), false))?;
                let overlap = overlap(&promoted.tags, validity)?;
                let since = promoted.not_before.unwrap_or(ctx.now);
                let previous = tag(&promoted.tags, PREVIOUS_CREDENTIAL).map(|p| (p, since));
                let listed = self.graph.passwords(app).await?;
                self.retire(ctx, app, &listed, InUse { current, previous }, overlap).await
            };
            if let Err(error) = cleanup.await {
                tracing::warn!(secret = ctx.name, %error, "removing passwords after the rotation failed; the next rotation tries again");
            }
            Ok(())
        })
    }

    /// The previous password keeps working for the overlap after the promotion of `latest` (its `nbf`), and is
    /// removed once the overlap ends; it also ends on its own when `previous` expires (its end date).
    fn previous_credential(
        &self,
        latest: &SecretProperties,
        previous: &SecretProperties,
        now: DateTime<Utc>,
    ) -> PreviousCredential {
        previous_within_overlap(latest, previous, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_previous_password_can_be_restored_only_within_its_overlap() {
        let props = |tags: &[(&str, &str)], nbf: Option<DateTime<Utc>>, exp: Option<DateTime<Utc>>| SecretProperties {
            version: "v".into(),
            content_type: None,
            tags: tags.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            enabled: true,
            not_before: nbf,
            expires: exp,
        };
        let promoted = Utc::now() - Duration::days(2);
        let end = Utc::now() + Duration::days(20);
        let previous = props(&[], None, Some(end));
        let week = props(&[], Some(promoted), None);
        assert_eq!(
            previous_within_overlap(&week, &previous, Utc::now()),
            PreviousCredential::Survives { until: Some(end) }
        );
        let day = props(&[(OVERLAP, "P1D")], Some(promoted), None);
        let PreviousCredential::Revoked(reason) = previous_within_overlap(&day, &previous, Utc::now()) else {
            panic!()
        };
        assert!(reason.starts_with("entra-app-secret: the previous password's overlap (P1D) ended at"), "{reason}");
        assert!(matches!(
            previous_within_overlap(&props(&[], None, None), &previous, Utc::now()),
            PreviousCredential::Revoked(_)
        ));
    }

    #[test]
    fn overlaps_are_iso_8601_durations_of_fixed_units() {
        let d = |raw: &str| iso_duration(raw);
        assert_eq!(d("P7D"), Some(Duration::days(7)));
        assert_eq!(d("pt12h"), Some(Duration::hours(12)));
        assert_eq!(d("P1DT6H30M15S"), Some(Duration::seconds(86_400 + 6 * 3_600 + 30 * 60 + 15)));
        assert_eq!(d("P2W"), Some(Duration::days(14)));
        assert_eq!(d("PT0S"), Some(Duration::zero()));
        assert_eq!(d("PT20S"), Some(Duration::seconds(20)));
        for bad in [
            "",
            "P",
            "PT",
            "7D",
            "P1Y",
            "P1M",
            "PT1D",
            "P1H",
            "PD",
            "P7",
            "PT5S5M",
            "P1D1D",
            "P-1D",
            "P99999999999999999D",
        ] {
            assert_eq!(d(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_overlap_defaults_to_a_week_and_may_not_exceed_the_validity() {
        let tags = |v: &str| Tags::from([(OVERLAP.to_owned(), v.to_owned())]);
        assert_eq!(overlap(&Tags::new(), Duration::days(60)).unwrap(), Duration::days(7));
        assert_eq!(overlap(&tags("PT30S"), Duration::days(60)).unwrap(), Duration::seconds(30));
        let error = overlap(&tags("P90D"), Duration::days(60)).unwrap_err();
        assert!(!error.retryable && error.message.contains("KeyturnOverlap: 'P90D'"), "{error}");
        assert!(overlap(&tags("a week"), Duration::days(60)).is_err());
    }

    #[test]
    fn keyturn_names_its_passwords_by_secret_and_replaced_version() {
        assert_eq!(marker_prefix("KV-One", "App-Secret"), "keyturn:kv-one/app-secret:");
    }
}
