//! What the database providers (`postgres*`, `mysql*`) share: the secret's connection details (`details.rs`), AWS's
//! two strategies and the alternation between `<user>` and `<user>_clone`, the deployment's bindings, the
//! pending-value protocol and the confused-deputy guard. Each engine's module adds only how it logs in and which
//! logins its admin may change.
//!
//! The steps every database provider takes, made safe to replay the way AWS's rotation functions are:
//! 1. create ([`LoginRotation::create_pending`]): resume this rotation's pending value from the pending home, or
//!    generate one and store it there before anything else happens;
//! 2. set (the engine's): if the pending credential already logs in, an earlier attempt set it: do nothing.
//!    Otherwise change the password;
//! 3. test (the engine's): log in with the pending credential and check the session's user;
//! 4. the engine promotes it with one `set_secret`; 5. finish: the pending home is marked promoted.
//!
//! Confused-deputy guard: the pending credential must name the same server as the current one, and the same
//! login (single user) or its alternate (alternating), whatever the pending home says.

mod details;

use std::sync::Arc;

use keyturn_config::providers::DatabaseBindings;
use keyturn_vault::KeyVault;
use keyturn_vault::model::SecretProperties;

pub(crate) use self::details::{Details, Kind, MYSQL, POSTGRES};
use crate::generate::generate;
use crate::policy::tag;
use crate::provider::pending::{self, PendingHome};
use crate::provider::{Pending, PreviousCredential, ProviderError, ProviderFuture, RotationContext};

/// Tag: the secret (same vault) holding the admin login that manages the rotated logins.
pub const ADMIN_SECRET: &str = "KeyturnAdminSecret";
/// The alternate login's suffix.
pub const CLONE_SUFFIX: &str = "_clone";

/// Which of AWS's two strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// The login's own password changes. Between the change and the promotion the live secret holds a dead
    /// password; clients that reconnect in that window fail once.
    SingleUser,
    /// Two logins, `<user>` and `<user>_clone`; each rotation changes the one the secret does NOT hold, so the
    /// stored credential keeps working until the next rotation.
    Alternating,
}

/// Why a login or a statement failed, whatever the engine (each client classifies its own errors into these).
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum LoginError {
    /// The server refused the credential (wrong password, unknown login, no `pg_hba` entry, locked account).
    #[error("{0}")]
    Rejected(String),
    /// The server could not be reached, or answered with something a later attempt may not.
    #[error("{0}")]
    Unavailable(String),
    /// The server (or the client's own rules: no TLS, a cleartext password asked for) refused for a reason a
    /// retry will not change (no privilege, bad name).
    #[error("{0}")]
    Refused(String),
}

impl LoginError {
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// `(base, base_clone)` for either of the two logins.
pub(crate) fn logins(user: &str) -> (String, String) {
    let base = user.strip_suffix(CLONE_SUFFIX).filter(|b| !b.is_empty()).unwrap_or(user);
    (base.to_owned(), format!("{base}{CLONE_SUFFIX}"))
}

/// The engine-independent half of a database provider: one strategy, its bindings and its pending home.
#[derive(Debug, Clone)]
pub(crate) struct LoginRotation {
    provider: &'static str,
    strategy: Strategy,
    kind: &'static Kind,
    vault: Arc<dyn KeyVault>,
    home: PendingHome,
    /// The servers and admin logins the deployment allows; none until [`LoginRotation::bound`] (so an unbound
    /// provider refuses every server).
    bindings: DatabaseBindings,
    /// The names of the binding variables, for refusals.
    servers_var: &'static str,
    admins_var: &'static str,
}

impl LoginRotation {
    pub(crate) fn new(
        provider: &'static str,
        strategy: Strategy,
        kind: &'static Kind,
        vault: Arc<dyn KeyVault>,
        (servers_var, admins_var): (&'static str, &'static str),
    ) -> Self {
        Self {
            provider,
            strategy,
            kind,
            home: PendingHome::new(vault.clone(), provider),
            vault,
            bindings: DatabaseBindings::default(),
            servers_var,
            admins_var,
        }
    }

    pub(crate) fn bound(mut self, bindings: DatabaseBindings) -> Self {
        self.bindings = bindings;
        self
    }

    pub(crate) fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// Alternating: the previous version holds the other login, whose password the rotation did not touch (the
    /// next rotation changes it). Single user: the rotation changed the one login's password.
    pub(crate) fn previous_credential(&self) -> PreviousCredential {
        match self.strategy {
            Strategy::Alternating => PreviousCredential::Survives { until: None },
            Strategy::SingleUser => PreviousCredential::Revoked(format!(
                "{} changes the one login's password: the previous password stopped working when the rotation set \
                 the new one (use the alternating strategy, {}-alternating, to keep a way back); rotate again instead",
                self.provider, self.provider
            )),
        }
    }

    pub(crate) fn error(&self, message: impl Into<String>, retryable: bool) -> ProviderError {
        ProviderError { provider: self.provider, message: message.into(), retryable }
    }

    /// A client's failure as this provider's, retryable when the client says so.
    pub(crate) fn login_error(&self, error: LoginError) -> ProviderError {
        let retryable = error.is_retryable();
        self.error(error.to_string(), retryable)
    }

    /// The current credential's details (a malformed secret can never rotate: permanent).
    /// The server must be one the deployment binds: a secret's writer cannot point keyturn (and a
    /// password) at a server of their choosing.
    pub(crate) fn current(&self, ctx: &RotationContext<'_>) -> Result<Details, ProviderError> {
        let current = Details::from_secret(&ctx.current.value, &ctx.current.properties.tags, self.kind)
            .map_err(|problem| self.error(format!("secret '{}': {problem}", ctx.name), false))?;
        if !self.bindings.serves(&current.host, current.port) {
            return Err(self.error(
                format!(
                    "secret '{}': the server {}:{} is not in {}; keyturn connects only to the servers the \
                     deployment binds",
                    ctx.name, current.host, current.port, self.servers_var
                ),
                false,
            ));
        }
        Ok(current)
    }

    /// The pending credential's details: the pending value read with the tags it will be promoted with.
    pub(crate) fn pending(&self, ctx: &RotationContext<'_>, pending: &Pending) -> Result<Details, ProviderError> {
        let mut tags = ctx.current.properties.tags.clone();
        for (name, value) in &pending.tags {
            tags.retain(|k, _| !k.eq_ignore_ascii_case(name));
            tags.insert(name.clone(), value.clone());
        }
        Details::from_secret(&pending.value, &tags, self.kind)
            .map_err(|problem| self.error(format!("the pending value of '{}': {problem}", ctx.name), false))
    }

    /// The login a rotation changes: the same one (single user) or the one not stored (alternating).
    pub(crate) fn target_user(&self, current: &Details) -> Result<String, ProviderError> {
        match self.strategy {
            Strategy::SingleUser => Ok(current.user.clone()),
            Strategy::Alternating => {
                let (base, clone) = logins(&current.user);
                if clone.len() > self.kind.max_user {
                    return Err(self.error(
                        format!(
                            "the alternate login '{clone}' would exceed {}'s {}-byte names; use a shorter login",
                            self.kind.name, self.kind.max_user
                        ),
                        false,
                    ));
                }
                Ok(if current.user == base { clone } else { base })
            }
        }
    }

    /// The confused-deputy guard: the pending credential must be for the same server, and for the login
    /// this strategy would change.
    pub(crate) fn guard(
        &self,
        ctx: &RotationContext<'_>,
        current: &Details,
        next: &Details,
    ) -> Result<(), ProviderError> {
        let expected = self.target_user(current)?;
        if !current.same_server(next) || next.user != expected {
            return Err(self.error(
                format!(
                    "the pending credential is for {next:?} but this rotation may only change '{expected}' on \
                     {}:{}; refusing to act (inspect the pending home '{}{}')",
                    current.host,
                    current.port,
                    ctx.name,
                    pending::SUFFIX
                ),
                false,
            ));
        }
        Ok(())
    }

    /// Step 1, whole: this rotation's pending value, resumed from the pending home or generated (with the
    /// existing generator, in the policy's format) and stored there before anything else happens; then guarded.
    pub(crate) async fn create_pending(&self, ctx: &RotationContext<'_>) -> Result<Pending, ProviderError> {
        let current = self.current(ctx)?;
        let pending = match self.home.resume(ctx).await? {
            Some(resumed) => resumed,
            None => {
                let password = generate(ctx.policy.format).map_err(|e| self.error(e.to_string(), true))?;
                let next = current.with_login(&self.target_user(&current)?, password);
                let pending = Pending { value: next.to_value(), tags: next.tag_changes(&ctx.current.properties.tags) };
                self.home.store(ctx, &pending).await?;
                pending
            }
        };
        self.guard(ctx, &current, &self.pending(ctx, &pending)?)?;
        Ok(pending)
    }

    /// Step 2's preamble: the current and the pending credential, guarded.
    pub(crate) fn current_and_next(
        &self,
        ctx: &RotationContext<'_>,
        pending: &Pending,
    ) -> Result<(Details, Details), ProviderError> {
        let current = self.current(ctx)?;
        let next = self.pending(ctx, pending)?;
        self.guard(ctx, &current, &next)?;
        Ok((current, next))
    }

    /// Step 5: the pending home keeps no credential once the value is live.
    pub(crate) fn finish<'a>(
        &'a self,
        ctx: &'a RotationContext<'a>,
        promoted: &'a SecretProperties,
    ) -> ProviderFuture<'a, ()> {
        self.home.finish(ctx, promoted)
    }

    /// The refusal when neither the stored nor the pending password logs in (single user).
    pub(crate) fn changed_outside(&self, ctx: &RotationContext<'_>, current: &Details) -> ProviderError {
        self.error(
            format!(
                "neither the stored nor the pending password of {current:?} logs in: the password was changed \
                 outside keyturn; store a working one (the pending home '{}{}' holds keyturn's)",
                ctx.name,
                pending::SUFFIX
            ),
            false,
        )
    }

    /// The admin login named by tag `KeyturnAdminSecret`: bound to manage the current login's base in the
    /// admins variable, read from the same vault, and for the same server as the current credential.
    pub(crate) async fn admin(&self, ctx: &RotationContext<'_>, current: &Details) -> Result<Details, ProviderError> {
        let name = tag(&ctx.current.properties.tags, ADMIN_SECRET).filter(|n| !n.is_empty()).ok_or_else(|| {
            self.error(
                format!("tag {ADMIN_SECRET} must name the secret holding the admin login that changes the password"),
                false,
            )
        })?;
        let (base, _) = logins(&current.user);
        if !self.bindings.admin_manages(ctx.vault, name, &base) {
            return Err(self.error(
                format!(
                    "the admin secret '{name}' is not bound to manage '{base}' in {} (for vault '{}'); refusing to \
                     use it",
                    self.admins_var, ctx.vault
                ),
                false,
            ));
        }
        let secret = self.vault.latest_secret(ctx.vault, name).await.map_err(|e| {
            let retryable = e.is_retryable();
            self.error(format!("reading the admin secret '{name}': {e}"), retryable)
        })?;
        let admin = Details::from_secret(&secret.value, &secret.properties.tags, self.kind)
            .map_err(|problem| self.error(format!("admin secret '{name}': {problem}"), false))?;
        if !admin.same_server(current) {
            return Err(self.error(
                format!(
                    "the admin secret '{name}' is for {}:{}, not {}:{}; refusing to use it",
                    admin.host, admin.port, current.host, current.port
                ),
                false,
            ));
        }
        Ok(admin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_logins_of_either_one() {
        assert_eq!(logins("app"), ("app".to_owned(), "app_clone".to_owned()));
        assert_eq!(logins("app_clone"), ("app".to_owned(), "app_clone".to_owned()));
        // A login literally named "_clone" is its own base.
        assert_eq!(logins("_clone"), ("_clone".to_owned(), "_clone_clone".to_owned()));
    }
}
