//! The real database servers the provider and attack tests run against: one PostgreSQL and one MariaDB, TLS only,
//! started by ./scripts/test through scripts/lib/postgres.sh and scripts/lib/mysql.sh and found through the
//! variables those export (`KEYTURN_TEST_PG_*`, `KEYTURN_TEST_MYSQL_*`: without them a test fails, never skips).
//!
//! [`DbServer`] is where a server listens and its admin login; [`TestServer`] is what the tests ask of a server,
//! through the server's own client (not keyturn's): `psql` in [`crate::postgres`], `mariadb` in [`crate::mysql`].

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use keyturn_local::stack::LocalStack;

/// Where a test server listens, and its admin login.
#[derive(Debug, Clone)]
pub struct DbServer {
    pub host: String,
    pub port: u16,
    /// A superuser (PostgreSQL) or a user with every privilege (MariaDB).
    pub admin_user: String,
    pub admin_password: String,
    /// The CA (PEM) that signed the server's certificate.
    pub ca_file: String,
}

impl DbServer {
    /// From `<prefix>_HOST`, `_PORT`, `_ADMIN_USER`, `_ADMIN_PASSWORD` and `_CA_FILE`, which `script` exports.
    ///
    /// # Panics
    /// When one is missing (naming the script that starts the server) or the port is not a number.
    pub fn from_env(prefix: &str, script: &str) -> Self {
        let required = |name: &str| {
            let name = format!("{prefix}_{name}");
            std::env::var(&name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| {
                panic!("{name} is not set: run ./scripts/test (or {script} <command>), which starts the server")
            })
        };
        let port = required("PORT");
        Self {
            host: required("HOST"),
            port: port.parse().unwrap_or_else(|e| panic!("{prefix}_PORT is not a port ({port:?}): {e}")),
            admin_user: required("ADMIN_USER"),
            admin_password: required("ADMIN_PASSWORD"),
            ca_file: required("CA_FILE"),
        }
    }

    /// # Panics
    /// When the host is not an IP address.
    pub fn addr(&self) -> SocketAddr {
        format!("{}:{}", self.host, self.port).parse().unwrap_or_else(|e| panic!("{}: {e}", self.host))
    }

    /// Writes a CA bundle trusting `extra` PEMs and this server's CA into `dir`; returns its path (for
    /// `KEYTURN_CA_FILE`).
    ///
    /// # Panics
    /// When the files cannot be read or written.
    pub fn ca_bundle(&self, dir: &Path, extra: &[&str]) -> String {
        let bundle = dir.join("ca-bundle.pem");
        let server_ca = std::fs::read_to_string(&self.ca_file).unwrap_or_else(|e| panic!("{}: {e}", self.ca_file));
        let mut pem: Vec<&str> = extra.to_vec();
        pem.push(&server_ca);
        std::fs::write(&bundle, pem.join("\n")).unwrap_or_else(|e| panic!("{}: {e}", bundle.display()));
        bundle.display().to_string()
    }

    /// A handler's settings on `stack`: the stack's, short retries, a CA bundle (in `dir`) trusting the emulator
    /// and this server, and the deployment's `bindings` (issue 13).
    ///
    /// # Panics
    /// When the CA bundle cannot be written.
    pub fn handler_settings(
        &self,
        stack: &LocalStack,
        dir: &Path,
        bindings: Vec<(String, String)>,
    ) -> Vec<(String, String)> {
        let bundle = self.ca_bundle(dir, &[stack.emulator().ca_pem()]);
        let mut settings: Vec<(String, String)> =
            stack.handler_env().into_iter().filter(|(name, _)| name != "KEYTURN_CA_FILE").collect();
        settings.push(("KEYTURN_CA_FILE".to_owned(), bundle));
        settings.extend(bindings);
        settings.extend(crate::fast_retries());
        settings
    }
}

/// A real database server as the tests see it, through its own client (not keyturn's).
#[allow(async_fn_in_trait)]
pub trait TestServer {
    /// Where it listens.
    fn addr(&self) -> SocketAddr;
    /// A secret value in the provider's JSON shape, pointing at `port` on the server's host (the server itself,
    /// or a gate in front of it).
    fn value(&self, port: u16, user: &str, password: &str) -> String;
    /// The login and password a secret value holds.
    fn login_of(&self, value: &str) -> (String, String);
    /// A fresh login with `password` (and no alternate `<user>_clone` left by an earlier run).
    async fn create_login(&self, user: &str, password: &str);
    /// What the server stores for `user`'s password: changes on every password change.
    async fn fingerprint(&self, user: &str) -> String;
    /// Whether `user` logs in with `password` (as itself).
    async fn logs_in(&self, user: &str, password: &str) -> bool;
}

/// The login and password of a secret value in a provider's JSON shape, its login under `user_field`.
///
/// # Panics
/// When the value is not such JSON.
pub(crate) fn login_in(value: &str, user_field: &str) -> (String, String) {
    let json: serde_json::Value =
        serde_json::from_str(value).unwrap_or_else(|e| panic!("a database secret value is not JSON: {e}"));
    let field = |name: &str| {
        json[name].as_str().map(str::to_owned).unwrap_or_else(|| panic!("the secret value has no string '{name}'"))
    };
    (field(user_field), field("password"))
}

/// Runs a server's own client (`command`, named `client`) as `user`: `Ok(output)`, or `Err(stderr)` when the
/// server refused the password (its stderr says `refused`).
///
/// # Panics
/// When the client cannot run, takes over 30 s, or fails for another reason than the password.
pub(crate) async fn run_client(
    mut command: tokio::process::Command,
    client: &str,
    user: &str,
    refused: &str,
) -> Result<String, String> {
    let run = command.kill_on_drop(true).output();
    let output = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap_or_else(|_| panic!("{client} did not finish within 30 s"))
        .unwrap_or_else(|e| panic!("{client} (the server's client, installed with it) cannot run: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else if stderr.contains(refused) {
        Err(stderr)
    } else {
        panic!("{client} as {user} failed for another reason than the password: {stderr}")
    }
}
