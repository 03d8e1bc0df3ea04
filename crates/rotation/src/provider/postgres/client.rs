//! Talking to PostgreSQL: TLS logins (always verified: the platform's roots plus `KEYTURN_CA_FILE`), and
//! the few statements the providers run.

use std::path::Path;
use std::time::Duration;

use keyturn_config::SecretString;
use postgres_protocol::escape::{escape_identifier, escape_literal};
use tokio_postgres::config::{ChannelBinding, SslMode};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::provider::database::Details;

/// One login attempt, or one statement, never takes longer than this.
const TIMEOUT: Duration = Duration::from_secs(20);
/// tokio-postgres's words when `ChannelBinding::Require` refuses a server's authentication request
/// (`connect_raw.rs`, `can_skip_channel_binding`); the harvest-server attack test holds it to them.
const CHANNEL_BINDING_REFUSED: &str = "server did not use channel binding";

/// PostgreSQL's login and statement errors: the database providers' shared classes.
pub(crate) use crate::provider::database::LoginError as PgError;

impl PgError {
    fn from_pg(doing: &str, error: &tokio_postgres::Error) -> Self {
        // A server (or whoever answers in its place) that asked for the password in cleartext, as MD5, or by
        // SCRAM without binding it to the TLS session: tokio-postgres refused before sending anything. That
        // server will ask the same way next time, so it is permanent, and it is named plainly. (The library's
        // Display shows only "authentication error"; which one is in its source.)
        if std::error::Error::source(error).is_some_and(|cause| cause.to_string() == CHANNEL_BINDING_REFUSED) {
            return Self::Refused(format!(
                "{doing}: the server asked for the password without SCRAM channel binding (in cleartext, as MD5, or \
                 SCRAM without -PLUS); keyturn requires channel binding and sent nothing"
            ));
        }
        // tokio-postgres errors carry the server's message and SQLSTATE, never the connection's password.
        let message = format!("{doing}: {error}");
        match error.code() {
            Some(code)
                if *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
            {
                Self::Rejected(message)
            }
            // Class 08 (connection), 53 (resources), 57 (operator intervention: shutdown, too many
            // connections), 40 (serialization, deadlock): worth another attempt.
            Some(code) if ["08", "53", "57", "40"].iter().any(|class| code.code().starts_with(class)) => {
                Self::Unavailable(message)
            }
            Some(_) => Self::Refused(message),
            None => Self::Unavailable(message),
        }
    }
}

/// TLS connections to PostgreSQL servers.
#[derive(Clone)]
pub(crate) struct Connector {
    tls: MakeRustlsConnect,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connector(tls: platform roots + KEYTURN_CA_FILE)")
    }
}

impl Connector {
    /// A connector that verifies servers against the platform's roots plus the PEM bundle at `ca_file`.
    pub(crate) fn new(ca_file: Option<&Path>) -> Result<Self, String> {
        // The process's shared trust roots (keyturn-tls): one read of the system store for every client, and
        // that only on the first handshake. No ALPN: PostgreSQL's `sslmode` negotiation does not use it.
        let roots = keyturn_tls::TrustRoots::for_ca_file(ca_file).map_err(|e| e.to_string())?;
        let config = roots
            .client_config(keyturn_tls::Alpn::None)
            .map_err(|e| format!("building the TLS configuration for PostgreSQL: {e}"))?;
        Ok(Self { tls: MakeRustlsConnect::new(config) })
    }

    /// Logs in with `details` over TLS (required; the certificate and host name are verified), with
    /// SCRAM-SHA-256-PLUS only: channel binding is required, so a server that asks for the password in
    /// cleartext or as MD5, or offers SCRAM without binding it to this TLS session, is refused before
    /// anything derived from the password is sent (tokio-postgres checks `ChannelBinding::Require` first
    /// on each of those requests). A server keyturn was pointed at cannot harvest the password.
    pub(crate) async fn login(&self, details: &Details) -> Result<Client, PgError> {
        let mut config = Config::new();
        config
            .host(&details.host)
            .port(details.port)
            .user(&details.user)
            .password(details.password.expose())
            .dbname(&details.database)
            .application_name("keyturn")
            .ssl_mode(SslMode::Require)
            .channel_binding(ChannelBinding::Require)
            .connect_timeout(TIMEOUT);
        let doing = format!("logging in as {details:?}");
        let connected = tokio::time::timeout(TIMEOUT, config.connect(self.tls.clone()))
            .await
            .map_err(|_| PgError::Unavailable(format!("{doing}: no answer within {} s", TIMEOUT.as_secs())))?;
        let (client, connection) = connected.map_err(|e| PgError::from_pg(&doing, &e))?;
        // The connection task ends when the client is dropped.
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "PostgreSQL connection ended with an error");
            }
        });
        Ok(client)
    }

    /// Logs in and proves the session works: `current_user` must be the login.
    pub(crate) async fn probe(&self, details: &Details) -> Result<(), PgError> {
        let client = self.login(details).await?;
        let doing = format!("probing the session of {details:?}");
        let row = run(&doing, client.query_one("SELECT current_user::text", &[])).await?;
        let user: String = row.try_get(0).map_err(|e| PgError::Refused(format!("{doing}: {e}")))?;
        if user != details.user {
            return Err(PgError::Refused(format!("{doing}: the session runs as '{user}'")));
        }
        Ok(())
    }
}

/// Sets `role`'s password on the server `client` is logged in to.
///
/// `ALTER ROLE` takes no bind parameters, so the statement is built as text; nothing in it is raw input. The
/// role name is quoted as an identifier, and the password never travels at all: the SCRAM-SHA-256 verifier
/// is computed here (random salt, 4096 iterations, as the server would) and sent as a quoted literal. The
/// server stores a verifier as given, so a statement log, `pg_stat_statements` or an error message can show
/// at most the verifier, never the password.
pub(crate) async fn set_password(client: &Client, role: &str, password: &SecretString) -> Result<(), PgError> {
    let verifier = postgres_protocol::password::scram_sha_256(password.expose().as_bytes());
    let statement = format!("ALTER ROLE {} PASSWORD {}", escape_identifier(role), escape_literal(&verifier));
    run(&format!("changing the password of role '{role}'"), client.batch_execute(&statement)).await
}

/// What the server says about a role keyturn would manage: the attributes that make it too powerful to be
/// anyone's rotated login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RoleFacts {
    pub(crate) superuser: bool,
    pub(crate) createrole: bool,
    pub(crate) bypassrls: bool,
}

/// `role`'s attributes; `None` when it does not exist.
pub(crate) async fn role_facts(client: &Client, role: &str) -> Result<Option<RoleFacts>, PgError> {
    let rows = run(
        &format!("looking up role '{role}'"),
        client.query("SELECT rolsuper, rolcreaterole, rolbypassrls FROM pg_roles WHERE rolname = $1", &[&role]),
    )
    .await?;
    let Some(row) = rows.first() else { return Ok(None) };
    let flag =
        |i: usize| row.try_get::<_, bool>(i).map_err(|e| PgError::Refused(format!("reading role '{role}': {e}")));
    Ok(Some(RoleFacts { superuser: flag(0)?, createrole: flag(1)?, bypassrls: flag(2)? }))
}

/// Whether `member` is a direct member of `role` (how keyturn creates a clone).
pub(crate) async fn is_member_of(client: &Client, member: &str, role: &str) -> Result<bool, PgError> {
    let rows = run(
        &format!("checking that '{member}' is a member of '{role}'"),
        client.query(
            "SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member \
             WHERE r.rolname = $1 AND u.rolname = $2",
            &[&role, &member],
        ),
    )
    .await?;
    Ok(!rows.is_empty())
}

/// Whether `role` exists.
pub(crate) async fn role_exists(client: &Client, role: &str) -> Result<bool, PgError> {
    let rows =
        run(&format!("looking up role '{role}'"), client.query("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role]))
            .await?;
    Ok(!rows.is_empty())
}

/// Creates `clone` as a login with `password`, a member of `base`, in one transaction.
///
/// Membership is how the clone gets the base role's grants: it inherits every privilege `base` has now and
/// is granted later, so the two logins cannot drift apart (copying grants one by one would miss later ones).
pub(crate) async fn create_clone(
    client: &Client,
    clone: &str,
    base: &str,
    password: &SecretString,
) -> Result<(), PgError> {
    let verifier = postgres_protocol::password::scram_sha_256(password.expose().as_bytes());
    let statement = format!(
        "BEGIN; CREATE ROLE {clone} WITH LOGIN INHERIT PASSWORD {verifier}; GRANT {base} TO {clone}; COMMIT;",
        clone = escape_identifier(clone),
        base = escape_identifier(base),
        verifier = escape_literal(&verifier),
    );
    run(&format!("creating role '{clone}' as a member of '{base}'"), client.batch_execute(&statement)).await
}

async fn run<T>(
    doing: &str,
    future: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, PgError> {
    tokio::time::timeout(TIMEOUT, future)
        .await
        .map_err(|_| PgError::Unavailable(format!("{doing}: no answer within {} s", TIMEOUT.as_secs())))?
        .map_err(|e| PgError::from_pg(doing, &e))
}
