//! The test MariaDB (TLS only, `require_secure_transport`; see [`crate::database`]), queried with `mariadb` (the
//! server's client) verifying the server's certificate against the test CA.

use std::net::SocketAddr;
use std::ops::Deref;

use crate::database::{DbServer, TestServer, login_in, run_client};

/// The test MariaDB, from the variables scripts/lib/mysql.sh exports.
#[derive(Debug, Clone)]
pub struct MySqlServer(DbServer);

// Where it listens and its admin login are the server's ([`DbServer`]): `server.host`, `server.admin_user`.
impl Deref for MySqlServer {
    type Target = DbServer;

    fn deref(&self) -> &DbServer {
        &self.0
    }
}

impl MySqlServer {
    /// # Panics
    /// When a `KEYTURN_TEST_MYSQL_*` variable is missing.
    pub fn from_env() -> Self {
        Self(DbServer::from_env("KEYTURN_TEST_MYSQL", "scripts/lib/mysql.sh"))
    }

    /// Runs `sql` as `user` through the `mariadb` client over verified TLS: `Ok(output)`, or `Err` when the
    /// password is refused.
    ///
    /// # Panics
    /// When the client cannot run, takes over 30 s, or fails for another reason than the password.
    pub async fn sql(&self, user: &str, password: &str, sql: &str) -> Result<String, String> {
        let port = self.port.to_string();
        let mut mariadb = tokio::process::Command::new("mariadb");
        mariadb
            .args(["--no-defaults", "--batch", "--skip-column-names", "--connect-timeout=10", "--protocol=TCP"])
            .args(["-h", &self.host, "-P", &port, "-u", user, "--ssl", "--ssl-verify-server-cert"])
            .arg(format!("--ssl-ca={}", self.ca_file))
            .args(["-e", sql])
            .env("MYSQL_PWD", password);
        run_client(mariadb, "mariadb", user, "ERROR 1045").await
    }

    /// Runs `sql` as the admin.
    ///
    /// # Panics
    /// When it fails.
    pub async fn admin(&self, sql: &str) -> String {
        self.sql(&self.admin_user, &self.admin_password, sql)
            .await
            .unwrap_or_else(|e| panic!("the admin's password was refused: {e}"))
    }
}

impl TestServer for MySqlServer {
    fn addr(&self) -> SocketAddr {
        self.0.addr()
    }

    /// A secret value in the provider's JSON shape (AWS's MySQL spelling).
    fn value(&self, port: u16, user: &str, password: &str) -> String {
        serde_json::json!({"engine": "mysql", "host": self.host, "port": port, "username": user, "password": password})
            .to_string()
    }

    fn login_of(&self, value: &str) -> (String, String) {
        login_in(value, "username")
    }

    /// A fresh login on '%' (and no alternate left by an earlier run).
    async fn create_login(&self, user: &str, password: &str) {
        self.admin(&format!(
            "DROP USER IF EXISTS '{user}_clone'@'%'; DROP USER IF EXISTS '{user}'@'%'; \
             CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'"
        ))
        .await;
    }

    /// The hash and the second of the last change: changes on every password change (MariaDB keeps both).
    ///
    /// # Panics
    /// When the login has no native password hash.
    async fn fingerprint(&self, user: &str) -> String {
        let fingerprint = self
            .admin(&format!(
                "SELECT CONCAT(JSON_VALUE(Priv, '$.authentication_string'), '@', \
                 JSON_VALUE(Priv, '$.password_last_changed')) FROM mysql.global_priv WHERE User = '{user}' AND Host = '%'"
            ))
            .await;
        assert!(fingerprint.starts_with('*'), "{user} has no native password hash: {fingerprint:?}");
        fingerprint
    }

    /// # Panics
    /// When the session runs as someone else.
    async fn logs_in(&self, user: &str, password: &str) -> bool {
        match self.sql(user, password, "SELECT CURRENT_USER()").await {
            Ok(who) => {
                assert_eq!(who, format!("{user}@%"), "logged in as someone else");
                true
            }
            Err(_) => false,
        }
    }
}
