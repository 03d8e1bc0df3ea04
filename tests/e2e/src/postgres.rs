//! The test PostgreSQL (TLS only, SCRAM; see [`crate::database`]), queried with `psql` (the server's client)
//! verifying the server's certificate against the test CA.

use std::net::SocketAddr;
use std::ops::Deref;

use crate::database::{DbServer, TestServer, login_in, run_client};

/// The test PostgreSQL, from the variables scripts/lib/postgres.sh exports.
#[derive(Debug, Clone)]
pub struct PgServer(DbServer);

// Where it listens and its admin login are the server's ([`DbServer`]): `server.host`, `server.admin_user`.
impl Deref for PgServer {
    type Target = DbServer;

    fn deref(&self) -> &DbServer {
        &self.0
    }
}

impl PgServer {
    /// # Panics
    /// When a `KEYTURN_TEST_PG_*` variable is missing.
    pub fn from_env() -> Self {
        Self(DbServer::from_env("KEYTURN_TEST_PG", "scripts/lib/postgres.sh"))
    }

    /// A secret value in the postgres providers' JSON shape, for `host:port` (this server, a gate in front of
    /// it, or another server altogether).
    pub fn value_at(host: &str, port: u16, user: &str, password: &str) -> String {
        serde_json::json!({"host": host, "port": port, "user": user, "password": password, "database": "postgres"})
            .to_string()
    }

    /// The admin login as a secret value (what a `KeyturnAdminSecret` holds).
    pub fn admin_value(&self) -> String {
        self.value(self.port, &self.admin_user, &self.admin_password)
    }

    /// Runs `sql` as `user` through psql over verified TLS: `Ok(output)`, or `Err` when the password is refused.
    ///
    /// # Panics
    /// When psql cannot run, takes over 30 s, or fails for another reason than the password.
    pub async fn psql(&self, user: &str, password: &str, sql: &str) -> Result<String, String> {
        let conninfo = format!(
            "host={} port={} user={user} dbname=postgres sslmode=verify-full sslrootcert={}",
            self.host, self.port, self.ca_file
        );
        let mut psql = tokio::process::Command::new("psql");
        psql.args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql, &conninfo])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "10");
        run_client(psql, "psql", user, "password authentication failed").await
    }

    /// Runs `sql` as the admin.
    ///
    /// # Panics
    /// When it fails.
    pub async fn admin(&self, sql: &str) -> String {
        self.psql(&self.admin_user, &self.admin_password, sql)
            .await
            .unwrap_or_else(|e| panic!("the admin's password was refused: {e}"))
    }

    /// Whether a role of that name exists.
    pub async fn role_exists(&self, role: &str) -> bool {
        self.admin(&format!("SELECT count(*) FROM pg_roles WHERE rolname = '{role}'")).await == "1"
    }
}

impl TestServer for PgServer {
    fn addr(&self) -> SocketAddr {
        self.0.addr()
    }

    fn value(&self, port: u16, user: &str, password: &str) -> String {
        Self::value_at(&self.host, port, user, password)
    }

    fn login_of(&self, value: &str) -> (String, String) {
        login_in(value, "user")
    }

    /// A fresh login role (and no alternate left by an earlier run).
    async fn create_login(&self, role: &str, password: &str) {
        self.admin(&format!("DROP ROLE IF EXISTS {role}_clone; DROP ROLE IF EXISTS {role}")).await;
        self.admin(&format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'")).await;
    }

    /// The stored verifier: changes on every password change (each `ALTER ROLE ... PASSWORD` stores a verifier
    /// with a new random salt, even for the same password).
    ///
    /// # Panics
    /// When the role has no SCRAM verifier.
    async fn fingerprint(&self, role: &str) -> String {
        let verifier = self.admin(&format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'")).await;
        assert!(verifier.starts_with("SCRAM-SHA-256$"), "{role} has no SCRAM verifier: {verifier:?}");
        verifier
    }

    /// # Panics
    /// When the session runs as someone else.
    async fn logs_in(&self, user: &str, password: &str) -> bool {
        match self.psql(user, password, "SELECT current_user").await {
            Ok(who) => {
                assert_eq!(who, user, "logged in as someone else");
                true
            }
            Err(_) => false,
        }
    }
}
