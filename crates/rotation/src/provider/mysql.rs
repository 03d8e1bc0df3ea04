//! MySQL passwords (Azure Database for MySQL flexible server, or any MySQL or MariaDB reachable over TLS), in AWS's
//! two strategies:
//!
//! - `mysql` (single user): the login's own password changes (`ALTER USER … IDENTIFIED BY`), run by the admin login
//!   (tag `KeyturnAdminSecret`): the one statement MySQL 8 and MariaDB read alike (a login's own `SET PASSWORD`
//!   means a plain password to one and a hash to the other). Between the change and the promotion the live secret
//!   holds a dead password; clients that reconnect in that window fail once.
//! - `mysql-alternating`: two logins, `<user>` and `<user>_clone`; each rotation changes the one the secret does NOT
//!   hold, so the stored credential keeps working until the next rotation. The admin creates the clone on first use
//!   with the base login's grants, replayed from `SHOW GRANTS` (MySQL has no role membership that would keep them
//!   in step: a grant added to the base later is not the clone's; see docs/providers.md).
//!
//! The steps, the pending home and the confused-deputy guard are the database providers' shared protocol
//! (`provider/database.rs`); this module adds how MySQL logs in and what its admin may change.
//!
//! What a secret's writer may not make the admin do (issue 13): change the admin login itself, a login holding
//! SUPER, CREATE USER, ALL PRIVILEGES or GRANT OPTION on `*.*` (or writes on the `mysql` schema), directly or
//! through a role, or an existing `_clone` that does not carry exactly its base's grants; each is a permanent
//! refusal before any password changes. Every login is TLS-only with the server verified, and never sends the
//! password in cleartext (`client.rs`).

mod client;
mod grants;

use std::path::Path;
use std::sync::Arc;

use keyturn_config::providers::{MYSQL_ADMINS, MYSQL_SERVERS, MysqlBindings};
use keyturn_vault::KeyVault;
use keyturn_vault::model::SecretProperties;
use mysql_async::Conn;

use self::client::{Connector, MyError};
use self::grants::{Account, Grant, GrantLine};
pub use crate::provider::database::{ADMIN_SECRET, CLONE_SUFFIX, Strategy};
use crate::provider::database::{Details, LoginRotation, MYSQL, logins};
use crate::provider::{Pending, PreviousCredential, Provider, ProviderError, ProviderFuture, RotationContext};

/// How deep roles granted to roles are followed when looking for powers.
const MAX_ROLE_DEPTH: usize = 4;

/// The MySQL provider, in one strategy.
#[derive(Debug, Clone)]
pub struct Mysql {
    /// The pending-value protocol, the bindings and the alternation, shared with PostgreSQL.
    rotation: LoginRotation,
    connector: Connector,
}

/// What the admin found about the login a rotation changes.
enum Target {
    /// It exists: change its password.
    Existing(Account),
    /// The clone does not exist yet: create it on the base's host, with these grant statements.
    Missing { clone: Account, grants: Vec<String> },
}

impl Mysql {
    /// A provider that keeps pending values in `vault` and trusts, besides the platform's roots, the PEM bundle at
    /// `ca_file` for the servers' certificates.
    pub fn new(strategy: Strategy, vault: Arc<dyn KeyVault>, ca_file: Option<&Path>) -> Result<Self, ProviderError> {
        let rotation =
            LoginRotation::new(Self::name_of(strategy), strategy, &MYSQL, vault, (MYSQL_SERVERS, MYSQL_ADMINS));
        let connector = Connector::new(ca_file).map_err(|message| rotation.error(message, false))?;
        Ok(Self { rotation, connector })
    }

    /// The provider limited to `bindings` (`KEYTURN_MYSQL_SERVERS`, `KEYTURN_MYSQL_ADMINS`).
    pub fn bound(mut self, bindings: MysqlBindings) -> Self {
        self.rotation = self.rotation.bound(bindings);
        self
    }

    fn name_of(strategy: Strategy) -> &'static str {
        match strategy {
            Strategy::SingleUser => "mysql",
            Strategy::Alternating => "mysql-alternating",
        }
    }

    fn error(&self, message: impl Into<String>, retryable: bool) -> ProviderError {
        self.rotation.error(message, retryable)
    }

    fn my_error(&self, error: MyError) -> ProviderError {
        self.rotation.login_error(error)
    }

    /// The one account named `user` (MySQL accounts are `user@host`; keyturn manages a login with one).
    async fn account(&self, conn: &mut Conn, user: &str) -> Result<Option<Account>, ProviderError> {
        let mut accounts = client::accounts(conn, user).await.map_err(|e| self.my_error(e))?;
        match accounts.len() {
            0 => Ok(None),
            1 => Ok(accounts.pop()),
            _ => Err(self.error(
                format!(
                    "refusing to change '{user}': it has {} accounts ({}); keyturn manages a login with one",
                    accounts.len(),
                    accounts.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                ),
                false,
            )),
        }
    }

    /// Refuses `account` if it, or a role it holds (followed `MAX_ROLE_DEPTH` deep), has a power no rotated login
    /// may have. Answers its grant lines.
    async fn powerless(&self, conn: &mut Conn, account: &Account) -> Result<Vec<GrantLine>, ProviderError> {
        let own = client::grants(conn, account).await.map_err(|e| self.my_error(e))?;
        let mut queue: Vec<(Account, Vec<GrantLine>, usize)> = vec![(account.clone(), own.clone(), 0)];
        let mut seen = vec![account.clone()];
        while let Some((holder, lines, depth)) = queue.pop() {
            for line in &lines {
                if let Some(power) = line.power() {
                    let through = if &holder == account { String::new() } else { format!(" (through role {holder})") };
                    return Err(self.error(
                        format!(
                            "refusing to change {account}: it has {power}{through}; keyturn manages application \
                             logins only"
                        ),
                        false,
                    ));
                }
                if let Grant::Roles(roles) = line.grant() {
                    for role in roles {
                        if seen.contains(&role) {
                            continue;
                        }
                        if depth + 1 > MAX_ROLE_DEPTH {
                            return Err(self.error(
                                format!("refusing to change {account}: its roles nest deeper than {MAX_ROLE_DEPTH}"),
                                false,
                            ));
                        }
                        let role_lines = client::grants(conn, &role).await.map_err(|e| self.my_error(e))?;
                        seen.push(role.clone());
                        queue.push((role, role_lines, depth + 1));
                    }
                }
            }
        }
        Ok(own)
    }

    /// The admin's deputy check before it changes `target` (the base login or its clone): never the admin itself,
    /// never a login more powerful than an application login (its password would hand the writer of one secret
    /// the whole server), and an existing clone only when it carries exactly its base's grants (a login that
    /// merely has the `_clone` name is someone else's). Every refusal is permanent.
    async fn target(
        &self,
        conn: &mut Conn,
        admin: &Details,
        base: &str,
        target: &str,
    ) -> Result<Target, ProviderError> {
        let refuse = |why: String| Err(self.error(format!("refusing to change '{target}': {why}"), false));
        for login in [base, target] {
            if login == admin.user {
                return refuse(format!("'{login}' is the admin login itself ({ADMIN_SECRET})"));
            }
            if !grants::valid_login(login) {
                return refuse(format!("'{login}' is not a login name keyturn puts in a statement"));
            }
        }
        let Some(base_account) = self.account(conn, base).await? else {
            return refuse(format!("its base login '{base}' does not exist"));
        };
        let base_grants = self.powerless(conn, &base_account).await?;
        if target == base {
            return Ok(Target::Existing(base_account));
        }
        let Some(clone) = self.account(conn, target).await? else {
            let clone = Account { user: target.to_owned(), host: base_account.host.clone() };
            let statements = replay(&base_grants, &base_account, &clone).map_err(|e| self.error(e, false))?;
            return Ok(Target::Missing { clone, grants: statements });
        };
        let clone_grants = self.powerless(conn, &clone).await?;
        if !same_grants(&base_grants, &base_account, &clone_grants, &clone) {
            return refuse(format!(
                "it exists but does not carry the same grants as '{base}', so it is not this login's clone"
            ));
        }
        Ok(Target::Existing(clone))
    }

    /// An alternate login the pending password already logs in as was created by an earlier attempt (only keyturn
    /// knows that password); if that attempt stopped between `CREATE USER` and the last grant, finish the grants.
    async fn finish_clone(
        &self,
        ctx: &RotationContext<'_>,
        current: &Details,
        next: &Details,
    ) -> Result<(), ProviderError> {
        let (base, clone_name) = logins(&current.user);
        if self.rotation.strategy() != Strategy::Alternating || next.user != clone_name {
            return Ok(());
        }
        let admin = self.rotation.admin(ctx, current).await?;
        let mut conn = self.connector.login(&admin).await.map_err(|e| self.my_error(e))?;
        let result = async {
            let Some(base_account) = self.account(&mut conn, &base).await? else { return Ok(()) };
            let Some(clone) = self.account(&mut conn, &clone_name).await? else { return Ok(()) };
            let base_grants = self.powerless(&mut conn, &base_account).await?;
            let clone_grants = self.powerless(&mut conn, &clone).await?;
            if same_grants(&base_grants, &base_account, &clone_grants, &clone) {
                return Ok(());
            }
            let statements = replay(&base_grants, &base_account, &clone).map_err(|e| self.error(e, false))?;
            client::complete_grants(&mut conn, &clone, &statements).await.map_err(|e| self.my_error(e))?;
            tracing::info!(secret = ctx.name, login = ?next, "completed the alternate login's grants");
            Ok(())
        }
        .await;
        client::disconnect(conn).await;
        result
    }
}

/// The statements that give `clone` the grants `base` has.
fn replay(lines: &[GrantLine], base: &Account, clone: &Account) -> Result<Vec<String>, String> {
    lines.iter().filter_map(|line| line.replayed(base, clone).transpose()).collect()
}

/// Whether two accounts hold the same grants, line for line (order aside).
fn same_grants(a: &[GrantLine], a_account: &Account, b: &[GrantLine], b_account: &Account) -> bool {
    let normalized = |lines: &[GrantLine], account: &Account| {
        let mut all: Vec<String> = lines.iter().map(|l| l.normalized(account)).collect();
        all.sort();
        all
    };
    normalized(a, a_account) == normalized(b, b_account)
}

impl Provider for Mysql {
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
                Ok(conn) => {
                    client::disconnect(conn).await;
                    tracing::info!(secret = ctx.name, login = ?next, "the pending password already works; not changing it again");
                    return self.finish_clone(ctx, &current, &next).await;
                }
                Err(MyError::Rejected(_)) => {}
                Err(error) => return Err(self.my_error(error)),
            }
            let admin = self.rotation.admin(ctx, &current).await?;
            let mut conn = self.connector.login(&admin).await.map_err(|e| self.my_error(e))?;
            let (base, _) = logins(&current.user);
            let changed = async {
                let target = self.target(&mut conn, &admin, &base, &next.user).await?;
                if self.rotation.strategy() == Strategy::SingleUser {
                    // The stored password must still work: if it does not either, something other than keyturn
                    // changed it, and the admin overwriting it could lock out whoever did.
                    match self.connector.login(&current).await {
                        Ok(own) => client::disconnect(own).await,
                        Err(MyError::Rejected(_)) => return Err(self.rotation.changed_outside(ctx, &current)),
                        Err(error) => return Err(self.my_error(error)),
                    }
                }
                match target {
                    Target::Existing(account) => {
                        client::set_password(&mut conn, &account, &next.password).await.map_err(|e| self.my_error(e))
                    }
                    Target::Missing { clone, grants } => {
                        client::create_clone(&mut conn, &clone, &next.password, &grants)
                            .await
                            .map_err(|e| self.my_error(e))?;
                        tracing::info!(secret = ctx.name, login = ?next, base = %base, grants = grants.len(), "alternate login created with its base's grants");
                        Ok(())
                    }
                }
            }
            .await;
            client::disconnect(conn).await;
            changed?;
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
