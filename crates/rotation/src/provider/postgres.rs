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
//! The steps, the pending home and the confused-deputy guard are the database providers' shared protocol
//! (`provider/database.rs`); this module adds how PostgreSQL logs in and what its admin may change.
//!
//! What a secret's writer may not make the admin do (issue 13): change the admin login itself, a superuser,
//! a role with CREATEROLE or BYPASSRLS, or an existing `_clone` that is not a member of its base; each is a
//! permanent refusal before any password changes. Every login requires SCRAM with channel binding, so a
//! server asking for a cleartext or MD5 password never receives one (`client.rs`).

mod client;

use std::path::Path;
use std::sync::Arc;

use keyturn_config::providers::{POSTGRES_ADMINS, POSTGRES_SERVERS, PostgresBindings};
use keyturn_vault::KeyVault;
use keyturn_vault::model::SecretProperties;

use self::client::{Connector, PgError};
pub use crate::provider::database::{ADMIN_SECRET, CLONE_SUFFIX, Strategy};
use crate::provider::database::{Details, LoginRotation, POSTGRES, logins};
use crate::provider::{Pending, PreviousCredential, Provider, ProviderError, ProviderFuture, RotationContext};

/// The PostgreSQL provider, in one strategy.
#[derive(Debug, Clone)]
pub struct Postgres {
    /// The pending-value protocol, the bindings and the alternation, shared with MySQL.
    rotation: LoginRotation,
    connector: Connector,
}

impl Postgres {
    /// A provider that keeps pending values in `vault` and trusts, besides the platform's roots, the
    /// PEM bundle at `ca_file` for the servers' certificates.
    pub fn new(strategy: Strategy, vault: Arc<dyn KeyVault>, ca_file: Option<&Path>) -> Result<Self, ProviderError> {
        let rotation = LoginRotation::new(
            Self::name_of(strategy),
            strategy,
            &POSTGRES,
            vault,
            (POSTGRES_SERVERS, POSTGRES_ADMINS),
        );
        let connector = Connector::new(ca_file).map_err(|message| rotation.error(message, false))?;
        Ok(Self { rotation, connector })
    }

    /// The provider limited to `bindings` (`KEYTURN_POSTGRES_SERVERS`, `KEYTURN_POSTGRES_ADMINS`).
    pub fn bound(mut self, bindings: PostgresBindings) -> Self {
        self.rotation = self.rotation.bound(bindings);
        self
    }

    fn name_of(strategy: Strategy) -> &'static str {
        match strategy {
            Strategy::SingleUser => "postgres",
            Strategy::Alternating => "postgres-alternating",
        }
    }

    fn error(&self, message: impl Into<String>, retryable: bool) -> ProviderError {
        self.rotation.error(message, retryable)
    }

    fn pg_error(&self, error: PgError) -> ProviderError {
        self.rotation.login_error(error)
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

impl Provider for Postgres {
    fn name(&self) -> &'static str {
        Self::name_of(self.rotation.strategy())
    }

    fn create_pending<'a>(&'a self, ctx: &'a RotationContext<'a>) -> ProviderFuture<'a, Pending> {
        Box::pin(self.rotation.create_pending(ctx))
    }

    fn set_pending<'a>(&'a self, ctx: &'a RotationContext<'a>, pending: &'a Pending) -> ProviderFuture<'a, ()> {
        Box::pin(async move {
            let (current, next) = self.rotation.current_and_next(ctx, pending)?;
            match self.connector.login(&next).await {
                Ok(_) => {
                    tracing::info!(secret = ctx.name, login = ?next, "the pending password already works; not changing it again");
                    return Ok(());
                }
                Err(PgError::Rejected(_)) => {}
                Err(error) => return Err(self.pg_error(error)),
            }
            match self.rotation.strategy() {
                Strategy::SingleUser => {
                    let client = self.connector.login(&current).await.map_err(|error| match error {
                        PgError::Rejected(_) => self.rotation.changed_outside(ctx, &current),
                        other => self.pg_error(other),
                    })?;
                    client::set_password(&client, &next.user, &next.password).await.map_err(|e| self.pg_error(e))?;
                }
                Strategy::Alternating => {
                    let admin = self.rotation.admin(ctx, &current).await?;
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
            let next = self.rotation.pending(ctx, pending)?;
            // Retryable whatever the cause: the pending value is safe in its home, and a replay resumes from it.
            self.connector
                .probe(&next)
                .await
                .map_err(|e| self.error(format!("testing the pending password: {e}"), true))
        })
    }

    fn finish<'a>(&'a self, ctx: &'a RotationContext<'a>, promoted: &'a SecretProperties) -> ProviderFuture<'a, ()> {
        self.rotation.finish(ctx, promoted)
    }

    fn previous_credential(
        &self,
        _latest: &SecretProperties,
        _previous: &SecretProperties,
        _now: chrono::DateTime<chrono::Utc>,
    ) -> PreviousCredential {
        self.rotation.previous_credential()
    }
}
