//! Settings of the rotation providers that talk to something other than Key Vault: the Azure Resource
//! Manager endpoint (storage account keys), the storage accounts each vault may rotate (their binding), and
//! the user's own webhook rotators (whose entries carry their own binding, parsed by the rotation crate).
//!
//! Tags choose, the deployment authorizes: a secret's `ProviderAddress` may only pick among the accounts
//! bound here to its vault (and name); with no binding the provider is not registered at all.

use url::Url;

use crate::azure_keys::AzureKeyBindings;
pub use crate::azure_keys::{AZURE_KEY_RESOURCES, STORAGE_ACCOUNTS};
use crate::{ConfigError, Env, SecretString};

pub const ARM_ENDPOINT: &str = "KEYTURN_ARM_ENDPOINT";
pub const WEBHOOK_ROTATORS: &str = "KEYTURN_WEBHOOK_ROTATORS";
pub const POSTGRES_SERVERS: &str = "KEYTURN_POSTGRES_SERVERS";
pub const POSTGRES_ADMINS: &str = "KEYTURN_POSTGRES_ADMINS";
pub const MYSQL_SERVERS: &str = "KEYTURN_MYSQL_SERVERS";
pub const MYSQL_ADMINS: &str = "KEYTURN_MYSQL_ADMINS";
/// Azure Resource Manager in the public cloud.
pub const DEFAULT_ARM_ENDPOINT: &str = "https://management.azure.com";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSettings {
    /// Where Azure Resource Manager calls go (a sovereign cloud's, or the local stack's emulator).
    pub arm_endpoint: Url,
    /// The webhook rotators, unparsed (the rotation crate owns the grammar); held as a secret because each
    /// entry carries its signing secret. `None`: no rotator is configured.
    pub webhook_rotators: Option<SecretString>,
    /// `KEYTURN_AZURE_KEY_RESOURCES` and `KEYTURN_STORAGE_ACCOUNTS`: which Azure resources (storage accounts,
    /// Cosmos DB accounts, ...) the secrets of which vault (and names) may rotate the keys of. Empty: the
    /// `azure-key` and `storage-account-key` providers are not registered.
    pub azure_keys: AzureKeyBindings,
    /// The PostgreSQL servers and admin logins keyturn may use. No server: the postgres providers are not
    /// registered.
    pub postgres: PostgresBindings,
    /// The MySQL servers and admin logins keyturn may use. No server or no admin: the mysql providers are not
    /// registered (both change passwords through an admin login).
    pub mysql: MysqlBindings,
    /// Microsoft Graph and the Entra ID applications each vault may rotate (`crate::entra`).
    pub entra: crate::entra::EntraSettings,
}

/// The bindings of a database provider, in one grammar for every engine: its servers variable
/// (`KEYTURN_POSTGRES_SERVERS`, `KEYTURN_MYSQL_SERVERS`: `host[:port]`, comma-separated) and its admins variable
/// (`KEYTURN_POSTGRES_ADMINS`, `KEYTURN_MYSQL_ADMINS`: `;`-separated `<vault>/<admin secret>=<base login>[,<base
/// login>...]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatabaseBindings {
    /// `(host lowercase, port)`.
    pub servers: Vec<(String, u16)>,
    /// `(vault lowercase, admin secret lowercase, base logins)`.
    pub admins: Vec<(String, String, Vec<String>)>,
}

/// The PostgreSQL servers and admin logins keyturn may use.
pub type PostgresBindings = DatabaseBindings;

impl DatabaseBindings {
    /// Whether keyturn may connect to `host:port`.
    pub fn serves(&self, host: &str, port: u16) -> bool {
        self.servers.iter().any(|(h, p)| h.eq_ignore_ascii_case(host) && *p == port)
    }

    /// Whether the admin secret `vault/secret` may manage the base login `base` (and its clone).
    pub fn admin_manages(&self, vault: &str, secret: &str, base: &str) -> bool {
        self.admins.iter().any(|(v, s, bases)| {
            v.eq_ignore_ascii_case(vault) && s.eq_ignore_ascii_case(secret) && bases.iter().any(|b| b == base)
        })
    }

    /// Reads `servers_var` (entries without a port get `default_port`) and `admins_var`.
    fn from_env(
        env: &Env<'_>,
        servers_var: &'static str,
        admins_var: &'static str,
        default_port: u16,
    ) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut bindings = Self::default();
        if let Some(raw) = env.get(servers_var) {
            for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                let (host, port) = match entry.rsplit_once(':') {
                    Some((host, port)) => (host, port.parse::<u16>().ok()),
                    None => (entry, Some(default_port)),
                };
                match port {
                    Some(port) if !host.is_empty() && !host.contains('/') && port > 0 => {
                        bindings.servers.push((host.to_ascii_lowercase(), port))
                    }
                    _ => errors.push(ConfigError::invalid(
                        servers_var,
                        &raw,
                        format!("comma-separated host[:port] entries; '{entry}' is not one"),
                    )),
                }
            }
        }
        if let Some(raw) = env.get(admins_var) {
            for entry in raw.split(';').map(str::trim).filter(|e| !e.is_empty()) {
                let parsed = entry.split_once('=').and_then(|(scope, bases)| {
                    let (vault, secret) = scope.trim().split_once('/')?;
                    let bases: Vec<String> =
                        bases.split(',').map(|b| b.trim().to_owned()).filter(|b| !b.is_empty()).collect();
                    let name = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
                    (name(vault.trim()) && name(secret.trim()) && !bases.is_empty())
                        .then(|| (vault.trim().to_ascii_lowercase(), secret.trim().to_ascii_lowercase(), bases))
                });
                match parsed {
                    Some(admin) => bindings.admins.push(admin),
                    None => errors.push(ConfigError::invalid(
                        admins_var,
                        &raw,
                        format!("';'-separated <vault>/<admin secret>=<base login>[,<base login>] entries; '{entry}' is not one"),
                    )),
                }
            }
        }
        if errors.is_empty() { Ok(bindings) } else { Err(errors) }
    }
}

// --- MySQL (Azure Database for MySQL flexible server) ---

/// The MySQL servers and admin logins keyturn may use: `KEYTURN_MYSQL_SERVERS` and `KEYTURN_MYSQL_ADMINS`, in
/// PostgreSQL's grammar.
pub type MysqlBindings = DatabaseBindings;

/// MySQL's default port, for `KEYTURN_MYSQL_SERVERS` entries without one.
pub const MYSQL_DEFAULT_PORT: u16 = 3306;

fn mysql_bindings(env: &Env<'_>) -> Result<MysqlBindings, Vec<ConfigError>> {
    DatabaseBindings::from_env(env, MYSQL_SERVERS, MYSQL_ADMINS, MYSQL_DEFAULT_PORT)
}

impl ProviderSettings {
    /// The providers beyond `generated` these settings configure (each is registered only with its
    /// binding): the ones whose steps reach something outside Key Vault, where two instances rotating the
    /// same secret at once would change a credential twice.
    pub fn configured_beyond_generated(&self) -> Vec<&'static str> {
        let mut configured = Vec::new();
        if !self.postgres.servers.is_empty() {
            configured.push("postgres");
        }
        // Registered only with both bindings (see keyturn-deps), so only then beyond `generated`.
        if !self.mysql.servers.is_empty() && !self.mysql.admins.is_empty() {
            configured.push("mysql");
        }
        if !self.azure_keys.is_empty() {
            configured.push("azure-key");
        }
        if !self.entra.applications.is_empty() {
            configured.push("entra-app-secret");
        }
        if self.webhook_rotators.is_some() {
            configured.push("webhook");
        }
        configured
    }

    pub(crate) fn from_env(env: &Env<'_>) -> Result<Self, Vec<ConfigError>> {
        let arm_endpoint = env
            .endpoint(ARM_ENDPOINT, DEFAULT_ARM_ENDPOINT, "a Resource Manager endpoint")
            .map_err(|error| vec![error])?;
        let azure_keys = AzureKeyBindings::from_env(env)?;
        let postgres = DatabaseBindings::from_env(env, POSTGRES_SERVERS, POSTGRES_ADMINS, 5432)?;
        let mysql = mysql_bindings(env)?;
        let entra = crate::entra::EntraSettings::from_env(env)?;
        Ok(Self {
            arm_endpoint,
            webhook_rotators: env.get(WEBHOOK_ROTATORS).map(SecretString::new),
            azure_keys,
            postgres,
            mysql,
            entra,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::lookup;

    #[test]
    fn the_arm_endpoint_defaults_to_the_public_cloud_and_must_be_https() {
        let settings = ProviderSettings::from_env(&Env::new(&lookup(&[]))).unwrap();
        assert_eq!(settings.arm_endpoint.as_str(), "https://management.azure.com/");
        assert!(settings.webhook_rotators.is_none());

        let local = lookup(&[("KEYTURN_ARM_ENDPOINT", "https://127.0.0.1:8444")]);
        let settings = ProviderSettings::from_env(&Env::new(&local)).unwrap();
        assert_eq!(settings.arm_endpoint.as_str(), "https://127.0.0.1:8444/");

        for bad in ["http://management.azure.com", "https://management.azure.com/subscriptions", "not a url"] {
            let errors = ProviderSettings::from_env(&Env::new(&lookup(&[("KEYTURN_ARM_ENDPOINT", bad)]))).unwrap_err();
            assert_eq!(errors[0].variable(), "KEYTURN_ARM_ENDPOINT", "{bad}");
        }
    }

    #[test]
    fn storage_accounts_are_bound_per_vault_and_name_as_before() {
        const A: &str = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/a";
        const B: &str = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/b";
        let raw = format!("kv-one={A}/ ; KV-two/app-*,db={A},{B}");
        let settings = ProviderSettings::from_env(&Env::new(&lookup(&[("KEYTURN_STORAGE_ACCOUNTS", &raw)]))).unwrap();
        let bound = &settings.azure_keys;
        assert!(bound.allows("kv-one", "anything", &A.to_uppercase()));
        assert!(!bound.allows("kv-one", "anything", B), "B is not bound to kv-one");
        assert!(bound.allows("kv-two", "app-web", B) && bound.allows("kv-two", "db", B));
        assert!(!bound.allows("kv-two", "other", A), "names outside the entry's filter");
        assert!(!bound.allows("kv-three", "db", A));
        assert!(ProviderSettings::from_env(&Env::new(&lookup(&[]))).unwrap().azure_keys.is_empty());

        for bad in [
            "kv-one".to_owned(),
            "kv-one=/not/an/account".to_owned(),
            format!("={A}"),
            format!("kv one={A}"),
            format!("kv/a b={A}"),
        ]
        .iter()
        .map(String::as_str)
        {
            let errors =
                ProviderSettings::from_env(&Env::new(&lookup(&[("KEYTURN_STORAGE_ACCOUNTS", bad)]))).unwrap_err();
            assert_eq!(errors[0].variable(), "KEYTURN_STORAGE_ACCOUNTS", "{bad}");
        }
    }

    #[test]
    fn postgres_servers_and_admin_bindings() {
        let env = lookup(&[
            ("KEYTURN_POSTGRES_SERVERS", "DB.example.com, 127.0.0.1:6543"),
            ("KEYTURN_POSTGRES_ADMINS", "kv-one/pg-admin=app,billing; kv-two/pg-admin=crm"),
        ]);
        let pg = ProviderSettings::from_env(&Env::new(&env)).unwrap().postgres;
        assert!(pg.serves("db.example.com", 5432) && pg.serves("127.0.0.1", 6543));
        assert!(!pg.serves("127.0.0.1", 5432) && !pg.serves("evil.example", 5432));
        assert!(pg.admin_manages("KV-one", "pg-admin", "billing"));
        assert!(!pg.admin_manages("kv-one", "pg-admin", "crm"), "crm is kv-two's admin's");
        assert!(!pg.admin_manages("kv-one", "other-admin", "app"));
        for (var, bad) in [
            ("KEYTURN_POSTGRES_SERVERS", "db:port"),
            ("KEYTURN_POSTGRES_ADMINS", "pg-admin=app"),
            ("KEYTURN_POSTGRES_ADMINS", "kv/pg-admin="),
        ] {
            let errors = ProviderSettings::from_env(&Env::new(&lookup(&[(var, bad)]))).unwrap_err();
            assert_eq!(errors[0].variable(), var, "{bad}");
        }
    }

    #[test]
    fn mysql_servers_and_admin_bindings_in_postgres_grammar_with_port_3306() {
        let env = lookup(&[
            ("KEYTURN_MYSQL_SERVERS", "orders.mysql.database.azure.com, 127.0.0.1:13306"),
            ("KEYTURN_MYSQL_ADMINS", "kv-one/mysql-admin=app"),
            ("KEYTURN_POSTGRES_SERVERS", "pg.example.com"),
        ]);
        let settings = ProviderSettings::from_env(&Env::new(&env)).unwrap();
        let my = settings.mysql;
        assert!(my.serves("orders.mysql.database.azure.com", 3306) && my.serves("127.0.0.1", 13306));
        assert!(
            !my.serves("pg.example.com", 5432) && !my.serves("pg.example.com", 3306),
            "postgres's servers stay its own"
        );
        assert!(!settings.postgres.serves("orders.mysql.database.azure.com", 3306));
        assert!(my.admin_manages("kv-one", "mysql-admin", "app") && !my.admin_manages("kv-one", "mysql-admin", "crm"));
        assert!(settings.postgres.admins.is_empty());
        for (var, bad) in [("KEYTURN_MYSQL_SERVERS", "db:port"), ("KEYTURN_MYSQL_ADMINS", "mysql-admin=app")] {
            let errors = ProviderSettings::from_env(&Env::new(&lookup(&[(var, bad)]))).unwrap_err();
            assert_eq!(errors[0].variable(), var, "{bad}");
        }
    }

    #[test]
    fn webhook_rotators_are_held_as_a_secret() {
        let env =
            lookup(&[("KEYTURN_WEBHOOK_ROTATORS", "billing=https://r.example/rotate?secret=s3cr3t-s3cr3t-s3cr3t")]);
        let settings = ProviderSettings::from_env(&Env::new(&env)).unwrap();
        assert!(!format!("{settings:?}").contains("s3cr3t"));
        assert!(settings.webhook_rotators.unwrap().expose().starts_with("billing="));
    }
}
