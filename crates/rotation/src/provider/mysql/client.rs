//! Talking to MySQL (and MariaDB, which speaks the same protocol and statements): TLS logins, always verified
//! against keyturn's trust roots (the platform's plus `KEYTURN_CA_FILE`), and the few statements the providers run.
//!
//! The client is `mysql_async` over rustls (aws-lc-rs, as everything else in keyturn). It takes root certificates
//! rather than a verifier, so it gets keyturn-tls's roots as a list ([`keyturn_tls::TrustRoots::root_certificates`])
//! with its own built-in bundle switched off: it trusts exactly what every other keyturn client trusts.

use std::path::Path;
use std::time::Duration;

use keyturn_config::SecretString;
use keyturn_tls::TrustRoots;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, SslOpts};

use super::grants::{Account, GrantLine, literal};
use crate::provider::database::Details;

/// One login attempt, or one statement, never takes longer than this.
const TIMEOUT: Duration = Duration::from_secs(20);

/// Server error codes that mean "this credential does not log in": access denied (1045), no password given
/// (1698), password expired (1862), account locked (MySQL 3118, MariaDB 4151).
const REJECTED: [u16; 5] = [1045, 1698, 1862, 3118, 4151];
/// Server error codes a later attempt may not meet: too many connections (1040, 1203), shutting down (1053),
/// lock wait timeout (1205), deadlock (1213).
const TRANSIENT: [u16; 5] = [1040, 1203, 1053, 1205, 1213];

/// MySQL's login and statement errors: the database providers' shared classes.
pub(crate) use crate::provider::database::LoginError as MyError;

impl MyError {
    /// Classifies `error`. `secret`: the statement carried a password, so the server's message (which may quote
    /// the statement, as a syntax error does) is left out and only its code shown.
    fn from_mysql(doing: &str, error: &mysql_async::Error, secret: bool) -> Self {
        match error {
            mysql_async::Error::Server(server) => {
                let message = if secret {
                    format!("{doing}: server error {} ({})", server.code, server.state)
                } else {
                    // The server's messages name accounts and objects, never the connection's password.
                    format!("{doing}: server error {} ({}): {}", server.code, server.state, server.message)
                };
                if REJECTED.contains(&server.code) {
                    Self::Rejected(message)
                } else if TRANSIENT.contains(&server.code) {
                    Self::Unavailable(message)
                } else {
                    Self::Refused(message)
                }
            }
            // A server that offers no TLS, or asks for the password in cleartext or by the pre-4.1 hash: refused
            // before anything derived from the password is sent, and no retry will change that.
            mysql_async::Error::Driver(driver) => Self::Refused(format!("{doing}: {driver}")),
            // I/O (TLS verification included) and the rest: the network or the server, perhaps better later.
            other => Self::Unavailable(format!("{doing}: {other}")),
        }
    }
}

/// TLS connections to MySQL servers.
#[derive(Clone)]
pub(crate) struct Connector {
    roots: TrustRoots,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connector(tls: platform roots + KEYTURN_CA_FILE)")
    }
}

impl Connector {
    /// A connector that verifies servers against the platform's roots plus the PEM bundle at `ca_file`. Reads
    /// only `ca_file` now; the platform's store on the first login.
    pub(crate) fn new(ca_file: Option<&Path>) -> Result<Self, String> {
        let roots = TrustRoots::for_ca_file(ca_file).map_err(|e| e.to_string())?;
        Ok(Self { roots })
    }

    /// Logs in with `details`, over TLS only: the client asks for TLS before it sends anything about the login
    /// and fails if the server does not offer it; the certificate chain and host name are verified against
    /// keyturn's roots. The password then travels only inside TLS, and only as the server's challenge-response
    /// (`mysql_native_password`, `caching_sha2_password`): the cleartext plugin stays disabled and the pre-4.1
    /// hash is refused (`secure_auth`), so a server keyturn was pointed at cannot ask for the password itself.
    /// Never through a local socket (mysql_async would switch to one on 127.0.0.1, and sockets get no TLS).
    pub(crate) async fn login(&self, details: &Details) -> Result<Conn, MyError> {
        // DER buffers (mysql_async's `PathOrBuf` is reachable only through `From`).
        let roots = self.roots.root_certificates().into_iter().map(|c| c.to_vec().into()).collect();
        let ssl = SslOpts::default().with_root_certs(roots).with_disable_built_in_roots(true);
        let opts = OptsBuilder::default()
            .ip_or_hostname(details.host.clone())
            .tcp_port(details.port)
            .user(Some(details.user.clone()))
            .pass(Some(details.password.expose().to_owned()))
            .db_name((!details.database.is_empty()).then(|| details.database.clone()))
            .prefer_socket(false)
            .secure_auth(true)
            .enable_cleartext_plugin(false)
            .ssl_opts(ssl);
        let doing = format!("logging in as {details:?}");
        tokio::time::timeout(TIMEOUT, Conn::new(opts))
            .await
            .map_err(|_| MyError::Unavailable(format!("{doing}: no answer within {} s", TIMEOUT.as_secs())))?
            .map_err(|e| MyError::from_mysql(&doing, &e, false))
    }

    /// Logs in and proves the session works: the session's user (`CURRENT_USER()`, `user@host`) must be the login.
    pub(crate) async fn probe(&self, details: &Details) -> Result<(), MyError> {
        let mut conn = self.login(details).await?;
        let doing = format!("probing the session of {details:?}");
        let user: Option<String> = run(&doing, conn.query_first("SELECT CURRENT_USER()"), false).await?;
        let user = user.unwrap_or_default();
        let name = user.rsplit_once('@').map_or(user.as_str(), |(name, _)| name);
        disconnect(conn).await;
        if name != details.user {
            return Err(MyError::Refused(format!("{doing}: the session runs as '{user}'")));
        }
        Ok(())
    }
}

/// Closes a connection politely; a failure here changes nothing already done.
pub(crate) async fn disconnect(conn: Conn) {
    if let Err(error) = tokio::time::timeout(TIMEOUT, conn.disconnect()).await.unwrap_or(Ok(())) {
        tracing::debug!(%error, "closing a MySQL connection failed");
    }
}

/// The accounts (`user@host`, roles excluded) named `user`.
pub(crate) async fn accounts(conn: &mut Conn, user: &str) -> Result<Vec<Account>, MyError> {
    // A MariaDB role is a row with an empty host; MySQL 8's roles are accounts (and are refused like any
    // account holding powers).
    let hosts: Vec<String> = run(
        &format!("looking up the accounts of '{user}'"),
        conn.exec("SELECT Host FROM mysql.user WHERE User = ? AND Host <> '' ORDER BY Host", (user,)),
        false,
    )
    .await?;
    Ok(hosts.into_iter().map(|host| Account { user: user.to_owned(), host }).collect())
}

/// `SHOW GRANTS FOR account`, each line read.
pub(crate) async fn grants(conn: &mut Conn, account: &Account) -> Result<Vec<GrantLine>, MyError> {
    let doing = format!("reading the grants of {account}");
    let statement =
        format!("SHOW GRANTS FOR {}", account.quoted().map_err(|e| MyError::Refused(format!("{doing}: {e}")))?);
    let lines: Vec<String> = run(&doing, conn.query(statement), false).await?;
    lines.iter().map(|line| GrantLine::parse(line).map_err(|e| MyError::Refused(format!("{doing}: {e}")))).collect()
}

/// Sets `account`'s password. The password is a string literal in the statement: `ALTER USER` takes no bind
/// parameters, and a precomputed hash (`IDENTIFIED WITH mysql_native_password AS '*…'`) would pin a plugin MySQL 8.4
/// disables. MySQL 8 rewrites the literal out of its logs; MariaDB's general log (off by default) keeps it
/// (docs/providers.md says so). An error shows the server's code only, never the statement.
pub(crate) async fn set_password(conn: &mut Conn, account: &Account, password: &SecretString) -> Result<(), MyError> {
    let doing = format!("changing the password of {account}");
    let statement = format!(
        "ALTER USER {} IDENTIFIED BY {}",
        account.quoted().map_err(|e| MyError::Refused(format!("{doing}: {e}")))?,
        literal(password.expose()).map_err(|e| MyError::Refused(format!("{doing}: {e}")))?
    );
    run(&doing, conn.query_drop(SecretString::new(statement).expose()), true).await
}

/// Creates `clone` with `password` and replays `statements` (the base login's grants, for the clone).
///
/// MySQL's account statements are not transactional: a crash between them leaves a clone with part of the
/// grants. The clone is created with the pending password, so the next attempt logs in as it, knows it is
/// keyturn's, and completes the grants ([`complete_grants`]).
pub(crate) async fn create_clone(
    conn: &mut Conn,
    clone: &Account,
    password: &SecretString,
    statements: &[String],
) -> Result<(), MyError> {
    let doing = format!("creating {clone}");
    let statement = format!(
        "CREATE USER {} IDENTIFIED BY {}",
        clone.quoted().map_err(|e| MyError::Refused(format!("{doing}: {e}")))?,
        literal(password.expose()).map_err(|e| MyError::Refused(format!("{doing}: {e}")))?
    );
    run(&doing, conn.query_drop(SecretString::new(statement).expose()), true).await?;
    complete_grants(conn, clone, statements).await
}

/// Runs the grant statements for `clone` (a grant already held is granted again, harmlessly).
pub(crate) async fn complete_grants(conn: &mut Conn, clone: &Account, statements: &[String]) -> Result<(), MyError> {
    for statement in statements {
        run(&format!("granting {clone} its base login's grants"), conn.query_drop(statement.as_str()), false).await?;
    }
    Ok(())
}

async fn run<T>(
    doing: &str,
    future: impl std::future::Future<Output = Result<T, mysql_async::Error>>,
    secret: bool,
) -> Result<T, MyError> {
    tokio::time::timeout(TIMEOUT, future)
        .await
        .map_err(|_| MyError::Unavailable(format!("{doing}: no answer within {} s", TIMEOUT.as_secs())))?
        .map_err(|e| MyError::from_mysql(doing, &e, secret))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::provider::database::{Details, MYSQL};

    /// A MySQL server's first packet (protocol 10) that offers no TLS (`CLIENT_SSL` unset) and asks for the
    /// password in cleartext (`mysql_clear_password`): what a harvesting server would send.
    fn greeting_without_tls() -> Vec<u8> {
        // LONG_PASSWORD | CONNECT_WITH_DB | PROTOCOL_41 | SECURE_CONNECTION, and PLUGIN_AUTH in the upper half.
        let (lower, upper): (u16, u16) = (0x0001 | 0x0008 | 0x0200 | 0x8000, 0x0008);
        let mut payload = vec![10];
        payload.extend_from_slice(b"8.0.36-harvest\0");
        payload.extend_from_slice(&7u32.to_le_bytes());
        payload.extend_from_slice(b"abcdefgh\0");
        payload.extend_from_slice(&lower.to_le_bytes());
        payload.push(0x21);
        payload.extend_from_slice(&2u16.to_le_bytes());
        payload.extend_from_slice(&upper.to_le_bytes());
        payload.push(21);
        payload.extend_from_slice(&[0; 10]);
        payload.extend_from_slice(b"ijklmnopqrst\0");
        payload.extend_from_slice(b"mysql_clear_password\0");
        let mut packet = u32::try_from(payload.len()).unwrap().to_le_bytes()[..3].to_vec();
        packet.push(0);
        packet.extend(payload);
        packet
    }

    #[tokio::test]
    async fn a_server_without_tls_receives_nothing() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            socket.write_all(&greeting_without_tls()).await.unwrap();
            let mut received = Vec::new();
            // Everything the client sends until it hangs up (bounded: the client gives up at once).
            let _ = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut received)).await;
            received
        });
        let value = format!(r#"{{"host":"127.0.0.1","port":{port},"username":"app","password":"hunter2-hunter2"}}"#);
        let details = Details::from_secret(&SecretString::new(value), &Default::default(), &MYSQL).unwrap();
        let error = Connector::new(None).unwrap().login(&details).await.unwrap_err();
        assert!(matches!(error, MyError::Refused(_)), "{error}");
        assert!(!error.is_retryable());
        let received = server.await.unwrap();
        assert!(received.is_empty(), "the client sent {} bytes to a server offering no TLS", received.len());
    }
}
