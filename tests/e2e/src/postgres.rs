//! The real PostgreSQL the tests run against (TLS only, SCRAM; started by ./scripts/test through
//! scripts/lib/postgres.sh, found through `KEYTURN_TEST_PG_*`: without them a test fails, never skips), queried
//! with `psql` (the server's client) verifying the server's certificate against the test CA.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

fn required_env(name: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| {
        panic!("{name} is not set: run ./scripts/test (or scripts/lib/postgres.sh <command>), which starts PostgreSQL")
    })
}

/// The test server, from the variables scripts/lib/postgres.sh exports.
#[derive(Debug, Clone)]
pub struct PgServer {
    pub host: String,
    pub port: u16,
    /// A superuser.
    pub admin_user: String,
    pub admin_password: String,
    /// The CA (PEM) that signed the server's certificate.
    pub ca_file: String,
}

impl PgServer {
    /// # Panics
    /// When a `KEYTURN_TEST_PG_*` variable is missing.
    pub fn from_env() -> Self {
        Self {
            host: required_env("KEYTURN_TEST_PG_HOST"),
            port: required_env("KEYTURN_TEST_PG_PORT")
                .parse()
                .unwrap_or_else(|e| panic!("KEYTURN_TEST_PG_PORT is not a port: {e}")),
            admin_user: required_env("KEYTURN_TEST_PG_ADMIN_USER"),
            admin_password: required_env("KEYTURN_TEST_PG_ADMIN_PASSWORD"),
            ca_file: required_env("KEYTURN_TEST_PG_CA_FILE"),
        }
    }

    /// # Panics
    /// When the host is not an IP address.
    pub fn addr(&self) -> SocketAddr {
        format!("{}:{}", self.host, self.port).parse().unwrap_or_else(|e| panic!("{}: {e}", self.host))
    }

    /// A secret value in the postgres providers' JSON shape, for `host:port` (this server, a gate in front of
    /// it, or another server altogether).
    pub fn value_at(host: &str, port: u16, user: &str, password: &str) -> String {
        serde_json::json!({"host": host, "port": port, "user": user, "password": password, "database": "postgres"})
            .to_string()
    }

    /// A secret value pointing at `port` on this server's host.
    pub fn value(&self, port: u16, user: &str, password: &str) -> String {
        Self::value_at(&self.host, port, user, password)
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
        let run = tokio::process::Command::new("psql")
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql, &conninfo])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "10")
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .unwrap_or_else(|_| panic!("psql did not finish within 30 s"))
            .unwrap_or_else(|e| panic!("psql (PostgreSQL's client, installed with the server) cannot run: {e}"));
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        } else if stderr.contains("password authentication failed") {
            Err(stderr)
        } else {
            panic!("psql as {user} failed for another reason than the password: {stderr}")
        }
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

    /// Whether `user` logs in with `password` (as itself).
    ///
    /// # Panics
    /// When the session runs as someone else.
    pub async fn logs_in(&self, user: &str, password: &str) -> bool {
        match self.psql(user, password, "SELECT current_user").await {
            Ok(who) => {
                assert_eq!(who, user, "logged in as someone else");
                true
            }
            Err(_) => false,
        }
    }

    /// A fresh login role (and no alternate left by an earlier run).
    pub async fn create_role(&self, role: &str, password: &str) {
        self.admin(&format!("DROP ROLE IF EXISTS {role}_clone; DROP ROLE IF EXISTS {role}")).await;
        self.admin(&format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'")).await;
    }

    /// Whether a role of that name exists.
    pub async fn role_exists(&self, role: &str) -> bool {
        self.admin(&format!("SELECT count(*) FROM pg_roles WHERE rolname = '{role}'")).await == "1"
    }

    /// The stored verifier: changes on every password change (each `ALTER ROLE ... PASSWORD` stores a verifier
    /// with a new random salt, even for the same password).
    ///
    /// # Panics
    /// When the role has no SCRAM verifier.
    pub async fn verifier(&self, role: &str) -> String {
        let verifier = self.admin(&format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'")).await;
        assert!(verifier.starts_with("SCRAM-SHA-256$"), "{role} has no SCRAM verifier: {verifier:?}");
        verifier
    }

    /// Writes a CA bundle trusting `extra` PEMs and this server's CA into `dir`; returns its path (for
    /// `KEYTURN_CA_FILE`).
    ///
    /// # Panics
    /// When the files cannot be read or written.
    pub fn ca_bundle(&self, dir: &Path, extra: &[&str]) -> String {
        let bundle = dir.join("ca-bundle.pem");
        let pg_ca = std::fs::read_to_string(&self.ca_file).unwrap_or_else(|e| panic!("{}: {e}", self.ca_file));
        let mut pem: Vec<&str> = extra.to_vec();
        pem.push(&pg_ca);
        std::fs::write(&bundle, pem.join("\n")).unwrap_or_else(|e| panic!("{}: {e}", bundle.display()));
        bundle.display().to_string()
    }
}
