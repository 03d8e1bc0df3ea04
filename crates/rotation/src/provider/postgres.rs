//! PostgreSQL passwords (Azure Database for PostgreSQL, or any PostgreSQL reachable over TLS), in AWS's two
//! strategies:
//!
//! - `postgres` (single user): the login's own password changes. Between the change and the promotion the
//!   live secret holds a dead password; clients that reconnect in that window fail once.
//! - `postgres-alternating`: two logins, `<user>` and `<user>_clone`; each rotation changes the one the
//!   secret does NOT hold, so the stored credential keeps working until the next rotation. The clone is
//!   created on first use by an admin login read from another secret (tag `KeyturnAdminSecret`), as a member
//!   of `<user>`, so it has the same privileges.
//!
//! The steps, made safe to replay the way AWS's rotation functions are:
//! 1. create: resume this rotation's pending value from the pending home, or generate one and store it there
//!    before anything else happens;
//! 2. set: if the pending credential already logs in, it was set by an earlier attempt: do nothing.
//!    Otherwise change the password (logged in as the current credential, or as the admin for the
//!    alternate login). If neither the pending nor the current credential logs in, stop: something other
//!    than keyturn changed the password, and guessing could lock the login out;
//! 3. test: log in with the pending credential and check the session's user;
//! 4. the engine promotes it with one `set_secret`; 5. finish: the pending home is marked promoted.
//!
//! Confused-deputy guard: the pending credential must name the same server as the current one, and the same
//! login (single user) or its alternate (alternating), whatever the pending home says.
//!
//! What a secret's writer may not make the admin do (issue 13): change the admin login itself, a superuser,
//! a role with CREATEROLE or BYPASSRLS, or an existing `_clone` that is not a member of its base; each is a
//! permanent refusal before any password changes. Every login requires SCRAM with channel binding, so a
//! server asking for a cleartext or MD5 password never receives one (`client.rs`).

mod client;
mod details;

use std::path::Path;
use std::sync::Arc;

use keyturn_config::providers::{POSTGRES_ADMINS, POSTGRES_SERVERS, PostgresBindings};
use keyturn_vault::KeyVault;
use keyturn_vault::model::SecretProperties;

use self::client::{Connector, PgError};
use self::details::Details;
use crate::generate::generate;
use crate::policy::tag;
use crate::provider::pending::{self, PendingHome};
use crate::provider::{Pending, Provider, ProviderError, ProviderFuture, RotationContext};

/// Tag: the secret (same vault) holding the admin login that creates and changes the alternate login.
pub const ADMIN_SECRET: &str = "KeyturnAdminSecret";
/// The alternate login's suffix.
pub const CLONE_SUFFIX: &str = "_clone";
/// PostgreSQL's longest identifier, in bytes.
const MAX_IDENTIFIER: usize = 63;

/// Which of AWS's two strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    SingleUser,
    Alternating,
}

/// The PostgreSQL provider, in one strategy.
#[derive(Debug, Clone)]
pub struct Postgres {
    strategy: Strategy,
    vault: Arc<dyn KeyVault>,
    home: PendingHome,
    connector: Connector,
    /// The servers and admin logins the deployment allows; none until [`Postgres::bound`] (so an unbound
    /// provider refuses every server).
    bindings: PostgresBindings,
}

impl Postgres {
    /// A provider that keeps pending values in `vault` and trusts, besides the platform's roots, the
    /// PEM bundle at `ca_file` for the servers' certificates.
    pub fn new(strategy: Strategy, vault: Arc<dyn KeyVault>, ca_file: Option<&Path>) -> Result<Self, ProviderError> {
        let name = Self::name_of(strategy);
        let connector =
            Connector::new(ca_file).map_err(|message| ProviderError { provider: name, message, retryable: false })?;
        Ok(Self {
            strategy,
            home: PendingHome::new(vault.clone(), name),
            vault,
            connector,
            bindings: PostgresBindings::default(),
        })
    }

    /// The provider limited to `bindings` (`KEYTURN_POSTGRES_SERVERS`, `KEYTURN_POSTGRES_ADMINS`).
    pub fn bound(mut self, bindings: PostgresBindings) -> Self {
        self.bindings = bindings;
        self
    }

    fn name_of(strategy: Strategy) -> &'static str {
        match strategy {
            Strategy::SingleUser => "postgres",
            Strategy::Alternating => "postgres-alternating",
        }
    }

    fn error(&self, message: impl Into<String>, retryable: bool) -> ProviderError {
        ProviderError { provider: self.name(), message: message.into(), retryable }
    }

    fn pg_error(&self, error: PgError) -> ProviderError {
        let retryable = error.is_retryable();
        self.error(error.to_string(), retryable)
    }

    /// The current credential's details (a malformed secret can never rotate: permanent).
    /// The server must be one the deployment binds: a secret's writer cannot point keyturn (and a
    /// password) at a server of their choosing.
    fn current(&self, ctx: &RotationContext<'_>) -> Result<Details, ProviderError> {
        let current = Details::from_secret(&ctx.current.value, &ctx.current.properties.tags)
            .map_err(|problem| self.error(format!("secret '{}': {problem}", ctx.name), false))?;
        if !self.bindings.serves(&current.host, current.port) {
            return Err(self.error(
                format!(
                    "secret '{}': the server {}:{} is not in {POSTGRES_SERVERS}; keyturn connects only to the \
                     servers the deployment binds",
                    ctx.name, current.host, current.port
                ),
                false,
            ));
        }
        Ok(current)
    }

    /// The pending credential's details: the pending value read with the tags it will be promoted with.
    fn pending(&self, ctx: &RotationContext<'_>, pending: &Pending) -> Result<Details, ProviderError> {
        let mut tags = ctx.current.properties.tags.clone();
        for (name, value) in &pending.tags {
            tags.retain(|k, _| !k.eq_ignore_ascii_case(name));
            tags.insert(name.clone(), value.clone());
        }
        Details::from_secret(&pending.value, &tags)
            .map_err(|problem| self.error(format!("the pending value of '{}': {problem}", ctx.name), false))
    }

    /// The login a rotation changes: the same one (single user) or the one not stored (alternating).
    fn target_user(&self, current: &Details) -> Result<String, ProviderError> {
        match self.strategy {
            Strategy::SingleUser => Ok(current.user.clone()),
            Strategy::Alternating => {
                let (base, clone) = logins(&current.user);
                if clone.len() > MAX_IDENTIFIER {
                    return Err(self.error(
                        format!(
                            "the alternate login '{clone}' would exceed PostgreSQL's {MAX_IDENTIFIER}-byte names; \
                             use a shorter login"
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
    fn guard(&self, ctx: &RotationContext<'_>, current: &Details, next: &Details) -> Result<(), ProviderError> {
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

    /// The admin login of an alternating rotation: from the secret `KeyturnAdminSecret` names, for the same
    /// server as the current credential.
    async fn admin(&self, ctx: &RotationContext<'_>, current: &Details) -> Result<Details, ProviderError> {
        let name = tag(&ctx.current.properties.tags, ADMIN_SECRET).filter(|n| !n.is_empty()).ok_or_else(|| {
            self.error(
                format!(
                    "tag {ADMIN_SECRET} must name the secret holding the admin login that manages the alternate login"
                ),
                false,
            )
        })?;
        let (base, _) = logins(&current.user);
        if !self.bindings.admin_manages(ctx.vault, name, &base) {
            return Err(self.error(
                format!(
                    "the admin secret '{name}' is not bound to manage '{base}' in {POSTGRES_ADMINS} (for vault \
                     '{}'); refusing to use it",
                    ctx.vault
                ),
                false,
            ));
        }
        let secret = self.vault.latest_secret(ctx.vault, name).await.map_err(|e| {
            let retryable = e.is_retryable();
            self.error(format!("reading the admin secret '{name}': {e}"), retryable)
        })?;
        let admin = Details::from_secret(&secret.value, &secret.properties.tags)
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

impl Postgres {
    /// The admin's deputy check before it changes `target` (the base login or its clone): never the admin
    /// itself, never a role more powerful than an application login (superuser, CREATEROLE, BYPASSRLS: its
    /// password would hand the writer of one secret the whole server), and an existing clone only when it
    /// is a member of its base (a role that merely has the `_clone` name is someone else's). Answers
    /// whether `target` exists; every refusal is permanent.
    async fn manageable(
        &self,
        client: &tokio_postgres::Client,
        admin: &Details,
        base: &str,
        target: &str,
    ) -> Result<bool, ProviderError> {
        let refuse = |why: String| Err(self.error(format!("refusing to change '{target}': {why}"), false));
        for role in [base, target] {
            if role == admin.user {
                return refuse(format!("'{role}' is the admin login itself ({ADMIN_SECRET})"));
            }
        }
        for role in [base, target] {
            let Some(facts) = client::role_facts(client, role).await.map_err(|e| self.pg_error(e))? else {
                if role == base {
                    return refuse(format!("its base login '{base}' does not exist"));
                }
                continue;
            };
            let powers: Vec<&str> =
                [(facts.superuser, "SUPERUSER"), (facts.createrole, "CREATEROLE"), (facts.bypassrls, "BYPASSRLS")]
                    .into_iter()
                    .filter_map(|(has, name)| has.then_some(name))
                    .collect();
            if !powers.is_empty() {
                return refuse(format!("'{role}' has {}; keyturn manages application logins only", powers.join(", ")));
            }
        }
        if target == base {
            return Ok(true);
        }
        if !client::role_exists(client, target).await.map_err(|e| self.pg_error(e))? {
            return Ok(false);
        }
        if !client::is_member_of(client, target, base).await.map_err(|e| self.pg_error(e))? {
            return refuse(format!("it exists but is not a member of '{base}', so it is not this login's clone"));
        }
        Ok(true)
    }
}

/// `(base, base_clone)` for either of the two logins.
fn logins(user: &str) -> (String, String) {
    let base = user.strip_suffix(CLONE_SUFFIX).filter(|b| !b.is_empty()).unwrap_or(user);
    (base.to_owned(), format!("{base}{CLONE_SUFFIX}"))
}

impl Provider for Postgres {
    fn name(&self) -> &'static str {
        Self::name_of(self.strategy)
    }

    fn create_pending<'a>(&'a self, ctx: &'a RotationContext<'a>) -> ProviderFuture<'a, Pending> {
        Box::pin(async move {
            let current = self.current(ctx)?;
            let pending = match self.home.resume(ctx).await? {
                Some(resumed) => resumed,
                None => {
                    let password = generate(ctx.policy.format).map_err(|e| self.error(e.to_string(), true))?;
                    let next = current.with_login(&self.target_user(&current)?, password);
                    let pending =
                        Pending { value: next.to_value(), tags: next.tag_changes(&ctx.current.properties.tags) };
                    self.home.store(ctx, &pending).await?;
                    pending
                }
            };
            self.guard(ctx, &current, &self.pending(ctx, &pending)?)?;
            Ok(pending)
        })
    }

    fn set_pending<'a>(&'a self, ctx: &'a RotationContext<'a>, pending: &'a Pending) -> ProviderFuture<'a, ()> {
        Box::pin(async move {
            let current = self.current(ctx)?;
            let next = self.pending(ctx, pending)?;
            self.guard(ctx, &current, &next)?;
            match self.connector.login(&next).await {
                Ok(_) => {
                    tracing::info!(secret = ctx.name, login = ?next, "the pending password already works; not changing it again");
                    return Ok(());
                }
                Err(PgError::Rejected(_)) => {}
                Err(error) => return Err(self.pg_error(error)),
            }
            match self.strategy {
                Strategy::SingleUser => {
                    let client = self.connector.login(&current).await.map_err(|error| match error {
                        PgError::Rejected(_) => self.error(
                            format!(
                                "neither the stored nor the pending password of {current:?} logs in: the password was \
                                 changed outside keyturn; store a working one (the pending home '{}{}' holds \
                                 keyturn's)",
                                ctx.name,
                                pending::SUFFIX
                            ),
                            false,
                        ),
                        other => self.pg_error(other),
                    })?;
                    client::set_password(&client, &next.user, &next.password).await.map_err(|e| self.pg_error(e))?;
                }
                Strategy::Alternating => {
                    let admin = self.admin(ctx, &current).await?;
                    let client = self.connector.login(&admin).await.map_err(|e| self.pg_error(e))?;
                    let (base, _) = logins(&current.user);
                    if self.manageable(&client, &admin, &base, &next.user).await? {
                        client::set_password(&client, &next.user, &next.password)
                            .await
                            .map_err(|e| self.pg_error(e))?;
                    } else {
                        client::create_clone(&client, &next.user, &base, &next.password)
                            .await
                            .map_err(|e| self.pg_error(e))?;
                        tracing::info!(secret = ctx.name, login = ?next, base = %base, "alternate login created");
                    }
                }
            }
            tracing::info!(secret = ctx.name, login = ?next, "password changed on the server");
            Ok(())
        })
    }

    fn test_pending<'a>(&'a self, ctx: &'a RotationContext<'a>, pending: &'a Pending) -> ProviderFuture<'a, ()> {
        Box::pin(async move {
            let next = self.pending(ctx, pending)?;
            // Retryable whatever the cause: the pending value is safe in its home, and a replay resumes from it.
            self.connector
                .probe(&next)
                .await
                .map_err(|e| self.error(format!("testing the pending password: {e}"), true))
        })
    }

    fn finish<'a>(&'a self, ctx: &'a RotationContext<'a>, promoted: &'a SecretProperties) -> ProviderFuture<'a, ()> {
        Box::pin(async move {
            self.home.mark_promoted(ctx, promoted).await;
            Ok(())
        })
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
